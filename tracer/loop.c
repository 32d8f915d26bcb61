/*
 * loop: the event loop (see tracer.h and session.h).
 *
 * Life of a launched program:
 *   launch: fork, the child stops itself, we seize it, it execs;
 *   EV_EXEC: map our code page, then either hook the allocator at once
 *     (static binary) or break on the dynamic linker's r_brk, which it
 *     calls once every library is loaded and before any constructor
 *     runs, and again on every dlopen/dlclose;
 *   EV_TRAP at a site or the trampoline: the event source (hooks.c)
 *     turns it into an allocation event; the thread resumes at once;
 *   EV_EXIT of a thread whose exit ends the process: memory is still
 *     mapped, so the reachability scan runs there;
 *   EV_EXITED of the leader: its report is written.
 *
 * Every event starts with one drain of every source of every traced
 * process (source.h), so what the loop does next (a scan, a fork's copy of
 * the database, a detach, an interval report) sees every allocation made
 * so far.
 */
#include "tracer/tracer.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include "symbols/symbols.h"
#include "tracer/allocdb.h"
#include "tracer/proc.h"
#include "tracer/report.h"
#include "tracer/session.h"
#include "tracer/signals.h"
#include "tracer/source.h"
#include "tracer/stacks.h"
#include "tracer/util.h"

#define STOP_TIMEOUT_NS 3000000000ull	/* attaching/leaving: wait for stops */
/* Idle work: after this many rounds of the fast loop (each a wait of up
 * to 2 ms and a drain) in a row that found fewer events than this. */
#define QUIET_ROUNDS 5
#define QUIET_EVENTS 256
#define IDLE_FRAMES 4096	/* frames looked at per idle round, at most */

struct tracer *tracer_current;

/* Attaching, leaving, checking or scanning at exit: threads are held in their stops. */
static bool holding(const struct tracer *tr)
{
	return tr->state == LOOP_ATTACHING || tr->state == LOOP_LEAVING ||
	       tr->state == LOOP_CHECKING || tr->state == LOOP_EXITING ||
	       tr->state == LOOP_HOOKING;
}

void restart_apply(struct tracer *tr, struct thread *t, struct restart r)
{
	struct process *p;

	switch (r.op) {
	case RESTART_NONE:
		return;
	case RESTART_CONT:
		if (holding(tr) && !t->exiting) {
			/* Keep it stopped, the signal for later. */
			if (r.sig)
				t->pending_sig = r.sig;
			t->stopped = true;
			return;
		}
		t->group_stop = false;
		/* ESRCH: killed meanwhile (SIGKILL); its exit event follows. */
		if (thread_resume(t, r.sig) < 0 && errno != ESRCH)
			error("cannot resume thread %d: %s", t->tid, strerror(errno));
		return;
	case RESTART_RUN:
		thread_resume(t, 0);
		return;
	case RESTART_LISTEN:
		/* Stay stopped until SIGCONT, as without ptrace. PTRACE_LISTEN
		 * works only from the group-stop itself: after we ran code in
		 * the thread (mapping our page) it is in another stop, and
		 * delivering the signal that stopped the process puts it back
		 * in a group-stop, reported as such. */
		if (holding(tr))
			return;
		if (ptrace(PTRACE_LISTEN, t->tid, 0, 0) == 0)
			t->stopped = false;
		else
			thread_resume(t, t->group_stop_sig);
		return;
	case RESTART_DETACH:
		p = t->proc;
		ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)r.sig);
		thread_remove(t);
		if (p->n_threads == 0)
			drop_process(tr, p);
		return;
	}
}

void loop_collect_stops(struct tracer *tr, enum loop_state state)
{
	tr->state = state;
	tr->state_deadline_ns = now_ns() + STOP_TIMEOUT_NS;
}

static bool all_stopped(struct tracer *tr)
{
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct thread_list l = threads_of(tr->procs[i]);
		bool stopped = true;
		for (size_t k = 0; k < l.n; k++)
			if (!l.v[k]->stopped)
				stopped = false;
		free(l.v);
		if (!stopped)
			return false;
	}
	return true;
}

/* The one drain: every source of every traced process delivers what it
 * has before the loop looks at anything. */
void loop_drain(struct tracer *tr)
{
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct process *p = tr->procs[i];
		if (p->role == ROLE_TRACED && p->db && sources_drain(p) < 0)
			error("process %d: some allocation events could not be read", p->pid);
	}
}

/* Attaching or leaving with every stop collected (or nothing left to
 * wait for, or too late): do the state's work. */
static void finish_state(struct tracer *tr)
{
	/* The state's work scans or copies: the database must be current
	 * (it was at the last event; a thread that never stopped may not). */
	loop_drain(tr);
	if (tr->state == LOOP_ATTACHING)
		attach_finish(tr);
	else if (tr->state == LOOP_LEAVING)
		leave_finish(tr);
	else if (tr->state == LOOP_CHECKING)
		check_finish(tr);
	else if (tr->state == LOOP_EXITING)
		exit_finish(tr);
	else if (tr->state == LOOP_HOOKING)
		modules_finish(tr);
}

static void advance(struct tracer *tr)
{
	while (holding(tr)) {
		bool stopped = tr->state == LOOP_EXITING ? exit_stopped(tr) :
			       tr->state == LOOP_HOOKING ? modules_stopped(tr) : all_stopped(tr);
		if (!stopped) {
			if (now_ns() <= tr->state_deadline_ns)
				return;
			/* A thread that never reports its stop must not hang us:
			 * go on with those that did. */
			error("some threads did not stop within 3 s; going on without them");
		}
		finish_state(tr);
	}
}


/* The next module of P's recorded stacks not yet prepared for the
 * report: prepared now (true), or none left (false). At most IDLE_FRAMES
 * frames are looked at; the cursor stays where this stopped. */
static bool prepare_next(struct process *p)
{
	const struct stacks *st = p->db->stacks;
	size_t ns = stacks_count(st), looked = 0;

	if (!p->prep_stack)
		p->prep_stack = 1;	/* stack ids start at 1 */
	for (; p->prep_stack <= ns; p->prep_stack++, p->prep_frame = 0) {
		size_t n;
		const uint64_t *pcs = stacks_get(st, p->prep_stack, &n);
		for (; p->prep_frame < n; p->prep_frame++) {
			if (++looked > IDLE_FRAMES)
				return true;
			uint64_t t0 = debug_enabled ? now_ns() : 0;
			if (symbols_prepare(p->syms, pcs[p->prep_frame])) {
				debug("idle: symbols of the module at %#" PRIx64 " read in %.1f ms",
				      pcs[p->prep_frame], (double)(now_ns() - t0) / 1e6);
				return true;
			}
		}
	}
	return false;
}

/*
 * Fast mode, once ptleak has had little to do for a while (a program
 * computing, or waiting): read the symbol tables and DWARF of the
 * modules in the stacks recorded so far, one module per round, on
 * ptleak's own CPU while the program runs. The report at the end needs
 * them (frame 0 alone, the allocator, is in libc) and would otherwise
 * read them after the program ended: with libc's debug file, 70 ms of
 * inflating DWARF added to a compute-bound program's run.
 */
static void idle_work(struct tracer *tr)
{
	uint64_t seq = allocdb_last_seq(), n = seq - tr->idle_seq;

	tr->idle_seq = seq;
	if (n >= QUIET_EVENTS || tr->state != LOOP_TRACING) {
		tr->quiet_rounds = 0;
		return;
	}
	if (++tr->quiet_rounds < QUIET_ROUNDS)
		return;
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct process *p = tr->procs[i];
		if (p->role == ROLE_TRACED && p->db && p->syms && prepare_next(p))
			return;
	}
}

bool tracer_next_event(struct tracer *tr, struct event *ev)
{
	int status;
	pid_t tid;

	memset(ev, 0, sizeof(*ev));
	for (;;) {
		advance(tr);
		if (tr->state == LOOP_DONE)
			return false;
		if (tr->n_procs == 0) {
			finish_state(tr);
			return false;
		}
		if (tr->state == LOOP_TRACING) {
			uint64_t now = now_ns();
			if (tr->attach && (signals_leave ||
					   (tr->deadline_ns && now >= tr->deadline_ns))) {
				ev->kind = EV_LEAVE;
				return true;
			}
			if (signals_check && check_ready(tr)) {
				signals_check = 0;
				ev->kind = EV_CHECK;
				return true;
			}
			if (tr->next_tick_ns && now >= tr->next_tick_ns) {
				tr->next_tick_ns = now + (uint64_t)(tr->o->interval * 1e9);
				ev->kind = EV_TICK;
				return true;
			}
		}
		if (sources_polling(tr->procs, tr->n_procs)) {
			/* A source records without stops (the probe): drain it
			 * while no ptrace event comes. */
			tid = waitpid(-1, &status, __WALL | WNOHANG);
			if (tid == 0) {
				sources_wait(tr->procs, tr->n_procs, 2000);
				loop_drain(tr);
				idle_work(tr);
				continue;
			}
		} else {
			tid = waiter_wait(&tr->waiter, &status, &signals_caught);
		}
		if (tid < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECHILD) {
				finish_state(tr);
				return false;
			}
			die("waitpid: %s", strerror(errno));
		}
		break;
	}
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

static struct restart on_trap(struct tracer *tr, struct thread *t)
{
	struct user_regs_struct regs;

	if (thread_getregs(t->tid, &regs) < 0)
		return RESUME(SIGTRAP);	/* the program's own */
	t->fs_base = regs.fs_base;
	switch (sources_on_trap(t, &regs, holding(tr))) {
	case TRAP_HANDLED:
		exit_begin(tr, t);	/* at _exit: held until the scan */
		return RESUME(0);
	case TRAP_FAILED:
		die("internal error: lost a return address in thread %d", t->tid);
	case TRAP_NOT_OURS:
		break;
	}
	return RESUME(SIGTRAP);
}

/* A stop to hold while attaching or leaving, unless the thread is just
 * past one of our traps: then its SIGTRAP is still queued behind this
 * stop and, detached like that, it would die of it. It runs into that
 * stop, which is handled as usual. */
static bool run_to_queued_trap(struct tracer *tr, struct thread *t)
{
	return holding(tr) && sources_trap_queued(t);
}

static struct restart handle(struct tracer *tr, struct thread *t, const struct event *ev)
{
	struct process *p = t->proc;

	switch (ev->kind) {
	case EV_EXITED:
		return on_exited(tr, t, ev);
	case EV_TRAP:
		return on_trap(tr, t);
	case EV_SIGNAL:
		return p->role == ROLE_DETACH ? DETACH(ev->sig) : RESUME(ev->sig);
	case EV_GROUP_STOP:
		if (run_to_queued_trap(tr, t))
			return (struct restart){ RESTART_RUN, 0 };
		t->group_stop = true;
		t->group_stop_sig = ev->sig;
		return LISTEN;
	case EV_STOP:
		if (run_to_queued_trap(tr, t))
			return (struct restart){ RESTART_RUN, 0 };
		if (p->role == ROLE_DETACH)
			return DETACH(0);
		/* A new thread's first stop: its thread pointer is set. */
		struct user_regs_struct r;
		if (!t->fs_base && thread_getregs(t->tid, &r) == 0)
			t->fs_base = r.fs_base;
		return RESUME(0);
	case EV_CLONE:
		return on_clone(tr, t, ev);
	case EV_FORK:
	case EV_VFORK:
		return on_fork(tr, t, ev);
	case EV_VFORK_DONE:
		sources_vfork_done(t);
		return RESUME(0);
	case EV_EXEC:
		return on_exec(tr, t, ev);
	case EV_EXIT:
		return on_exit_stop(tr, t);
	case EV_LEAVE:
	case EV_TICK:
	case EV_CHECK:
		break;
	}
	return GONE;
}

void tracer_dispatch(struct tracer *tr, const struct event *ev)
{
	loop_drain(tr);
	if (ev->kind == EV_LEAVE) {
		leave_begin(tr);
		return;
	}
	if (ev->kind == EV_TICK) {
		if (tr->main->db)
			report_interval(tr->main, tr->o);
		return;
	}
	if (ev->kind == EV_CHECK) {
		check_begin(tr);
		return;
	}
	struct thread *t = thread_find(ev->tid);
	if (!t) {
		t = adopt(tr, ev);
		if (!t)
			return;
	}
	t->stopped = ev->kind != EV_EXITED;
	restart_apply(tr, t, handle(tr, t, ev));
}

static int exit_status_of(struct tracer *tr)
{
	int status = tr->main->exit_status;

	if (tr->attach)
		return 0;
	if (status < 0)
		return EXIT_PTLEAK_FAILURE;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int tracer_finish(struct tracer *tr)
{
	int rc = exit_status_of(tr);

	debug("waits: %" PRIu64 " polled, %" PRIu64 " blocked, %" PRIu64 " polls given up (busy CPU)",
	      tr->waiter.polled, tr->waiter.blocked, tr->waiter.backoffs);
	if (!tr->main->reported)
		report_now(tr, tr->main);
	int leaks = report_close(tr->o);
	if (tr->hook_failed || leaks < 0)
		rc = EXIT_PTLEAK_FAILURE;
	else if (leaks > 0 && tr->o->error_exitcode)
		rc = tr->o->error_exitcode;
	/* Everything is released, so that the sanitizer build's leak check
	 * of ptleak itself stays meaningful. */
	tr->left = true;
	for (size_t i = 0; i < tr->n_procs; i++)
		if (tr->procs[i] != tr->main)
			release_process(tr->procs[i]);
	if (tr->main->argv == tr->o->argv)
		tr->main->argv = NULL;
	release_process(tr->main);
	free(tr->procs);
	free(tr->early);
	free(tr);
	tracer_current = NULL;
	return rc;
}
