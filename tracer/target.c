/*
 * target: telling a live process from a zombie or a kernel thread before
 * attaching: PTRACE_SEIZE fails on both with EPERM, which would read as
 * "another user's process".
 */
#include "tracer/target.h"

#include "tracer/procfs.h"
#include "tracer/util.h"

/* linux/sched.h's PF_KTHREAD: the task is a kernel thread. */
#define TASK_FLAG_KTHREAD 0x00200000UL

void target_check(pid_t pid)
{
	char state, comm[64];
	unsigned long flags;

	if (procfs_stat(pid, &state, &flags) < 0)
		die("cannot attach to process %d: no such process", (int)pid);
	procfs_comm(pid, comm, sizeof(comm));
	/* A leader that called pthread_exit is a zombie while its other
	 * threads run on: only a process with no thread left is one. */
	if ((state == 'Z' || state == 'X') && procfs_status_field(pid, "Threads") <= 1)
		die("cannot attach to process %d (%s): it is a zombie: it has exited and "
		    "its parent has not reaped it, so there is nothing left to trace",
		    (int)pid, comm);
	if (flags & TASK_FLAG_KTHREAD)
		die("cannot attach to process %d (%s): it is a kernel thread, with no user "
		    "memory or allocator to trace", (int)pid, comm);
}
