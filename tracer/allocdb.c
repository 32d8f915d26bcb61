/*
 * allocdb: a process's blocks and stacks, and the one sequence counter
 * (see allocdb.h).
 */
#include "tracer/allocdb.h"

#include <stdlib.h>

#include "tracer/mmaps.h"
#include "tracer/util.h"

/* One counter for every process and source: ptleak handles one event at
 * a time, so it needs no lock. */
static uint64_t last_seq;

struct allocdb *allocdb_new(void)
{
	struct allocdb *db = xcalloc(1, sizeof(*db));

	db->heap = heap_new();
	db->stacks = stacks_new();
	return db;
}

void allocdb_free(struct allocdb *db)
{
	if (!db)
		return;
	heap_free(db->heap);
	stacks_free(db->stacks);
	mmaps_free(db->mmaps);
	mmaps_free(db->alloc_regions);
	free(db);
}

struct allocdb *allocdb_clone(const struct allocdb *db)
{
	struct allocdb *c = xcalloc(1, sizeof(*c));

	c->heap = heap_clone(db->heap);
	c->stacks = stacks_clone(db->stacks);
	c->mmaps = db->mmaps ? mmaps_clone(db->mmaps) : NULL;
	c->alloc_regions = db->alloc_regions ? mmaps_clone(db->alloc_regions) : NULL;
	return c;
}

uint32_t allocdb_intern(struct allocdb *db, const uint64_t *pcs, size_t n)
{
	return stacks_intern(db->stacks, pcs, n);
}

uint64_t allocdb_record(struct allocdb *db, struct alloc_event *ev)
{
	ev->seq = ++last_seq;
	heap_record(db->heap, ev);
	return ev->seq;
}

uint64_t allocdb_last_seq(void)
{
	return last_seq;
}
