/*
 * hooks: allocator entry/return handling (see hooks.h).
 */
#include "tracer/hooks.h"

#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#include "symbols/symbols.h"
#include "symbols/unwind.h"
#include "tracer/breakpoint.h"
#include "tracer/frames.h"
#include "tracer/heap.h"
#include "tracer/proc.h"
#include "tracer/stacks.h"
#include "tracer/util.h"

int hooks_num_callers = 12;

/* Names looked up, first name wins when several share an address
 * (glibc: malloc and __libc_malloc; aligned_alloc and memalign). */
static const struct {
	const char *name;
	enum alloc_call call;
} entry_points[] = {
	{ "malloc", CALL_MALLOC },
	{ "free", CALL_FREE },
	{ "calloc", CALL_CALLOC },
	{ "realloc", CALL_REALLOC },
	{ "reallocarray", CALL_REALLOCARRAY },
	{ "posix_memalign", CALL_POSIX_MEMALIGN },
	{ "aligned_alloc", CALL_ALIGNED_ALLOC },
	{ "memalign", CALL_MEMALIGN },
	{ "valloc", CALL_VALLOC },
	{ "pvalloc", CALL_PVALLOC },
	/* Internal names: glibc aliases, musl's entry points that internal
	 * libc code calls without going through malloc. */
	{ "__libc_malloc", CALL_MALLOC },
	{ "__libc_free", CALL_FREE },
	{ "__libc_calloc", CALL_CALLOC },
	{ "__libc_realloc", CALL_REALLOC },
	{ "__libc_memalign", CALL_MEMALIGN },
	{ "__libc_valloc", CALL_VALLOC },
	{ "__libc_pvalloc", CALL_PVALLOC },
	{ "__posix_memalign", CALL_POSIX_MEMALIGN },
	{ "__libc_malloc_impl", CALL_MALLOC },
	{ "__libc_realloc_impl", CALL_REALLOC },
	{ "__libc_free_impl", CALL_FREE },
};

struct arm_ctx {
	struct thread *t;
	unsigned generation;
	int armed, failed;
};

static void arm_one(void *arg, const char *name, uint64_t addr, const char *module)
{
	struct arm_ctx *c = arg;

	for (size_t i = 0; i < ARRAY_SIZE(entry_points); i++) {
		if (strcmp(entry_points[i].name, name))
			continue;
		debug("hook %s at 0x%" PRIx64 " in %s", name, addr, module);
		if (bp_add(c->t->proc->bp, c->t, addr, SITE_ALLOC,
			   entry_points[i].call, c->generation) == 0)
			c->armed++;
		else
			c->failed++;
		return;
	}
}

int hooks_arm(struct process *p, struct thread *t, unsigned generation)
{
	const char *names[ARRAY_SIZE(entry_points)];
	struct arm_ctx c = { .t = t, .generation = generation };

	for (size_t i = 0; i < ARRAY_SIZE(entry_points); i++)
		names[i] = entry_points[i].name;
	if (symbols_find_functions(p->syms, names, ARRAY_SIZE(names), arm_one, &c) < 0) {
		error("cannot read the symbols of process %d: %s", p->pid,
		      symbols_errmsg(p->syms));
		return -1;
	}
	bp_prune(p->bp, generation);
	return c.armed;
}

/* The module list changed (dlopen/dlclose): hook what is new. */
static int on_rbrk(struct thread *t)
{
	struct process *p = t->proc;
	int32_t state = -1;

	if (p->r_debug && proc_read(p, p->r_debug + offsetof(struct r_debug, r_state),
				    &state, sizeof(state)) == 0 && state != RT_CONSISTENT)
		return 0;
	if (symbols_refresh(p->syms) < 0) {
		error("cannot refresh the modules of process %d: %s", p->pid,
		      symbols_errmsg(p->syms));
		return -1;
	}
	frames_freeze_unmapped(p->frames, p->syms, p->stacks);
	unwinder_flush(p->unw);
	return hooks_arm(p, t, ++p->generation) < 0 ? -1 : 0;
}

static void record(struct process *p, const struct alloc_event *ev)
{
	heap_record(p->heap, ev);
}

int hooks_on_site(struct thread *t, struct site *s, struct user_regs_struct *regs)
{
	struct process *p = t->proc;
	uint64_t pcs[64];

	regs->rip = s->slot;
	if (s->kind == SITE_RBRK)
		return p->role == ROLE_TRACED ? on_rbrk(t) : 0;
	if (p->role != ROLE_TRACED || t->n_shadow > 0)
		return 0;	/* a vfork child, or a nested call */

	enum alloc_call call = (enum alloc_call)s->call;
	if (call == CALL_FREE) {
		struct alloc_event ev = {
			.op = OP_FREE, .call = call, .tid = t->tid, .ptr = regs->rdi,
		};
		record(p, &ev);
		return 0;
	}

	/* Unwind from the entry, before the return address is swapped. */
	struct user_regs_struct at_entry = *regs;
	at_entry.rip = s->addr;
	int n = unwinder_backtrace(p->unw, t->tid, &at_entry, pcs,
				   hooks_num_callers < 64 ? hooks_num_callers : 64);
	uint32_t stack_id = stacks_intern(p->stacks, pcs, n > 0 ? (size_t)n : 0);

	/* The return address, from the stack pages the unwinder just read.
	 * The shadow frame exists before the stack points at the trampoline:
	 * an emergency detach in between must find it. */
	uint64_t ret, tramp = bp_trampoline(p->bp);
	if (unwinder_read(p->unw, regs->rsp, &ret, sizeof(ret)) < 0) {
		error("cannot read the return address of %s in thread %d: %s",
		      alloc_call_name(call), t->tid, strerror(errno));
		return 0;	/* this call goes unrecorded; the program is fine */
	}
	struct shadow *sh = thread_push_shadow(t);
	*sh = (struct shadow){
		.rsp = regs->rsp, .ret = ret, .call = call,
		.args = { regs->rdi, regs->rsi, regs->rdx }, .stack_id = stack_id,
	};
	if (proc_write(p, regs->rsp, &tramp, sizeof(tramp)) < 0) {
		error("cannot redirect the return of %s in thread %d: %s",
		      alloc_call_name(call), t->tid, strerror(errno));
		t->n_shadow--;
		return 0;
	}
	if (call == CALL_REALLOC || call == CALL_REALLOCARRAY) {
		struct alloc_event ev = {
			.op = OP_REALLOC_ENTER, .call = call, .tid = t->tid,
			.old_ptr = regs->rdi,
		};
		record(p, &ev);
	}
	return 0;
}

static uint64_t mul_or_zero(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_mul_overflow(a, b, &r) ? 0 : r;
}

int hooks_on_return(struct thread *t, struct user_regs_struct *regs)
{
	struct process *p = t->proc;
	size_t i = t->n_shadow;

	/* The call returning is the one whose return address sat just below
	 * the current rsp; frames above it were abandoned (longjmp). */
	while (i > 0 && t->shadow[i - 1].rsp + 8 != regs->rsp)
		i--;
	if (i == 0) {
		error("thread %d returned through the trampoline with no call in flight", t->tid);
		return -1;
	}
	struct shadow sh = t->shadow[i - 1];
	t->n_shadow = i - 1;
	regs->rip = sh.ret;

	struct alloc_event ev = {
		.op = OP_ALLOC, .call = sh.call, .tid = t->tid, .ptr = regs->rax,
		.stack_id = sh.stack_id, .time_ns = now_ns(),
	};
	switch (sh.call) {
	case CALL_MALLOC:
	case CALL_VALLOC:
		ev.size = sh.args[0];
		break;
	case CALL_PVALLOC: {
		uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
		ev.size = (sh.args[0] + pg - 1) & ~(pg - 1);
		break;
	}
	case CALL_CALLOC:
		ev.size = mul_or_zero(sh.args[0], sh.args[1]);
		break;
	case CALL_ALIGNED_ALLOC:
	case CALL_MEMALIGN:
		ev.size = sh.args[1];
		break;
	case CALL_POSIX_MEMALIGN:
		ev.size = sh.args[2];
		ev.ptr = 0;
		if ((uint32_t)regs->rax == 0 && proc_read_u64(p, sh.args[0], &ev.ptr) < 0)
			ev.ptr = 0;
		break;
	case CALL_REALLOC:
		ev.op = OP_REALLOC_EXIT;
		ev.old_ptr = sh.args[0];
		ev.size = sh.args[1];
		break;
	case CALL_REALLOCARRAY:
		ev.op = OP_REALLOC_EXIT;
		ev.old_ptr = sh.args[0];
		ev.size = mul_or_zero(sh.args[1], sh.args[2]);
		break;
	case CALL_FREE:
	case CALL__COUNT:
		return 0;
	}
	if (p->role == ROLE_TRACED)
		record(p, &ev);
	return 0;
}
