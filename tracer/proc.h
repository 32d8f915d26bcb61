#ifndef PTLEAK_PROC_H
#define PTLEAK_PROC_H
/*
 * proc: traced processes and their threads, and the primitive ptrace
 * operations on them: registers, memory, resuming, and running one
 * syscall inside the tracee.
 *
 * Memory is read with process_vm_readv (one syscall for any length) and
 * written through /proc/PID/mem, which can write read-only code mappings
 * (process_vm_writev cannot).
 *
 * Errors: -1 with errno set, unless said otherwise.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "tracer/heap.h"
#include "tracer/source.h"

struct allocdb;
struct frames;
struct scan_result;
struct symbols;
struct unwinder;
struct mmaps;

/* One outermost allocator call in flight on a thread: its return address
 * on the stack was replaced by the trampoline's. */
struct shadow {
	uint64_t rsp;		/* where the return address lives */
	uint64_t ret;		/* the real return address */
	enum alloc_call call;
	uint64_t args[3];
	uint32_t stack_id;
	bool region;		/* an allocator's own mmap/mremap/sbrk (hooks.h) */
};

struct process;

struct thread {
	pid_t tid;
	struct process *proc;
	struct shadow *shadow;
	size_t n_shadow, cap_shadow;
	int pending_sig;	/* to deliver at the next resume */
	bool exiting;		/* reached PTRACE_EVENT_EXIT */
	uint64_t fs_base;	/* its thread pointer (glibc: the TCB), 0 unknown */
	uint64_t exit_sp;	/* its stack pointer at its exit event, 0 unknown */
	bool at_exit;		/* stopped entering _exit: the process ends */
	struct user_regs_struct exit_frame;	/* then: the registers of the
						 * frame that called exit() */
	bool stopped;		/* in a ptrace stop we have not resumed */
	bool group_stop;	/* that stop is a job-control stop */
	int group_stop_sig;	/* and the signal that stopped it */
	bool ran;		/* crash path: resumed for a moment by us */
};

enum proc_role {
	ROLE_TRACED,		/* the program: allocations recorded */
	ROLE_VFORK_CHILD,	/* shares the parent's memory until exec/exit */
	ROLE_DETACH,		/* forked child, cleaned, detach at first stop */
};

struct process {
	pid_t pid;
	pid_t ppid;		/* its parent's pid, for the reports */
	enum proc_role role;
	int memfd;		/* /proc/PID/mem, -1 if not open */
	struct process *parent;	/* for ROLE_VFORK_CHILD: whose memory it shares */
	size_t n_threads;	/* known, not yet reaped */
	unsigned untraced_children;	/* forks not followed (no -f), for the report */
	bool exec_seen;		/* the program image is the one to trace */
	/* what we know of the program being traced */
	char **argv;
	struct allocdb *db;	/* blocks and stacks; NULL before an image */
	struct symbols *syms;
	struct unwinder *unw;
	void *source_state[SOURCES_MAX];	/* source.h: source_state() */
	int exit_status;	/* wait status when reaped, -1 before */
	bool attached;		/* -p: traced since attach_ns, not from exec */
	uint64_t attach_ns;
	/* -p: the blocks live at the attach were read from the allocator
	 * (preattach.h) and are in the heap; else why not. */
	bool before_known;
	char before_why[192];
	uint64_t before_read_ns;	/* how long reading them kept the program stopped */
	const char *before_allocator;	/* whose heap they were read from: "glibc", "musl" */
	bool argv_owned;	/* argv read from /proc (exec, fork): ours to free */
	struct frames *frames;	/* symbolized frames of the stacks */
	/* loop.c's idle work: the next frame (stack id, index) whose module
	 * is to be prepared for the report (symbols_prepare). */
	uint32_t prep_stack, prep_frame;
	bool reported;
	struct scan_result *scan;	/* leak kinds, once the memory is final */
	/* Exited threads: glibc caches their stacks, TCB and DTV included,
	 * for the next thread. Their thread pointers serve the DTV
	 * heuristic; their thread pointer and last stack pointer tell the
	 * scan which mappings are dead stacks (scan.h). */
	struct past_thread {
		uint64_t tp, sp;	/* 0: unknown */
	} past[256];
	unsigned n_past;	/* entries written, ring */
};

/* Thread registry across all processes. */
struct thread *thread_find(pid_t tid);
struct thread *thread_add(struct process *p, pid_t tid);
void thread_remove(struct thread *t);
/* Call fn for every thread of P. */
void thread_foreach(struct process *p, void (*fn)(struct thread *, void *), void *arg);

struct process *process_new(pid_t pid, enum proc_role role);
void process_free(struct process *p);
/* (Re)open /proc/PID/mem; after an exec the old descriptor is useless. */
int process_open_mem(struct process *p);

int proc_read(struct process *p, uint64_t addr, void *buf, size_t len);
int proc_write(struct process *p, uint64_t addr, const void *buf, size_t len);
int proc_read_u64(struct process *p, uint64_t addr, uint64_t *out);

int thread_getregs(pid_t tid, struct user_regs_struct *regs);
int thread_setregs(pid_t tid, const struct user_regs_struct *regs);
/* PTRACE_CONT with the thread's pending signal (then cleared) or SIG. */
int thread_resume(struct thread *t, int sig);

/*
 * Resume T (in a ptrace stop) until it stops on an int3 whose next
 * instruction is at STOP_RIP; its registers then go to *REGS. On the way,
 * other signals are kept in pending_sig (a SIGTRAP elsewhere is the
 * program's own) and event stops (a pending PTRACE_INTERRUPT) absorbed.
 * 0, or -1 if the thread vanished.
 */
int thread_run_to_trap(struct thread *t, uint64_t stop_rip, struct user_regs_struct *regs);

/*
 * Run syscall NR with ARGS in thread TID, which is in a ptrace stop, by
 * pointing its rip at GADGET (a `syscall; int3` sequence in the tracee)
 * and restoring every register afterwards. Signals arriving meanwhile are
 * kept in the thread's pending_sig. Returns the syscall's return value
 * in *RET (a -errno value on failure). -1 if the thread vanished.
 */
int thread_inject_syscall(struct thread *t, uint64_t gadget, long nr,
			  const uint64_t args[6], int64_t *ret);

/* Put a syscall's six arguments in their registers (rdi, rsi, rdx, r10,
 * r8, r9), with orig_rax = -1 so that no syscall-restart logic applies to
 * the code about to run. */
void regs_set_syscall_args(struct user_regs_struct *r, const uint64_t args[6]);

/* Push/pop a shadow frame of T. */
struct shadow *thread_push_shadow(struct thread *t);

#endif
