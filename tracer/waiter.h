#ifndef PTLEAK_WAITER_H
#define PTLEAK_WAITER_H
/*
 * waiter: the tracer's one wait for the next stop of any tracee, made as
 * cheap on an idle machine as on a busy one.
 *
 * A blocking waitpid() puts ptleak to sleep; when the tracee stops, the
 * kernel must wake ptleak's CPU, and an idle virtual CPU is halted: each
 * such wake-up costs tens of microseconds more than the stop itself
 * (measured here: a bare int3 round trip of 74 us idle, 11-13 us with a
 * CPU kept busy). So while stops come fast, the waiter polls with WNOHANG
 * for a bounded time before it blocks; when they do not (the program
 * computes, or a server waits for requests), it blocks at once and ptleak
 * uses no CPU. The poll yields the CPU at each turn; when a yield runs
 * someone else the CPU is not idle, so a CPU wake-up is cheap, and a
 * sleeping ptleak woken by the stop preempts a busy neighbour sooner than
 * a polling one gets its turn: then it blocks, and does not poll for a
 * while. The program's own scheduling (its CPUs, its affinity) is never
 * touched.
 */
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

struct waiter {
	uint64_t spin_ns;	/* poll at most this long per wait (0: never) */
	uint64_t hot_ns;	/* ... and only if the last stop came this recently */
	uint64_t last_ns;	/* when the last stop was taken */
	uint64_t backoff_until;	/* no polling before: the CPU had other work */
	uint64_t polled, blocked, backoffs;	/* waits satisfied by polling, by
						 * blocking; polls given up as busy */
};

/* Defaults from the measurements in doc/internals.md; PTLEAK_SPIN_US in
 * the environment overrides the poll bound (0 turns polling off). */
void waiter_init(struct waiter *w);

/*
 * waitpid(-1, STATUS, __WALL), polling first as described above. Returns
 * the tid, or -1 with errno (ECHILD: nothing left; EINTR: a signal was
 * handled, also one that arrived while polling: *SIGNALS, a counter every
 * handler of ptleak increments, changed).
 */
pid_t waiter_wait(struct waiter *w, int *status, const volatile sig_atomic_t *signals);

#endif
