/*
 * frames: frozen frames are kept sorted by (stack id, frame index) so a
 * report looks each one up with a binary search; a freeze appends and
 * sorts again (dlclose is rare).
 */
#include "tracer/frames.h"

#include <stdlib.h>

#include "tracer/stacks.h"
#include "tracer/util.h"

struct frozen_frame {
	uint32_t stack_id, index;
	struct symbol_info si;	/* strings owned by the process's symbols */
};

struct frames {
	struct frozen_frame *v;
	size_t n, cap;
};

struct frames *frames_new(void)
{
	return xcalloc(1, sizeof(struct frames));
}

void frames_free(struct frames *f)
{
	if (f)
		free(f->v);
	free(f);
}

static int by_frame(const void *a, const void *b)
{
	const struct frozen_frame *x = a, *y = b;

	if (x->stack_id != y->stack_id)
		return x->stack_id < y->stack_id ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* The frozen frame I of stack ID among the first N (sorted) entries. */
static const struct frozen_frame *frozen_in(const struct frames *f, size_t n,
					   uint32_t id, size_t i)
{
	struct frozen_frame key = { .stack_id = id, .index = (uint32_t)i };

	return f && n ? bsearch(&key, f->v, n, sizeof(*f->v), by_frame) : NULL;
}

void frames_freeze_unmapped(struct frames *f, struct symbols *syms,
			    const struct stacks *stacks)
{
	struct symbols_range gone[64];
	size_t ng = symbols_unmapped(syms, gone, ARRAY_SIZE(gone));
	size_t ns = stacks_count(stacks);
	size_t sorted = f->n;	/* what earlier calls froze */

	if (!ng)
		return;
	for (uint32_t id = 1; id <= ns; id++) {
		size_t n;
		const uint64_t *pcs = stacks_get(stacks, id, &n);
		for (size_t i = 0; i < n; i++) {
			bool in_gone = false;
			for (size_t g = 0; g < ng && !in_gone; g++)
				in_gone = pcs[i] >= gone[g].start && pcs[i] < gone[g].end;
			if (!in_gone || frozen_in(f, sorted, id, i))
				continue;
			if (f->n == f->cap) {
				f->cap = f->cap ? f->cap * 2 : 64;
				f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
			}
			struct frozen_frame *fr = &f->v[f->n++];
			fr->stack_id = id;
			fr->index = (uint32_t)i;
			symbols_describe(syms, pcs[i], i > 0, &fr->si);
		}
	}
	if (f->n)	/* qsort(NULL, 0, ...) is undefined */
		qsort(f->v, f->n, sizeof(*f->v), by_frame);
}

size_t frames_describe(const struct frames *f, struct symbols *syms,
		       const struct stacks *stacks, uint32_t id, size_t i,
		       struct symbol_info *out, size_t max)
{
	const struct frozen_frame *fz = frozen_in(f, f ? f->n : 0, id, i);
	size_t n;
	const uint64_t *pcs = stacks_get(stacks, id, &n);

	if (!max)
		return 0;
	if (fz)
		*out = fz->si;
	else if (i < n)
		return symbols_describe_inlined(syms, pcs[i], i > 0, out, max);
	else
		*out = (struct symbol_info){ 0 };
	return 1;
}
