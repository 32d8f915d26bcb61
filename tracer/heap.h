#ifndef PTLEAK_HEAP_H
#define PTLEAK_HEAP_H
/*
 * heap: the table of live blocks, and the events that change it, whatever
 * produced them (an event source, source.h: the ptrace breakpoints, a
 * probe in the tracee; the attach inventory, preattach.h).
 *
 * A producer fills a struct alloc_event and records it through its
 * process's database, allocdb_record() (allocdb.h), which numbers it and
 * calls heap_record(). Events
 * must arrive in the order the allocator performed them; for realloc that
 * means two events: REALLOC_ENTER when the call starts (the old block
 * stops being the program's: another thread may get its address from
 * malloc before this realloc returns) and REALLOC_EXIT with the result
 * (success: the new block; failure: the old block comes back).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum alloc_call {
	CALL_MALLOC,
	CALL_CALLOC,
	CALL_REALLOC,
	CALL_REALLOCARRAY,
	CALL_FREE,
	CALL_POSIX_MEMALIGN,
	CALL_ALIGNED_ALLOC,
	CALL_MEMALIGN,
	CALL_VALLOC,
	CALL_PVALLOC,
	/* C++'s operators, wherever defined (libstdc++, or the allocator) */
	CALL_NEW,
	CALL_NEW_ARRAY,
	CALL_NEW_NOTHROW,
	CALL_NEW_ARRAY_NOTHROW,
	CALL_NEW_ALIGNED,
	CALL_NEW_ARRAY_ALIGNED,
	CALL_NEW_ALIGNED_NOTHROW,
	CALL_NEW_ARRAY_ALIGNED_NOTHROW,
	CALL_DELETE,
	CALL_DELETE_ARRAY,
	CALL_DELETE_SIZED,
	CALL_DELETE_ARRAY_SIZED,
	CALL_DELETE_NOTHROW,
	CALL_DELETE_ARRAY_NOTHROW,
	CALL_DELETE_ALIGNED,
	CALL_DELETE_ARRAY_ALIGNED,
	CALL_DELETE_SIZED_ALIGNED,
	CALL_DELETE_ARRAY_SIZED_ALIGNED,
	CALL_DELETE_ALIGNED_NOTHROW,
	CALL_DELETE_ARRAY_ALIGNED_NOTHROW,
	/* --track-mmap (mmaps.h): never in the heap */
	CALL_MMAP,
	CALL_MREMAP,
	CALL_MUNMAP,
	/*
	 * An allocator's own API (jemalloc's mallocx, mimalloc's mi_zalloc,
	 * je_ and tc_ prefixed names, ...), one kind per shape of its
	 * arguments, so that any number of them fits the 6 bits of a block.
	 * Frame 0 of such a block is named by the function's own symbol
	 * (alloc_call_is_api); the comments show each kind's arguments.
	 */
	CALL_API_SIZE0,		/* f(size, ...): mallocx, mi_zalloc, mi_malloc_aligned */
	CALL_API_SIZE1,		/* f(x, size, ...): mi_heap_malloc, mi_memalign */
	CALL_API_PAGES0,	/* f(size), whole pages: mi_pvalloc */
	CALL_API_COUNT01,	/* f(n, size, ...): mi_mallocn, mi_calloc_aligned */
	CALL_API_COUNT12,	/* f(heap, n, size): mi_heap_calloc */
	CALL_API_POSIX_MEMALIGN,	/* f(&ptr, align, size): 0 on success */
	CALL_API_STRDUP,	/* the string returned and its NUL: mi_strdup */
	CALL_API_REALLOC01,	/* f(ptr, size, ...): rallocx, mi_reallocf */
	CALL_API_REALLOC12,	/* f(heap, ptr, size): mi_heap_realloc */
	CALL_API_REALLOCN012,	/* f(ptr, n, size): mi_reallocn, mi_recalloc */
	CALL_API_XALLOCX,	/* xallocx(ptr, size, extra, flags): in place */
	CALL_API_FREE,		/* f(ptr, ...): dallocx, sdallocx, mi_free_size */
	/* the allocator's own regions (allocdb.h): never in the heap */
	CALL_SBRK,
	CALL__COUNT
};

/* "malloc", "calloc", ... */
const char *alloc_call_name(enum alloc_call call);
/* An allocator API kind (CALL_API_*): frame 0 keeps its symbol's name. */
bool alloc_call_is_api(enum alloc_call call);

enum alloc_op {
	OP_ALLOC,		/* ptr (non-NULL), size, stack */
	OP_FREE,		/* ptr (NULL and unknown pointers are ignored) */
	OP_REALLOC_ENTER,	/* old_ptr (may be NULL) */
	OP_REALLOC_EXIT,	/* old_ptr, ptr (NULL: failed or freed), size, stack */
	OP_BEFORE_ATTACH,	/* ptr, size: live when ptleak attached (read from the
				 * allocator, glibc_heap.h); no stack, no time, not
				 * counted as an allocation */
};

struct alloc_event {
	enum alloc_op op;
	enum alloc_call call;
	pid_t tid;
	uint64_t ptr;
	uint64_t old_ptr;
	uint64_t size;
	uint32_t stack_id;	/* from stacks_intern(); 0: no stack */
	uint64_t time_ns;	/* CLOCK_MONOTONIC */
	uint64_t seq;		/* order of arrival, set by allocdb_record() */
};

/*
 * One live block: 32 bytes, as a server may hold millions (make bench
 * prints ptleak's bytes per live block). The time is kept in milliseconds
 * since the heap was made (heap_block_time_ns() gives it back), for 49
 * days; later blocks keep that last stamp.
 */
struct block {
	uint64_t ptr;
	uint64_t size;
	uint32_t stack_id : 25;	/* stacks_intern()'s ids; 0: none or too many */
	uint32_t call : 6;	/* enum alloc_call that made it (realloc: the realloc;
				 * C++'s operators included) */
	uint32_t before_attach : 1;	/* OP_BEFORE_ATTACH: allocated before ptleak attached */
	uint32_t time_ms;	/* 0: unknown (before_attach); else ms since the heap's start + 1 */
	uint64_t seq;		/* its allocation event's sequence number */
};

#define BLOCK_STACK_MAX ((1u << 25) - 1)

struct heap_stats {
	uint64_t allocations, frees;
	uint64_t bytes_allocated;
	uint64_t live_bytes, live_blocks, peak_bytes;
	uint64_t unknown_frees;	/* frees of blocks allocated before tracing, not known */
	/* Blocks from before the attach (OP_BEFORE_ATTACH): found, and
	 * still live (also in live_*). Their frees count in frees. */
	uint64_t before_found_bytes, before_found_blocks;
	uint64_t before_bytes, before_blocks;
	uint64_t min_ptr;	/* lowest block address ever allocated, 0: none */
};

/*
 * Per allocation site (stack id): everything ever allocated there and what
 * is live now, kept as events arrive (a few additions per event), for
 * pprof's alloc_space/alloc_objects and the timeline's sites.
 */
struct heap_site {
	uint64_t alloc_bytes, alloc_blocks;
	uint64_t live_bytes, live_blocks;
	uint8_t call;		/* enum alloc_call of the last allocation */
	uint8_t slot;		/* the timeline's: 1 + its slot, 0 untracked */
};

struct heap;
struct timeline;

struct heap *heap_new(void);	/* aborts on out of memory */
void heap_free(struct heap *h);
void heap_clear(struct heap *h);	/* exec: a new program, a new heap */
/* A copy (a forked child starts with its parent's live blocks). */
struct heap *heap_clone(const struct heap *h);

void heap_record(struct heap *h, const struct alloc_event *ev);
/* Room for N more live blocks without rehashing (a bulk of events ahead:
 * the attach inventory). */
void heap_reserve(struct heap *h, size_t n);
/* Forget block PTR if it is one from before the attach (the allocator no
 * longer holds it: a free that had begun before the hooks released it);
 * not counted as a free. Returns whether it was. */
bool heap_forget_before_attach(struct heap *h, uint64_t ptr);

const struct heap_stats *heap_stats(const struct heap *h);

/* The per-site counters, indexed by stack id: *n entries (ids >= *n have
 * never allocated). Valid until the next heap_record. */
const struct heap_site *heap_sites(const struct heap *h, size_t *n);

/* The heap over time (timeline.h). heap_timeline_close adds a last sample
 * at T (the end of the run, a snapshot). */
const struct timeline *heap_timeline(const struct heap *h);
void heap_timeline_close(struct heap *h, uint64_t t);

/* The addresses of the live blocks from before the attach, in a new
 * array (caller frees); *n gets the count. Costs 8 bytes for each of
 * them, where a heap_snapshot costs 32 for every live block. */
uint64_t *heap_before_attach(const struct heap *h, size_t *n);

/* All live blocks sorted by address, in a new array (caller frees); *n
 * gets the count. */
struct block *heap_snapshot(const struct heap *h, size_t *n);

/* The same, but the blocks are moved out of H without a copy (the final
 * scan of a process holding millions): H keeps its stats and takes
 * events on, its table empty. */
struct block *heap_take_sorted(struct heap *h, size_t *n);

/* When B was allocated (CLOCK_MONOTONIC ns, rounded up to the ms), 0 if
 * unknown. B is one of H's. */
uint64_t heap_block_time_ns(const struct heap *h, const struct block *b);

#endif
