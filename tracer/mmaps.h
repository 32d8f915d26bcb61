#ifndef PTLEAK_MMAPS_H
#define PTLEAK_MMAPS_H
/*
 * mmaps: the anonymous memory a program maps itself, outside its
 * allocator (--track-mmap): regions made by mmap of anonymous memory,
 * moved or resized by mremap, cut by munmap, as hooks.c sees these calls
 * (a call nested inside an allocator call is the allocator's and never
 * gets here). A region keeps the stack and time of the mmap that made it;
 * mremap keeps them; MAP_FIXED replaces whatever it covers. Regions never
 * overlap.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mmap_region {
	uint64_t start, end;
	uint32_t stack_id;
	uint64_t time_ns;
};

struct mmaps;

struct mmaps *mmaps_new(void);	/* aborts on out of memory */
void mmaps_free(struct mmaps *m);
struct mmaps *mmaps_clone(const struct mmaps *m);	/* a forked child's copy */

/* A new region [START, START + LEN) (LEN rounded up to pages). */
void mmaps_map(struct mmaps *m, uint64_t start, uint64_t len, uint32_t stack_id,
	       uint64_t time_ns);
/* munmap: whatever of [START, START + LEN) is tracked is gone. */
void mmaps_unmap(struct mmaps *m, uint64_t start, uint64_t len);
/* Whether ADDR is in a tracked region (an mremap worth following). */
bool mmaps_contains(const struct mmaps *m, uint64_t addr);
/* mremap moved [OLD, OLD + OLD_LEN) to [NEW, NEW + NEW_LEN): the region
 * that held OLD, with its stack, is now there. */
void mmaps_remap(struct mmaps *m, uint64_t old, uint64_t old_len, uint64_t new_start,
		 uint64_t new_len);

/* The regions, by address; *N gets their count. Valid until the next call. */
const struct mmap_region *mmaps_list(const struct mmaps *m, size_t *n);

#endif
