/*
 * tracer: process control and the event loop (see tracer.h).
 *
 * Life of the traced program:
 *   launch: fork, the child stops itself, we seize it, it execs;
 *   EV_EXEC: map our code page, then either hook the allocator at once
 *     (static binary) or break on the dynamic linker's r_brk, which it
 *     calls once every library is loaded and before any constructor
 *     runs, and again on every dlopen/dlclose;
 *   EV_TRAP at a site or the trampoline: hooks.c turns it into an
 *     allocation event; every thread resumes at once;
 *   EV_EXIT of the last live thread: memory is still mapped, so the
 *     reachability scan runs there;
 *   EV_EXITED of the leader: the report is written.
 *
 * Other processes: a forked child is cleaned (original bytes back at every
 * site of its copy of memory) and detached; a vfork child shares our
 * breakpoints, so it stays traced, stepping over them, until it execs or
 * exits.
 */
#include "tracer/tracer.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "symbols/symbols.h"
#include "symbols/unwind.h"
#include "tracer/breakpoint.h"
#include "tracer/heap.h"
#include "tracer/hooks.h"
#include "tracer/launch.h"
#include "tracer/proc.h"
#include "tracer/report.h"
#include "tracer/scan.h"
#include "tracer/stacks.h"
#include "tracer/util.h"

#define MAX_EARLY 256

struct tracer {
	const struct options *o;
	struct process *main;
	struct process **procs;
	size_t n_procs, cap_procs;
	/* Stops of tids whose creation event has not arrived yet. */
	pid_t early[MAX_EARLY];
	size_t n_early;
	bool hook_failed;
};

static volatile sig_atomic_t forward_to;	/* main pid, for the handler */

static void forward_signal(int sig)
{
	if (forward_to > 0)
		kill(forward_to, sig);
}

/* Launch mode: Ctrl-C and Ctrl-\ at a terminal reach the program from the
 * terminal itself; ptleak stays to report. SIGTERM and SIGHUP sent to
 * ptleak are passed on to the program. Installed after the fork, so the
 * program inherits ptleak's original dispositions. */
static void setup_signals(pid_t pid)
{
	struct sigaction sa = { .sa_handler = forward_signal };

	forward_to = pid;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
}

static void add_process(struct tracer *tr, struct process *p)
{
	if (tr->n_procs == tr->cap_procs) {
		tr->cap_procs = tr->cap_procs ? tr->cap_procs * 2 : 8;
		tr->procs = xrealloc(tr->procs, tr->cap_procs * sizeof(*tr->procs));
	}
	tr->procs[tr->n_procs++] = p;
}

static struct process *find_process(struct tracer *tr, pid_t pid)
{
	for (size_t i = 0; i < tr->n_procs; i++)
		if (tr->procs[i]->pid == pid)
			return tr->procs[i];
	return NULL;
}

static void drop_process(struct tracer *tr, struct process *p)
{
	for (size_t i = 0; i < tr->n_procs; i++) {
		if (tr->procs[i] == p) {
			tr->procs[i] = tr->procs[--tr->n_procs];
			break;
		}
	}
	if (p != tr->main)
		process_free(p);
}

struct tracer *tracer_launch(const struct options *o)
{
	struct tracer *tr = xcalloc(1, sizeof(*tr));
	char *path = launch_resolve(o->argv[0]);
	pid_t pid = launch_start(path, o->argv);

	free(path);
	setup_signals(pid);
	tr->o = o;
	tr->main = process_new(pid, ROLE_TRACED);
	tr->main->argv = o->argv;
	add_process(tr, tr->main);
	thread_add(tr->main, pid);
	hooks_num_callers = o->num_callers;
	return tr;
}

bool tracer_next_event(struct tracer *tr, struct event *ev)
{
	int status;
	pid_t tid;

	for (;;) {
		if (tr->n_procs == 0)
			return false;
		tid = waitpid(-1, &status, __WALL);
		if (tid < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECHILD)
				return false;
			die("waitpid: %s", strerror(errno));
		}
		break;
	}
	memset(ev, 0, sizeof(*ev));
	ev->tid = tid;
	ev->status = status;
	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		ev->kind = EV_EXITED;
		ev->sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
		return true;
	}
	ev->sig = WSTOPSIG(status);
	switch (status >> 16) {
	case 0:
		ev->kind = ev->sig == SIGTRAP ? EV_TRAP : EV_SIGNAL;
		return true;
	case PTRACE_EVENT_STOP:
		ev->kind = (ev->sig == SIGSTOP || ev->sig == SIGTSTP ||
			    ev->sig == SIGTTIN || ev->sig == SIGTTOU) ? EV_GROUP_STOP : EV_STOP;
		return true;
	case PTRACE_EVENT_CLONE:
		ev->kind = EV_CLONE;
		break;
	case PTRACE_EVENT_FORK:
		ev->kind = EV_FORK;
		break;
	case PTRACE_EVENT_VFORK:
		ev->kind = EV_VFORK;
		break;
	case PTRACE_EVENT_VFORK_DONE:
		ev->kind = EV_VFORK_DONE;
		break;
	case PTRACE_EVENT_EXEC:
		ev->kind = EV_EXEC;
		break;
	case PTRACE_EVENT_EXIT:
		ev->kind = EV_EXIT;
		break;
	default:
		ev->kind = EV_STOP;
		return true;
	}
	ptrace(PTRACE_GETEVENTMSG, tid, 0, &ev->msg);
	return true;
}

static void resume(struct thread *t, int sig)
{
	/* ESRCH: killed meanwhile (SIGKILL); its exit event follows. */
	if (thread_resume(t, sig) < 0 && errno != ESRCH)
		error("cannot resume thread %d: %s", t->tid, strerror(errno));
}

static void detach_thread(struct thread *t, int sig)
{
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)sig);
	thread_remove(t);
}

/* Thread TID's state letter from /proc, and whether SIGKILL is pending
 * for it (zapped by another thread's exit_group or a fatal signal). */
static bool thread_dying(pid_t pid, pid_t tid)
{
	char path[64], line[256];
	bool dying = true;	/* gone counts as dying */
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	f = fopen(path, "re");
	if (!f)
		return true;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long mask;
		if (!strncmp(line, "State:", 6)) {
			char c = 0;
			sscanf(line + 6, " %c", &c);
			dying = c == 'Z' || c == 'X';
			if (dying)
				break;
		} else if (sscanf(line, "SigPnd: %llx", &mask) == 1 &&
			   (mask & (1ull << (SIGKILL - 1)))) {
			dying = true;
			break;
		}
	}
	fclose(f);
	return dying;
}

struct others {
	struct thread *self;
	bool alive;
};

static void check_other(struct thread *u, void *arg)
{
	struct others *o = arg;

	if (u != o->self && !u->exiting && !thread_dying(u->proc->pid, u->tid))
		o->alive = true;
}

/* Hook what a fresh program image needs: a code page, then the
 * allocator (static) or the dynamic linker's r_brk (dynamic). */
static int setup_image(struct tracer *tr, struct thread *t)
{
	struct process *p = t->proc;

	if (process_open_mem(p) < 0) {
		error("cannot open the memory of process %d: %s", p->pid, strerror(errno));
		return -1;
	}
	p->syms = symbols_new(p->pid);
	if (!p->syms) {
		error("cannot read the modules of process %d", p->pid);
		return -1;
	}
	p->unw = unwinder_new(p->pid, p->syms);
	if (!p->unw) {
		error("cannot set up unwinding for process %d: %s", p->pid, strerror(errno));
		return -1;
	}
	p->bp = bp_new();
	p->heap = heap_new();
	p->stacks = stacks_new();
	if (bp_init_at_exec(p->bp, t) < 0)
		return -1;
	uint64_t rbrk = symbols_lookup_name(p->syms, "ld-linux", "_dl_debug_state");
	p->dynamic = rbrk != 0;
	if (p->dynamic) {
		p->r_debug = symbols_lookup_name(p->syms, "ld-linux", "_r_debug");
		return bp_add(p->bp, t, rbrk, SITE_RBRK, 0, 0);
	}
	int n = hooks_arm(p, t, ++p->generation);
	if (n == 0)
		error("no allocator entry point (malloc, free, ...) found in '%s': "
		      "a static binary needs its symbol table (is it stripped?)",
		      p->argv[0]);
	return n > 0 ? 0 : -1;
}

static void reset_image(struct process *p)
{
	symbols_free(p->syms);
	unwinder_free(p->unw);
	bp_free(p->bp);
	heap_free(p->heap);
	stacks_free(p->stacks);
	scan_result_free(p->scan_result);
	p->syms = NULL;
	p->unw = NULL;
	p->bp = NULL;
	p->heap = NULL;
	p->stacks = NULL;
	p->scan_result = NULL;
	p->scanned = false;
	p->r_debug = 0;
}

struct drop_ctx {
	struct thread *keep;
	struct thread *victims[64];
	size_t n;
};

static void collect_others(struct thread *u, void *arg)
{
	struct drop_ctx *c = arg;

	if (u != c->keep && c->n < ARRAY_SIZE(c->victims))
		c->victims[c->n++] = u;
}

/* Let the process run untraced: a program we cannot hook is not harmed. */
static void give_up(struct tracer *tr, struct process *p)
{
	struct drop_ctx c = { .keep = NULL };

	tr->hook_failed = true;
	thread_foreach(p, collect_others, &c);
	for (size_t i = 0; i < c.n; i++)
		detach_thread(c.victims[i], 0);
	if (p == tr->main) {
		int status;
		while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
			;
		p->exit_status = status;
	}
	drop_process(tr, p);
}

static void on_exec(struct tracer *tr, struct thread *t, const struct event *ev)
{
	struct process *p = t->proc;

	if (p->role != ROLE_TRACED) {
		/* A vfork child got its own memory: nothing of ours in it. */
		detach_thread(t, 0);
		if (p->n_threads == 0)
			drop_process(tr, p);
		return;
	}
	/* Every other thread is gone; a non-leader exec took the leader's tid. */
	struct drop_ctx c = { .keep = t };
	thread_foreach(p, collect_others, &c);
	for (size_t i = 0; i < c.n; i++)
		thread_remove(c.victims[i]);
	reset_image(p);
	p->exec_seen = true;
	t->n_shadow = 0;
	debug("exec in %d (from tid %lu)", p->pid, ev->msg);
	if (setup_image(tr, t) < 0) {
		reset_image(p);
		give_up(tr, p);
		return;
	}
	resume(t, 0);
}

static void on_trap(struct tracer *tr, struct thread *t)
{
	struct process *p = t->proc;
	struct bpset *bp = p->role == ROLE_VFORK_CHILD ? p->parent->bp : p->bp;
	struct user_regs_struct regs;
	siginfo_t si;

	if (!bp || ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) < 0 ||
	    si.si_code != SI_KERNEL || thread_getregs(t->tid, &regs) < 0) {
		resume(t, SIGTRAP);	/* the program's own */
		return;
	}
	struct site *s = bp_find(bp, regs.rip - 1);
	int rc;
	if (s) {
		rc = hooks_on_site(t, s, &regs);
	} else if (regs.rip - 1 == bp_trampoline(bp)) {
		rc = hooks_on_return(t, &regs);
		if (rc < 0)
			die("internal error: lost a return address in thread %d", t->tid);
	} else {
		resume(t, SIGTRAP);
		return;
	}
	(void)rc;
	if (thread_setregs(t->tid, &regs) < 0 && errno != ESRCH)
		error("cannot set registers of thread %d: %s", t->tid, strerror(errno));
	resume(t, 0);
}

/*
 * A thread is about to leave (PTRACE_EVENT_EXIT); the memory is still
 * mapped. The process's memory is final when this exit ends the whole
 * process: exit_group (exit(), return from main) or a fatal signal kill
 * every thread at once, and the others may never stop at their own exit
 * event. Only a lone thread's SYS_exit (pthread_exit) leaves the others
 * running, unless it is the last one.
 */
static void on_exit_stop(struct tracer *tr, struct thread *t)
{
	struct process *p = t->proc;
	struct user_regs_struct regs;

	t->exiting = true;
	if (p->role == ROLE_TRACED && p->exec_seen && p->heap && !p->scanned &&
	    thread_getregs(t->tid, &regs) == 0) {
		bool whole_process = regs.orig_rax != SYS_exit;
		if (!whole_process) {
			struct others o = { .self = t };
			thread_foreach(p, check_other, &o);
			whole_process = !o.alive;
		}
		if (whole_process) {
			p->scan_result = scan_process(p, &regs);
			p->scanned = true;
		}
	}
	resume(t, 0);
}

static void on_fork(struct tracer *tr, struct thread *t, const struct event *ev)
{
	pid_t cpid = (pid_t)ev->msg;
	struct process *parent = t->proc;
	bool vfork = ev->kind == EV_VFORK;
	struct process *c = process_new(cpid, vfork ? ROLE_VFORK_CHILD : ROLE_DETACH);

	c->parent = parent;
	add_process(tr, c);
	if (!vfork && parent->bp) {
		/* The child has a copy of our int3s and redirected return
		 * addresses: put the program's bytes back before it runs. */
		if (process_open_mem(c) == 0) {
			bp_restore_in(parent->bp, c);
			for (size_t i = 0; i < t->n_shadow; i++)
				proc_write(c, t->shadow[i].rsp, &t->shadow[i].ret, 8);
			close(c->memfd);
			c->memfd = -1;
		} else {
			error("cannot clean forked child %d: %s", cpid, strerror(errno));
		}
	}
	struct thread *ct = thread_add(c, cpid);
	for (size_t i = 0; i < tr->n_early; i++) {
		if (tr->early[i] != cpid)
			continue;
		tr->early[i] = tr->early[--tr->n_early];
		if (vfork)
			resume(ct, 0);
		else
			detach_thread(ct, 0);
		if (c->n_threads == 0)
			drop_process(tr, c);
		break;
	}
	resume(t, 0);
}

static void on_clone(struct tracer *tr, struct thread *t, const struct event *ev)
{
	pid_t tid = (pid_t)ev->msg;
	struct thread *nt = thread_add(t->proc, tid);

	for (size_t i = 0; i < tr->n_early; i++) {
		if (tr->early[i] == tid) {
			tr->early[i] = tr->early[--tr->n_early];
			resume(nt, 0);
			break;
		}
	}
	resume(t, 0);
}

/* A stop from a tid we do not know yet: a new thread or child whose
 * creation event is still queued. Threads of known processes are adopted
 * at once; others wait for their fork event. */
static struct thread *adopt(struct tracer *tr, const struct event *ev)
{
	char path[64], line[256];
	pid_t tgid = 0;
	FILE *f;

	if (ev->kind == EV_EXITED)
		return NULL;
	snprintf(path, sizeof(path), "/proc/%d/status", ev->tid);
	f = fopen(path, "re");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "Tgid: %d", &tgid) == 1)
				break;
		fclose(f);
	}
	struct process *p = tgid ? find_process(tr, tgid) : NULL;
	if (p && tgid != ev->tid)
		return thread_add(p, ev->tid);
	if (tr->n_early < MAX_EARLY)
		tr->early[tr->n_early++] = ev->tid;
	return NULL;
}

static void on_exited(struct tracer *tr, struct thread *t, const struct event *ev)
{
	struct process *p = t->proc;
	bool leader = t->tid == p->pid;

	thread_remove(t);
	if (leader || p->n_threads == 0) {
		if (leader)
			p->exit_status = ev->status;
		if (p->n_threads == 0 || leader)
			drop_process(tr, p);
	}
}

void tracer_dispatch(struct tracer *tr, const struct event *ev)
{
	struct thread *t = thread_find(ev->tid);

	if (!t) {
		t = adopt(tr, ev);
		if (!t)
			return;
	}
	t->stopped = ev->kind != EV_EXITED;
	struct process *p = t->proc;
	switch (ev->kind) {
	case EV_EXITED:
		on_exited(tr, t, ev);
		break;
	case EV_TRAP:
		on_trap(tr, t);
		break;
	case EV_SIGNAL:
		if (p->role == ROLE_DETACH)
			detach_thread(t, ev->sig);
		else
			resume(t, ev->sig);
		break;
	case EV_GROUP_STOP:
		/* Stay stopped until SIGCONT, as without ptrace. */
		t->stopped = false;
		ptrace(PTRACE_LISTEN, t->tid, 0, 0);
		break;
	case EV_STOP:
		if (p->role == ROLE_DETACH) {
			detach_thread(t, 0);
			if (p->n_threads == 0)
				drop_process(tr, p);
		} else {
			resume(t, 0);
		}
		break;
	case EV_CLONE:
		on_clone(tr, t, ev);
		break;
	case EV_FORK:
	case EV_VFORK:
		on_fork(tr, t, ev);
		break;
	case EV_VFORK_DONE:
		resume(t, 0);
		break;
	case EV_EXEC:
		on_exec(tr, t, ev);
		break;
	case EV_EXIT:
		on_exit_stop(tr, t);
		break;
	}
}

static int finish_status(struct tracer *tr)
{
	struct process *p = tr->main;
	int status = p->exit_status, rc;

	if (status < 0)
		rc = EXIT_PTLEAK_FAILURE;
	else if (WIFSIGNALED(status))
		rc = 128 + WTERMSIG(status);
	else
		rc = WEXITSTATUS(status);
	if (tr->hook_failed)
		return EXIT_PTLEAK_FAILURE;	/* the program ran, untraced */
	if (!p->exec_seen || !p->heap)
		return rc;	/* execve failed: the child said why */
	int leaks = report_write(p, tr->o);
	if (leaks < 0)
		return EXIT_PTLEAK_FAILURE;
	if (leaks > 0 && tr->o->error_exitcode)
		return tr->o->error_exitcode;
	return rc;
}

int tracer_finish(struct tracer *tr)
{
	int rc = finish_status(tr);

	/* Everything is released, so that the sanitizer build's leak check
	 * of ptleak itself stays meaningful. */
	reset_image(tr->main);
	process_free(tr->main);
	for (size_t i = 0; i < tr->n_procs; i++)
		if (tr->procs[i] != tr->main)
			process_free(tr->procs[i]);
	free(tr->procs);
	free(tr);
	return rc;
}
