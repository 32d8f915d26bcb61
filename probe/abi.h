#ifndef PTLEAK_PROBE_ABI_H
#define PTLEAK_PROBE_ABI_H
/*
 * probe/abi.h: the contract between ptleak and the probe it writes into
 * the traced program (probe/probe.c). Both sides include it; the probe is
 * freestanding, so only fixed-size types and no libc.
 *
 * In the tracee, one mapping made by ptleak holds, at fixed offsets:
 *
 *   +0                the probe's code (the blob; probe_entry at +0)
 *   +PROBE_CTL_OFF    struct probe_ctl: private, MADV_WIPEONFORK, so a
 *                     forked child reads it as zeros and records nothing
 *
 * and a second one, MAP_SHARED from a memfd that ptleak maps too, holds
 * struct probe_shared: the event ring, the unwind tables, stack ranges
 * and the replies to unwind requests.
 *
 * The ring is a bounded multi-producer queue: a producer takes a global
 * sequence number with one atomic add, waits until the cell it maps to
 * is free (ptleak's head, which it writes back in batches, has passed the
 * event N cells before), writes the event and publishes it by storing its
 * lap's mark in the cell's seq word. ptleak consumes cells strictly in
 * sequence order, so events reach the allocation table in the order the
 * program performed them, across threads. ptleak only reads the cells:
 * their cache lines travel one way, from the program to ptleak.
 *
 * The mark is relative to the lap (probe_cell_published): a new ring's
 * zeroed memory holds no mark, so nothing initializes it and its pages
 * are touched only as events fill them.
 */
#include <stdint.h>

#define PROBE_MAGIC 0x31656b61656c7470ull	/* "ptleak1e" */
#define PROBE_CODE_MAX 0x4000u		/* the blob must fit */
#define PROBE_CALL_RBRK 0x100u		/* probe_site.call of ld.so's r_brk */
#define PROBE_CALL_EXIT 0x101u		/* probe_site.call of _exit (the scan at exit) */
#define PROBE_CTL_OFF PROBE_CODE_MAX
#define PROBE_CTL_SIZE 0x20000u
#define PROBE_MAP_SIZE (PROBE_CTL_OFF + PROBE_CTL_SIZE)
#define PROBE_THREADS 1024u		/* per-thread slots (busy flag, tid) */
#define PROBE_ROW_CACHE 4096u		/* direct-mapped pc -> row cache */
#define PROBE_MODULES 512u
#define PROBE_STACKS 256u
#define PROBE_MAX_PCS 64u
#define PROBE_BUSY (1ull << 63)		/* in threads[]: inside a recorded call */

/* ctl->flags */
#define PROBE_F_RDFSBASE 1u		/* the CPU and kernel allow rdfsbase */
#define PROBE_F_CLEAR_LINK 2u		/* zero the first word of a new block
					 * (hooks.h: a foreign allocator's link) */
#define PROBE_F_ALLOC_REGIONS 4u	/* a foreign allocator (hooks.h): its own
					 * mmap/mremap/sbrk are PROBE_OP_REGION */
#define PROBE_ALLOC_RANGES 8u		/* its shared objects' address ranges */

/* A recorded allocator call is wrapped; a nested one or a quiet probe
 * jumps straight to the real code. */
struct probe_ctl {
	uint32_t armed;		/* 1: record; 0: pass through (0 in a fork child) */
	uint32_t flags;
	int32_t tracer_pid;	/* for the liveness check */
	uint32_t num_callers;
	uint64_t shared;	/* address of struct probe_shared in the tracee */
	/* PROBE_F_ALLOC_REGIONS: a call returning into one of these is the
	 * allocator's own */
	uint32_t n_alloc_ranges;
	uint32_t pad;
	struct { uint64_t lo, hi; } alloc_ranges[PROBE_ALLOC_RANGES];
	uint64_t thread_key[PROBE_THREADS];	/* fs_base | PROBE_BUSY */
	uint32_t thread_tid[PROBE_THREADS];
	/* pc -> row, direct-mapped; an entry is valid when key ^ val == pc
	 * (a torn read from a racing writer fails that check). */
	struct { uint64_t key, val; } row_cache[PROBE_ROW_CACHE];
};

/* A site descriptor, right after each site's stub in ptleak's code page. */
struct probe_site {
	uint64_t addr;		/* the allocator entry (frame 0 of its stacks) */
	uint64_t slot;		/* relocated first instructions, jump back */
	uint32_t call;		/* enum alloc_call */
	uint32_t pad;
};

enum probe_op {
	PROBE_OP_ALLOC = 1,	/* ptr, size (computed by the probe), pcs; mmap:
				 * ptr, size = len; mremap: old_ptr, ptr, size =
				 * new len, pcs[0] = old len */
	PROBE_OP_FREE,		/* ptr; munmap: ptr, size = len */
	PROBE_OP_REALLOC_ENTER,	/* old_ptr */
	PROBE_OP_REALLOC_EXIT,	/* old_ptr, ptr, size, pcs */
	PROBE_OP_UNWIND,	/* regs: unwind this stack for me, reply in replies[slot] */
	PROBE_OP_RBRK,		/* ld.so's r_brk: stop me, hook new modules, reply */
	PROBE_OP_EXIT,		/* _exit, regs: stop me, scan the process, reply */
	PROBE_OP_REGION,	/* a foreign allocator's own mmap, mremap or sbrk:
				 * ptr = the result, size = len (mremap: new
				 * len, sbrk: increment), old_ptr and pcs[0] =
				 * mremap's old address and length */
};

/* Registers handed to ptleak with an unwind request, at the entry. */
enum { PR_RIP, PR_RSP, PR_RBP, PR_RBX, PR_R12, PR_R13, PR_R14, PR_R15, PR__N };

/* The seq word of the cell of sequence SEQ once the event of SEQ is
 * published in it (N_CELLS a power of two): its lap's first sequence
 * number + 1, never 0 (zeroed memory) nor another lap's mark. */
static inline uint64_t probe_cell_published(uint64_t seq, uint32_t n_cells)
{
	return (seq & ~(uint64_t)(n_cells - 1)) + 1;
}

struct probe_cell {
	uint64_t seq;		/* probe_cell_published once written */
	uint32_t op;
	uint32_t call;
	uint32_t tid;
	uint32_t n_pcs;		/* PROBE_OP_UNWIND, _RBRK, _EXIT: the reply slot */
	uint64_t ptr, old_ptr, size;
	/* n_pcs frames; the cell size allows num_callers, and PR__N words
	 * at least: a request (PROBE_OP_UNWIND, _RBRK, _EXIT) has no frames
	 * and carries the entry registers there (probe_cell_regs). */
	uint64_t pcs[];
};

/* A request's registers, indexed by PR_*. */
#define probe_cell_regs(cell) ((cell)->pcs)

/* A compact unwind row: from pc_off (relative to the module start) to the
 * next row, CFA = (cfa_reg == RSP ? rsp : rbp) + cfa_off, the return
 * address at CFA - 8, rbp saved at CFA + rbp_off (0: not saved). */
enum { ROW_NONE, ROW_RSP, ROW_RBP, ROW_END };
struct probe_row {
	uint32_t pc_off;
	int32_t cfa_off;
	int16_t rbp_off;
	uint8_t cfa_reg;	/* ROW_*: NONE = ask ptleak, END = outermost frame */
	uint8_t pad;
};

struct probe_module {
	uint64_t start, end;	/* code addresses covered */
	uint64_t rows_off;	/* from the start of struct probe_shared */
	uint32_t n_rows;
	uint32_t live;		/* 0: unmapped since */
};

struct probe_reply {
	uint32_t done;		/* futex word: the request's sequence number, low bits */
	uint32_t n;
	uint64_t pcs[PROBE_MAX_PCS];
};

struct probe_shared {
	uint64_t magic;
	uint32_t cell_size, n_cells;	/* n_cells a power of two */
	uint64_t cells_off, rows_off, rows_cap, size;
	uint32_t dead;		/* the probe gave up on ptleak: nothing recorded */
	uint32_t n_modules;
	uint32_t n_stacks;
	uint32_t stacks_gen;	/* seqlock: odd while ptleak rewrites stacks[] */
	uint8_t pad0[64];
	uint64_t tail;		/* next sequence number (producers) */
	uint8_t pad1[56];
	uint64_t head;		/* next sequence to consume (ptleak) */
	uint8_t pad2[56];
	uint32_t doorbell;	/* futex word ptleak sleeps on */
	uint32_t sleeping;	/* ptleak is (about to be) asleep on it */
	uint32_t space;		/* futex word producers of a full ring sleep on */
	uint32_t waiters;	/* producers asleep (or about to be) on it */
	uint8_t pad3[48];
	struct probe_module modules[PROBE_MODULES];
	struct { uint64_t lo, hi; } stacks[PROBE_STACKS];
	struct probe_reply replies[PROBE_THREADS];
};

#endif
