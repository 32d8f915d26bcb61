/*
 * check_cmd: ptleak --check PID (see check_cmd.h).
 */
#include "tracer/check_cmd.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tracer/procfs.h"
#include "tracer/util.h"

/* ptleak's own name, as /proc/PID/comm has it ("ptleak", "ptleak-asan"). */
static bool is_ptleak(long pid)
{
	char comm[64];

	procfs_comm((pid_t)pid, comm, sizeof(comm));
	return !strncmp(comm, "ptleak", 6);
}

int check_cmd_run(int pid)
{
	char name[64];
	long tracer = procfs_status_field(pid, "TracerPid");

	if (tracer < 0) {
		error("--check %d: no such process", pid);
		return EXIT_PTLEAK_FAILURE;
	}
	if (tracer == 0 && is_ptleak(pid)) {
		tracer = pid;	/* the ptleak itself */
	} else if (tracer == 0) {
		error("--check %d: process %d is not traced by ptleak (nothing traces it)", pid, pid);
		return EXIT_PTLEAK_FAILURE;
	} else if (!is_ptleak(tracer)) {
		procfs_comm((pid_t)tracer, name, sizeof(name));
		error("--check %d: process %d is traced by process %ld (%s), not by ptleak", pid,
		      pid, tracer, name);
		return EXIT_PTLEAK_FAILURE;
	}
	if (kill((pid_t)tracer, SIGUSR1) < 0) {
		error("--check %d: cannot signal ptleak (process %ld): %s", pid, tracer,
		      strerror(errno));
		return EXIT_PTLEAK_FAILURE;
	}
	if (tracer != pid)
		fprintf(stderr, "ptleak: leak check asked of ptleak (process %ld), which traces "
			"process %d; the report goes to its output\n", tracer, pid);
	else
		fprintf(stderr, "ptleak: leak check asked of ptleak (process %ld); the report goes "
			"to its output\n", tracer);
	return 0;
}
