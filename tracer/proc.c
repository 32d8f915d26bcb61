/*
 * proc: process and thread bookkeeping plus ptrace primitives.
 *
 * Threads live in one hash table keyed by tid across every traced
 * process: waitpid(-1) hands us a tid, and that is all we know then.
 */
#include "tracer/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tracer/util.h"

static struct thread **table;	/* open addressing, NULL = empty */
static size_t table_mask;
static size_t table_used;

static size_t tid_slot(pid_t tid)
{
	return ((uint32_t)tid * 2654435761u) & table_mask;
}

struct thread *thread_find(pid_t tid)
{
	if (!table)
		return NULL;
	for (size_t i = tid_slot(tid); table[i]; i = (i + 1) & table_mask)
		if (table[i]->tid == tid)
			return table[i];
	return NULL;
}

static void table_put(struct thread *t)
{
	size_t i = tid_slot(t->tid);

	while (table[i])
		i = (i + 1) & table_mask;
	table[i] = t;
}

struct thread *thread_add(struct process *p, pid_t tid)
{
	struct thread *t = thread_find(tid);

	if (t)
		return t;
	if (!table || (table_used + 1) * 2 > table_mask + 1) {
		struct thread **old = table;
		size_t old_cap = table ? table_mask + 1 : 0;
		table_mask = old_cap ? old_cap * 2 - 1 : 63;
		table = xcalloc(table_mask + 1, sizeof(*table));
		for (size_t i = 0; i < old_cap; i++)
			if (old[i])
				table_put(old[i]);
		free(old);
	}
	t = xcalloc(1, sizeof(*t));
	t->tid = tid;
	t->proc = p;
	table_put(t);
	table_used++;
	p->n_threads++;
	return t;
}

void thread_remove(struct thread *t)
{
	size_t i = tid_slot(t->tid);

	while (table[i] != t)
		i = (i + 1) & table_mask;
	table[i] = NULL;
	/* Re-insert the rest of the run so lookups do not stop early. */
	for (size_t j = (i + 1) & table_mask; table[j]; j = (j + 1) & table_mask) {
		struct thread *m = table[j];
		table[j] = NULL;
		table_put(m);
	}
	table_used--;
	t->proc->n_threads--;
	if (t->fs_base || t->exit_sp) {
		struct process *p = t->proc;
		p->past[p->n_past++ % ARRAY_SIZE(p->past)] =
			(struct past_thread){ t->fs_base, t->exit_sp };
	}
	free(t->shadow);
	free(t);
}

void thread_foreach(struct process *p, void (*fn)(struct thread *, void *), void *arg)
{
	if (!table)
		return;
	/* fn may not add or remove threads. */
	for (size_t i = 0; i <= table_mask; i++)
		if (table[i] && table[i]->proc == p)
			fn(table[i], arg);
}

struct process *process_new(pid_t pid, enum proc_role role)
{
	struct process *p = xcalloc(1, sizeof(*p));

	p->pid = pid;
	p->role = role;
	p->memfd = -1;
	p->exit_status = -1;
	return p;
}

void process_free(struct process *p)
{
	if (!p)
		return;
	if (p->memfd >= 0)
		close(p->memfd);
	free(p);
}

int process_open_mem(struct process *p)
{
	char path[64];

	if (p->memfd >= 0)
		close(p->memfd);
	snprintf(path, sizeof(path), "/proc/%d/mem", p->pid);
	p->memfd = open(path, O_RDWR | O_CLOEXEC);
	return p->memfd < 0 ? -1 : 0;
}

int proc_read(struct process *p, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { buf, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_readv(p->pid, &local, 1, &remote, 1, 0);

	if (n == (ssize_t)len)
		return 0;
	/* Unreadable pages (PROT_EXEC only) still read through /proc. */
	if (p->memfd >= 0 && pread(p->memfd, buf, len, (off_t)addr) == (ssize_t)len)
		return 0;
	if (n >= 0)
		errno = EFAULT;
	return -1;
}

int proc_write(struct process *p, uint64_t addr, const void *buf, size_t len)
{
	if (p->memfd < 0 && process_open_mem(p) < 0)
		return -1;
	ssize_t n = pwrite(p->memfd, buf, len, (off_t)addr);
	if (n == (ssize_t)len)
		return 0;
	if (n >= 0)
		errno = EFAULT;
	return -1;
}

int proc_read_u64(struct process *p, uint64_t addr, uint64_t *out)
{
	return proc_read(p, addr, out, sizeof(*out));
}

int thread_getregs(pid_t tid, struct user_regs_struct *regs)
{
	return ptrace(PTRACE_GETREGS, tid, 0, regs) < 0 ? -1 : 0;
}

int thread_setregs(pid_t tid, const struct user_regs_struct *regs)
{
	return ptrace(PTRACE_SETREGS, tid, 0, regs) < 0 ? -1 : 0;
}

int thread_resume(struct thread *t, int sig)
{
	if (!sig) {
		sig = t->pending_sig;
		t->pending_sig = 0;
	}
	t->stopped = false;
	if (ptrace(PTRACE_CONT, t->tid, 0, (void *)(long)sig) < 0)
		return -1;
	return 0;
}

int thread_run_to_trap(struct thread *t, uint64_t stop_rip, struct user_regs_struct *regs)
{
	for (;;) {
		int status;
		pid_t r;
		if (ptrace(PTRACE_CONT, t->tid, 0, 0) < 0)
			return -1;
		/* The attach ticker (SIGALRM, no SA_RESTART) interrupts this
		 * wait: giving up then would leave the thread running our code
		 * while the caller puts the program's bytes and registers back
		 * (a futex's -ERESTARTSYS reaching the program, a stray int3). */
		while ((r = waitpid(t->tid, &status, __WALL)) < 0 && errno == EINTR)
			;
		if (r != t->tid)
			return -1;
		if (!WIFSTOPPED(status)) {
			errno = ESRCH;
			return -1;
		}
		int sig = WSTOPSIG(status);
		if ((status >> 16) != 0)
			continue;	/* an event stop: a pending interrupt */
		if (sig != SIGTRAP) {
			t->pending_sig = sig;	/* deliver later */
			continue;
		}
		if (thread_getregs(t->tid, regs) < 0)
			return -1;
		if (regs->rip == stop_rip)
			return 0;
		t->pending_sig = SIGTRAP;	/* the program's own */
	}
}

int thread_inject_syscall(struct thread *t, uint64_t gadget, long nr,
			  const uint64_t args[6], int64_t *ret)
{
	struct user_regs_struct saved, r;

	if (thread_getregs(t->tid, &saved) < 0)
		return -1;
	r = saved;
	r.rip = gadget;
	r.rax = (uint64_t)nr;
	regs_set_syscall_args(&r, args);
	if (thread_setregs(t->tid, &r) < 0 ||
	    thread_run_to_trap(t, gadget + 3, &r) < 0)	/* after syscall; int3 */
		return -1;
	*ret = (int64_t)r.rax;
	return thread_setregs(t->tid, &saved);
}

void regs_set_syscall_args(struct user_regs_struct *r, const uint64_t args[6])
{
	r->orig_rax = (uint64_t)-1;
	r->rdi = args[0];
	r->rsi = args[1];
	r->rdx = args[2];
	r->r10 = args[3];
	r->r8 = args[4];
	r->r9 = args[5];
}

struct shadow *thread_push_shadow(struct thread *t)
{
	if (t->n_shadow == t->cap_shadow) {
		t->cap_shadow = t->cap_shadow ? t->cap_shadow * 2 : 4;
		t->shadow = xrealloc(t->shadow, t->cap_shadow * sizeof(*t->shadow));
	}
	return &t->shadow[t->n_shadow++];
}
