/*
 * launch: resolve and start the program (see launch.h).
 *
 * Errors before the exec follow env(1) and timeout(1): 127 when PROGRAM
 * is not found, 126 when it is found but cannot run. A failure of execve
 * itself in the child (bad format, for instance) is reported by the child
 * with the same statuses, before any report is written.
 */
#include "tracer/launch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tracer/signals.h"
#include "tracer/util.h"

#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND 127

static noreturn void cannot_run(const char *name, int err)
{
	fprintf(stderr, "ptleak: cannot run '%s': %s\n", name,
		err == EISDIR ? "is a directory" : strerror(err));
	exit(err == ENOENT || err == ENOTDIR ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE);
}

/* 0 if PATH is an executable regular file, else an errno value. */
static int check_executable(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno;
	if (S_ISDIR(st.st_mode))
		return EISDIR;
	if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0)
		return EACCES;
	return 0;
}

char *launch_resolve(const char *name)
{
	int err;

	if (!*name)
		cannot_run(name, ENOENT);
	if (strchr(name, '/')) {
		err = check_executable(name);
		if (err)
			cannot_run(name, err);
		return xstrdup(name);
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	/* As execvp: the first executable match wins; if only non-executable
	 * matches exist, report permission denied. */
	int seen = ENOENT;
	for (const char *p = path;; p++) {
		const char *colon = strchrnul(p, ':');
		size_t dlen = (size_t)(colon - p);
		char *cand = xmalloc(dlen + strlen(name) + 2);
		if (dlen == 0)
			strcpy(cand, name);	/* empty entry: current directory */
		else
			sprintf(cand, "%.*s/%s", (int)dlen, p, name);
		err = check_executable(cand);
		if (!err)
			return cand;
		if (err != ENOENT && err != ENOTDIR && err != EISDIR)
			seen = err;
		free(cand);
		if (!*colon)
			break;
		p = colon;
	}
	cannot_run(name, seen);
}

pid_t launch_start(const char *path, char **argv, bool exitkill)
{
	long opts = PTLEAK_PTRACE_OPTIONS & ~(exitkill ? 0 : PTRACE_O_EXITKILL);
	extern char **environ;
	int status;
	pid_t pid = fork();

	if (pid < 0)
		die("cannot fork: %s", strerror(errno));
	if (pid == 0) {
		signals_early_undo();
		/* Wait here until the parent has seized us. */
		raise(SIGSTOP);
		execve(path, argv, environ);
		int err = errno;
		fprintf(stderr, "ptleak: cannot run '%s': %s\n", argv[0], strerror(err));
		_exit(err == ENOENT ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE);
	}
	if (waitpid(pid, &status, WSTOPPED) < 0 || !WIFSTOPPED(status))
		die("cannot start '%s': the child did not stop", argv[0]);
	if (ptrace(PTRACE_SEIZE, pid, 0, (void *)opts) < 0) {
		int err = errno;
		kill(pid, SIGKILL);
		die("cannot trace '%s': ptrace: %s%s", argv[0], strerror(err),
		    err == EPERM ? " (is ptrace forbidden here? see kernel.yama.ptrace_scope "
				   "and the CAP_SYS_PTRACE capability)" : "");
	}
	kill(pid, SIGCONT);
	return pid;
}
