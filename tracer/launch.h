#ifndef PTLEAK_LAUNCH_H
#define PTLEAK_LAUNCH_H
/*
 * launch: start PROGRAM as ptleak's traced child, exactly as if it had
 * been run directly: same environment, file descriptors, signal
 * dispositions and mask, personality, rlimits and umask.
 *
 * The child stops itself before execve; the parent seizes it
 * (PTRACE_SEIZE, so group-stops and PTRACE_INTERRUPT work as documented)
 * with every option set, then lets it exec: the first event of the
 * program is its PTRACE_EVENT_EXEC stop.
 */
#include <stdbool.h>
#include <sys/types.h>

/*
 * Find ARGV[0] as execvp would ($PATH for a bare name). On failure prints
 * one line and exits 127 (not found) or 126 (found, not executable).
 * Returns the path to execute (malloc'ed).
 */
char *launch_resolve(const char *name);

/* Fork, seize and let the child exec PATH with ARGV. EXITKILL: a kill -9
 * of ptleak kills it too (trap mode: its int3s would end it at its next
 * allocator call anyway); else it runs on, untraced (fast mode: the probe
 * goes quiet), as after a crash of ptleak. Dies (125) if ptrace is
 * refused. Returns the child's pid. */
pid_t launch_start(const char *path, char **argv, bool exitkill);

/* ptrace options for every tracee. */
#define PTLEAK_PTRACE_OPTIONS                                               \
	(PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |   \
	 PTRACE_O_TRACEVFORKDONE | PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT |  \
	 PTRACE_O_EXITKILL)

#endif
