/*
 * trap_roundtrip: the floor under any ptrace tracer, measured here. A child
 * executes int3 N times; the parent takes each SIGTRAP stop with waitpid,
 * reads the registers (as any breakpoint handler must) and resumes it.
 * Prints the mean microseconds per round trip.
 *
 * usage: trap_roundtrip N
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	struct timespec a, b;
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
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		struct user_regs_struct regs;
		if (waitpid(pid, &status, 0) < 0 || !WIFSTOPPED(status))
			return 1;
		ptrace(PTRACE_GETREGS, pid, 0, &regs);
		ptrace(PTRACE_CONT, pid, 0, 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	waitpid(pid, &status, 0);
	printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n);
	return 0;
}
