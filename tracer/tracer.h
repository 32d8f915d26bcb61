#ifndef PTLEAK_TRACER_H
#define PTLEAK_TRACER_H
/*
 * tracer: the event loop. Every waitpid status is sorted into one enum
 * event in one place (tracer_next_event); tracer_dispatch switches on it.
 *
 *     tr = opts.pid ? tracer_attach(&opts) : tracer_launch(&opts);
 *     while (tracer_next_event(tr, &ev))
 *             tracer_dispatch(tr, &ev);
 *     return tracer_finish(tr);
 */
#include <stdbool.h>
#include <sys/types.h>

#include "tracer/options.h"

enum event_kind {
	EV_EXITED,		/* a thread is gone (WIFEXITED / WIFSIGNALED) */
	EV_TRAP,		/* SIGTRAP: our int3, or the program's own */
	EV_SIGNAL,		/* signal-delivery-stop */
	EV_GROUP_STOP,		/* job control stop (PTRACE_EVENT_STOP + stop signal) */
	EV_STOP,		/* PTRACE_EVENT_STOP: new tracee, interrupt */
	EV_CLONE,		/* new thread; msg = its tid */
	EV_FORK,		/* new process; msg = its pid */
	EV_VFORK,
	EV_VFORK_DONE,
	EV_EXEC,		/* msg = the tid that called execve */
	EV_EXIT,		/* PTRACE_EVENT_EXIT: about to exit, memory still there */
	EV_LEAVE,		/* attach mode: SIGINT/SIGTERM or --duration: detach */
	EV_TICK,		/* --interval elapsed */
	EV_CHECK,		/* SIGUSR1: a leak check now */
};

struct event {
	enum event_kind kind;
	pid_t tid;
	int status;		/* raw wait status */
	int sig;		/* WSTOPSIG or terminating signal */
	unsigned long msg;	/* PTRACE_GETEVENTMSG */
};

struct tracer;

/* Start O->program (resolved by launch_resolve) with O->argv; dies on
 * failure (125, or 126/127 when execve fails). */
struct tracer *tracer_launch(const struct options *o);

/* Attach to every thread of process O->pid and hook its allocator; dies
 * with one clear line (125) if it cannot. */
struct tracer *tracer_attach(const struct options *o);

/* Wait for the next event. false when nothing is left to trace. */
bool tracer_next_event(struct tracer *tr, struct event *ev);

void tracer_dispatch(struct tracer *tr, const struct event *ev);

/* Write the reports; returns ptleak's exit status. */
int tracer_finish(struct tracer *tr);

#endif
