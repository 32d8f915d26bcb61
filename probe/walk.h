#ifndef PTLEAK_PROBE_WALK_H
#define PTLEAK_PROBE_WALK_H
/*
 * probe/walk.h: the probe's stack walk, over the compact unwind rows
 * ptleak derived from each module's .eh_frame / .debug_frame. It is
 * included by the freestanding probe and by the unit test that checks it
 * against libunwind, so it uses nothing but probe/abi.h.
 *
 * The caller supplies READ (one 8-byte word at an address, which the
 * walk has already checked lies inside [lo, hi), the thread's stack: the
 * probe reads its own memory, the unit test a stopped process's) and a
 * row lookup, so that the probe can put a cache in front of the tables.
 */
#include "probe/abi.h"

/* The row for PC in SH's tables: 1 and *OUT set, or 0 (no module or no
 * row: ptleak must finish the walk). */
static inline int walk_find_row(const struct probe_shared *sh, uint64_t pc,
				struct probe_row *out)
{
	for (uint32_t m = 0; m < sh->n_modules && m < PROBE_MODULES; m++) {
		const struct probe_module *md = &sh->modules[m];
		if (!md->live || pc < md->start || pc >= md->end || md->n_rows == 0)
			continue;
		const struct probe_row *rows =
			(const struct probe_row *)((const char *)sh + md->rows_off);
		uint32_t off = (uint32_t)(pc - md->start), lo = 0, hi = md->n_rows;
		if (off < rows[0].pc_off)
			return 0;
		while (hi - lo > 1) {	/* last row with pc_off <= off */
			uint32_t mid = lo + (hi - lo) / 2;
			if (rows[mid].pc_off <= off)
				lo = mid;
			else
				hi = mid;
		}
		*out = rows[lo];
		return 1;
	}
	return 0;
}

typedef int (*walk_row_fn)(void *ctx, uint64_t pc, struct probe_row *out);
/* The stack word at ADDR (already checked to lie in the stack). */
typedef uint64_t (*walk_read_fn)(void *ctx, uint64_t addr);

/*
 * From an allocator's entry (PCS[0] = SITE, the return address at
 * [RSP]), fill PCS with up to MAX frames, as ptleak's libunwind walk
 * does: return addresses, looked up at pc - 1, ending at a frame whose
 * return address is undefined (_start, clone) or zero. Every read lies in
 * [RSP, HI). Returns the number of frames, or -1 when a frame has no
 * usable row or would read outside the stack: then ptleak walks it.
 */
static inline int walk_stack(walk_row_fn find, walk_read_fn read, void *ctx, uint64_t site,
			     uint64_t rsp, uint64_t rbp, uint64_t hi,
			     uint64_t *pcs, int max)
{
	const uint64_t lo = rsp;
	int n = 0;

	if (max <= 0)
		return 0;
	pcs[n++] = site;
	if (n >= max)
		return n;
	if (rsp < lo || rsp + 8 > hi)
		return -1;
	uint64_t ra = read(ctx, rsp);
	rsp += 8;
	for (;;) {
		struct probe_row row;
		if (ra == 0)
			return n;
		if (!find(ctx, ra - 1, &row) || row.cfa_reg == ROW_NONE)
			return -1;
		pcs[n++] = ra;
		if (n >= max || row.cfa_reg == ROW_END)
			return n;
		uint64_t cfa = (row.cfa_reg == ROW_RSP ? rsp : rbp) + (int64_t)row.cfa_off;
		if (cfa < rsp + 8 || cfa > hi)
			return -1;
		if (row.rbp_off) {
			uint64_t at = cfa + (int64_t)row.rbp_off;
			if (at < lo || at + 8 > hi)
				return -1;
			rbp = read(ctx, at);
		}
		ra = read(ctx, cfa - 8);
		rsp = cfa;
	}
}

#endif
