#ifndef PTLEAK_SCAN_H
#define PTLEAK_SCAN_H
/*
 * scan: leak kinds without instrumentation, by a conservative pointer
 * scan of the stopped tracee, as valgrind memcheck and LeakSanitizer do.
 *
 * Roots, as valgrind memcheck and LeakSanitizer define them (the rules
 * and their reasons: doc/internals.md, "Leak kinds: the scan"):
 *  - the registers of every live thread (general purpose, and xmm0-15
 *    where they were read);
 *  - each live thread's stack from its own stack pointer up (minus the
 *    128-byte red zone a leaf function may use), never the dead frames
 *    below it; for the thread ending the process, from the frame that
 *    called exit() (or returned from main): the exit path's own frames
 *    are no root. A "stack" is the mapping holding the stack pointer if
 *    it is [stack] or also holds the thread's thread pointer (glibc puts
 *    the TCB at the top of a thread's stack); anything else (a Go
 *    goroutine stack inside a heap arena) is scanned whole;
 *  - every other readable, writable mapping (data, bss, anonymous memory,
 *    TLS, a Go or Python runtime's own heaps), except the stacks of
 *    threads that exited (glibc's stack cache, a main thread gone with
 *    pthread_exit): a mapping holding an exited thread's last stack
 *    pointer and thread pointer and no live thread's is dead;
 *  - minus allocator-owned memory: the brk heap from the lowest block
 *    ever allocated on (below it: a static binary's TLS), live blocks
 *    themselves (they count only when reached), and glibc's own state
 *    (arena heaps, mmapped chunk headers, main_arena's bins, whose
 *    pointers to chunk headers can fall inside a live neighbour's last
 *    bytes); and an allocator other than the C library's: what it mapped
 *    for itself, its library's data and bss (hooks.h).
 * Only aligned 8-byte words count. Memory that cannot be read as the
 * program would read it (PROT_NONE, guard pages) is never scanned, even
 * where /proc/PID/mem could read it: it holds no root, and the unreadable
 * pages of a reached block are skipped.
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

/* One live thread of the process at the scan. */
struct scan_thread {
	pid_t tid;
	struct user_regs_struct regs;	/* roots; regs.fs_base: its thread pointer */
	bool has_fp;
	struct user_fpregs_struct fp;	/* xmm0-15 are roots too, if has_fp */
	uint64_t stack_from;	/* its stack counts from here up, in the
				 * mapping holding regs.rsp */
};

/* The x86-64 SysV red zone: an interrupted leaf function may keep data in
 * the 128 bytes below rsp, so a stopped thread's stack counts from
 * rsp - SCAN_RED_ZONE (valgrind keeps them addressable too). */
#define SCAN_RED_ZONE 128

/*
 * Classify every live block of P. TH[0..N) are its live threads (their
 * stacks count from ->stack_from up). N == 0: no memory to scan any more;
 * every block counts as definitely lost and ->scanned is false. Threads
 * of P in the registry but not in TH (they did not stop) keep their
 * stacks whole as roots.
 *
 * CONSERVATIVE (attach mode): memory ptleak cannot account for (blocks
 * allocated before it attached, the allocator's free chunks) is a root
 * too, so no block is called lost while something unknown might point to
 * it. Never NULL.
 */
struct scan_result *scan_process(struct process *p, const struct scan_thread *th,
				 size_t n, bool conservative);

/* The same for the last scan of P (it exits, or ptleak leaves it): the
 * heap table's memory becomes the result's (a process may hold millions
 * of blocks), and the table is left empty. */
struct scan_result *scan_process_final(struct process *p, const struct scan_thread *th,
				       size_t n, bool conservative);

void scan_result_free(struct scan_result *r);

const char *leak_kind_name(enum leak_kind k);	/* "definitely_lost", ... */

#endif
