#ifndef PTLEAK_GLIBC_HEAP_H
#define PTLEAK_GLIBC_HEAP_H
/*
 * glibc_heap: the blocks live in glibc's malloc heap of a stopped process,
 * read from the allocator's own structures (what `ptleak -p` knows of the
 * time before it attached).
 *
 * What is walked (glibc 2.26 and later, x86-64):
 *  - main_arena (struct malloc_state in libc's data, found by its shape)
 *    and the ring of arenas its `next` field leads through;
 *  - each arena's chunks: the main arena's from the start of its sbrk
 *    heap to its top chunk, a thread arena's heap by heap (heap_info at
 *    each 64 MiB aligned heap, `prev` back to the first);
 *  - mmapped chunks (IS_MMAPPED), at the start of anonymous mappings.
 * A chunk is in use when the next chunk's PREV_INUSE bit says so; glibc
 * keeps tcache and fastbin chunks marked in use, so those lists are walked
 * (fastbinsY of each arena; each thread's tcache, found through its
 * thread pointer) and their chunks, as the tcache structures themselves,
 * are not blocks. Safe-linked (glibc 2.32+) and plain list pointers are
 * both understood.
 *
 * The process must be stopped for the whole walk (every thread: another
 * thread's malloc would change what is read). Reads go through proc_read,
 * in windows of 1 MiB.
 */
#include <stddef.h>
#include <stdint.h>

struct process;

/* One live block: its address (what malloc returned) and usable size
 * (malloc_usable_size: glibc does not keep the requested size). */
struct glibc_block {
	uint64_t ptr, size;
};

/* qsort/bsearch order of struct glibc_block: by address. */
int glibc_block_cmp(const void *a, const void *b);

struct glibc_heap {
	struct glibc_block *blocks;	/* live, sorted by address */
	size_t n;
	uint64_t bytes;			/* sum of their sizes */
	uint64_t main_arena;		/* its address, 0: not found */
	unsigned arenas, heaps;		/* arenas walked; their heaps (main's counts 1) */
	uint64_t mmapped, mmapped_bytes;	/* mmapped chunks found; their mappings' bytes: hblks, hblkhd */
	uint64_t bin_chunks;		/* free chunks by their bits, tops counted: mallinfo's ordblks */
	uint64_t fast_chunks, fast_bytes;	/* in fastbins: mallinfo's smblks, fsmblks */
	uint64_t tcache_chunks;		/* in the threads' tcaches */
	unsigned tcaches;		/* tcache structures found */
	char why[160];			/* on failure: why, one phrase */
	const char *allocator;		/* "glibc" (musl_heap.h: "musl") */
};

/*
 * Walk the glibc heap of P. TPS[0..N) are the thread pointers (fs_base)
 * of its threads (their tcaches hang off their TLS). Fills *H; returns 0,
 * or -1 with H->why saying why (glibc's allocator not found, or a
 * structure that does not hold together); H->blocks is then NULL.
 */
int glibc_heap_walk(struct process *p, const uint64_t *tps, size_t n, struct glibc_heap *h);
void glibc_heap_release(struct glibc_heap *h);

/*
 * glibc's main_arena in the data mapping [START, START + LEN) of P, whose
 * bytes are DATA; 0 if it is not there. Its bins point at chunk headers,
 * which can fall inside a live neighbour's last bytes: the scan must not
 * take them for roots.
 */
uint64_t glibc_main_arena_in(struct process *p, uint64_t start, const uint8_t *data, size_t len);

/* The size of glibc's struct malloc_state (2.27 and later). */
#define GLIBC_MALLOC_STATE_SIZE 2200u

#endif
