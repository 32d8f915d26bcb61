/*
 * lifecycle: processes and threads coming and going (see session.h):
 * exec (a new image to hook), fork and vfork (a child to follow, clean or
 * share breakpoints with), clone, a thread's exit stop (where the scan
 * runs when the whole process ends) and its reaping (the report).
 *
 * Without -f a forked child is cleaned (original bytes back at every site
 * of its copy of memory) and detached; with -f it is traced with a copy
 * of its parent's state. A vfork child shares our breakpoints, so it
 * stays traced, stepping over them, until it execs or exits.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "symbols/symbols.h"
#include "symbols/unwind.h"
#include "tracer/allocdb.h"
#include "tracer/frames.h"
#include "tracer/mmaps.h"
#include "tracer/preattach.h"
#include "tracer/proc.h"
#include "tracer/procfs.h"
#include "tracer/report.h"
#include "tracer/scan.h"
#include "tracer/session.h"
#include "tracer/source.h"
#include "tracer/util.h"

/* ---- the process list ---------------------------------------------- */

void add_process(struct tracer *tr, struct process *p)
{
	if (tr->n_procs == tr->cap_procs) {
		tr->cap_procs = tr->cap_procs ? tr->cap_procs * 2 : 8;
		tr->procs = xrealloc(tr->procs, tr->cap_procs * sizeof(*tr->procs));
	}
	tr->procs[tr->n_procs++] = p;
}

struct process *find_process(struct tracer *tr, pid_t pid)
{
	for (size_t i = 0; i < tr->n_procs; i++)
		if (tr->procs[i]->pid == pid)
			return tr->procs[i];
	return NULL;
}

static void reset_image(struct process *p)
{
	sources_release(p);
	symbols_free(p->syms);
	unwinder_free(p->unw);
	allocdb_free(p->db);
	scan_result_free(p->scan);
	frames_free(p->frames);
	p->frames = NULL;
	p->syms = NULL;
	p->unw = NULL;
	p->db = NULL;
	p->scan = NULL;
	p->reported = false;
}

static void free_argv(struct process *p)
{
	if (p->argv_owned) {
		for (char **v = p->argv; v && *v; v++)
			free(*v);
		free(p->argv);
	}
	p->argv = NULL;
	p->argv_owned = false;
}

void release_process(struct process *p)
{
	reset_image(p);
	free_argv(p);
	process_free(p);
}

/* P is gone or detached: out of the list (the main process is kept for
 * its exit status and freed at the end). */
void drop_process(struct tracer *tr, struct process *p)
{
	for (size_t i = 0; i < tr->n_procs; i++) {
		if (tr->procs[i] == p) {
			tr->procs[i] = tr->procs[--tr->n_procs];
			break;
		}
	}
	if (p != tr->main)
		release_process(p);
}

static char **copy_argv(char **argv)
{
	size_t n = 0;

	while (argv && argv[n])
		n++;
	char **c = xcalloc(n + 1, sizeof(*c));
	for (size_t i = 0; i < n; i++)
		c[i] = xstrdup(argv[i]);
	return c;
}

static void collect(struct thread *t, void *arg)
{
	struct thread_list *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = t;
}

struct thread_list threads_of(struct process *p)
{
	struct thread_list l = { 0 };

	thread_foreach(p, collect, &l);
	return l;
}

/* ---- a program image ------------------------------------------------ */

/*
 * Fault injection for the tests, read from ptleak's own environment:
 * PTLEAK_TEST_FAIL=follow makes setting up a followed child's symbols
 * fail as a real failure would (unreadable /proc/PID/maps, ...).
 */
static bool test_fail(const char *what)
{
	const char *v = getenv("PTLEAK_TEST_FAIL");

	return v && !strcmp(v, what);
}

/* Memory, symbols and unwinder of P's current image. 0, or -1 with the
 * reason in WHY. WHAT names the caller for the fault injection. */
static int open_image(struct process *p, const char *what, char *why, size_t size)
{
	if (process_open_mem(p) < 0) {
		snprintf(why, size, "cannot open the memory of process %d: %s", p->pid,
			 strerror(errno));
		return -1;
	}
	p->syms = test_fail(what) ? NULL : symbols_new(p->pid);
	if (!p->syms) {
		snprintf(why, size, "cannot read the modules of process %d", p->pid);
		return -1;
	}
	p->unw = unwinder_new(p->pid, p->syms);
	if (!p->unw) {
		snprintf(why, size, "cannot set up unwinding for process %d: %s", p->pid,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Hook a program image: memory, symbols, unwinder and an empty database,
 * then every event source. At an exec the libraries are not mapped yet
 * (LOADED false); after attaching they are.
 */
int setup_image(struct tracer *tr, struct thread *t, bool loaded)
{
	struct process *p = t->proc;

	char why[256];

	if (open_image(p, loaded ? "attach" : "exec", why, sizeof(why)) < 0) {
		error("%s", why);
		return -1;
	}
	p->db = allocdb_new();
	if (tr->o->track_mmap)
		p->db->mmaps = mmaps_new();
	p->frames = frames_new();
	return sources_arm(p, t, loaded);
}

/* Let a launched process run on untraced: a program we cannot hook is not
 * harmed. Nothing of ours is armed in it. */
static void give_up(struct tracer *tr, struct process *p)
{
	struct thread_list l = threads_of(p);
	bool is_main = p == tr->main;	/* detaching its last thread frees another */

	tr->hook_failed = true;
	for (size_t i = 0; i < l.n; i++)
		restart_apply(tr, l.v[i], DETACH(0));
	free(l.v);
	if (is_main) {
		int status;
		while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
			;
		p->exit_status = status;
	}
	if (!l.n)
		drop_process(tr, p);
}

void scan_now(struct process *p, const struct scan_thread *th, size_t n)
{
	if (n)
		preattach_verify(p);
	/* Attached without knowing the heap from before: memory ptleak cannot
	 * account for must count as a root. */
	p->scan = scan_process_final(p, th, n, p->attached && !p->before_known);
}

int stopped_scan_state(struct thread *u, struct scan_thread *out)
{
	memset(out, 0, sizeof(*out));
	if (thread_getregs(u->tid, &out->regs) < 0)
		return -1;
	out->tid = u->tid;
	out->has_fp = ptrace(PTRACE_GETFPREGS, u->tid, 0, &out->fp) == 0;
	out->stack_from = out->regs.rsp - SCAN_RED_ZONE;
	return 0;
}

static bool process_stopped(struct process *p)
{
	struct thread_list l = threads_of(p);
	bool stopped = true;

	for (size_t k = 0; k < l.n; k++)
		if (!l.v[k]->stopped && !l.v[k]->exiting)
			stopped = false;
	free(l.v);
	return stopped;
}

bool exit_begin(struct tracer *tr, struct thread *t)
{
	struct process *p = t->proc;

	if (!t->at_exit || tr->state != LOOP_TRACING || p->role != ROLE_TRACED ||
	    !p->exec_seen || !p->db || p->scan)
		return false;
	struct thread_list l = threads_of(p);
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i] != t && !l.v[i]->stopped && !l.v[i]->exiting)
			ptrace(PTRACE_INTERRUPT, l.v[i]->tid, 0, 0);
	free(l.v);
	tr->exiting = t;
	loop_collect_stops(tr, LOOP_EXITING);
	return true;
}

static void note_running(struct thread *u, void *arg)
{
	if (!u->stopped && !u->exiting)
		*(bool *)arg = true;
}

static void interrupt_running(struct thread *u, void *arg)
{
	(void)arg;
	if (!u->stopped && !u->exiting)
		ptrace(PTRACE_INTERRUPT, u->tid, 0, 0);
}

bool modules_begin(struct tracer *tr, struct thread *t, int (*work)(struct thread *t))
{
	struct process *p = t->proc;
	bool others = false;

	if (!tr || tr->state != LOOP_TRACING || p->role != ROLE_TRACED)
		return false;
	thread_foreach(p, note_running, &others);
	if (!others)
		return false;
	thread_foreach(p, interrupt_running, NULL);
	tr->hooking = t->tid;
	tr->hooking_work = work;
	loop_collect_stops(tr, LOOP_HOOKING);
	return true;
}

bool modules_stopped(struct tracer *tr)
{
	struct thread *t = thread_find(tr->hooking);

	return !t || process_stopped(t->proc);
}

void modules_finish(struct tracer *tr)
{
	struct thread *t = thread_find(tr->hooking);

	if (t && t->stopped && !t->exiting)
		tr->hooking_work(t);
	tr->hooking = 0;
	tr->state = LOOP_TRACING;
	resume_all(tr);	/* everyone held meanwhile */
}

bool exit_stopped(struct tracer *tr)
{
	return !tr->exiting || process_stopped(tr->exiting->proc);
}

void exit_finish(struct tracer *tr)
{
	struct thread *t = tr->exiting;
	struct process *p = t->proc;
	struct thread_list l = threads_of(p);
	struct scan_thread *th = xcalloc(l.n + 1, sizeof(*th));
	size_t n = 1;

	th[0] = (struct scan_thread){
		.tid = t->tid, .regs = t->exit_frame, .stack_from = t->exit_frame.rsp,
	};
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i] != t && l.v[i]->stopped && !l.v[i]->exiting)
			n += stopped_scan_state(l.v[i], &th[n]) == 0;
	free(l.v);
	sources_drain_final(p);	/* the process is ending: holes are given up */
	scan_now(p, th, n);
	free(th);
	tr->exiting = NULL;
	tr->state = LOOP_TRACING;
	/* The exiting thread goes on into exit_group, which kills the other
	 * threads of its process where they are held; threads of other
	 * processes held meanwhile go on. */
	t->at_exit = false;
	restart_apply(tr, t, RESUME(0));
	for (size_t i = 0; i < tr->n_procs; i++) {
		if (tr->procs[i] == p)
			continue;
		l = threads_of(tr->procs[i]);
		for (size_t k = 0; k < l.n; k++)
			if (l.v[k]->stopped && !l.v[k]->group_stop)
				restart_apply(tr, l.v[k], RESUME(0));
		free(l.v);
	}
}

void report_now(struct tracer *tr, struct process *p)
{
	if (!p->db)
		return;
	if (!p->scan) {
		sources_drain_final(p);
		scan_now(p, NULL, 0);
	}
	report_process(p, tr->o);
}

/* ---- events --------------------------------------------------------- */

struct restart on_exec(struct tracer *tr, struct thread *t, const struct event *ev)
{
	struct process *p = t->proc;

	if (p->role == ROLE_VFORK_CHILD && tr->o->follow_forks) {
		p->role = ROLE_TRACED;	/* its own memory now: trace it */
		p->parent = NULL;
	} else if (p->role != ROLE_TRACED) {
		/* A vfork child got its own memory: nothing of ours in it. */
		return DETACH(0);
	}
	/* Every other thread is gone; a non-leader exec took the leader's tid. */
	struct thread_list l = threads_of(p);
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i] != t)
			thread_remove(l.v[i]);
	free(l.v);
	reset_image(p);
	if (p->exec_seen || p != tr->main) {
		/* A later program of this process: the report is about it. */
		free_argv(p);
		p->argv = procfs_cmdline(p->pid);
		p->argv_owned = true;
	} else if (!tr->attach) {
		/* The program runs: tracing begins (not before: a program that
		 * cannot be executed gets its one line and no banner). */
		report_banner(p->pid, p->argv, tr->o);
	}
	p->exec_seen = true;
	t->n_shadow = 0;
	t->exiting = false;	/* a non-leader exec reports the leader's exit first */
	debug("exec in %d (from tid %lu)", p->pid, ev->msg);
	if (setup_image(tr, t, false) < 0) {
		reset_image(p);
		give_up(tr, p);
		return GONE;
	}
	return RESUME(0);
}

struct others {
	struct thread *self;
	bool alive;
};

static void check_other(struct thread *u, void *arg)
{
	struct others *o = arg;

	if (u != o->self && !u->exiting && !procfs_thread_dying(u->proc->pid, u->tid))
		o->alive = true;
}

/*
 * A thread is about to leave (PTRACE_EVENT_EXIT); the memory is still
 * mapped. The process's memory is final when this exit ends the whole
 * process: exit_group (exit(), return from main) or a fatal signal kill
 * every thread at once, and the others may never stop at their own exit
 * event. Only a lone thread's SYS_exit (pthread_exit) leaves the others
 * running, unless it is the last one.
 */
struct restart on_exit_stop(struct tracer *tr, struct thread *t)
{
	struct process *p = t->proc;
	struct user_regs_struct regs;

	(void)tr;
	t->exiting = true;
	if (p->role != ROLE_TRACED || !p->exec_seen || !p->db || thread_getregs(t->tid, &regs) < 0)
		return RESUME(0);
	t->fs_base = regs.fs_base;
	/* Leaving alone (pthread_exit, a thread function's return): its stack
	 * is dead from here, the scan needs to know where. Killed with the
	 * whole process, its stack was live to the end. */
	if (regs.orig_rax == SYS_exit)
		t->exit_sp = regs.rsp;
	if (!p->scan) {
		/* No _exit seen (a raw exit_group as Go's, a fatal signal, the
		 * last thread's SYS_exit): only this thread's registers. */
		bool whole_process = regs.orig_rax != SYS_exit;
		if (!whole_process) {
			struct others o = { .self = t };
			thread_foreach(p, check_other, &o);
			whole_process = !o.alive;
		}
		if (whole_process) {
			sources_drain_final(p);
			struct scan_thread th = {
				.tid = t->tid, .regs = regs, .stack_from = regs.rsp,
			};
			scan_now(p, &th, 1);
		}
	}
	return RESUME(0);
}

/*
 * A forked child traced with -f: a copy of its parent's state. false if
 * its own symbols or unwinder cannot be set up: it cannot be traced then
 * (its first allocation would have no unwinder), and is let go.
 */
static bool follow_child(struct process *c, struct process *parent)
{
	char why[256];

	c->exec_seen = parent->exec_seen;
	c->attached = parent->attached;
	c->attach_ns = parent->attach_ns;
	c->before_known = parent->before_known;
	memcpy(c->before_why, parent->before_why, sizeof(c->before_why));
	c->argv = copy_argv(parent->argv);
	c->argv_owned = true;
	if (!parent->db)
		return true;
	if (open_image(c, "follow", why, sizeof(why)) < 0) {
		error("cannot follow child process %d (%s); it runs on untraced", c->pid, why);
		return false;
	}
	c->db = allocdb_clone(parent->db);
	c->frames = frames_new();
	return true;
}

struct restart on_fork(struct tracer *tr, struct thread *t, const struct event *ev)
{
	pid_t cpid = (pid_t)ev->msg;
	struct process *parent = t->proc;
	bool vfork = ev->kind == EV_VFORK;
	bool follow = tr->o->follow_forks && parent->role == ROLE_TRACED;
	enum proc_role role = vfork ? ROLE_VFORK_CHILD : follow ? ROLE_TRACED : ROLE_DETACH;
	struct process *c = process_new(cpid, role);

	c->parent = parent;
	c->ppid = parent->pid;
	if (!follow)
		parent->untraced_children++;
	add_process(tr, c);
	thread_add(c, cpid);
	if (role == ROLE_TRACED && !follow_child(c, parent)) {
		tr->hook_failed = true;
		reset_image(c);
		c->role = role = ROLE_DETACH;
	}
	sources_fork_child(parent, c, t, role == ROLE_TRACED);
	for (size_t i = 0; i < tr->n_early; i++) {
		if (tr->early[i] != cpid)
			continue;
		/* Its first stop came before this event. */
		tr->early[i] = tr->early[--tr->n_early];
		struct thread *ct = thread_find(cpid);
		ct->stopped = true;
		restart_apply(tr, ct, role == ROLE_DETACH ? DETACH(0) : RESUME(0));
		break;
	}
	return RESUME(0);
}

/*
 * The new thread's thread pointer, from its creator's clone or clone3
 * arguments (T is at the clone event): known even if the new thread
 * never reports its first stop (killed by an exit_group first), so the
 * scan's DTV rule (scan.h) finds its TCB.
 */
static uint64_t clone_tls(struct thread *t)
{
	struct user_regs_struct r;
	uint64_t flags = 0, tls = 0;

	if (thread_getregs(t->tid, &r) < 0)
		return 0;
	if (r.orig_rax == SYS_clone) {
		flags = r.rdi;
		tls = r.r8;
	} else if (r.orig_rax == SYS_clone3) {
		/* struct clone_args: flags at 0, tls at 56 */
		if (proc_read_u64(t->proc, r.rdi, &flags) < 0 ||
		    proc_read_u64(t->proc, r.rdi + 56, &tls) < 0)
			return 0;
	}
	return flags & CLONE_SETTLS ? tls : 0;
}

struct restart on_clone(struct tracer *tr, struct thread *t, const struct event *ev)
{
	pid_t tid = (pid_t)ev->msg;
	char status[4096];

	/* Its first stop may have come before this event and been adopted,
	 * and the thread may have run and exited since: brought back, it
	 * would never stop again, and a state collecting every thread's stop
	 * (exit, leave, check) would wait for it for ever. */
	if (!thread_find(tid) && !procfs_task_status(t->proc->pid, tid, status, sizeof(status))) {
		debug("tid %d exited before its creation event", tid);
		return RESUME(0);
	}
	struct thread *nt = thread_add(t->proc, tid);

	if (!nt->fs_base)
		nt->fs_base = clone_tls(t);

	for (size_t i = 0; i < tr->n_early; i++) {
		if (tr->early[i] == tid) {
			tr->early[i] = tr->early[--tr->n_early];
			nt->stopped = true;
			restart_apply(tr, nt, RESUME(0));
			break;
		}
	}
	return RESUME(0);
}

/* A stop from a tid we do not know yet: a new thread or child whose
 * creation event is still queued. Threads of known processes are adopted
 * at once; others wait for their creation event, however many. */
struct thread *adopt(struct tracer *tr, const struct event *ev)
{
	if (ev->kind == EV_EXITED)
		return NULL;
	long tgid = procfs_status_field(ev->tid, "Tgid");
	struct process *p = tgid > 0 ? find_process(tr, (pid_t)tgid) : NULL;
	if (p && tgid != ev->tid)
		return thread_add(p, ev->tid);
	if (tr->n_early == tr->cap_early) {
		tr->cap_early = tr->cap_early ? tr->cap_early * 2 : 64;
		tr->early = xrealloc(tr->early, tr->cap_early * sizeof(*tr->early));
	}
	tr->early[tr->n_early++] = ev->tid;
	debug("tid %d stopped before its creation event (%zu waiting)", ev->tid, tr->n_early);
	return NULL;
}

struct restart on_exited(struct tracer *tr, struct thread *t, const struct event *ev)
{
	struct process *p = t->proc;
	bool leader = t->tid == p->pid;

	thread_remove(t);
	if (!leader && p->n_threads > 0)
		return GONE;
	if (leader)
		p->exit_status = ev->status;
	if (p->role == ROLE_TRACED)
		report_now(tr, p);
	drop_process(tr, p);
	return GONE;
}
