/*
 * tracer: process control and the event loop (see tracer.h).
 *
 * Life of a launched program:
 *   launch: fork, the child stops itself, we seize it, it execs;
 *   EV_EXEC: map our code page, then either hook the allocator at once
 *     (static binary) or break on the dynamic linker's r_brk, which it
 *     calls once every library is loaded and before any constructor
 *     runs, and again on every dlopen/dlclose;
 *   EV_TRAP at a site or the trampoline: hooks.c turns it into an
 *     allocation event; the thread resumes at once;
 *   EV_EXIT of a thread whose exit ends the process: memory is still
 *     mapped, so the reachability scan runs there;
 *   EV_EXITED of the leader: its report is written.
 *
 * Attach (-p): every thread is seized and interrupted, rescanning
 * /proc/PID/task until no new thread appears; with all of them stopped the
 * allocator is hooked and they resume. Leaving (EV_LEAVE): every thread is
 * stopped again ("draining": stops are collected instead of resumed, and
 * an int3 hit not yet handled is rewound), threads are moved out of slots,
 * redirected return addresses are written back, the code is restored, our
 * pages unmapped, and each thread detached with its pending signal.
 *
 * Other processes: without -f a forked child is cleaned (original bytes
 * back at every site of its copy of memory) and detached; with -f it is
 * traced with a copy of its parent's state. A vfork child shares our
 * breakpoints, so it stays traced, stepping over them, until it execs.
 */
#include "tracer/tracer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "symbols/symbols.h"
#include "symbols/unwind.h"
#include "tracer/breakpoint.h"
#include "tracer/frames.h"
#include "tracer/heap.h"
#include "tracer/hooks.h"
#include "tracer/launch.h"
#include "tracer/preattach.h"
#include "tracer/proc.h"
#include "tracer/report.h"
#include "tracer/scan.h"
#include "tracer/stacks.h"
#include "tracer/util.h"
#include "tracer/writer.h"

#define MAX_EARLY 256
#define TICK_US 100000		/* attach mode: how often waitpid wakes up */

/* Attach mode: no EXITKILL, the process must outlive us. */
#define ATTACH_PTRACE_OPTIONS (PTLEAK_PTRACE_OPTIONS & ~PTRACE_O_EXITKILL)

struct tracer {
	const struct options *o;
	struct process *main;
	struct process **procs;
	size_t n_procs, cap_procs;
	/* Stops of tids whose creation event has not arrived yet. */
	pid_t early[MAX_EARLY];
	size_t n_early;
	bool hook_failed;
	bool attach;
	bool draining;		/* collecting stops, not resuming */
	uint64_t drain_deadline_ns;	/* give up waiting for stops then */
	bool left;		/* attach mode: detached cleanly */
	uint64_t deadline_ns;	/* --duration, 0 = none */
	uint64_t next_tick_ns;	/* --interval, 0 = none */
};

static struct tracer *current;	/* for signal handlers and atexit */
/* The registers on_trap is about to give a thread: decided, not yet set. */
static struct {
	volatile pid_t tid;
	struct user_regs_struct regs;
} pending_regs;
static volatile sig_atomic_t forward_to;
static volatile sig_atomic_t leave_requested;

/* ---- signals ------------------------------------------------------- */

static void forward_signal(int sig)
{
	if (forward_to > 0)
		kill(forward_to, sig);
}

static void request_leave(int sig)
{
	(void)sig;
	leave_requested = 1;
}

static void wake_up(int sig)
{
	(void)sig;	/* only to interrupt waitpid */
}

/*
 * Wait for thread TID's next stop, retrying on EINTR; give up after about
 * 200 ms (a thread already in a stop we did not see reports nothing new).
 * Returns the status, or -1 if it is gone or did not stop.
 */
static int wait_stop(pid_t tid)
{
	struct timespec ms = { 0, 1000000 };
	int status;

	for (int i = 0; i < 200; i++) {
		pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
		if (r == tid)
			return WIFSTOPPED(status) ? status : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		nanosleep(&ms, NULL);
	}
	return -1;
}

/*
 * /proc/PID/task/TID/status into BUF (NUL-terminated), with open and read
 * only: the emergency path runs in a signal handler. false if gone.
 */
static bool read_task_status(pid_t pid, pid_t tid, char *buf, size_t size)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* The value of status line FIELD ("SigPnd", "Tgid") in BUF, NULL if none:
 * matched at a line's start, so "Tgid" is not "NStgid". */
static const char *status_value(const char *buf, const char *field)
{
	size_t n = strlen(field);

	for (const char *l = buf; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		if (!strncmp(l, field, n) && l[n] == ':')
			return l + n + 1;
	return NULL;
}

/* Whether signal SIG is queued for thread TID (SigPnd), in BUF. */
static bool sig_pending(const char *buf, int sig)
{
	const char *v = status_value(buf, "SigPnd");

	return v && (strtoull(v, NULL, 16) & (1ull << (sig - 1)));
}

/* Whether SIGTRAP is queued for thread TID. */
static bool sigtrap_queued(pid_t pid, pid_t tid)
{
	char buf[4096];

	return read_task_status(pid, tid, buf, sizeof(buf)) && sig_pending(buf, SIGTRAP);
}

/*
 * Emergency detach of one thread, with only syscalls and our own memory
 * (it runs in a fatal-signal handler): stop it, swallow the SIGTRAP of an
 * int3 it hit, put rip where it would be without ptleak, write back the
 * return address it would come back through, detach it. Its code has been
 * restored already; our pages stay mapped (a thread may be in a slot).
 */
static void restore_thread(struct thread *t, void *arg)
{
	struct bpset *bp = arg;
	struct process *p = t->proc;
	uint64_t tramp = bp_trampoline(bp), v;
	struct user_regs_struct r;
	int status, deliver = t->pending_sig;

	for (size_t i = 0; i < t->n_shadow; i++)
		if (pread(p->memfd, &v, 8, (off_t)t->shadow[i].rsp) == 8 && v == tramp)
			pwrite(p->memfd, &t->shadow[i].ret, 8, (off_t)t->shadow[i].rsp);
	if (!t->stopped) {
		ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
		status = wait_stop(t->tid);
		if (status != -1 && (status >> 16) == 0 && WSTOPSIG(status) != SIGTRAP)
			deliver = WSTOPSIG(status);
	}
	/* An int3 hit whose SIGTRAP is still queued behind the interrupt. */
	for (int tries = 0; tries < 3 && sigtrap_queued(p->pid, t->tid); tries++)
		if (ptrace(PTRACE_CONT, t->tid, 0, 0) < 0 || wait_stop(t->tid) == -1)
			break;
	if (pending_regs.tid == t->tid) {
		/* Caught between deciding its registers and setting them. */
		ptrace(PTRACE_SETREGS, t->tid, 0, &pending_regs.regs);
		pending_regs.tid = 0;
	}
	if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) == 0) {
		struct site *s = bp_find(bp, r.rip - 1);
		uint64_t rip = s ? s->addr : bp_move_out(bp, r.rip);
		if (r.rip - 1 == tramp) {
			for (size_t i = t->n_shadow; i-- > 0;)
				if (t->shadow[i].rsp + 8 == r.rsp) {
					rip = t->shadow[i].ret;
					break;
				}
		}
		if (rip != r.rip) {
			r.rip = rip;
			ptrace(PTRACE_SETREGS, t->tid, 0, &r);
		}
	}
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)deliver);
}

/*
 * Last resort when ptleak dies while attached (a fatal signal, or die()):
 * give the program its code, return addresses and threads back, so that
 * it survives our exit. Only syscalls and our own memory, no allocation:
 * safe in a signal handler.
 */
static void emergency_restore(void)
{
	struct tracer *tr = current;

	if (!tr || !tr->attach || tr->left)
		return;
	tr->left = true;
	/* No more ticks: they would interrupt every wait below. */
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct process *p = tr->procs[i];
		if (p->role == ROLE_TRACED && p->bp && p->memfd >= 0)
			bp_restore_in(p->bp, p);
	}
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct process *p = tr->procs[i];
		if (p->role == ROLE_TRACED && p->bp && p->memfd >= 0)
			thread_foreach(p, restore_thread, p->bp);
	}
}

static void on_fatal(int sig)
{
	emergency_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Launch mode: Ctrl-C and Ctrl-\ at a terminal reach the program from the
 * terminal itself; ptleak stays to report. SIGTERM and SIGHUP sent to
 * ptleak are passed on to the program. Installed after the fork, so the
 * program inherits ptleak's original dispositions. */
static void setup_launch_signals(pid_t pid)
{
	struct sigaction sa = { .sa_handler = forward_signal };

	forward_to = pid;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
}

/* Attach mode: SIGINT, SIGTERM and SIGHUP mean "leave"; a ticker wakes
 * waitpid up for --duration and --interval; a crash restores the target
 * first. No SA_RESTART: waitpid must return EINTR. */
static void setup_attach_signals(void)
{
	struct sigaction sa = { .sa_handler = request_leave };
	static const int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = wake_up;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_fatal;
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < ARRAY_SIZE(fatal); i++)
		sigaction(fatal[i], &sa, NULL);
	atexit(emergency_restore);

	struct itimerval it = { .it_interval = { 0, TICK_US }, .it_value = { 0, TICK_US } };
	setitimer(ITIMER_REAL, &it, NULL);
}

/* ---- processes ------------------------------------------------------ */

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

static void reset_image(struct process *p)
{
	symbols_free(p->syms);
	unwinder_free(p->unw);
	bp_free(p->bp);
	heap_free(p->heap);
	stacks_free(p->stacks);
	scan_result_free(p->scan);
	frames_free(p->frames);
	p->frames = NULL;
	p->syms = NULL;
	p->unw = NULL;
	p->bp = NULL;
	p->heap = NULL;
	p->stacks = NULL;
	p->scan = NULL;
	p->reported = false;
	p->r_debug = 0;
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

static void release_process(struct process *p)
{
	reset_image(p);
	free_argv(p);
	process_free(p);
}

/* P is gone or detached: out of the list (the main process is kept for
 * its exit status and freed at the end). */
static void drop_process(struct tracer *tr, struct process *p)
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

/* PID's command line from /proc, as a NULL-terminated array. */
static char **read_cmdline(pid_t pid)
{
	char path[64], buf[8192];
	size_t n = 0, k = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		n = r > 0 ? (size_t)r : 0;
		close(fd);
	}
	buf[n] = '\0';
	size_t count = 0;
	for (size_t i = 0; i < n; i++)
		count += buf[i] == '\0';
	char **argv = xcalloc(count + 2, sizeof(*argv));
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		argv[k++] = xstrdup(buf + i);
	if (k == 0)
		argv[k++] = xstrdup("?");
	return argv;
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

/* ---- threads -------------------------------------------------------- */

static void resume(struct tracer *tr, struct thread *t, int sig)
{
	if (tr->draining && !t->exiting) {
		/* Leaving or attaching: keep it stopped, the signal for later. */
		if (sig)
			t->pending_sig = sig;
		t->stopped = true;
		return;
	}
	t->group_stop = false;
	/* ESRCH: killed meanwhile (SIGKILL); its exit event follows. */
	if (thread_resume(t, sig) < 0 && errno != ESRCH)
		error("cannot resume thread %d: %s", t->tid, strerror(errno));
}

/*
 * Leave T in its job-control stop. PTRACE_LISTEN works only from the
 * group-stop itself: after we ran code in the thread (mapping our page) it
 * is in another stop, and delivering the signal that stopped the process
 * puts it back in a group-stop, reported as such.
 */
static void keep_job_stopped(struct thread *t)
{
	if (ptrace(PTRACE_LISTEN, t->tid, 0, 0) == 0) {
		t->stopped = false;
		return;
	}
	thread_resume(t, t->group_stop_sig);
}

static void detach_thread(struct thread *t, int sig)
{
	ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)sig);
	thread_remove(t);
}

struct thread_list {
	struct thread **v;
	size_t n, cap;
};

static void collect(struct thread *t, void *arg)
{
	struct thread_list *l = arg;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = t;
}

static struct thread_list threads_of(struct process *p)
{
	struct thread_list l = { 0 };

	thread_foreach(p, collect, &l);
	return l;
}

/* Thread TID is gone, a zombie, or has SIGKILL pending (zapped by another
 * thread's exit_group or a fatal signal). */
static bool thread_dying(pid_t pid, pid_t tid)
{
	char buf[4096];

	if (!read_task_status(pid, tid, buf, sizeof(buf)))
		return true;
	const char *state = status_value(buf, "State");
	if (state)
		state += strspn(state, " \t");
	return (state && (*state == 'Z' || *state == 'X')) || sig_pending(buf, SIGKILL);
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

/*
 * Draining: take events, recording stops instead of resuming, until every
 * thread of every process is stopped (or 3 s pass: a thread that never
 * reports its stop must not hang us). Draining stays on.
 */
static void collect_stops(struct tracer *tr)
{
	struct event ev;

	tr->draining = true;
	tr->drain_deadline_ns = now_ns() + 3000000000ull;
	while (!all_stopped(tr) && tracer_next_event(tr, &ev))
		tracer_dispatch(tr, &ev);
}

/* ---- hooking a program image -------------------------------------- */

/*
 * Hook a program image: a code page, then the dynamic linker's r_brk
 * (dynamic programs) and the allocator. At an exec the allocator is not
 * mapped yet and is hooked at r_brk (ARM_NOW false); after attaching it
 * is there already.
 */
static int setup_image(struct tracer *tr, struct thread *t, bool arm_now)
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
	p->frames = frames_new();
	if (bp_init(p->bp, t) < 0)
		return -1;
	uint64_t rbrk = symbols_lookup_name(p->syms, "ld-linux", "_dl_debug_state");
	p->dynamic = rbrk != 0;
	if (p->dynamic) {
		p->r_debug = symbols_lookup_name(p->syms, "ld-linux", "_r_debug");
		if (bp_add(p->bp, t, rbrk, SITE_RBRK, 0, 0) < 0)
			return -1;
		if (!arm_now)
			return 0;
	}
	int n = hooks_arm(p, t, ++p->generation);
	if (n == 0)
		error("no allocator entry point (malloc, free, ...) found in '%s': "
		      "a static binary needs its symbol table (is it stripped?)",
		      p->argv && p->argv[0] ? p->argv[0] : "?");
	return n > 0 ? 0 : -1;
}

/* Let a launched process run on untraced: a program we cannot hook is not
 * harmed. Nothing of ours is armed in it. */
static void give_up(struct tracer *tr, struct process *p)
{
	struct thread_list l = threads_of(p);

	tr->hook_failed = true;
	for (size_t i = 0; i < l.n; i++)
		detach_thread(l.v[i], 0);
	free(l.v);
	if (p == tr->main) {
		int status;
		while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
			;
		p->exit_status = status;
	}
	drop_process(tr, p);
}

/* ---- launch and attach ------------------------------------------------ */

struct tracer *tracer_launch(const struct options *o)
{
	struct tracer *tr = xcalloc(1, sizeof(*tr));
	char *path = launch_resolve(o->argv[0]);
	pid_t pid = launch_start(path, o->argv);

	free(path);
	current = tr;
	setup_launch_signals(pid);
	tr->o = o;
	tr->main = process_new(pid, ROLE_TRACED);
	tr->main->ppid = getpid();
	tr->main->argv = o->argv;
	add_process(tr, tr->main);
	thread_add(tr->main, pid);
	hooks_num_callers = o->num_callers;
	return tr;
}

/* "Tgid", "TracerPid" ... of /proc/PID/status; -1 if absent. */
static long status_field(pid_t pid, const char *field)
{
	char buf[4096];
	const char *v;

	if (!read_task_status(pid, pid, buf, sizeof(buf)) || !(v = status_value(buf, field)))
		return -1;
	return strtol(v, NULL, 10);
}

static void comm_of(pid_t pid, char *buf, size_t size)
{
	char path[64];
	int fd;
	ssize_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, size - 1);
		close(fd);
	}
	if (n <= 0) {
		snprintf(buf, size, "?");
		return;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

static noreturn void cannot_attach(pid_t pid, int err)
{
	char why[256], comm[64];
	long tracer_pid = err == EPERM ? status_field(pid, "TracerPid") : 0;

	if (tracer_pid > 0) {
		/* Someone attached between our look and our PTRACE_SEIZE. */
		comm_of((pid_t)tracer_pid, comm, sizeof(comm));
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

struct tracer *tracer_attach(const struct options *o)
{
	pid_t pid = o->pid;
	char comm[64];

	long tgid = status_field(pid, "Tgid");
	if (tgid < 0)
		cannot_attach(pid, ESRCH);
	if (tgid != pid)
		die("cannot attach to process %d: it is a thread of process %ld (use -p %ld)",
		    pid, tgid, tgid);
	if (pid == getpid())
		die("cannot attach to process %d: that is ptleak itself", pid);
	long tracer_pid = status_field(pid, "TracerPid");
	if (tracer_pid > 0) {
		comm_of((pid_t)tracer_pid, comm, sizeof(comm));
		die("cannot attach to process %d: already traced by process %ld (%s)",
		    pid, tracer_pid, comm);
	}

	struct tracer *tr = xcalloc(1, sizeof(*tr));
	current = tr;
	tr->o = o;
	tr->attach = true;
	hooks_num_callers = o->num_callers;
	struct process *p = process_new(pid, ROLE_TRACED);
	p->attached = true;
	p->exec_seen = true;
	p->ppid = (pid_t)status_field(pid, "PPid");
	p->argv = read_cmdline(pid);
	p->argv_owned = true;
	tr->main = p;
	add_process(tr, p);

	seize_all(p);
	setup_attach_signals();
	/* Signals that arrive meanwhile are kept and delivered on resume. */
	collect_stops(tr);
	tr->draining = false;
	tr->drain_deadline_ns = 0;
	if (p->n_threads == 0 || find_process(tr, pid) != p)
		die("cannot attach to process %d: it exited while ptleak attached", pid);

	struct thread *t = thread_find(pid);
	if (!t || t->exiting) {
		struct thread_list l = threads_of(p);
		t = l.n ? l.v[0] : NULL;
		free(l.v);
	}
	if (!t || setup_image(tr, t, true) < 0) {
		tracer_dispatch(tr, &(struct event){ .kind = EV_LEAVE });
		die("cannot hook the allocator of process %d; detached, it runs on untraced", pid);
	}
	struct preattach *before = preattach_read(p);
	p->attach_ns = now_ns();
	if (o->duration)
		tr->deadline_ns = p->attach_ns + (uint64_t)(o->duration * 1e9);
	if (o->interval)
		tr->next_tick_ns = p->attach_ns + (uint64_t)(o->interval * 1e9);
	if (!o->quiet) {
		comm_of(pid, comm, sizeof(comm));
		fprintf(stderr, "==%d== ptleak-%s: attached to process %d (%s), %zu threads\n",
			pid, "0.1", pid, comm, p->n_threads);
	}
	struct thread_list l = threads_of(p);
	for (size_t i = 0; i < l.n; i++) {
		if (l.v[i]->group_stop)
			keep_job_stopped(l.v[i]);
		else
			resume(tr, l.v[i], 0);
	}
	free(l.v);
	/* Only the reading needed them stopped; none of their events is
	 * handled before this. */
	if (before) {
		size_t n = preattach_record(p, before);
		debug("inventory recorded: %zu blocks", n);
	}
	if (!o->quiet) {
		char a[32], b[32];
		const struct heap_stats *st = heap_stats(p->heap);
		if (p->before_known)
			fprintf(stderr, "==%d== %s bytes in %s blocks were live in glibc's heap "
				"(allocated before ptleak attached)\n", pid,
				writer_num(st->before_bytes, a), writer_num(st->before_blocks, b));
		else
			fprintf(stderr, "==%d== blocks allocated before the attach are not known: %s; "
				"leak kinds are conservative\n", pid, p->before_why);
	}
	return tr;
}

/* ---- the event loop ------------------------------------------------- */

bool tracer_next_event(struct tracer *tr, struct event *ev)
{
	int status;
	pid_t tid;

	memset(ev, 0, sizeof(*ev));
	for (;;) {
		if (tr->n_procs == 0)
			return false;
		if (tr->draining && tr->drain_deadline_ns && now_ns() > tr->drain_deadline_ns) {
			/* A thread that never reports its stop must not hang us:
			 * go on with those that did. */
			error("some threads did not stop within 3 s; going on without them");
			return false;
		}
		if (tr->attach && !tr->draining) {
			uint64_t now = now_ns();
			if (leave_requested || (tr->deadline_ns && now >= tr->deadline_ns)) {
				ev->kind = EV_LEAVE;
				return true;
			}
			if (tr->next_tick_ns && now >= tr->next_tick_ns) {
				tr->next_tick_ns = now + (uint64_t)(tr->o->interval * 1e9);
				ev->kind = EV_TICK;
				return true;
			}
		}
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

static void on_exec(struct tracer *tr, struct thread *t, const struct event *ev)
{
	struct process *p = t->proc;

	if (p->role == ROLE_VFORK_CHILD && tr->o->follow_forks) {
		p->role = ROLE_TRACED;	/* its own memory now: trace it */
		p->parent = NULL;
	} else if (p->role != ROLE_TRACED) {
		/* A vfork child got its own memory: nothing of ours in it. */
		detach_thread(t, 0);
		if (p->n_threads == 0)
			drop_process(tr, p);
		return;
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
		p->argv = read_cmdline(p->pid);
		p->argv_owned = true;
	}
	p->exec_seen = true;
	t->n_shadow = 0;
	t->exiting = false;	/* a non-leader exec reports the leader's exit first */
	debug("exec in %d (from tid %lu)", p->pid, ev->msg);
	if (setup_image(tr, t, false) < 0) {
		reset_image(p);
		give_up(tr, p);
		return;
	}
	resume(tr, t, 0);
}

/*
 * Our int3 or the program's own SIGTRAP? Past a site whose instruction is
 * longer than one byte, or past the trampoline, nothing but our int3 can
 * have left the thread: that needs no PTRACE_GETSIGINFO, one syscall less
 * per allocator call. Elsewhere, the kernel's siginfo decides.
 */
static bool our_trap(struct thread *t, const struct site *s)
{
	siginfo_t si;

	if (s->len > 1)
		return true;
	return ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) == 0 && si.si_code == SI_KERNEL;
}

static void on_trap(struct tracer *tr, struct thread *t)
{
	struct process *p = t->proc;
	struct bpset *bp = p->role == ROLE_VFORK_CHILD && p->parent ? p->parent->bp : p->bp;
	struct user_regs_struct regs;

	if (!bp || thread_getregs(t->tid, &regs) < 0) {
		resume(tr, t, SIGTRAP);	/* the program's own */
		return;
	}
	t->fs_base = regs.fs_base;
	struct site *s = bp_find(bp, regs.rip - 1);
	bool tramp = regs.rip - 1 == bp_trampoline(bp);
	if (!tramp && (!s || !our_trap(t, s))) {
		resume(tr, t, SIGTRAP);
		return;
	}
	if (s && tr->draining) {
		regs.rip = s->addr;	/* leaving: it runs the real code later */
	} else if (s) {
		hooks_on_site(t, s, &regs);
	} else {
		/* hooks_on_return pops the shadow frame: from here until the
		 * registers are set, only pending_regs knows where it goes. */
		pending_regs.regs = regs;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		pending_regs.tid = t->tid;
		if (hooks_on_return(t, &pending_regs.regs) < 0)
			die("internal error: lost a return address in thread %d", t->tid);
		regs = pending_regs.regs;
	}
	if (thread_setregs(t->tid, &regs) < 0 && errno != ESRCH)
		error("cannot set registers of thread %d: %s", t->tid, strerror(errno));
	pending_regs.tid = 0;
	resume(tr, t, 0);
}

static void scan_now(struct tracer *tr, struct process *p, const struct user_regs_struct *regs,
		     size_t n)
{
	/* Attached without knowing the heap from before: memory ptleak cannot
	 * account for must count as a root. */
	p->scan = scan_process(p, regs, n, p->attached && !p->before_known);
}

/* Report P, scanning it first if its memory was never seen final (it
 * was killed, or vanished): then every block counts as definitely lost. */
static void report_now(struct tracer *tr, struct process *p)
{
	if (!p->heap)
		return;
	if (!p->scan)
		scan_now(tr, p, NULL, 0);
	report_process(p, tr->o);
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
	if (p->role == ROLE_TRACED && p->exec_seen && p->heap && !p->scan &&
	    thread_getregs(t->tid, &regs) == 0) {
		bool whole_process = regs.orig_rax != SYS_exit;
		if (!whole_process) {
			struct others o = { .self = t };
			thread_foreach(p, check_other, &o);
			whole_process = !o.alive;
		}
		if (whole_process)
			scan_now(tr, p, &regs, 1);
	}
	resume(tr, t, 0);
}

/* A forked child traced with -f: a copy of its parent's state. */
static void follow_child(struct process *c, struct process *parent, struct thread *t)
{
	c->exec_seen = parent->exec_seen;
	c->dynamic = parent->dynamic;
	c->r_debug = parent->r_debug;
	c->generation = parent->generation;
	c->attached = parent->attached;
	c->attach_ns = parent->attach_ns;
	c->before_known = parent->before_known;
	memcpy(c->before_why, parent->before_why, sizeof(c->before_why));
	c->argv = copy_argv(parent->argv);
	c->argv_owned = true;
	if (!parent->heap)
		return;
	c->heap = heap_clone(parent->heap);
	c->stacks = stacks_clone(parent->stacks);
	c->frames = frames_new();
	c->bp = bp_clone(parent->bp);
	c->syms = symbols_new(c->pid);
	c->unw = c->syms ? unwinder_new(c->pid, c->syms) : NULL;
	if (process_open_mem(c) < 0 || !c->syms || !c->unw)
		error("cannot follow child %d: %s", c->pid, strerror(errno));
	struct thread *ct = thread_find(c->pid);
	for (size_t i = 0; ct && i < t->n_shadow; i++)
		*thread_push_shadow(ct) = t->shadow[i];
}

static void on_fork(struct tracer *tr, struct thread *t, const struct event *ev)
{
	pid_t cpid = (pid_t)ev->msg;
	struct process *parent = t->proc;
	bool vfork = ev->kind == EV_VFORK;
	bool follow = tr->o->follow_forks && parent->role == ROLE_TRACED;
	enum proc_role role = vfork ? ROLE_VFORK_CHILD : follow ? ROLE_TRACED : ROLE_DETACH;
	struct process *c = process_new(cpid, role);

	c->parent = parent;
	c->ppid = parent->pid;
	add_process(tr, c);
	thread_add(c, cpid);
	if (role == ROLE_TRACED) {
		follow_child(c, parent, t);
	} else if (role == ROLE_DETACH && parent->bp) {
		/* The child has a copy of our int3s and redirected return
		 * addresses: put the program's bytes back before it runs. */
		if (process_open_mem(c) == 0) {
			bp_restore_in(parent->bp, c);
			for (size_t i = 0; i < t->n_shadow; i++)
				proc_write(c, t->shadow[i].rsp, &t->shadow[i].ret, 8);
		} else {
			error("cannot clean forked child %d: %s", cpid, strerror(errno));
		}
	}
	for (size_t i = 0; i < tr->n_early; i++) {
		if (tr->early[i] != cpid)
			continue;
		tr->early[i] = tr->early[--tr->n_early];
		struct thread *ct = thread_find(cpid);
		if (role == ROLE_DETACH) {
			detach_thread(ct, 0);
			drop_process(tr, c);
		} else {
			resume(tr, ct, 0);
		}
		break;
	}
	resume(tr, t, 0);
}

static void on_clone(struct tracer *tr, struct thread *t, const struct event *ev)
{
	pid_t tid = (pid_t)ev->msg;
	struct thread *nt = thread_add(t->proc, tid);

	for (size_t i = 0; i < tr->n_early; i++) {
		if (tr->early[i] == tid) {
			tr->early[i] = tr->early[--tr->n_early];
			nt->stopped = true;
			resume(tr, nt, 0);
			break;
		}
	}
	resume(tr, t, 0);
}

/* A stop from a tid we do not know yet: a new thread or child whose
 * creation event is still queued. Threads of known processes are adopted
 * at once; others wait for their fork event. */
static struct thread *adopt(struct tracer *tr, const struct event *ev)
{
	if (ev->kind == EV_EXITED)
		return NULL;
	long tgid = status_field(ev->tid, "Tgid");
	struct process *p = tgid > 0 ? find_process(tr, (pid_t)tgid) : NULL;
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
	if (!leader && p->n_threads > 0)
		return;
	if (leader)
		p->exit_status = ev->status;
	if (p->role == ROLE_TRACED)
		report_now(tr, p);
	drop_process(tr, p);
}

/* Every thread of P stopped: give it back its own code and detach. */
static void release(struct tracer *tr, struct process *p)
{
	struct thread_list l = threads_of(p);
	struct bpset *bp = p->bp;

	if (p->role == ROLE_TRACED && bp && l.n) {
		struct user_regs_struct *regs = xcalloc(l.n, sizeof(*regs));
		size_t n = 0;
		for (size_t i = 0; i < l.n; i++)
			if (thread_getregs(l.v[i]->tid, &regs[n]) == 0)
				n++;
		if (!p->scan)
			scan_now(tr, p, regs, n);
		report_now(tr, p);
		uint64_t tramp = bp_trampoline(bp);
		for (size_t i = 0; i < l.n; i++) {
			struct thread *t = l.v[i];
			struct user_regs_struct r;
			for (size_t k = t->n_shadow; k-- > 0;) {
				uint64_t v;
				if (proc_read_u64(p, t->shadow[k].rsp, &v) == 0 && v == tramp)
					proc_write(p, t->shadow[k].rsp, &t->shadow[k].ret, 8);
			}
			t->n_shadow = 0;
			if (thread_getregs(t->tid, &r) == 0) {
				uint64_t rip = bp_move_out(bp, r.rip);
				if (rip != r.rip) {
					r.rip = rip;
					thread_setregs(t->tid, &r);
				}
			}
		}
		free(regs);
		/* Our pages are unmapped by code run in a thread that can still
		 * run code: not one stopped on its way out. */
		struct thread *runner = NULL;
		for (size_t i = 0; i < l.n && !runner; i++)
			if (!l.v[i]->exiting)
				runner = l.v[i];
		if (!runner)
			bp_restore_in(bp, p);	/* it is exiting: the bytes suffice */
		else if (bp_remove_all(bp, runner) < 0)
			error("process %d: some of ptleak's code could not be removed", p->pid);
	}
	for (size_t i = 0; i < l.n; i++) {
		struct thread *t = l.v[i];
		/* A job-stopped thread may have run our code since: the stop
		 * signal puts it back in its stop once we are gone. */
		detach_thread(t, t->group_stop ? t->group_stop_sig : t->pending_sig);
	}
	free(l.v);
	drop_process(tr, p);
}

/* Attach mode: stop everything, clean up, detach. */
static void leave(struct tracer *tr)
{
	for (size_t i = 0; i < tr->n_procs; i++) {
		struct thread_list l = threads_of(tr->procs[i]);
		for (size_t k = 0; k < l.n; k++)
			if (!l.v[k]->stopped)
				ptrace(PTRACE_INTERRUPT, l.v[k]->tid, 0, 0);
		free(l.v);
	}
	collect_stops(tr);
	/* Traced processes first: vfork children share their memory. */
	for (size_t i = tr->n_procs; i-- > 0;)
		if (tr->procs[i]->role == ROLE_TRACED)
			release(tr, tr->procs[i]);
	while (tr->n_procs)
		release(tr, tr->procs[0]);
	tr->left = true;
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
}

/*
 * Leaving, T reported an interrupt or job-control stop. If it is just past
 * one of our int3s, the SIGTRAP that int3 raised is still queued (traps of
 * PTRACE_INTERRUPT come first): let it run into that signal's stop, to be
 * handled, or it would kill the program once we are gone.
 */
static bool trap_pending(struct thread *t)
{
	struct process *p = t->proc;
	struct bpset *bp = p->role == ROLE_VFORK_CHILD && p->parent ? p->parent->bp : p->bp;
	struct user_regs_struct r;

	if (!bp || thread_getregs(t->tid, &r) < 0)
		return false;
	return bp_find(bp, r.rip - 1) || r.rip - 1 == bp_trampoline(bp);
}

void tracer_dispatch(struct tracer *tr, const struct event *ev)
{
	if (ev->kind == EV_LEAVE) {
		leave(tr);
		return;
	}
	if (ev->kind == EV_TICK) {
		if (tr->main->heap)
			report_interval(tr->main, tr->o);
		return;
	}
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
			resume(tr, t, ev->sig);
		break;
	case EV_GROUP_STOP:
		if (tr->draining && trap_pending(t)) {
			thread_resume(t, 0);
			break;
		}
		/* Stay stopped until SIGCONT, as without ptrace. */
		t->group_stop = true;
		t->group_stop_sig = ev->sig;
		if (tr->draining)
			break;
		keep_job_stopped(t);
		break;
	case EV_STOP:
		if (tr->draining && trap_pending(t)) {
			thread_resume(t, 0);
			break;
		}
		if (p->role == ROLE_DETACH) {
			detach_thread(t, 0);
			if (p->n_threads == 0)
				drop_process(tr, p);
		} else {
			/* A new thread's first stop: its thread pointer is set. */
			struct user_regs_struct r;
			if (!t->fs_base && thread_getregs(t->tid, &r) == 0)
				t->fs_base = r.fs_base;
			resume(tr, t, 0);
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
		resume(tr, t, 0);
		break;
	case EV_EXEC:
		on_exec(tr, t, ev);
		break;
	case EV_EXIT:
		on_exit_stop(tr, t);
		break;
	case EV_LEAVE:
	case EV_TICK:
		break;
	}
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
	free(tr);
	current = NULL;
	return rc;
}
