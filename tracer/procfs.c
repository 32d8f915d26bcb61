/*
 * procfs: /proc readers (see procfs.h).
 */
#include "tracer/procfs.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer/util.h"

/* Up to SIZE - 1 bytes of file PATH into BUF, NUL-terminated; the byte
 * count, or -1. Only open, read and close. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

bool procfs_task_status(pid_t pid, pid_t tid, char *buf, size_t size)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	return read_small(path, buf, size) > 0;
}

const char *procfs_status_value(const char *buf, const char *field)
{
	size_t n = strlen(field);

	for (const char *l = buf; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, field, n) && l[n] == ':')
			return l + n + 1;
	return NULL;
}

bool procfs_sig_pending(const char *buf, int sig)
{
	const char *v = procfs_status_value(buf, "SigPnd");

	return v && (strtoull(v, NULL, 16) & (1ull << (sig - 1)));
}

bool procfs_task_sig_pending(pid_t pid, pid_t tid, int sig)
{
	char buf[4096];

	return procfs_task_status(pid, tid, buf, sizeof(buf)) && procfs_sig_pending(buf, sig);
}

long procfs_status_field(pid_t pid, const char *field)
{
	char buf[4096];
	const char *v;

	if (!procfs_task_status(pid, pid, buf, sizeof(buf)) ||
	    !(v = procfs_status_value(buf, field)))
		return -1;
	return strtol(v, NULL, 10);
}

bool procfs_thread_dying(pid_t pid, pid_t tid)
{
	char buf[4096];

	if (!procfs_task_status(pid, tid, buf, sizeof(buf)))
		return true;
	const char *state = procfs_status_value(buf, "State");
	if (state)
		state += strspn(state, " \t");
	return (state && (*state == 'Z' || *state == 'X')) || procfs_sig_pending(buf, SIGKILL);
}

void procfs_comm(pid_t pid, char *buf, size_t size)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	if (read_small(path, buf, size) <= 0) {
		snprintf(buf, size, "?");
		return;
	}
	buf[strcspn(buf, "\n")] = '\0';
}

char **procfs_cmdline(pid_t pid)
{
	char path[64], buf[8192];
	size_t n, k = 0, count = 0;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	ssize_t r = read_small(path, buf, sizeof(buf));
	n = r > 0 ? (size_t)r : 0;
	buf[n] = '\0';
	for (size_t i = 0; i < n; i++)
		count += buf[i] == '\0';
	char **argv = xcalloc(count + 2, sizeof(*argv));
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		argv[k++] = xstrdup(buf + i);
	/* A program that rewrote its argv as a title (redis, postgres) pads
	 * it with NULs or spaces: keep what ps shows, not 165 empty strings. */
	while (k > 1 && !argv[k - 1][0])
		free(argv[--k]);
	argv[k] = NULL;
	if (k) {
		char *last = argv[k - 1], *e = last + strlen(last);
		while (e > last && e[-1] == ' ')
			*--e = '\0';
	}
	if (k == 0)
		argv[k++] = xstrdup("?");
	return argv;
}

int procfs_stat(pid_t pid, char *state, unsigned long *flags)
{
	char path[64], buf[1024];

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_small(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* "PID (COMM) STATE PPID PGRP SESSION TTY TPGID FLAGS ...": COMM may
	 * hold spaces and parentheses, so fields count from the last ')'. */
	const char *close_paren = strrchr(buf, ')');
	*state = '?';
	*flags = 0;
	if (close_paren)
		sscanf(close_paren + 1, " %c %*d %*d %*d %*d %*d %lu", state, flags);
	return 0;
}
