/*
 * trap_roundtrip: the floor under any ptrace tracer, measured here. A child
 * executes int3 N times; the parent takes each SIGTRAP stop with waitpid,
 * reads the registers (as any breakpoint handler must) and resumes it.
 * Prints the mean microseconds per round trip.
 *
 * usage: trap_roundtrip N [block|poll]
 *
 * block (default): a blocking waitpid, as a plain tracer does.
 * poll: waitpid(WNOHANG) and sched_yield() for up to 50 us before
 * blocking, backing off on a busy CPU, as ptleak's waiter does
 * (tracer/waiter.h): on an idle machine the blocking wait pays a CPU
 * wake-up per hand-off.
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* ptleak's waiter in short: a yield that took over 10 us ran someone
 * else (the CPU is busy): block, and do not poll for 20 ms. */
static pid_t wait_poll(pid_t pid, int *status)
{
	static double backoff_until;
	double start = now_us(), t = start;
	pid_t r;

	if (start < backoff_until)
		return waitpid(pid, status, 0);
	do {
		r = waitpid(pid, status, WNOHANG);
		if (r != 0)
			return r;
		sched_yield();
		double t2 = now_us();
		if (t2 - t > 10) {
			backoff_until = t2 + 20000;
			break;
		}
		t = t2;
	} while (t - start < 50);
	return waitpid(pid, status, 0);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int poll = argc > 2 && !strcmp(argv[2], "poll");
	double a, b;
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		raise(SIGSTOP);
		for (long i = 0; i < n; i++)
			__asm__ volatile("int3");
		_exit(0);
	}
	waitpid(pid, &status, 0);
	ptrace(PTRACE_CONT, pid, 0, 0);
	a = now_us();
	for (long i = 0; i < n; i++) {
		struct user_regs_struct regs;
		pid_t r = poll ? wait_poll(pid, &status) : waitpid(pid, &status, 0);
		if (r < 0 || !WIFSTOPPED(status))
			return 1;
		ptrace(PTRACE_GETREGS, pid, 0, &regs);
		ptrace(PTRACE_CONT, pid, 0, 0);
	}
	b = now_us();
	waitpid(pid, &status, 0);
	printf("%.3f\n", (b - a) / n);
	return 0;
}
