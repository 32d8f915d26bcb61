#ifndef PTLEAK_SOURCE_H
#define PTLEAK_SOURCE_H
/*
 * source: where allocation events come from. Each event source is one
 * table of operations (struct source_ops) and one line in sources[]
 * (source.c); the tracer never calls a source by name, only through the
 * sources_*() calls below, which run the operation of every source that
 * has it, in table order. The ptrace breakpoints (hooks.c, source_ptrace)
 * are the first source.
 *
 * The flow: a source turns what the program did into struct alloc_event
 * and records it in the process's database (allocdb.h), either at once
 * (the ptrace source, at its stops) or later, when the event loop drains
 * it: the loop calls sources_drain() for every traced process before it
 * handles anything else (a ptrace event, a scan, a fork, an exec, a
 * detach, an interval tick, a leak check), so the database is never
 * behind the program.
 *
 * A source keeps its per-process state behind source_state(); it must
 * not touch the event loop, resume or detach threads: the loop does that.
 * Every operation may be NULL.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/user.h>

struct process;
struct thread;

enum trap_verdict {
	TRAP_NOT_OURS,		/* not this source's trap */
	TRAP_HANDLED,		/* its registers are set where it continues */
	TRAP_FAILED,		/* ours, but its state is lost (message printed) */
};

struct source_ops {
	const char *name;
	/*
	 * P's image is set up (memory, symbols, unwinder, database): start
	 * producing events. T is a stopped thread of P and no other thread
	 * of P runs. LOADED: every library is mapped already (attach);
	 * false at an exec stop, where only ld.so is. 0, or -1 with a message
	 * printed: P cannot be traced.
	 */
	int (*arm)(struct process *p, struct thread *t, bool loaded);
	/* Record in P->db everything produced since the last call. 0 or -1. */
	int (*drain)(struct process *p);
	/* The same when P's memory is final (its exit, or it vanished): what
	 * a killed thread left unfinished is given up. 0 or -1. */
	int (*drain_final)(struct process *p);
	/* Whether this source produces events for P without a ptrace stop:
	 * then the loop does not block in waitpid but calls wait. */
	bool (*polling)(struct process *p);
	/* Sleep up to US microseconds, or until this source has something
	 * for one of PROCS[0..N) (a SIGCHLD ends it too). */
	void (*wait)(struct process *const *procs, size_t n, long us);
	/*
	 * Thread T stopped with SIGTRAP, REGS its registers. LEAVING: ptleak
	 * is detaching: record nothing, put T where it would be without us.
	 */
	enum trap_verdict (*on_trap)(struct thread *t, struct user_regs_struct *regs,
				     bool leaving);
	/* Leaving, T reported another stop: whether a trap of this source
	 * is still queued for it (the loop lets it run into that stop). */
	bool (*trap_queued)(struct thread *t);
	/*
	 * Thread T of PARENT forked CHILD (its memory a copy of PARENT's).
	 * FOLLOW: CHILD is traced, with a copy of PARENT's database; else it
	 * is about to be detached: leave nothing of this source in it. A
	 * vfork child (child->role ROLE_VFORK_CHILD) runs on PARENT's own
	 * memory, T blocked, until it execs or exits (vfork_done); nothing
	 * it does is PARENT's.
	 */
	void (*fork_child)(struct process *parent, struct process *child,
			   struct thread *t, bool follow);
	/* T's vfork child has exec'd or exited: T runs on (its vfork-done
	 * stop, before it returns from vfork). */
	void (*vfork_done)(struct thread *t);
	/* Leaving P, its threads THREADS[0..N) all stopped: take everything
	 * of this source out of P's memory and registers. 0 or -1. */
	int (*leave)(struct process *p, struct thread *const *threads, size_t n);
	/*
	 * ptleak is dying while attached (a fatal signal, die()): with
	 * syscalls only (a signal handler), undo this source in P's memory;
	 * then, for each of P's threads once it is stopped, in its registers.
	 */
	void (*emergency)(struct process *p);
	void (*emergency_thread)(struct thread *t);
	/* Then, every thread of P stopped and RUNNER one that can run code:
	 * unmap what this source mapped, if no thread is inside it. */
	void (*emergency_unmap)(struct process *p, struct thread *runner);
	/* P's image is gone (exec, exit, detach): free this source's state. */
	void (*release)(struct process *p);
};

#define SOURCES_MAX 4

/* Every source, in the order they run; NULL-terminated (source.c). */
extern const struct source_ops *const sources[];

/* Where source OPS keeps its state for process P (NULL until it sets it). */
void **source_state(struct process *p, const struct source_ops *ops);

/* The tracer's calls: every source's operation, in table order. */
int sources_arm(struct process *p, struct thread *t, bool loaded);	/* first -1 */
int sources_drain(struct process *p);
int sources_drain_final(struct process *p);
/* Whether some source of some process of PROCS needs the loop polling;
 * sources_wait sleeps in every source that does, US at most. */
bool sources_polling(struct process *const *procs, size_t n);
void sources_wait(struct process *const *procs, size_t n, long us);
/* The first verdict other than TRAP_NOT_OURS. */
enum trap_verdict sources_on_trap(struct thread *t, struct user_regs_struct *regs,
				  bool leaving);
bool sources_trap_queued(struct thread *t);
void sources_fork_child(struct process *parent, struct process *child,
			struct thread *t, bool follow);
void sources_vfork_done(struct thread *t);
int sources_leave(struct process *p, struct thread *const *threads, size_t n);
void sources_emergency(struct process *p);
void sources_emergency_thread(struct thread *t);
void sources_emergency_unmap(struct process *p, struct thread *runner);
void sources_release(struct process *p);

#endif
