/*
 * waiter: poll, then block (see waiter.h).
 */
#include "tracer/waiter.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "tracer/util.h"

#define SPIN_NS 50000ull	/* per wait */
#define HOT_NS 2000000ull	/* stops closer than this are "coming fast" */
/* A sched_yield() that took longer ran someone else: this CPU is not idle,
 * wake-ups are cheap, and a sleeper woken by the stop preempts whoever
 * runs while a poller waits for its turn. Then block, for a while. */
#define YIELD_SLOW_NS 10000ull
#define BACKOFF_NS 20000000ull

void waiter_init(struct waiter *w)
{
	const char *env = getenv("PTLEAK_SPIN_US");

	*w = (struct waiter){ .spin_ns = SPIN_NS, .hot_ns = HOT_NS };
	if (env && *env)
		w->spin_ns = strtoull(env, NULL, 10) * 1000;
}

pid_t waiter_wait(struct waiter *w, int *status, const volatile sig_atomic_t *signals)
{
	sig_atomic_t seen = *signals;
	uint64_t start = w->spin_ns ? now_ns() : 0;
	pid_t tid;

	if (w->spin_ns && start - w->last_ns < w->hot_ns && start >= w->backoff_until) {
		uint64_t t = start;
		do {
			tid = waitpid(-1, status, __WALL | WNOHANG);
			if (tid != 0) {
				if (tid > 0) {
					w->polled++;
					w->last_ns = now_ns();
				}
				return tid;
			}
			if (*signals != seen) {
				errno = EINTR;
				return -1;
			}
			/* Not a pause: a thread of the program woken on this CPU
			 * (the other one busy) runs at once, not after our poll. */
			sched_yield();
			uint64_t t2 = now_ns();
			if (t2 - t > YIELD_SLOW_NS) {
				w->backoff_until = t2 + BACKOFF_NS;
				w->backoffs++;
				break;
			}
			t = t2;
		} while (t - start < w->spin_ns);
	}
	tid = waitpid(-1, status, __WALL);
	if (tid > 0) {
		w->blocked++;
		w->last_ns = now_ns();
	}
	return tid;
}
