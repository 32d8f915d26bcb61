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

	if (w->spin_ns && start - w->last_ns < w->hot_ns) {
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
		} while (now_ns() - start < w->spin_ns);
	}
	tid = waitpid(-1, status, __WALL);
	if (tid > 0) {
		w->blocked++;
		w->last_ns = now_ns();
	}
	return tid;
}
