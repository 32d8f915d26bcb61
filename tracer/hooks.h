#ifndef PTLEAK_HOOKS_H
#define PTLEAK_HOOKS_H
/*
 * hooks: the allocator's entry points, and what a stop at one of them
 * means. This is the ptrace event producer: it turns breakpoint stops into
 * struct alloc_event for the heap (heap.h), the one interface a future
 * in-tracee probe would feed too.
 *
 * Entry of an outermost allocating call: the stack is unwound and
 * interned, the return address at [rsp] is swapped for the trampoline's
 * and remembered on the thread's shadow stack. Return (trampoline hit):
 * the result is in rax (posix_memalign: in *memptr), the event is
 * recorded, and rip goes to the real return address. free is recorded at
 * entry and needs no return hook. Calls made while the thread is inside
 * another hooked call (realloc(NULL, n) calling malloc inside libc, musl's
 * calloc calling malloc) are nested and not recorded.
 */
#include <sys/user.h>

struct process;
struct thread;
struct site;

/* Arm a breakpoint on every allocator entry point found in P's modules
 * (and, if P is dynamic, ld.so's r_brk). T is a stopped thread of P.
 * Returns the number of allocator sites armed, -1 on error. */
int hooks_arm(struct process *p, struct thread *t, unsigned generation);

/*
 * Thread T of the process owning the breakpoints stopped at site S
 * (rip already rewound to the site). Handles it and sets REGS->rip where
 * the thread must continue. Returns 0, or -1 if the module list changed
 * and re-arming failed (a message was printed).
 */
int hooks_on_site(struct thread *t, struct site *s, struct user_regs_struct *regs);

/* T hit the return trampoline: record the result, set REGS->rip to the
 * real return address. -1 if T has no call in flight (a ptleak bug). */
int hooks_on_return(struct thread *t, struct user_regs_struct *regs);

/* Frames kept per stack (--num-callers). */
extern int hooks_num_callers;

#endif
