#ifndef PTLEAK_MUSL_HEAP_H
#define PTLEAK_MUSL_HEAP_H
/*
 * musl_heap: the blocks live in musl's mallocng heap (musl 1.2.1 and
 * later; a static musl binary, whose symbol table names its state) of a
 * stopped process, read from the allocator's own structures, as
 * glibc_heap.h does for glibc.
 *
 * mallocng keeps every group of slots under a `struct meta` in its meta
 * areas (a list from ctx.meta_area_head, each area a page beginning with
 * the secret `check` word); a slot is in use unless its bit is set in the
 * group's avail_mask or freed_mask. An in-use slot's header says where
 * the block starts in it (a slot may be entered at an offset) and how
 * many of its bytes are reserved at the end: the block's size is exactly
 * what the program asked for (malloc_usable_size says the same).
 */
#include <stdint.h>

#include "tracer/glibc_heap.h"

struct process;

/*
 * Walk P's mallocng heap, whose `struct malloc_context` is at CTX and
 * size class table at CLASSES (the symbols __malloc_context and
 * __malloc_size_classes). Fills H's blocks, n, bytes and why (the other
 * fields stay 0); returns 0, or -1 with H->why.
 */
int musl_heap_walk(struct process *p, uint64_t ctx, uint64_t classes, struct glibc_heap *h);

#endif
