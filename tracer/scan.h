#ifndef PTLEAK_SCAN_H
#define PTLEAK_SCAN_H
/*
 * scan: leak kinds without instrumentation, by a conservative pointer
 * scan of the stopped tracee, as valgrind memcheck and LeakSanitizer do.
 *
 * Roots: the registers of the exiting thread, the main stack above its
 * stack pointer, and every other readable, writable mapping (data, bss,
 * anonymous memory such as other threads' stacks, TLS, a Go or Python
 * runtime's own heaps), minus allocator-owned memory: the brk heap from
 * the lowest block ever allocated on (below it: a static binary's TLS),
 * live blocks themselves (they count only when reached), and glibc's own
 * state (arena heaps, mmapped chunk headers, main_arena's bins, whose
 * pointers to chunk headers can fall inside a live neighbour's last
 * bytes). Only aligned 8-byte words count.
 *
 * Blocks reached by a pointer to their start from a root or a reachable
 * block are still reachable; reached only through interior pointers (or
 * from possibly lost blocks), possibly lost. Of the rest, valgrind's
 * clique rule: each unreached block not yet claimed leads a clique and
 * is definitely lost; what it reaches is indirectly lost.
 *
 * One heuristic, as valgrind's --leak-check-heuristics and LeakSanitizer
 * have theirs: glibc's thread control block (at each thread's fs_base)
 * holds its DTV as a pointer 16 bytes into the calloc'ed block (the
 * length sits in front), which would make every thread's DTV "possibly
 * lost". Such a pointer from a TCB counts as a start pointer.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/user.h>

#include "tracer/heap.h"

struct process;

enum leak_kind {
	LEAK_DEFINITE,
	LEAK_INDIRECT,
	LEAK_POSSIBLE,
	LEAK_REACHABLE,
	LEAK__COUNT
};

struct scan_result {
	struct block *blocks;	/* live blocks, sorted by address */
	size_t n;
	uint8_t *kind;		/* enum leak_kind per block */
	size_t *leader;		/* indirectly lost block: the definitely lost
				 * block heading its clique (index) */
	bool scanned;		/* false: memory was gone, all counted definite */
	uint64_t words_scanned;
	uint64_t ns;		/* time the scan took */
};

/*
 * Classify every live block of P. REGS[0..N) are the registers of its
 * stopped threads (their stacks count from their rsp up). N == 0: no
 * memory to scan any more; every block counts as definitely lost and
 * ->scanned is false.
 *
 * CONSERVATIVE (attach mode): memory ptleak cannot account for (blocks
 * allocated before it attached, the allocator's free chunks) is a root
 * too, so no block is called lost while something unknown might point to
 * it. Never NULL.
 */
struct scan_result *scan_process(struct process *p, const struct user_regs_struct *regs,
				 size_t n, bool conservative);

/* The thread pointers (fs_base) of P's threads, and of up to 256 that
 * exited (glibc keeps their stacks, TCB included, for reuse), for the DTV
 * heuristic: up to MAX in OUT, returns how many. */
size_t scan_thread_pointers(struct process *p, uint64_t *out, size_t max);
void scan_result_free(struct scan_result *r);

const char *leak_kind_name(enum leak_kind k);	/* "definitely_lost", ... */

#endif
