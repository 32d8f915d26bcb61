/*
 * stacks: an arena of PC arrays plus an open-addressing hash from the
 * array's hash to its id. Stacks are never removed while a program runs:
 * a program has few distinct allocation stacks, however many blocks.
 */
#include "tracer/stacks.h"

#include <stdlib.h>
#include <string.h>

#include "tracer/util.h"

struct entry {
	size_t off;		/* into pcs[] */
	uint32_t n;
	uint64_t hash;
};

struct stacks {
	uint64_t *pcs;
	size_t n_pcs, cap_pcs;
	struct entry *entries;	/* id - 1 */
	size_t n_entries, cap_entries;
	uint32_t *index;	/* id, 0 = empty */
	size_t mask;
};

static uint64_t hash_pcs(const uint64_t *pcs, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ n;

	for (size_t i = 0; i < n; i++) {
		h ^= pcs[i];
		h *= 0x100000001b3ull;
		h ^= h >> 29;
	}
	return h ? h : 1;
}

struct stacks *stacks_new(void)
{
	struct stacks *s = xcalloc(1, sizeof(*s));

	s->mask = 255;
	s->index = xcalloc(s->mask + 1, sizeof(*s->index));
	return s;
}

void stacks_free(struct stacks *s)
{
	if (!s)
		return;
	free(s->pcs);
	free(s->entries);
	free(s->index);
	free(s);
}

void stacks_clear(struct stacks *s)
{
	s->n_pcs = 0;
	s->n_entries = 0;
	memset(s->index, 0, (s->mask + 1) * sizeof(*s->index));
}

static void *dup_array(const void *p, size_t n, size_t size)
{
	void *c = xmalloc(n * size);

	if (n)
		memcpy(c, p, n * size);
	return c;
}

struct stacks *stacks_clone(const struct stacks *s)
{
	struct stacks *c = xcalloc(1, sizeof(*c));

	*c = *s;
	c->pcs = dup_array(s->pcs, s->cap_pcs, sizeof(*s->pcs));
	c->entries = dup_array(s->entries, s->cap_entries, sizeof(*s->entries));
	c->index = dup_array(s->index, s->mask + 1, sizeof(*s->index));
	return c;
}

static void rehash(struct stacks *s)
{
	free(s->index);
	s->mask = s->mask * 2 + 1;
	s->index = xcalloc(s->mask + 1, sizeof(*s->index));
	for (size_t id = 1; id <= s->n_entries; id++) {
		size_t i = s->entries[id - 1].hash & s->mask;
		while (s->index[i])
			i = (i + 1) & s->mask;
		s->index[i] = (uint32_t)id;
	}
}

uint32_t stacks_intern(struct stacks *s, const uint64_t *pcs, size_t n)
{
	if (n == 0)
		return 0;
	uint64_t h = hash_pcs(pcs, n);
	size_t i = h & s->mask;
	for (; s->index[i]; i = (i + 1) & s->mask) {
		const struct entry *e = &s->entries[s->index[i] - 1];
		if (e->hash == h && e->n == n &&
		    !memcmp(s->pcs + e->off, pcs, n * sizeof(*pcs)))
			return s->index[i];
	}
	if (s->n_pcs + n > s->cap_pcs) {
		s->cap_pcs = (s->cap_pcs + n) * 2;
		s->pcs = xrealloc(s->pcs, s->cap_pcs * sizeof(*s->pcs));
	}
	if (s->n_entries == s->cap_entries) {
		s->cap_entries = s->cap_entries ? s->cap_entries * 2 : 256;
		s->entries = xrealloc(s->entries, s->cap_entries * sizeof(*s->entries));
	}
	memcpy(s->pcs + s->n_pcs, pcs, n * sizeof(*pcs));
	s->entries[s->n_entries] = (struct entry){ .off = s->n_pcs, .n = (uint32_t)n, .hash = h };
	s->n_pcs += n;
	uint32_t id = (uint32_t)++s->n_entries;
	s->index[i] = id;
	if (s->n_entries * 2 > s->mask + 1)
		rehash(s);
	return id;
}

const uint64_t *stacks_get(const struct stacks *s, uint32_t id, size_t *n)
{
	if (id == 0 || id > s->n_entries) {
		*n = 0;
		return NULL;
	}
	const struct entry *e = &s->entries[id - 1];
	*n = e->n;
	return s->pcs + e->off;
}

size_t stacks_count(const struct stacks *s)
{
	return s->n_entries;
}
