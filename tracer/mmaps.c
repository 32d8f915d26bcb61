/*
 * mmaps: a sorted array of regions (a program maps few regions itself;
 * each change is a binary search and a memmove).
 */
#include "tracer/mmaps.h"

#include <stdlib.h>
#include <string.h>

#include "tracer/util.h"

#define PAGE 4096ull

struct mmaps {
	struct mmap_region *v;
	size_t n, cap;
};

struct mmaps *mmaps_new(void)
{
	return xcalloc(1, sizeof(struct mmaps));
}

void mmaps_free(struct mmaps *m)
{
	if (!m)
		return;
	free(m->v);
	free(m);
}

struct mmaps *mmaps_clone(const struct mmaps *m)
{
	struct mmaps *c = mmaps_new();

	if (m->n) {
		c->v = xmalloc(m->n * sizeof(*c->v));
		memcpy(c->v, m->v, m->n * sizeof(*c->v));
		c->n = c->cap = m->n;
	}
	return c;
}

/* First region ending after A. */
static size_t first_after(const struct mmaps *m, uint64_t a)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->v[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void insert_at(struct mmaps *m, size_t i, const struct mmap_region *r)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->v = xrealloc(m->v, m->cap * sizeof(*m->v));
	}
	memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(*m->v));
	m->v[i] = *r;
	m->n++;
}

static void remove_at(struct mmaps *m, size_t i)
{
	memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
	m->n--;
}

static uint64_t page_up(uint64_t len)
{
	return (len + PAGE - 1) & ~(PAGE - 1);
}

void mmaps_unmap(struct mmaps *m, uint64_t start, uint64_t len)
{
	uint64_t end = start + page_up(len);

	for (size_t i = first_after(m, start); i < m->n && m->v[i].start < end;) {
		struct mmap_region *r = &m->v[i];
		if (r->start < start && r->end > end) {
			/* A hole in the middle: two pieces, the same stack. */
			struct mmap_region tail = *r;
			tail.start = end;
			r->end = start;
			insert_at(m, i + 1, &tail);
			return;
		}
		if (r->start < start) {
			r->end = start;
			i++;
		} else if (r->end > end) {
			r->start = end;
			i++;
		} else {
			remove_at(m, i);
		}
	}
}

void mmaps_map(struct mmaps *m, uint64_t start, uint64_t len, uint32_t stack_id,
	       uint64_t time_ns)
{
	struct mmap_region r = { .start = start, .end = start + page_up(len),
				 .stack_id = stack_id, .time_ns = time_ns };

	if (!len)
		return;
	mmaps_unmap(m, start, len);	/* MAP_FIXED over tracked memory */
	insert_at(m, first_after(m, start), &r);
}

bool mmaps_contains(const struct mmaps *m, uint64_t addr)
{
	size_t i = first_after(m, addr);

	return i < m->n && m->v[i].start <= addr;
}

void mmaps_remap(struct mmaps *m, uint64_t old, uint64_t old_len, uint64_t new_start,
		 uint64_t new_len)
{
	size_t i = first_after(m, old);

	if (i >= m->n || m->v[i].start > old)
		return;
	struct mmap_region was = m->v[i];
	mmaps_unmap(m, old, old_len);
	mmaps_map(m, new_start, new_len, was.stack_id, was.time_ns);
}

const struct mmap_region *mmaps_list(const struct mmaps *m, size_t *n)
{
	*n = m->n;
	return m->v;
}
