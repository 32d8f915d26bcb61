#ifndef PTLEAK_CFI_ROWS_H
#define PTLEAK_CFI_ROWS_H
/*
 * cfi_rows: compact unwind rows for the in-process probe (probe/walk.h),
 * derived from each module's .eh_frame (read from its mapped file, one
 * pass over its FDEs). Only .eh_frame: it is what ptleak's own unwinder
 * (symbols/ehframe.c, libunwind) reads, so a frame the probe walks is
 * one that unwinder would walk the same way; code without an FDE gets a
 * ROW_NONE row and its frames are ptleak's.
 *
 * A row covers the code from its pc to the next row's: CFA = rsp or rbp
 * + offset, the return address at CFA - 8, rbp saved at CFA + offset or
 * unchanged. What does not fit that shape (DWARF expressions: PLT stubs,
 * signal trampolines, realigned stacks; other registers) becomes a
 * ROW_NONE row, where the probe hands the walk to ptleak's unwinder; a
 * frame whose return address is undefined (_start, clone) a ROW_END row.
 */
#include <stddef.h>
#include <stdint.h>

#include "probe/abi.h"

struct symbols;
struct symbols_module;

struct cfi_module {
	uint64_t start, end;	/* the executable range the rows cover */
	uint64_t module_start;	/* the module's, as SKIP of cfi_rows_build takes it */
	const char *path;
	struct probe_row *rows;	/* pc_off relative to start, sorted */
	size_t n_rows;
	size_t n_usable;	/* rows that are neither NONE nor gaps */
};

typedef void (*cfi_module_cb)(void *arg, const struct cfi_module *m);

/*
 * Call CB once per executable segment of module M (symbols_module_at),
 * with its rows (valid during the call). 0, or -1 when M's file has no
 * .eh_frame (no call then).
 */
int cfi_rows_module(const struct symbols_module *m, cfi_module_cb cb, void *arg);

/*
 * Call CB once per executable segment of every module of S, with its
 * rows (valid during the call). Modules whose module_start is in SKIP[0..N_SKIP)
 * are left out (already done). 0, or -1 with symbols_errmsg() set.
 */
int cfi_rows_build(struct symbols *s, const uint64_t *skip, size_t n_skip,
		   cfi_module_cb cb, void *arg);

#endif
