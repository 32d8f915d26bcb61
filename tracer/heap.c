/*
 * heap: live blocks in an open-addressing hash table keyed by address
 * (linear probing, backward-shift deletion, so no tombstones pile up in a
 * program that allocates and frees millions of times).
 *
 * Pending reallocs (between REALLOC_ENTER and REALLOC_EXIT) are held in a
 * small list per call: the old block is out of the table, so a malloc in
 * another thread returning the same address is recorded correctly, and it
 * comes back if realloc fails.
 */
#include "tracer/heap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tracer/timeline.h"
#include "tracer/util.h"

struct pending {
	pid_t tid;
	struct block b;
};

struct heap {
	struct block *slots;	/* ptr == 0: empty */
	size_t mask;		/* capacity - 1 */
	size_t used;
	struct pending *pending;
	size_t n_pending, cap_pending;
	struct heap_stats st;
	struct heap_site *sites;	/* by stack id */
	size_t n_sites;
	struct timeline *tl;
	uint64_t epoch_ns;	/* block times count from here */
};

_Static_assert(sizeof(struct block) == 32, "a live block costs 32 bytes");
_Static_assert(CALL__COUNT <= 64, "struct block keeps the call in 6 bits");

#define MIN_SLOTS 1024
/* Linear probing stays short up to three quarters full. */
#define FULL(used, cap) ((used) * 4 > (cap) * 3)

static const char *const call_names[CALL__COUNT] = {
	[CALL_MALLOC] = "malloc",
	[CALL_CALLOC] = "calloc",
	[CALL_REALLOC] = "realloc",
	[CALL_REALLOCARRAY] = "reallocarray",
	[CALL_FREE] = "free",
	[CALL_POSIX_MEMALIGN] = "posix_memalign",
	[CALL_ALIGNED_ALLOC] = "aligned_alloc",
	[CALL_MEMALIGN] = "memalign",
	[CALL_VALLOC] = "valloc",
	[CALL_PVALLOC] = "pvalloc",
	/* as the demangler prints them, and valgrind */
	[CALL_NEW] = "operator new(unsigned long)",
	[CALL_NEW_ARRAY] = "operator new[](unsigned long)",
	[CALL_NEW_NOTHROW] = "operator new(unsigned long, std::nothrow_t const&)",
	[CALL_NEW_ARRAY_NOTHROW] = "operator new[](unsigned long, std::nothrow_t const&)",
	[CALL_NEW_ALIGNED] = "operator new(unsigned long, std::align_val_t)",
	[CALL_NEW_ARRAY_ALIGNED] = "operator new[](unsigned long, std::align_val_t)",
	[CALL_NEW_ALIGNED_NOTHROW] = "operator new(unsigned long, std::align_val_t, std::nothrow_t const&)",
	[CALL_NEW_ARRAY_ALIGNED_NOTHROW] = "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)",
	[CALL_DELETE] = "operator delete(void*)",
	[CALL_DELETE_ARRAY] = "operator delete[](void*)",
	[CALL_DELETE_SIZED] = "operator delete(void*, unsigned long)",
	[CALL_DELETE_ARRAY_SIZED] = "operator delete[](void*, unsigned long)",
	[CALL_DELETE_NOTHROW] = "operator delete(void*, std::nothrow_t const&)",
	[CALL_DELETE_ARRAY_NOTHROW] = "operator delete[](void*, std::nothrow_t const&)",
	[CALL_DELETE_ALIGNED] = "operator delete(void*, std::align_val_t)",
	[CALL_DELETE_ARRAY_ALIGNED] = "operator delete[](void*, std::align_val_t)",
	[CALL_DELETE_SIZED_ALIGNED] = "operator delete(void*, unsigned long, std::align_val_t)",
	[CALL_DELETE_ARRAY_SIZED_ALIGNED] = "operator delete[](void*, unsigned long, std::align_val_t)",
	[CALL_DELETE_ALIGNED_NOTHROW] = "operator delete(void*, std::align_val_t, std::nothrow_t const&)",
	[CALL_DELETE_ARRAY_ALIGNED_NOTHROW] = "operator delete[](void*, std::align_val_t, std::nothrow_t const&)",
	/* the function's own symbol names frame 0; these are for messages */
	[CALL_API_SIZE0] = "allocator API (size)",
	[CALL_API_SIZE1] = "allocator API (x, size)",
	[CALL_API_PAGES0] = "allocator API (pages)",
	[CALL_API_COUNT01] = "allocator API (n, size)",
	[CALL_API_COUNT12] = "allocator API (heap, n, size)",
	[CALL_API_POSIX_MEMALIGN] = "allocator API (&ptr, align, size)",
	[CALL_API_STRDUP] = "allocator API (strdup)",
	[CALL_API_REALLOC01] = "allocator API (ptr, size)",
	[CALL_API_REALLOC12] = "allocator API (heap, ptr, size)",
	[CALL_API_REALLOCN012] = "allocator API (ptr, n, size)",
	[CALL_API_XALLOCX] = "xallocx",
	[CALL_API_FREE] = "allocator API (free)",
	[CALL_MMAP] = "mmap",
	[CALL_MREMAP] = "mremap",
	[CALL_MUNMAP] = "munmap",
	[CALL_SBRK] = "sbrk",
};

const char *alloc_call_name(enum alloc_call call)
{
	return call < CALL__COUNT ? call_names[call] : "?";
}

bool alloc_call_is_api(enum alloc_call call)
{
	return call >= CALL_API_SIZE0 && call <= CALL_API_FREE;
}

static size_t slot_of(uint64_t ptr, size_t mask)
{
	/* Fibonacci hashing: allocator addresses share their low bits. */
	return (size_t)((ptr * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

struct heap *heap_new(void)
{
	struct heap *h = xcalloc(1, sizeof(*h));

	h->mask = MIN_SLOTS - 1;
	h->slots = xcalloc(h->mask + 1, sizeof(*h->slots));
	h->tl = timeline_new(now_ns());
	h->epoch_ns = now_ns();
	return h;
}

void heap_free(struct heap *h)
{
	if (!h)
		return;
	free(h->slots);
	free(h->pending);
	free(h->sites);
	timeline_free(h->tl);
	free(h);
}

void heap_clear(struct heap *h)
{
	memset(h->slots, 0, (h->mask + 1) * sizeof(*h->slots));
	h->used = 0;
	h->n_pending = 0;
	memset(&h->st, 0, sizeof(h->st));
	memset(h->sites, 0, h->n_sites * sizeof(*h->sites));
	timeline_reset(h->tl, now_ns());
	h->epoch_ns = now_ns();
}

struct heap *heap_clone(const struct heap *h)
{
	struct heap *c = xcalloc(1, sizeof(*c));

	*c = *h;
	c->slots = xmalloc((h->mask + 1) * sizeof(*c->slots));
	memcpy(c->slots, h->slots, (h->mask + 1) * sizeof(*c->slots));
	c->pending = NULL;
	c->n_pending = c->cap_pending = 0;
	c->sites = xmalloc((h->n_sites + 1) * sizeof(*c->sites));
	memcpy(c->sites, h->sites, h->n_sites * sizeof(*c->sites));
	c->tl = timeline_clone(h->tl);
	return c;
}

/* Slot I's block moved to the first free slot from its home on. */
static void reinsert(struct heap *h, size_t i)
{
	struct block b = h->slots[i];
	size_t j = slot_of(b.ptr, h->mask);

	h->slots[i].ptr = 0;
	while (h->slots[j].ptr)
		j = (j + 1) & h->mask;
	h->slots[j] = b;
}

/* Whether the run from slot I's home to I is unbroken (a lookup finds it). */
static bool reachable(const struct heap *h, size_t i)
{
	for (size_t j = slot_of(h->slots[i].ptr, h->mask); j != i; j = (j + 1) & h->mask)
		if (!h->slots[j].ptr)
			return false;
	return true;
}

/*
 * Doubling in place: copying into a new table held the old one and the
 * new one at once, 1.5 times the table at its peak (a program with 3
 * million live blocks: 128 MiB on top of 256). realloc of a table that
 * large is mremap, which moves pages without copying them. Doubling the
 * mask adds one bit to each home slot, so a block's home stays, or moves
 * up by the old capacity. Those that move are moved; then any block left
 * behind a hole (or that had wrapped around the old end) is moved to the
 * first free slot from its home, until a pass moves none: each move
 * brings a block nearer its home, so this ends, with every block found
 * by a lookup. The table is at most 3/8 full after doubling: runs are
 * short and one or two passes do.
 */
static void grow(struct heap *h)
{
	size_t old_cap = h->mask + 1;

	h->slots = xrealloc(h->slots, 2 * old_cap * sizeof(*h->slots));
	memset(h->slots + old_cap, 0, old_cap * sizeof(*h->slots));
	h->mask = 2 * old_cap - 1;
	for (size_t i = 0; i < old_cap; i++)
		if (h->slots[i].ptr && slot_of(h->slots[i].ptr, h->mask) >= old_cap)
			reinsert(h, i);
	for (bool moved = true; moved;) {
		moved = false;
		for (size_t i = 0; i <= h->mask; i++)
			if (h->slots[i].ptr && !reachable(h, i)) {
				reinsert(h, i);
				moved = true;
			}
	}
}

void heap_reserve(struct heap *h, size_t n)
{
	while (FULL(h->used + n + 1, h->mask + 1))
		grow(h);
}

/* The counters of stack ID, growing the array (ids are dense). */
static struct heap_site *site_of(struct heap *h, uint32_t id)
{
	if (id >= h->n_sites) {
		size_t n = h->n_sites ? 2 * h->n_sites : 256;
		while (n <= id)
			n *= 2;
		h->sites = xrealloc(h->sites, n * sizeof(*h->sites));
		memset(h->sites + h->n_sites, 0, (n - h->n_sites) * sizeof(*h->sites));
		h->n_sites = n;
	}
	return &h->sites[id];
}

static void site_sub(struct heap *h, const struct block *b)
{
	struct heap_site *s = site_of(h, b->stack_id);

	s->live_bytes -= b->size;
	s->live_blocks--;
}

static void insert(struct heap *h, const struct block *b)
{
	if (FULL(h->used + 1, h->mask + 1))
		grow(h);
	size_t i = slot_of(b->ptr, h->mask);
	while (h->slots[i].ptr && h->slots[i].ptr != b->ptr)
		i = (i + 1) & h->mask;
	if (h->slots[i].ptr) {
		/* Same address live twice: a free we never saw (an allocator
		 * entry point we do not hook). The old block is gone. */
		h->st.live_bytes -= h->slots[i].size;
		h->st.live_blocks--;
		if (h->slots[i].before_attach) {
			h->st.before_bytes -= h->slots[i].size;
			h->st.before_blocks--;
		}
		site_sub(h, &h->slots[i]);
	} else {
		h->used++;
	}
	h->slots[i] = *b;
	h->st.live_bytes += b->size;
	h->st.live_blocks++;
	if (b->before_attach) {
		h->st.before_bytes += b->size;
		h->st.before_blocks++;
	}
	struct heap_site *s = site_of(h, b->stack_id);
	s->live_bytes += b->size;
	s->live_blocks++;
	if (h->st.live_bytes > h->st.peak_bytes)
		h->st.peak_bytes = h->st.live_bytes;
}

/* The slot of live block PTR, or -1 (SIZE_MAX) if it is not live. */
static size_t slot_holding(const struct heap *h, uint64_t ptr)
{
	size_t i = slot_of(ptr, h->mask);

	while (h->slots[i].ptr != ptr) {
		if (!h->slots[i].ptr)
			return SIZE_MAX;
		i = (i + 1) & h->mask;
	}
	return i;
}

/* Remove PTR; copy it to *out. Returns false if PTR is not live. */
static bool take(struct heap *h, uint64_t ptr, struct block *out)
{
	size_t i = slot_holding(h, ptr);

	if (i == SIZE_MAX)
		return false;
	*out = h->slots[i];
	h->st.live_bytes -= out->size;
	h->st.live_blocks--;
	if (out->before_attach) {
		h->st.before_bytes -= out->size;
		h->st.before_blocks--;
	}
	site_sub(h, out);
	h->used--;
	/* Backward-shift deletion: pull later members of the run into the
	 * hole when their home slot is at or before it. */
	size_t hole = i;
	for (size_t j = (i + 1) & h->mask; h->slots[j].ptr; j = (j + 1) & h->mask) {
		size_t home = slot_of(h->slots[j].ptr, h->mask);
		if (((j - home) & h->mask) >= ((j - hole) & h->mask)) {
			h->slots[hole] = h->slots[j];
			hole = j;
		}
	}
	h->slots[hole].ptr = 0;
	return true;
}

/* ms since the heap's start, rounded up (an age is never overstated),
 * + 1 (0 is "unknown"), saturated. */
static uint32_t stamp(const struct heap *h, uint64_t t)
{
	uint64_t ms = t > h->epoch_ns ? (t - h->epoch_ns + 999999) / 1000000 : 0;

	return ms < UINT32_MAX - 1 ? (uint32_t)ms + 1 : UINT32_MAX;
}

uint64_t heap_block_time_ns(const struct heap *h, const struct block *b)
{
	return b->time_ms ? h->epoch_ns + (uint64_t)(b->time_ms - 1) * 1000000 : 0;
}

static void add_alloc(struct heap *h, const struct alloc_event *ev)
{
	struct block b = {
		.ptr = ev->ptr, .size = ev->size,
		.stack_id = ev->stack_id <= BLOCK_STACK_MAX ? ev->stack_id : 0,
		.call = (unsigned)ev->call & 63, .time_ms = stamp(h, ev->time_ns),
		.seq = ev->seq,
	};
	h->st.allocations++;
	h->st.bytes_allocated += ev->size;
	if (!h->st.min_ptr || ev->ptr < h->st.min_ptr)
		h->st.min_ptr = ev->ptr;
	insert(h, &b);
	struct heap_site *s = &h->sites[b.stack_id];	/* insert made it */
	s->alloc_bytes += ev->size;
	s->alloc_blocks++;
	s->call = (uint8_t)ev->call;
	if (!s->slot && s->live_bytes >= h->tl->enter)
		timeline_track(h->tl, b.stack_id, h->sites, h->n_sites);
}

bool heap_forget_before_attach(struct heap *h, uint64_t ptr)
{
	struct block b;

	if (!take(h, ptr, &b))
		return false;
	if (!b.before_attach) {
		insert(h, &b);	/* the program's own since: keep it */
		return false;
	}
	return true;
}

static void add_before_attach(struct heap *h, const struct alloc_event *ev)
{
	struct block b = { .ptr = ev->ptr, .size = ev->size, .call = CALL_MALLOC,
			   .before_attach = true };

	/* Allocated since the attach, with its stack (the program ran
	 * between the attach and a second reading of its heap). */
	if (slot_holding(h, ev->ptr) != SIZE_MAX)
		return;

	h->st.before_found_bytes += ev->size;
	h->st.before_found_blocks++;
	/* The scan's brk heap starts at the lowest block (heap.h). */
	if (!h->st.min_ptr || ev->ptr < h->st.min_ptr)
		h->st.min_ptr = ev->ptr;
	insert(h, &b);
}

static void do_free(struct heap *h, uint64_t ptr)
{
	struct block b;

	if (!ptr)
		return;
	if (take(h, ptr, &b))
		h->st.frees++;
	else
		h->st.unknown_frees++;
}

static void realloc_enter(struct heap *h, const struct alloc_event *ev)
{
	struct pending p = { .tid = ev->tid };

	if (!ev->old_ptr || !take(h, ev->old_ptr, &p.b))
		return;
	if (h->n_pending == h->cap_pending) {
		h->cap_pending = h->cap_pending ? 2 * h->cap_pending : 8;
		h->pending = xrealloc(h->pending, h->cap_pending * sizeof(*h->pending));
	}
	h->pending[h->n_pending++] = p;
}

static void realloc_exit(struct heap *h, const struct alloc_event *ev)
{
	struct pending *p = NULL;

	for (size_t i = 0; i < h->n_pending; i++) {
		if (h->pending[i].tid == ev->tid && h->pending[i].b.ptr == ev->old_ptr) {
			p = &h->pending[i];
			break;
		}
	}
	if (ev->ptr) {
		if (p)
			h->st.frees++;
		add_alloc(h, ev);
	} else if (p && ev->size != 0) {
		insert(h, &p->b);	/* failed: the old block is still there */
	} else if (p) {
		h->st.frees++;		/* realloc(p, 0) freed it */
	}
	if (p)
		*p = h->pending[--h->n_pending];
}

void heap_record(struct heap *h, const struct alloc_event *ev)
{
	switch (ev->op) {
	case OP_ALLOC:
		if (ev->ptr)
			add_alloc(h, ev);
		break;
	case OP_FREE:
		do_free(h, ev->ptr);
		break;
	case OP_REALLOC_ENTER:
		realloc_enter(h, ev);
		break;
	case OP_REALLOC_EXIT:
		realloc_exit(h, ev);
		break;
	case OP_BEFORE_ATTACH:
		if (ev->ptr)
			add_before_attach(h, ev);
		break;
	}
	timeline_event(h->tl, ev->time_ns, h->st.live_bytes, h->st.live_blocks,
		       h->sites, h->n_sites);
}

const struct heap_stats *heap_stats(const struct heap *h)
{
	return &h->st;
}

const struct heap_site *heap_sites(const struct heap *h, size_t *n)
{
	*n = h->n_sites;
	return h->sites;
}

const struct timeline *heap_timeline(const struct heap *h)
{
	return h->tl;
}

void heap_timeline_close(struct heap *h, uint64_t t)
{
	timeline_close(h->tl, t, h->st.live_bytes, h->st.live_blocks, h->sites, h->n_sites);
}

/*
 * Blocks sorted by address in place. Not qsort: glibc's is a merge sort
 * with a buffer as large as the array (160 MiB more for 5 million blocks,
 * on top of the table they are taken from). Quicksort on the median of
 * three, the smaller side first so the recursion stays O(log n) deep,
 * heapsort past a depth limit (no quadratic case), insertion sort for
 * the short runs.
 */
static void swap_blocks(struct block *a, struct block *b)
{
	struct block t = *a;

	*a = *b;
	*b = t;
}

static void sift_down(struct block *v, size_t i, size_t n)
{
	for (size_t c; (c = 2 * i + 1) < n; i = c) {
		if (c + 1 < n && v[c + 1].ptr > v[c].ptr)
			c++;
		if (v[i].ptr >= v[c].ptr)
			return;
		swap_blocks(&v[i], &v[c]);
	}
}

static void heap_sort(struct block *v, size_t n)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(v, i, n);
	for (size_t k = n; k-- > 1;) {
		swap_blocks(&v[0], &v[k]);
		sift_down(v, 0, k);
	}
}

static void sort_blocks_depth(struct block *v, size_t n, unsigned depth)
{
	while (n > 16) {
		if (!depth--) {
			heap_sort(v, n);
			return;
		}
		size_t mid = n / 2;
		if (v[mid].ptr < v[0].ptr)
			swap_blocks(&v[mid], &v[0]);
		if (v[n - 1].ptr < v[0].ptr)
			swap_blocks(&v[n - 1], &v[0]);
		if (v[n - 1].ptr < v[mid].ptr)
			swap_blocks(&v[n - 1], &v[mid]);
		uint64_t pivot = v[mid].ptr;
		size_t i = 0, j = n - 1;
		for (;;) {	/* Hoare: v[0] <= pivot <= v[n - 1] bound both scans */
			while (v[i].ptr < pivot)
				i++;
			while (v[j].ptr > pivot)
				j--;
			if (i >= j)
				break;
			swap_blocks(&v[i++], &v[j--]);
		}
		/* [0, j] <= pivot <= [j + 1, n) */
		if (j + 1 < n - j - 1) {
			sort_blocks_depth(v, j + 1, depth);
			v += j + 1;
			n -= j + 1;
		} else {
			sort_blocks_depth(v + j + 1, n - j - 1, depth);
			n = j + 1;
		}
	}
	for (size_t i = 1; i < n; i++) {
		struct block b = v[i];
		size_t k = i;
		for (; k > 0 && v[k - 1].ptr > b.ptr; k--)
			v[k] = v[k - 1];
		v[k] = b;
	}
}

static void sort_blocks(struct block *v, size_t n)
{
	unsigned depth = 0;

	for (size_t m = n; m > 1; m >>= 1)
		depth += 2;
	sort_blocks_depth(v, n, depth);
}

uint64_t *heap_before_attach(const struct heap *h, size_t *n)
{
	uint64_t *v = xmalloc((h->st.before_blocks + 1) * sizeof(*v));
	size_t k = 0;

	for (size_t i = 0; i <= h->mask && k < h->st.before_blocks; i++)
		if (h->slots[i].ptr && h->slots[i].before_attach)
			v[k++] = h->slots[i].ptr;
	*n = k;
	return v;
}

struct block *heap_snapshot(const struct heap *h, size_t *n)
{
	struct block *v = xmalloc((h->st.live_blocks + 1) * sizeof(*v));
	size_t k = 0;

	for (size_t i = 0; i <= h->mask; i++)
		if (h->slots[i].ptr)
			v[k++] = h->slots[i];
	sort_blocks(v, k);
	*n = k;
	return v;
}

struct block *heap_take_sorted(struct heap *h, size_t *n)
{
	struct block *v = h->slots;
	size_t k = 0;

	for (size_t i = 0; i <= h->mask; i++)
		if (h->slots[i].ptr)
			v[k++] = h->slots[i];
	sort_blocks(v, k);
	*n = k;
	h->mask = MIN_SLOTS - 1;
	h->slots = xcalloc(h->mask + 1, sizeof(*h->slots));
	h->used = 0;
	return xrealloc(v, (k + 1) * sizeof(*v));
}
