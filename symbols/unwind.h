#ifndef PTLEAK_UNWIND_H
#define PTLEAK_UNWIND_H
/*
 * unwind: remote stack unwinding behind one backend table, so that a
 * second backend (libdw's dwfl_getthread_frames) can sit beside the
 * libunwind one and be chosen at build time, as strace does.
 *
 * The unwinder is called while thread TID is stopped at an allocator's
 * entry, with the registers the tracer already fetched. It must be fast:
 * it runs once per traced allocation. Memory is read with
 * process_vm_readv in whole pages; stack pages are cached only for one
 * backtrace, read-only file-backed pages (code, .eh_frame) across calls.
 * Unwind tables are cached per module.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

struct symbols;
struct unwinder;

/*
 * A backend: one const instance, unwind_backend, defined by the one
 * backend file the build links (symbols/unwind_libunwind.c today; a libdw
 * one would define the same symbol in its own file), the way strace's
 * src/unwind.h does it. The unwinder_*() calls below go through it.
 */
struct unwind_backend {
	const char *name;
	/* NULL on error (errno set; the message is the caller's job). */
	struct unwinder *(*create)(pid_t pid, struct symbols *syms);
	void (*destroy)(struct unwinder *u);
	/* Forget cached tables and pages: modules changed (dlopen, dlclose). */
	void (*flush)(struct unwinder *u);
	/*
	 * Fill PCS with up to MAX program counters, innermost first: pcs[0] is
	 * regs->rip, the others are return addresses. Returns the number of
	 * frames (at least 1 when max >= 1); never fails: it stops at the
	 * first frame it cannot unwind.
	 */
	int (*backtrace)(struct unwinder *u, pid_t tid, const struct user_regs_struct *regs,
			 uint64_t *pcs, int max);
	/*
	 * The same, and the registers of each frame in FRAMES[0..n) (the
	 * innermost: *REGS; the others: rip, rsp and the callee-saved rbx,
	 * rbp, r12-r15 as they were in that frame, the rest zero): what a
	 * frame still holds when a function it called never returns (exit).
	 */
	int (*backtrace_regs)(struct unwinder *u, pid_t tid, const struct user_regs_struct *regs,
			      uint64_t *pcs, struct user_regs_struct *frames, int max);
	/*
	 * Read LEN bytes of the tracee at ADDR through the pages the last
	 * backtrace read (no syscall when they hold ADDR): valid only while
	 * that thread is still stopped. 0, or -1 if unreadable.
	 */
	int (*read)(struct unwinder *u, uint64_t addr, void *buf, size_t len);
};

extern const struct unwind_backend unwind_backend;

static inline struct unwinder *unwinder_new(pid_t pid, struct symbols *syms)
{
	return unwind_backend.create(pid, syms);
}

static inline void unwinder_free(struct unwinder *u)
{
	unwind_backend.destroy(u);
}

static inline void unwinder_flush(struct unwinder *u)
{
	unwind_backend.flush(u);
}

static inline int unwinder_backtrace(struct unwinder *u, pid_t tid,
				     const struct user_regs_struct *regs, uint64_t *pcs, int max)
{
	return unwind_backend.backtrace(u, tid, regs, pcs, max);
}

static inline int unwinder_backtrace_regs(struct unwinder *u, pid_t tid,
					  const struct user_regs_struct *regs, uint64_t *pcs,
					  struct user_regs_struct *frames, int max)
{
	return unwind_backend.backtrace_regs(u, tid, regs, pcs, frames, max);
}

static inline int unwinder_read(struct unwinder *u, uint64_t addr, void *buf, size_t len)
{
	return unwind_backend.read(u, addr, buf, len);
}

#endif
