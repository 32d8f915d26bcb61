#ifndef PTLEAK_HOOKS_H
#define PTLEAK_HOOKS_H
/*
 * hooks: the ptrace event source (source.h): the allocator's entry points,
 * and what a stop at one of them means. It turns breakpoint stops into
 * struct alloc_event for the process's database (allocdb.h), at the stop
 * itself, so it needs no drain.
 *
 * Entry of an outermost allocating call: the stack is unwound and
 * interned, the return address at [rsp] is swapped for the trampoline's
 * and remembered on the thread's shadow stack. Return (trampoline hit):
 * the result is in rax (posix_memalign: in *memptr), the event is
 * recorded, and rip goes to the real return address. free is recorded at
 * entry and needs no return hook. Calls made while the thread is inside
 * another hooked call (realloc(NULL, n) calling malloc inside libc, musl's
 * calloc calling malloc) are nested and not recorded: so is glibc's
 * malloc calling mmap for a big chunk, which is the allocator's memory.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tracer/heap.h"
#include "tracer/source.h"

extern const struct source_ops source_ptrace;

/* The source's operations (source.h). Its
 * state: per program image, the breakpoints (breakpoint.h), ld.so's
 * _r_debug and the module list's generation, behind source_state();
 * per thread, the shadow stack of calls in flight (proc.h). */

/*
 * The events of one allocator call, as this source makes them from the
 * call's first three arguments ARGS (rdi, rsi, rdx) and its result RAX;
 * pure functions, so the conformance test (tests/unit/heap_test.c) feeds
 * exactly what a traced program would. At entry: free's OP_FREE, realloc's
 * OP_REALLOC_ENTER (false: the call has no entry event). At return: the
 * allocation or OP_REALLOC_EXIT (false for free); posix_memalign's pointer
 * is in *memptr, read by the caller into ev->ptr when RAX is 0.
 */
bool hooks_entry_event(enum alloc_call call, pid_t tid, const uint64_t args[3],
		       struct alloc_event *ev);
bool hooks_return_event(enum alloc_call call, pid_t tid, const uint64_t args[3],
			uint64_t rax, uint32_t stack_id, struct alloc_event *ev);

/* --track-mmap: a call of mmap, mremap or munmap made outside the
 * allocator (ARGS its first three arguments, RAX its result; munmap's
 * at its entry, STACK_ID mmap's stack), applied to P's regions
 * (mmaps.h): an anonymous mmap maps one, an mremap of a tracked region
 * moves it, munmap cuts. For both sources. */
void hooks_mmap_event(struct process *p, enum alloc_call call, const uint64_t args[3],
		      uint64_t rax, uint32_t stack_id);

/* The dynamic linker's module list may have changed (T stopped at its
 * r_brk, or told so by the probe): hook what is new, forget what is gone.
 * 0 or -1 (message printed). */
int hooks_modules_changed(struct thread *t);

/* T entered _exit at ADDR, REGS its registers there (an int3, or the
 * probe's request): the process ends. Sets t->at_exit and t->exit_frame,
 * the frame that called exit(), for the scan (session.h's exit_begin). */
struct user_regs_struct;
void hooks_at_exit(struct thread *t, uint64_t addr, const struct user_regs_struct *regs);

/* Whether P's module list is consistent (ld.so's r_state): a change
 * hooks_modules_changed would act on, not one half made. */
bool hooks_modules_settled(struct process *p);

/* Frames kept per stack (--num-callers). */
extern int hooks_num_callers;
/* --track-mmap: hook mmap, mremap and munmap too; anonymous regions the
 * program maps outside its allocator go to its mmaps (mmaps.h). */
extern bool hooks_track_mmap;
/* --mode=fast: the probe takes the sites it can (fast.h). */
extern bool hooks_fast;

/*
 * A program whose allocator is not the C library's (a shared object other
 * than libc defining malloc or an allocator's own API: jemalloc,
 * tcmalloc, mimalloc; or such an API linked into the program): mmap,
 * mremap, munmap and sbrk are hooked too, and the anonymous memory the
 * allocator maps for itself goes to P's allocdb.alloc_regions: what such
 * a call returns when it is made inside a recorded allocator call, or
 * from the allocator's own shared object (its return address there). The
 * leak scan takes none of it, nor the allocator objects' own data and
 * bss, as a root: these hold the allocator's caches of freed blocks and
 * its metadata, pointers to blocks that are not the program's. And the
 * first word of every block such an allocator hands out (but realloc's
 * and strdup's) is zeroed at the return, before the program has it:
 * mimalloc and tcmalloc leave their free list's link there.
 *
 * The address ranges of those shared objects (data and bss included),
 * up to MAX into OUT; their count.
 */
struct symbols_range;
size_t hooks_alloc_modules(struct process *p, struct symbols_range *out, size_t max);

/* A foreign allocator's own mmap (ARGS: addr, len), mremap (old, old
 * len, new len) or sbrk (increment) returned RAX: P's alloc_regions get
 * it (the probe's PROBE_OP_REGION comes here too). */
void hooks_region_event(struct process *p, enum alloc_call call, const uint64_t args[3],
			uint64_t rax);

/* The sites and code pages of P's ptrace source (NULL before it armed):
 * the probe's jump sites live there too. */
struct bpset *hooks_bpset(struct process *p);

#endif
