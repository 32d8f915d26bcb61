#ifndef PTLEAK_ALLOCDB_H
#define PTLEAK_ALLOCDB_H
/*
 * allocdb: the allocation database of one traced process: its live blocks
 * (heap.h, each with its call kind, size, stack id, time and sequence
 * number) and its interned call stacks (stacks.h). Every event source
 * (source.h) writes here and only here; the scan and the report read it.
 *
 * Sequence numbers: allocdb_record() gives every event the next number of
 * one counter shared by every source and process, so events that several
 * producers delivered can be put in one order afterwards (a block's seq
 * is that of the event that allocated it). A source delivers its events
 * in the order the allocator performed them (heap.h says why realloc is
 * two events); a source with several producers (one ring per thread)
 * merges them by its own stamps before it calls allocdb_record().
 */
#include <stddef.h>
#include <stdint.h>

#include "tracer/heap.h"
#include "tracer/stacks.h"

struct mmaps;

struct allocdb {
	struct heap *heap;
	struct stacks *stacks;
	/* --track-mmap: the anonymous regions the program mapped itself
	 * (mmaps.h), with stack ids of STACKS; NULL without the option. */
	struct mmaps *mmaps;
	/* The memory an allocator other than the C library's mapped for
	 * itself (its arenas, metadata, caches: hooks.h says which calls
	 * count), never a root of the leak scan; NULL when the program
	 * runs the C library's allocator. Stack ids unused. */
	struct mmaps *alloc_regions;
};

struct allocdb *allocdb_new(void);	/* aborts on out of memory */
void allocdb_free(struct allocdb *db);
/* A copy with the same blocks and stack ids (a forked child's). */
struct allocdb *allocdb_clone(const struct allocdb *db);

/* The stack PCS[0..N), innermost first, as an id for alloc_event.stack_id
 * (0 for N == 0). */
uint32_t allocdb_intern(struct allocdb *db, const uint64_t *pcs, size_t n);

/* Apply EV; EV->seq gets its sequence number (also returned). */
uint64_t allocdb_record(struct allocdb *db, struct alloc_event *ev);

/* The last sequence number given out, 0 before the first event. */
uint64_t allocdb_last_seq(void);

#endif
