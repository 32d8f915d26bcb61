/*
 * preattach: the heap from before the attach (see preattach.h).
 */
#include "tracer/preattach.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "symbols/symbols.h"
#include "tracer/allocdb.h"
#include "tracer/glibc_heap.h"
#include "tracer/heap.h"
#include "tracer/musl_heap.h"
#include "tracer/proc.h"
#include "tracer/util.h"

#define MAX_TPS 4096

struct malloc_owners {
	unsigned n;
	bool libc;		/* libc.so.6 defines one */
	char other[128];	/* the first module other than libc defining malloc */
};

static void on_malloc(void *arg, const char *name, uint64_t addr, uint64_t size,
		      const char *module)
{
	struct malloc_owners *o = arg;
	const char *base = module && strrchr(module, '/') ? strrchr(module, '/') + 1 : module;

	o->n++;
	if (base && !strncmp(base, "libc.so", 7))
		o->libc = true;
	else if (!o->other[0])
		snprintf(o->other, sizeof(o->other), "%s", base ? base : "?");
}

struct tp_list {
	uint64_t v[MAX_TPS];
	size_t n;
};

static void add_tp(struct thread *t, void *arg)
{
	struct tp_list *l = arg;
	struct user_regs_struct r;

	if (!t->fs_base && thread_getregs(t->tid, &r) == 0)
		t->fs_base = r.fs_base;
	if (t->fs_base && l->n < MAX_TPS)
		l->v[l->n++] = t->fs_base;
}

struct preattach {
	struct glibc_heap h;
};

/*
 * Walk P's heap into H: glibc's (with the thread pointers of its threads,
 * for their tcaches), or else, when P's symbols name musl's mallocng
 * state (a static musl binary), musl's.
 */
static int walk(struct process *p, struct glibc_heap *h)
{
	struct tp_list *tps = xmalloc(sizeof(*tps));

	tps->n = 0;
	thread_foreach(p, add_tp, tps);
	int rc = glibc_heap_walk(p, tps->v, tps->n, h);
	free(tps);
	if (rc == 0 || h->main_arena)
		return rc;
	uint64_t ctx = symbols_lookup_name(p->syms, "", "__malloc_context");
	uint64_t classes = ctx ? symbols_lookup_name(p->syms, "", "__malloc_size_classes") : 0;
	if (!classes)
		return rc;	/* h->why: no main_arena */
	if (musl_heap_walk(p, ctx, classes, h) == 0)
		return 0;
	h->main_arena = 1;	/* an allocator recognised, that did not hold together */
	return -1;
}

static bool live_in(const struct glibc_heap *h, uint64_t ptr)
{
	struct glibc_block key = { .ptr = ptr };

	return bsearch(&key, h->blocks, h->n, sizeof(*h->blocks), glibc_block_cmp) != NULL;
}

size_t preattach_verify(struct process *p)
{
	struct glibc_heap h;
	size_t n, forgotten = 0;

	if (!p->before_known || !heap_stats(p->db->heap)->before_blocks || walk(p, &h) < 0)
		return 0;
	/* Not a heap_snapshot: a process holding millions of blocks would
	 * have ptleak hold them twice more (the copy, qsort's buffer). */
	uint64_t *before = heap_before_attach(p->db->heap, &n);
	for (size_t i = 0; i < n; i++)
		if (!live_in(&h, before[i]))
			forgotten += heap_forget_before_attach(p->db->heap, before[i]);
	free(before);
	glibc_heap_release(&h);
	if (forgotten)
		debug("process %d: %zu blocks from before the attach were freed unseen", p->pid,
		      forgotten);
	return forgotten;
}

struct preattach *preattach_read(struct process *p, bool *torn)
{
	static const char *const names[] = { "malloc" };
	struct malloc_owners o = { 0 };
	struct preattach *pa = xcalloc(1, sizeof(*pa));

	p->before_known = false;
	*torn = false;
	/* A malloc defined next to libc's (or instead of it, dynamically) is
	 * the program's allocator: glibc's heap would be nearly empty. */
	if (symbols_find_functions(p->syms, names, 1, on_malloc, &o) >= 0 && o.other[0] &&
	    (o.libc || o.n > 1)) {
		snprintf(p->before_why, sizeof(p->before_why),
			 "the allocator is not glibc's (malloc is %s's)", o.other);
		free(pa);
		return NULL;
	}
	uint64_t t0 = now_ns();
	if (walk(p, &pa->h) < 0) {
		if (!pa->h.main_arena)
			snprintf(p->before_why, sizeof(p->before_why),
				 "the allocator is not glibc's (%s)", pa->h.why);
		else
			snprintf(p->before_why, sizeof(p->before_why), "its heap: %s", pa->h.why);
		*torn = pa->h.main_arena != 0;
		free(pa);
		return NULL;
	}
	p->before_read_ns = now_ns() - t0;
	p->before_allocator = pa->h.allocator;
	debug("inventory: %zu blocks, %" PRIu64 " bytes, %u arenas, %u heaps, %" PRIu64
	      " mmapped, %" PRIu64 " in fastbins, %" PRIu64 " in %u tcaches, read in %.3f ms",
	      pa->h.n, pa->h.bytes, pa->h.arenas, pa->h.heaps, pa->h.mmapped, pa->h.fast_chunks,
	      pa->h.tcache_chunks, pa->h.tcaches, p->before_read_ns / 1e6);
	return pa;
}

void preattach_discard(struct preattach *pa)
{
	if (pa)
		glibc_heap_release(&pa->h);
	free(pa);
}

size_t preattach_record(struct process *p, struct preattach *pa)
{
	size_t n = pa->h.n;

	heap_reserve(p->db->heap, n);
	for (size_t i = 0; i < n; i++) {
		struct alloc_event ev = { .op = OP_BEFORE_ATTACH, .ptr = pa->h.blocks[i].ptr,
					  .size = pa->h.blocks[i].size };
		allocdb_record(p->db, &ev);
	}
	p->before_known = true;
	glibc_heap_release(&pa->h);
	free(pa);
	return n;
}
