#ifndef PTLEAK_EHFRAME_H
#define PTLEAK_EHFRAME_H
/*
 * ehframe: the unwind tables of a process's modules, in the form
 * libunwind's remote table search reads (UNW_INFO_FORMAT_REMOTE_TABLE: a
 * sorted table of (initial location, FDE) pairs relative to a segment
 * base), found without touching the files where possible.
 *
 * A module's PT_GNU_EH_FRAME segment (.eh_frame_hdr) is parsed once from
 * the process's memory (through the page cache) and its table is used in
 * place. A module without one (static glibc binaries: gcc passes
 * --eh-frame-hdr to dynamic links only) gets a table built here from the
 * .eh_frame section of its ELF file, served at EH_SYNTH_BASE + ..., an
 * address no user mapping can have (non-canonical on x86-64): memory reads
 * there go to eh_tables_synth_read.
 */
#include <libunwind.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EH_SYNTH_BASE 0x4000000000000000ULL

struct pagecache;
struct symbols;

/* The table of one module; usable is false when it has none. */
struct eh_table {
	uint64_t start, end;
	bool usable;
	unw_dyn_info_t di;
	int32_t *synth;		/* built here: (initial pc, FDE) pairs */
	size_t synth_bytes;
	uint64_t synth_addr;
};

/* The tables made so far, per module, and where they come from. */
struct eh_tables {
	struct symbols *syms;
	struct pagecache *pc;
	struct eh_table *v;
	size_t n, cap, last;
	uint64_t synth_next;	/* next free synthetic address */
};

void eh_tables_init(struct eh_tables *e, struct symbols *syms, struct pagecache *pc);
void eh_tables_free(struct eh_tables *e);
/* Forget every table (modules changed). */
void eh_tables_drop(struct eh_tables *e);

/* The table of the module under IP, made on first use; NULL if no module
 * is there (or out of memory). */
struct eh_table *eh_tables_at(struct eh_tables *e, uint64_t ip);

/* A word of a synthetic table at ADDR (>= EH_SYNTH_BASE): 0, or
 * -UNW_EINVAL if none is there. */
int eh_tables_synth_read(const struct eh_tables *e, uint64_t addr, unw_word_t *valp);

#endif
