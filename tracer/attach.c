/*
 * attach: attaching to a running process (-p) and leaving it, and the
 * emergency restore when ptleak dies (see doc/internals.md, "Attaching
 * and leaving"); what each signal does is signals.c's table.
 *
 * Attach: every thread is seized and interrupted, rescanning
 * /proc/PID/task until no new thread appears; the loop collects their
 * stops (LOOP_ATTACHING) and, with all of them stopped, attach_finish
 * hooks the allocator and resumes them. Leaving (EV_LEAVE): every thread
 * is interrupted and the loop collects the stops again (LOOP_LEAVING: an
 * int3 hit not yet handled is rewound); then leave_finish moves threads
 * out of slots, writes redirected return addresses back, restores the
 * code, unmaps our pages, and detaches each thread with its pending
 * signal.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tracer/allocdb.h"
#include "tracer/hooks.h"
#include "tracer/launch.h"
#include "tracer/preattach.h"
#include "tracer/proc.h"
#include "tracer/procfs.h"
#include "tracer/report.h"
#include "tracer/scan.h"
#include "tracer/session.h"
#include "tracer/signals.h"
#include "tracer/source.h"
#include "tracer/util.h"
#include "tracer/writer.h"

#define TICK_US 100000		/* attach mode: how often waitpid wakes up */
/* Readings of a heap found half updated, after 2, 4, ... 32 ms of running. */
#define ATTACH_RETRIES 5

/* Attach mode: no EXITKILL, the process must outlive us. */
#define ATTACH_PTRACE_OPTIONS (PTLEAK_PTRACE_OPTIONS & ~PTRACE_O_EXITKILL)

/* Launch mode with --interval: a timer at the interval itself wakes
 * the loop up (attach mode has its own ticker; SIGALRM only wakes, in
 * signals.c's table). */
static void setup_launch_ticker(const struct options *o)
{
	long us = (long)(o->interval * 1e6);
	struct itimerval it = { .it_interval = { us / 1000000, us % 1000000 },
				.it_value = { us / 1000000, us % 1000000 } };

	if (o->interval)
		setitimer(ITIMER_REAL, &it, NULL);
}

/*
 * Wait for thread TID's next stop, retrying on EINTR; give up after about
 * 1 s (a thread already in a stop we did not see reports nothing new).
 * Returns the status, or -1 if it is gone or did not stop.
 */
static int wait_stop(pid_t tid)
{
	struct timespec ms = { 0, 1000000 };
	int status;

	for (int i = 0; i < 1000; i++) {
		pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
		if (r == tid)
			return WIFSTOPPED(status) ? status : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		nanosleep(&ms, NULL);
	}
	return -1;
}

/* For the emergency path: write(2), no stdio. */
static void write_str(int fd, const char *s)
{
	if (write(fd, s, strlen(s)) < 0)
		return;
}

/* The emergency path's view of one process (see emergency_restore). */
struct settling {
	bool all_stopped;	/* every thread in a stop */
	struct thread *runner;	/* one that can run a syscall for us */
};

/*
 * Emergency stop of one thread, with only syscalls and our own memory
 * (it runs in a fatal-signal handler): stop it, swallow the SIGTRAP of an
 * int3 it hit, let the sources put it where it would be without ptleak.
 * It is detached later, with t->pending_sig.
 */
static void settle_thread(struct thread *t, void *arg)
{
	struct settling *st = arg;
	struct process *p = t->proc;
	struct user_regs_struct r;
	int status;

	if (!t->stopped) {
		ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
		status = wait_stop(t->tid);
		if (status != -1 && (status >> 16) == 0 && WSTOPSIG(status) != SIGTRAP)
			t->pending_sig = WSTOPSIG(status);
		/* No new stop: maybe in one already, whose status the wait we
		 * died in had taken. GETREGS works in a ptrace stop only. */
		if (status == -1 && ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0) {
			st->all_stopped = false;
			return;
		}
		t->stopped = true;
	}
	/* An int3 hit whose SIGTRAP is still queued behind the interrupt. */
	for (int tries = 0; tries < 3 && procfs_task_sig_pending(p->pid, t->tid, SIGTRAP); tries++)
		if (ptrace(PTRACE_CONT, t->tid, 0, 0) < 0 || wait_stop(t->tid) == -1)
			break;
	sources_emergency_thread(t);
	if (!t->exiting && !st->runner)
		st->runner = t;
}

static void detach_now(struct thread *t, void *arg)
{
	(void)arg;
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)t->pending_sig);
}

/*
 * Last resort when ptleak dies (a fatal signal, or die()), attached or
 * launched: give the program its code, return addresses and threads
 * back, so that it survives our exit. When every thread of a process
 * could be stopped, the sources also unmap what they mapped (run at one
 * thread's rip). Only syscalls and our own memory, no allocation: safe
 * in a signal handler.
 */
static void emergency_restore(void)
{
	struct tracer *tr = tracer_current;

	if (!tr || tr->left)
		return;
	tr->left = true;
	/* No more ticks: they would interrupt every wait below. */
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	for (size_t i = 0; i < tr->n_procs; i++)
		if (tr->procs[i]->role == ROLE_TRACED)
			sources_emergency(tr->procs[i]);
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct process *p = tr->procs[i];
		if (p->role != ROLE_TRACED || !p->db || p->memfd < 0)
			continue;
		struct settling st = { .all_stopped = true };
		thread_foreach(p, settle_thread, &st);
		if (st.all_stopped && st.runner)
			sources_emergency_unmap(p, st.runner);
		else if (debug_enabled)
			write_str(2, "ptleak[debug]: emergency: a thread did not stop, our pages stay\n");
		thread_foreach(p, detach_now, NULL);
	}
}

/* Attach mode: a ticker wakes the event loop up for --duration and
 * --interval (SIGALRM: signals.c's table only wakes the loop). */
static void start_ticker(void)
{
	struct itimerval it = { .it_interval = { 0, TICK_US }, .it_value = { 0, TICK_US } };

	setitimer(ITIMER_REAL, &it, NULL);
}

/* ---- attaching ------------------------------------------------------ */

static noreturn void cannot_attach(pid_t pid, int err)
{
	char why[256], comm[64];
	long tracer_pid = err == EPERM ? procfs_status_field(pid, "TracerPid") : 0;

	if (tracer_pid > 0) {
		/* Someone attached between our look and our PTRACE_SEIZE. */
		procfs_comm((pid_t)tracer_pid, comm, sizeof(comm));
		snprintf(why, sizeof(why), "already traced by process %ld (%s)", tracer_pid, comm);
	} else if (err == EPERM) {
		int scope = -1;
		FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
		if (f) {
			if (fscanf(f, "%d", &scope) != 1)
				scope = -1;
			fclose(f);
		}
		if (scope > 0)
			snprintf(why, sizeof(why), "operation not permitted "
				 "(kernel.yama.ptrace_scope is %d: run as root or with CAP_SYS_PTRACE)",
				 scope);
		else
			snprintf(why, sizeof(why), "operation not permitted "
				 "(another user's process, or a setuid one: needs CAP_SYS_PTRACE)");
	} else {
		snprintf(why, sizeof(why), "%s", err == ESRCH ? "no such process" : strerror(err));
	}
	die("cannot attach to process %d: %s", pid, why);
}

/* Seize every thread of P, rescanning until no new one appears: threads
 * born meanwhile are seized by their (already seized) creator's clone
 * event or found by the next scan. */
static void seize_all(struct process *p)
{
	char path[64];
	bool added = true;

	snprintf(path, sizeof(path), "/proc/%d/task", p->pid);
	while (added) {
		DIR *d = opendir(path);
		struct dirent *de;

		added = false;
		if (!d)
			cannot_attach(p->pid, ESRCH);
		while ((de = readdir(d))) {
			pid_t tid = (pid_t)atoi(de->d_name);
			if (tid <= 0 || thread_find(tid))
				continue;
			if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(long)ATTACH_PTRACE_OPTIONS) < 0) {
				if (errno == ESRCH)
					continue;	/* exited meanwhile */
				int err = errno;
				closedir(d);
				cannot_attach(p->pid, err);
			}
			thread_add(p, tid);
			ptrace(PTRACE_INTERRUPT, tid, 0, 0);
			added = true;
		}
		closedir(d);
	}
}

struct tracer *tracer_launch(const struct options *o)
{
	struct tracer *tr = xcalloc(1, sizeof(*tr));
	pid_t pid = launch_start(o->program, o->argv, !o->fast);

	tracer_current = tr;
	waiter_init(&tr->waiter);
	/* After the fork: the program inherits ptleak's own dispositions. */
	signals_install(false, pid, emergency_restore);
	setup_launch_ticker(o);
	tr->o = o;
	tr->state = LOOP_TRACING;
	tr->main = process_new(pid, ROLE_TRACED);
	tr->main->ppid = getpid();
	tr->main->argv = o->argv;
	tr->main->attach_ns = now_ns();	/* traced since */
	if (o->interval)
		tr->next_tick_ns = tr->main->attach_ns + (uint64_t)(o->interval * 1e9);
	add_process(tr, tr->main);
	thread_add(tr->main, pid);
	hooks_num_callers = o->num_callers;
	hooks_track_mmap = o->track_mmap;
	hooks_fast = o->fast;
	return tr;
}

struct tracer *tracer_attach(const struct options *o)
{
	pid_t pid = o->pid;
	char comm[64];

	long tgid = procfs_status_field(pid, "Tgid");
	if (tgid < 0)
		cannot_attach(pid, ESRCH);
	if (tgid != pid)
		die("cannot attach to process %d: it is a thread of process %ld (use -p %ld)",
		    pid, tgid, tgid);
	if (pid == getpid())
		die("cannot attach to process %d: that is ptleak itself", pid);
	long tracer_pid = procfs_status_field(pid, "TracerPid");
	if (tracer_pid > 0) {
		procfs_comm((pid_t)tracer_pid, comm, sizeof(comm));
		die("cannot attach to process %d: already traced by process %ld (%s)",
		    pid, tracer_pid, comm);
	}

	struct tracer *tr = xcalloc(1, sizeof(*tr));
	tracer_current = tr;
	waiter_init(&tr->waiter);
	tr->o = o;
	tr->attach = true;
	hooks_num_callers = o->num_callers;
	hooks_track_mmap = o->track_mmap;
	hooks_fast = o->fast;
	struct process *p = process_new(pid, ROLE_TRACED);
	p->attached = true;
	p->exec_seen = true;
	p->ppid = (pid_t)procfs_status_field(pid, "PPid");
	p->argv = procfs_cmdline(pid);
	p->argv_owned = true;
	tr->main = p;
	add_process(tr, p);

	seize_all(p);
	signals_install(true, 0, emergency_restore);
	start_ticker();
	/* The loop collects every stop; signals that arrive meanwhile are
	 * kept and delivered on resume. attach_finish goes on from there. */
	loop_collect_stops(tr, LOOP_ATTACHING);
	return tr;
}

/* For the tests: the first N readings of the heap from before the attach
 * (PTLEAK_TORN_READS=N) count as half updated, as when a thread was
 * stopped inside malloc, which no test can bring about on purpose. */
static unsigned fake_torn_reads(void)
{
	const char *e = getenv("PTLEAK_TORN_READS");

	return e ? (unsigned)strtoul(e, NULL, 10) : 0;
}

/* Let every thread of P run for MS milliseconds (hooked: what they do
 * is recorded), then stop them all again (LOOP_ATTACHING once more). */
static void run_a_moment(struct tracer *tr, struct process *p, unsigned ms)
{
	struct thread_list l = threads_of(p);
	struct timespec ts = { 0, (long)ms * 1000000L };

	for (size_t i = 0; i < l.n; i++)
		restart_apply(tr, l.v[i], l.v[i]->group_stop ? LISTEN : RESUME(0));
	free(l.v);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !signals_leave)
		;
	interrupt_all(tr);
	loop_collect_stops(tr, LOOP_ATTACHING);
}

void attach_finish(struct tracer *tr)
{
	const struct options *o = tr->o;
	struct process *p = tr->main;
	pid_t pid = p->pid;
	char comm[64];
	bool torn;

	tr->state = LOOP_TRACING;
	if (p->n_threads == 0 || find_process(tr, pid) != p)
		die("cannot attach to process %d: it exited while ptleak attached", pid);
	struct thread *t = thread_find(pid);
	if (!t || t->exiting) {
		struct thread_list l = threads_of(p);
		t = l.n ? l.v[0] : NULL;
		free(l.v);
	}
	/* (Hooked already when this is a second reading of the heap.) */
	if (!tr->attach_retries && (!t || setup_image(tr, t, true) < 0)) {
		tr->die_after_leave = true;
		leave_begin(tr);
		return;
	}
	struct preattach *before = preattach_read(p, &torn);
	if (before && tr->attach_retries < fake_torn_reads()) {
		preattach_discard(before);
		before = NULL;
		torn = true;
		snprintf(p->before_why, sizeof(p->before_why),
			 "its heap: half updated (PTLEAK_TORN_READS)");
	}
	if (!before && torn && tr->attach_retries < ATTACH_RETRIES && !signals_leave) {
		/* A thread was stopped inside malloc or free, with glibc's
		 * lists half updated. Run them a moment, so that it leaves
		 * it, and read the heap again: the blocks allocated
		 * meanwhile are known by their events, those freed are gone
		 * from the heap. */
		tr->attach_retries++;
		debug("process %d: %s; reading it again after %u ms of running", pid,
		      p->before_why, 1u << tr->attach_retries);
		run_a_moment(tr, p, 1u << tr->attach_retries);
		return;
	}
	if (tr->attach_retries)
		debug("process %d: the heap read %s after %u more readings", pid,
		      before ? "whole" : "half updated still", tr->attach_retries);
	p->attach_ns = now_ns();
	if (o->duration)
		tr->deadline_ns = p->attach_ns + (uint64_t)(o->duration * 1e9);
	if (o->interval)
		tr->next_tick_ns = p->attach_ns + (uint64_t)(o->interval * 1e9);
	if (!o->quiet) {
		procfs_comm(pid, comm, sizeof(comm));
		fprintf(stderr, "==%d== ptleak-%s: attached to process %d (%s), %zu threads\n",
			pid, "0.1", pid, comm, p->n_threads);
	}
	struct thread_list l = threads_of(p);
	for (size_t i = 0; i < l.n; i++)
		restart_apply(tr, l.v[i], l.v[i]->group_stop ? LISTEN : RESUME(0));
	free(l.v);
	/* Only the reading needed them stopped; none of their events is
	 * handled before this. */
	if (before) {
		size_t n = preattach_record(p, before);
		debug("inventory recorded: %zu blocks", n);
	}
	if (!o->quiet) {
		char a[32], b[32];
		const struct heap_stats *st = heap_stats(p->db->heap);
		if (p->before_known)
			fprintf(stderr, "==%d== %s bytes in %s blocks were live in %s's heap "
				"(allocated before ptleak attached)\n", pid,
				writer_num(st->before_bytes, a), writer_num(st->before_blocks, b),
				p->before_allocator);
		else
			fprintf(stderr, "==%d== blocks allocated before the attach are not known: %s; "
				"leak kinds are conservative\n", pid, p->before_why);
	}
}

/* ---- leaving -------------------------------------------------------- */

void resume_all(struct tracer *tr)
{
	/* What the probe asked while the threads were held (an r_brk during
	 * a leak check: libc's own, as the program starts) is served before
	 * they run. */
	loop_drain(tr);
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct thread_list l = threads_of(tr->procs[i]);
		for (size_t k = 0; k < l.n; k++)
			if (l.v[k]->stopped)
				restart_apply(tr, l.v[k], l.v[k]->group_stop ? LISTEN : RESUME(0));
		free(l.v);
	}
}

void interrupt_all(struct tracer *tr)
{
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct thread_list l = threads_of(tr->procs[i]);
		for (size_t k = 0; k < l.n; k++)
			if (!l.v[k]->stopped)
				ptrace(PTRACE_INTERRUPT, l.v[k]->tid, 0, 0);
		free(l.v);
	}
}

struct scan_thread *regs_of_threads(struct process *p, size_t *n)
{
	struct thread_list l = threads_of(p);
	struct scan_thread *regs = xcalloc(l.n + 1, sizeof(*regs));

	*n = 0;
	for (size_t i = 0; i < l.n; i++)
		if (stopped_scan_state(l.v[i], &regs[*n]) == 0)
			(*n)++;
	free(l.v);
	return regs;
}

void leave_begin(struct tracer *tr)
{
	interrupt_all(tr);
	loop_collect_stops(tr, LOOP_LEAVING);
}

/* Every thread of P stopped: report it, give it back its own code and
 * detach. */
static void release(struct tracer *tr, struct process *p)
{
	struct thread_list l = threads_of(p);

	if (p->role == ROLE_TRACED && p->db && l.n) {
		size_t n;
		struct scan_thread *regs = regs_of_threads(p, &n);
		if (!p->scan)
			scan_now(p, regs, n);
		free(regs);
		report_now(tr, p);
		sources_leave(p, l.v, l.n);
	}
	for (size_t i = 0; i < l.n; i++) {
		struct thread *t = l.v[i];
		/* A job-stopped thread may have run our code since: the stop
		 * signal puts it back in its stop once we are gone. */
		restart_apply(tr, t, DETACH(t->group_stop ? t->group_stop_sig : t->pending_sig));
	}
	free(l.v);
	if (!l.n)
		drop_process(tr, p);
}

void leave_finish(struct tracer *tr)
{
	/* Traced processes first: vfork children share their memory. */
	for (size_t i = tr->n_procs; i-- > 0;)
		if (i < tr->n_procs && tr->procs[i]->role == ROLE_TRACED)
			release(tr, tr->procs[i]);
	while (tr->n_procs)
		release(tr, tr->procs[0]);
	tr->left = true;
	tr->state = LOOP_DONE;
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	if (tr->die_after_leave)
		die("cannot hook the allocator of process %d; detached, it runs on untraced",
		    tr->main->pid);
}
