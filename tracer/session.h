#ifndef PTLEAK_SESSION_H
#define PTLEAK_SESSION_H
/*
 * session: the tracer's own state, shared by the files of the event loop
 * (tracer.h is the public contract):
 *   loop.c     waiting, sorting statuses into events, draining the
 *              sources, dispatching, and applying each handler's restart;
 *   attach.c   attaching (-p), leaving, the emergency restore, signals;
 *   lifecycle.c processes and threads coming and going: exec, fork,
 *              clone, exit.
 *
 * The loop is flat: a handler only decides how its thread resumes (a
 * struct restart, after strace's restart_op / restart_sig) and
 * tracer_dispatch applies it once, at the end. Attaching and leaving are
 * states of the loop: while in them, a thread that would be continued is
 * held in its stop instead (its signal kept for later), and when every
 * thread is stopped (or 3 s have passed) the state's work is done.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tracer/options.h"
#include "tracer/tracer.h"
#include "tracer/waiter.h"

struct process;
struct thread;
struct user_regs_struct;
struct scan_thread;

enum loop_state {
	LOOP_ATTACHING,		/* -p: collecting every thread's first stop */
	LOOP_TRACING,
	LOOP_LEAVING,		/* collecting stops to detach */
	LOOP_CHECKING,		/* a leak check on demand: collecting stops to scan */
	LOOP_EXITING,		/* a thread entered _exit: collecting its
				 * process's stops for the scan */
	LOOP_HOOKING,		/* the probe's r_brk: collecting its process's
				 * stops to hook new modules with jumps */
	LOOP_DONE,		/* left: nothing more to wait for */
};

enum restart_op {
	RESTART_NONE,		/* nothing to do: the thread is gone */
	RESTART_CONT,		/* PTRACE_CONT with sig (or its pending signal);
				 * attaching or leaving: held in its stop */
	RESTART_RUN,		/* PTRACE_CONT even then: a trap is still queued */
	RESTART_LISTEN,		/* stay in the job-control stop */
	RESTART_DETACH,		/* PTRACE_DETACH with sig */
};

struct restart {
	enum restart_op op;
	int sig;
};

#define RESUME(s) ((struct restart){ RESTART_CONT, (s) })
#define DETACH(s) ((struct restart){ RESTART_DETACH, (s) })
#define LISTEN ((struct restart){ RESTART_LISTEN, 0 })
#define GONE ((struct restart){ RESTART_NONE, 0 })

struct tracer {
	const struct options *o;
	struct process *main;
	struct process **procs;
	size_t n_procs, cap_procs;
	/* Stops of tids whose creation event has not arrived yet. */
	pid_t *early;
	size_t n_early, cap_early;
	bool hook_failed;	/* a process was let go untraced: exit 125 */
	bool attach;
	enum loop_state state;
	uint64_t state_deadline_ns;	/* attaching/leaving: give up waiting then */
	bool die_after_leave;	/* leaving because attaching failed */
	bool left;		/* attach mode: detached cleanly */
	uint64_t deadline_ns;	/* --duration, 0 = none */
	uint64_t next_tick_ns;	/* --interval, 0 = none */
	uint64_t check_start_ns;	/* LOOP_CHECKING: when the stops were asked for */
	struct thread *exiting;	/* LOOP_EXITING: the thread in _exit */
	pid_t hooking;		/* LOOP_HOOKING: the thread at r_brk */
	int (*hooking_work)(struct thread *t);	/* and what to do then */
	struct waiter waiter;	/* the one wait for the next stop */
	/* Idle work (loop.c): the last round's last event sequence number,
	 * and how many rounds in a row found few events. */
	uint64_t idle_seq;
	unsigned quiet_rounds;
	/* -p: readings of the heap from before the attach that found it half
	 * updated, each followed by a moment of running (attach.c). */
	unsigned attach_retries;
};

extern struct tracer *tracer_current;	/* for signal handlers and atexit */

/* loop.c */
/* Apply R to thread T (which may be another than the event's). */
void restart_apply(struct tracer *tr, struct thread *t, struct restart r);
/* Enter LOOP_ATTACHING or LOOP_LEAVING: wait up to 3 s for every stop. */
void loop_collect_stops(struct tracer *tr, enum loop_state state);
/* Every traced process's events into its database (see loop.c). */
void loop_drain(struct tracer *tr);

/* attach.c */
void attach_finish(struct tracer *tr);	/* every thread stopped: hook, resume */
void leave_begin(struct tracer *tr);	/* EV_LEAVE: stop every thread */
void leave_finish(struct tracer *tr);	/* every thread stopped: clean, detach */

/* Interrupt every running thread of every process (leaving, checking). */
void interrupt_all(struct tracer *tr);
/* Every held thread of every process goes on (LOOP_TRACING again; a
 * job-stopped one stays in its stop). */
void resume_all(struct tracer *tr);
/* What the scan needs of P's stopped threads (stopped_scan_state), in a
 * new array; *N their count. */
struct scan_thread *regs_of_threads(struct process *p, size_t *n);

/* live.c */
/* A process to check: one traced with its program's image (a check asked
 * before there is one waits for it). */
bool check_ready(const struct tracer *tr);
void check_begin(struct tracer *tr);	/* EV_CHECK: stop every thread */
void check_finish(struct tracer *tr);	/* every thread stopped: scan, resume, report */

/* lifecycle.c */
void add_process(struct tracer *tr, struct process *p);
struct process *find_process(struct tracer *tr, pid_t pid);
void drop_process(struct tracer *tr, struct process *p);
void release_process(struct process *p);
int setup_image(struct tracer *tr, struct thread *t, bool loaded);
void scan_now(struct process *p, const struct scan_thread *th, size_t n);
/* What the scan needs of thread U, in a stop of ours (interrupted where
 * it was): its registers, vector ones too, and its stack from rsp down
 * to the red zone. 0, or -1 if it is gone. */
int stopped_scan_state(struct thread *u, struct scan_thread *out);
/*
 * T's trap was at _exit (hooks.c set t->at_exit): the process is about to
 * end, and unlike at its exit event every thread is still there. Begin
 * LOOP_EXITING: interrupt T's process's other threads, so that the scan
 * has every live thread's registers and stack pointer, as valgrind and
 * LeakSanitizer do; T's own stack counts from the frame that called
 * exit() (t->exit_frame), the exit path's frames are no root. false if
 * there is nothing to scan (T is held in its stop otherwise).
 */
bool exit_begin(struct tracer *tr, struct thread *t);
bool exit_stopped(struct tracer *tr);	/* every thread of its process is */
/* Scan, then let the exiting thread go on: exit_group kills the others
 * where they are held. */
void exit_finish(struct tracer *tr);
/*
 * T, stopped, asked through the probe at ld.so's r_brk (fast.c): the
 * modules changed, and new allocator entries get the probe's jump only
 * with every thread of the process stopped (else an int3, which would
 * kill the program after a kill -9 of ptleak, and costs a stop per call).
 * If other threads of T's process run: begin LOOP_HOOKING, interrupting
 * them, T held; modules_finish runs WORK(T) with all of them stopped and
 * resumes everyone. false if T is alone (or the loop is busy): T is not
 * held, the caller does the work.
 */
bool modules_begin(struct tracer *tr, struct thread *t, int (*work)(struct thread *t));
bool modules_stopped(struct tracer *tr);	/* every thread of its process is */
void modules_finish(struct tracer *tr);

/* Report P, scanning it first if its memory was never seen final (it
 * was killed, or vanished): then every block counts as definitely lost. */
void report_now(struct tracer *tr, struct process *p);
struct thread *adopt(struct tracer *tr, const struct event *ev);
struct restart on_exec(struct tracer *tr, struct thread *t, const struct event *ev);
struct restart on_fork(struct tracer *tr, struct thread *t, const struct event *ev);
struct restart on_clone(struct tracer *tr, struct thread *t, const struct event *ev);
struct restart on_exit_stop(struct tracer *tr, struct thread *t);
struct restart on_exited(struct tracer *tr, struct thread *t, const struct event *ev);

/* Every thread of P, in a new array (caller frees *V). */
struct thread_list {
	struct thread **v;
	size_t n, cap;
};
struct thread_list threads_of(struct process *p);

#endif
