#ifndef PTLEAK_FAST_H
#define PTLEAK_FAST_H
/*
 * fast: the in-process event source (--mode=fast), source_fast in the
 * table of sources (source.h). ptleak writes the
 * probe (probe/probe.c, built into a blob) into the traced program,
 * redirects each allocator entry to it with a jmp, and the probe records
 * every allocation event, with its stack, into a ring in memory shared
 * with ptleak (a memfd the program made and both map), which ptleak
 * drains into the allocation table. No ptrace stop per call.
 *
 * A site that cannot be patched safely keeps its int3 (hooks.c); both
 * kinds of site can live in one process. See doc/internals.md.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct probe_shared;
struct process;
struct thread;

/*
 * Map the probe and the shared ring into P, T a stopped thread (every
 * thread of P stopped). 0, or -1 with a message printed: the caller goes
 * on with int3 sites only.
 */
int fast_setup(struct process *p, struct thread *t);

/* A child forked by PARENT and traced (-f): its own ring, the parent's
 * unwind tables; T its stopped thread. The child's probe is quiet until
 * this is done (its control page was wiped by the fork). 0 or -1. */
int fast_setup_child(struct process *c, struct thread *t, struct process *parent);

/*
 * For the conformance test (tests/unit/heap_test.c): P's ring in
 * ptleak's own memory, as fast_setup makes it in the program's, for the
 * probe's code compiled into the test to write and fast_drain to read.
 * NULL if it cannot be mapped. fast_free releases it.
 */
struct probe_shared *fast_setup_local(struct process *p);

/* ptleak's side of P's probe, freed (the tracee's mappings are left). */
void fast_free(struct process *p);

/*
 * Redirect allocator entry ADDR (function of SIZE bytes, enum alloc_call
 * CALL) to the probe when every thread of P is stopped and it is safe.
 * 0, or -1 (the caller arms an int3).
 */
int fast_hook(struct process *p, struct thread *t, uint64_t addr, uint64_t size, int call,
	      unsigned generation);

/* Redirect ld.so's r_brk (function of SIZE bytes at ADDR) to the probe,
 * which asks ptleak to look at the modules (see fast_drain) only while
 * ptleak lives. 0, or -1 (the caller arms an int3 there). */
int fast_hook_rbrk(struct process *p, struct thread *t, uint64_t addr, uint64_t size);

/* Redirect _exit (SIZE bytes at ADDR) to the probe, which asks ptleak
 * for the scan at exit (see fast_drain) only while ptleak lives: after a
 * kill -9 of ptleak the program exits as if nothing were there. 0, or -1
 * (the caller arms an int3 there). */
int fast_hook_exit(struct process *p, struct thread *t, uint64_t addr, uint64_t size,
		   unsigned generation);

/* The modules of P changed (exec, dlopen, dlclose): unwind rows for the
 * new ones, the unmapped ones retired. */
void fast_modules_changed(struct process *p);

/* A thread was created: stack ranges handed to the probe are checked
 * against the current mappings (a cached thread stack may have gone). */
void fast_on_clone(struct process *p);

enum drain_flags {
	DRAIN_FINAL = 1 << 0,	/* exiting: skip a cell a killed thread left */
	DRAIN_NO_STOPS = 1 << 1,	/* leaving: stop no thread (r_brk, _exit not served) */
	DRAIN_AHEAD = 1 << 2,	/* every thread stopped: consume past an unfinished cell */
};

/*
 * Move the events the probe published into P's allocation table, in
 * sequence order, and answer its requests: unwinds; r_brk, for which
 * the asking thread is interrupted, the modules looked at
 * (hooks_modules_changed) and the thread resumed; _exit, for which the
 * asking thread is interrupted and held for the scan at exit
 * (hooks_at_exit, exit_begin: LOOP_EXITING resumes it). FLAGS: enum
 * drain_flags (DRAIN_NO_STOPS: requests answered, no thread stopped).
 * Returns the number of events consumed.
 */
size_t fast_drain(struct process *p, unsigned flags);

/* Sleep up to US microseconds or until a probe of one of PROCS asks for
 * ptleak (or a SIGCHLD arrives). */
void fast_wait(struct process *const *procs, size_t n, long us);

/* Whether P has a probe (set up by fast_setup). */
bool fast_active(struct process *p);

/* Leaving P: the probe stops recording. */
void fast_disarm(struct process *p);

/* Whether a thread of P is inside the probe: in a recorded call, or its
 * rip (RIPS, every thread stopped) in the probe's code. */
bool fast_busy(struct process *p, const uint64_t *rips, size_t n);

/* P runs a foreign allocator (hooks.h) or not: the probe zeroes the
 * first word of each new block (not of a realloc's, nor of a string's),
 * and reports the allocator's own mmap, mremap and sbrk (made inside a
 * recorded call, or returning into one of the N ranges MODS). */
struct symbols_range;
void fast_set_allocator(struct process *p, bool foreign, const struct symbols_range *mods,
			size_t n);

/* Whether the thread of thread pointer FS_BASE is inside a call the probe
 * records (a call it makes now is nested in that one). */
bool fast_thread_busy(struct process *p, uint64_t fs_base);

/* Unmap the probe and the ring from P, running munmap in T. 0 or -1. */
int fast_remove(struct process *p, struct thread *t);

/* Whether ADDR lies in the probe's control page or ring in P: memory of
 * ptleak's, no root for the leak scan (it holds copies of pointers). */
bool fast_owns(struct process *p, uint64_t addr);

/* The thread pointers (fs_base) of the threads that called the probe,
 * into OUT (at most MAX); their count. */
size_t fast_thread_pointers(struct process *p, uint64_t *out, size_t max);

/* From a fatal-signal handler: make P's probe quiet (async-signal-safe). */
void fast_emergency(struct process *p);

/* Whether P still has the probe mapped (the crash path leaves it, inert,
 * when a thread could not be moved out of it: then the code pages that
 * lead into it and back must stay too). Async-signal-safe. */
bool fast_mapped(struct process *p);

/* SIGCHLD: wake a ptleak asleep in fast_wait. Async-signal-safe. */
void fast_sigchld(void);

#endif
