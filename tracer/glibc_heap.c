/*
 * glibc_heap: walking glibc's malloc structures from outside (see
 * glibc_heap.h).
 *
 * Layouts (x86-64, glibc 2.27 and later; checked against 2.36):
 *   struct malloc_state: mutex, flags, have_fastchunks (4 bytes each),
 *     fastbinsY[10] at 16, top at 96, last_remainder at 104, bins[254] at
 *     112, binmap[4], next at 2160, next_free, attached_threads,
 *     system_mem at 2184, max_system_mem; 2200 bytes.
 *   chunk: prev_size, size (low bits PREV_INUSE 1, IS_MMAPPED 2,
 *     NON_MAIN_ARENA 4), user memory from +16.
 *   heap_info (thread arenas): ar_ptr, prev, size, ... at each 64 MiB
 *     aligned heap; the first heap of an arena holds its malloc_state
 *     right after the heap_info, so their distance is sizeof(heap_info)
 *     (48 since 2.35, 32 before), where later heaps' chunks start.
 *   tcache_perthread_struct: uint16_t counts[64] (char before 2.30), then
 *     tcache_entry *entries[64]; an entry is the user memory of a chunk,
 *     its first word the next entry.
 * Safe-linking (2.32+) stores a list pointer P kept at address A as
 * (A >> 12) ^ P; each list is tried both ways, and the reading whose
 * chunks have the bin's size wins.
 */
#include "tracer/glibc_heap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracer/proc.h"
#include "tracer/util.h"

#define PREV_INUSE 1ull
#define IS_MMAPPED 2ull
#define NON_MAIN_ARENA 4ull
#define SIZE_BITS 7ull
#define MINSIZE 32ull
#define ARENA_HEAP_SIZE (64ull << 20)	/* HEAP_MAX_SIZE on 64-bit */
#define PAGE 4096ull

#define MS_FASTBINS 16u
#define MS_NFASTBINS 10u
#define MS_TOP 96u
#define MS_BINS 112u
#define MS_NBIN_PAIRS 127u
#define MS_NEXT 2160u
#define MS_SYSTEM_MEM 2184u

#define TCACHE_BINS 64u
#define TLS_WINDOW (64u << 10)	/* how far below a thread pointer its tcache pointer may sit */
#define WINDOW (1u << 20)
#define MAX_ARENAS 1024u
#define MAX_LIST (1u << 24)	/* entries of one free list: more is a loop */

/* Reads of tracee memory through one window, for walks that go forward. */
struct reader {
	struct process *p;
	uint64_t start;
	size_t len;
	uint8_t *buf;
};

static int rd_u64(struct reader *r, uint64_t addr, uint64_t *out)
{
	if (addr < r->start || addr + 8 > r->start + r->len) {
		/* A window from ADDR on, shorter where the mapping ends. */
		const size_t tries[] = { WINDOW, 64u << 10, PAGE - (addr & (PAGE - 1)) };
		r->len = 0;
		for (size_t i = 0; i < ARRAY_SIZE(tries) && !r->len; i++)
			if (tries[i] >= 8 && proc_read(r->p, addr, r->buf, tries[i]) == 0) {
				r->start = addr;
				r->len = tries[i];
			}
		if (!r->len)
			return proc_read_u64(r->p, addr, out);
	}
	memcpy(out, r->buf + (addr - r->start), 8);
	return 0;
}

struct chunk {
	uint64_t addr;		/* chunk header */
	uint64_t size;		/* chunk size, bits cleared */
	bool mmapped;
	bool free;		/* on a tcache or fastbin list, or a tcache structure */
};

struct walk {
	struct process *p;
	struct reader rd;
	struct chunk *c;	/* in-use chunks (by their bits) */
	size_t n, cap;
	struct glibc_heap *h;
	bool safe_linking, safe_known;
};

static int fail(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct walk *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->h->why, sizeof(w->h->why), fmt, ap);
	va_end(ap);
	return -1;
}

static void add_chunk(struct walk *w, uint64_t addr, uint64_t size, bool mmapped)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 1024;
		w->c = xrealloc(w->c, w->cap * sizeof(*w->c));
	}
	w->c[w->n++] = (struct chunk){ .addr = addr, .size = size, .mmapped = mmapped };
}

/*
 * The chunks of one contiguous heap from FIRST to END. TOP: the arena's
 * top chunk, where the walk must end if it is in this heap (0: an older
 * heap of a thread arena, which ends in a fencepost, a 16-byte chunk).
 */
static int walk_heap(struct walk *w, uint64_t first, uint64_t end, uint64_t top)
{
	uint64_t c = first, sizeword, next_word;

	if (rd_u64(&w->rd, c + 8, &sizeword) < 0)
		return fail(w, "cannot read the heap at 0x%" PRIx64 ": %s", c, strerror(errno));
	while (c != top) {
		uint64_t size = sizeword & ~SIZE_BITS;
		if (size == 16 && !top)
			return 0;	/* fencepost: the end of an older heap */
		if (size < MINSIZE || (size & 15) || c + size > end || c + size < c ||
		    (sizeword & IS_MMAPPED))
			return fail(w, "a chunk at 0x%" PRIx64 " does not hold together (size word "
				    "0x%" PRIx64 ")", c, sizeword);
		if (rd_u64(&w->rd, c + size + 8, &next_word) < 0)
			return fail(w, "cannot read the heap at 0x%" PRIx64 ": %s", c + size,
				    strerror(errno));
		if (next_word & PREV_INUSE)
			add_chunk(w, c, size, false);
		else
			w->h->bin_chunks++;
		c += size;
		sizeword = next_word;
		if (c == end && !top)
			return 0;
	}
	w->h->bin_chunks++;	/* the top chunk: mallinfo counts it as a free block */
	return 0;
}

int glibc_block_cmp(const void *a, const void *b)
{
	const struct glibc_block *x = a, *y = b;

	return x->ptr < y->ptr ? -1 : x->ptr > y->ptr;
}

static int by_addr(const void *a, const void *b)
{
	const struct chunk *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static struct chunk *find_chunk(struct walk *w, uint64_t addr)
{
	struct chunk key = { .addr = addr };

	return bsearch(&key, w->c, w->n, sizeof(*w->c), by_addr);
}

/*
 * Walk one free list whose first chunk header is HEAD. Each entry's link
 * is its first user word (chunk + 16), holding the next chunk's header
 * plus VALUE_BIAS (fastbins: 0; tcache entries point at user memory: 16).
 * Every chunk must be in use by its bits, on no other list, and of chunk
 * size SIZE. COUNT: the length the list must have, 0 if unknown. MARK:
 * mark its chunks free. Returns the number of chunks, -1 if the list does
 * not hold together read either way.
 */
static long walk_list(struct walk *w, uint64_t head, uint64_t value_bias, uint64_t size,
		      unsigned count, bool mark)
{
	struct chunk **seen = NULL;
	size_t cap = 0;
	long rc = -1;

	for (int mode = 0; mode < 2 && rc < 0; mode++) {
		bool mangled = w->safe_known ? w->safe_linking : mode == 0;
		uint64_t c = head;
		long n = 0;
		bool ok = true;
		while (c && ok) {
			struct chunk *ch = find_chunk(w, c);
			uint64_t link, slot = c + 16;
			if (!ch || ch->mmapped || ch->free || ch->size != size ||
			    n >= (long)MAX_LIST || (count && n >= (long)count) ||
			    rd_u64(&w->rd, slot, &link) < 0) {
				ok = false;
				break;
			}
			if (mangled)
				link ^= slot >> 12;
			if ((size_t)n == cap) {
				cap = cap ? cap * 2 : 16;
				seen = xrealloc(seen, cap * sizeof(*seen));
			}
			seen[n++] = ch;
			ok = !(link & 15) && (!link || link > value_bias);
			c = link ? link - value_bias : 0;
		}
		if (ok && (!count || n == (long)count)) {
			/* A list of one says nothing about the encoding. */
			if (!w->safe_known && n > 1) {
				w->safe_known = true;
				w->safe_linking = mangled;
			}
			for (long i = 0; mark && i < n; i++)
				seen[i]->free = true;
			rc = n;
		}
		if (w->safe_known && rc < 0 && mode == 0)
			break;
	}
	free(seen);
	return rc;
}

/* glibc's fastbin index of chunk size SIZE. */
static uint64_t fastbin_size(unsigned i)
{
	return (i + 2) * 16ull;
}

static int walk_fastbins(struct walk *w, uint64_t arena)
{
	for (unsigned i = 0; i < MS_NFASTBINS; i++) {
		uint64_t head;
		if (rd_u64(&w->rd, arena + MS_FASTBINS + 8 * i, &head) < 0)
			return fail(w, "cannot read an arena at 0x%" PRIx64, arena);
		if (!head)
			continue;
		/* A fastbin's fd points at the next chunk's header. */
		long n = walk_list(w, head, 0, fastbin_size(i), 0, true);
		if (n < 0)
			return fail(w, "fastbin %u of the arena at 0x%" PRIx64 " does not hold together",
				    i, arena);
		w->h->fast_chunks += (uint64_t)n;
		w->h->fast_bytes += (uint64_t)n * fastbin_size(i);
	}
	return 0;
}

/* Is the in-use chunk CH shaped like a tcache_perthread_struct (its
 * lists walk to their counts)? Marks the lists' chunks free if MARK. */
static bool tcache_lists(struct walk *w, struct chunk *ch, bool mark, uint64_t *entries)
{
	uint8_t raw[128 + 8 * TCACHE_BINS];
	bool wide = ch->size == 0x290;	/* uint16_t counts since 2.30 */
	size_t counts_len = wide ? 128 : 64;
	uint64_t mem = ch->addr + 16;

	if (proc_read(w->p, mem, raw, counts_len + 8 * TCACHE_BINS) < 0)
		return false;
	*entries = 0;
	for (unsigned i = 0; i < TCACHE_BINS; i++) {
		unsigned count = wide ? (unsigned)(raw[2 * i] | raw[2 * i + 1] << 8) : raw[i];
		uint64_t head;
		memcpy(&head, raw + counts_len + 8 * i, 8);
		if (!count != !head)
			return false;
		if (!head)
			continue;
		/* Entries are user memory: the chunk header is 16 below. */
		long n = walk_list(w, head - 16, 16, MINSIZE + 16ull * i, count, mark);
		if (n < 0)
			return false;
		*entries += (uint64_t)n;
	}
	return true;
}

struct mapping {
	uint64_t start, end;
	bool rw, anon, heap, file;
};

/* /proc/PID/maps, the fields we need. */
static size_t read_mappings(pid_t pid, struct mapping **out)
{
	char path[64], line[4352];
	struct mapping *v = NULL;
	size_t n = 0, cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		uint64_t a, e;
		char perms[8], name[4096] = "";
		unsigned long inode;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*s %*s %lu %4095[^\n]",
			   &a, &e, perms, &inode, name) < 4)
			continue;
		const char *nm = name + strspn(name, " ");
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[n++] = (struct mapping){
			.start = a, .end = e, .rw = perms[0] == 'r' && perms[1] == 'w',
			.anon = inode == 0 && !*nm, .heap = !strcmp(nm, "[heap]"),
			.file = inode != 0,
		};
	}
	fclose(f);
	*out = v;
	return n;
}

static const struct mapping *mapping_of(const struct mapping *m, size_t nm, uint64_t a)
{
	for (size_t i = 0; i < nm; i++)
		if (a >= m[i].start && a < m[i].end)
			return &m[i];
	return NULL;
}

/*
 * The tcaches: each thread's `tcache` pointer sits in libc's static TLS
 * at one offset below the thread pointer, the same in every thread. The
 * offset is where some thread's TLS points at a chunk shaped like a
 * tcache structure (lists that walk to their counts), one with entries
 * preferred: a program's own __thread pointer to a zeroed block of that
 * size would look like an empty one.
 */
static int walk_tcaches(struct walk *w, const uint64_t *tps, size_t ntp,
			const struct mapping *m, size_t nm)
{
	uint64_t *win = xmalloc(TLS_WINDOW);
	int64_t off = -1, empty_off = -1;

	for (size_t t = 0; t < ntp && off < 0; t++) {
		/* The TLS below the thread pointer, within its mapping (ld.so
		 * maps the main thread's TCB and static TLS together). */
		const struct mapping *tm = mapping_of(m, nm, tps[t] - 8);
		if (!tm)
			continue;
		size_t len = tps[t] - tm->start < TLS_WINDOW ? (size_t)(tps[t] - tm->start) : TLS_WINDOW;
		len &= ~(size_t)7;
		if (len < 8 || proc_read(w->p, tps[t] - len, win, len) < 0)
			continue;
		for (size_t k = len / 8; k-- > 0 && off < 0;) {
			struct chunk *ch = win[k] > 16 ? find_chunk(w, win[k] - 16) : NULL;
			uint64_t entries;
			if (!ch || ch->mmapped || (ch->size != 0x290 && ch->size != 0x250) ||
			    !tcache_lists(w, ch, false, &entries))
				continue;
			if (entries)
				off = (int64_t)(len - 8 * k);
			else if (empty_off < 0)
				empty_off = (int64_t)(len - 8 * k);
		}
	}
	free(win);
	if (off < 0)
		off = empty_off;
	for (size_t t = 0; off > 0 && t < ntp; t++) {
		uint64_t tc, entries;
		if (proc_read_u64(w->p, tps[t] - (uint64_t)off, &tc) < 0 || tc <= 16)
			continue;
		struct chunk *ch = find_chunk(w, tc - 16);
		if (!ch || ch->free)
			continue;	/* not a chunk, or seen through another thread */
		if (!tcache_lists(w, ch, true, &entries))
			return fail(w, "the tcache of the thread at 0x%" PRIx64 " does not hold together",
				    tps[t]);
		ch->free = true;	/* allocator state, not the program's */
		w->h->tcaches++;
		w->h->tcache_chunks += entries;
	}
	return 0;
}

/* ---- main_arena -------------------------------------------------------- */

/* Does the arena list starting at NEXT lead back to A? */
static bool arena_ring(struct process *p, uint64_t a, uint64_t next)
{
	for (unsigned hop = 0; hop < MAX_ARENAS; hop++) {
		if (next == a)
			return true;
		if (!next || proc_read_u64(p, next + MS_NEXT, &next) < 0)
			return false;
	}
	return false;
}

/* Empty bins of a malloc_state at A, whose bytes start at DATA + (A - START). */
static unsigned empty_bins(uint64_t a, uint64_t start, const uint8_t *data)
{
	unsigned n = 0;

	for (uint64_t k = 0; k < MS_NBIN_PAIRS; k++) {
		uint64_t x = a + MS_BINS + 16 * k, fd, bk;
		memcpy(&fd, data + (x - start), 8);
		memcpy(&bk, data + (x - start) + 8, 8);
		n += fd == x - 16 && bk == x - 16;
	}
	return n;
}

/* Is the malloc_state candidate at A (bytes in DATA) shaped like glibc's
 * main_arena? fastbinsY[] and top point into heaps, never into libc's own
 * data (a candidate shifted onto the bins would see bin pointers there);
 * top is set once malloc ran; next is the arena itself or a ring of
 * arenas back to it. */
static bool looks_like_main_arena(struct process *p, uint64_t a, uint64_t start,
				  const uint8_t *data, size_t len)
{
	uint64_t w, next;

	for (uint64_t off = MS_FASTBINS; off <= MS_TOP + 8; off += 8) {
		memcpy(&w, data + (a - start) + off, 8);
		if (w - start < len)
			return false;
		if (off == MS_TOP && !w)
			return false;
	}
	if (empty_bins(a, start, data) < 8)
		return false;
	memcpy(&next, data + (a - start) + MS_NEXT, 8);
	return next == a || arena_ring(p, a, next);
}

uint64_t glibc_main_arena_in(struct process *p, uint64_t start, const uint8_t *data, size_t len)
{
	for (size_t x = 0; x + 16 <= len; x += 8) {
		uint64_t fd, bk, X = start + x;
		memcpy(&fd, data + x, 8);
		memcpy(&bk, data + x + 8, 8);
		if (fd != X - 16 || bk != X - 16)
			continue;
		/* An empty bin: which one? Try each place the arena could start. */
		for (uint64_t k = 0; k < MS_NBIN_PAIRS; k++) {
			uint64_t a = X - MS_BINS - 16 * k;
			if (a < start || a + GLIBC_MALLOC_STATE_SIZE > start + len)
				continue;
			if (looks_like_main_arena(p, a, start, data, len))
				return a;
		}
	}
	return 0;
}

static uint64_t find_main_arena(struct process *p, const struct mapping *m, size_t nm)
{
	for (size_t i = 0; i < nm; i++) {
		size_t len = m[i].end - m[i].start;
		if (!m[i].file || !m[i].rw || len > (64u << 20))
			continue;
		uint8_t *data = xmalloc(len);
		uint64_t a = proc_read(p, m[i].start, data, len) == 0
			     ? glibc_main_arena_in(p, m[i].start, data, len) : 0;
		free(data);
		if (a)
			return a;
	}
	return 0;
}

/* ---- arenas ------------------------------------------------------------ */

/*
 * The main arena's sbrk heap ends with its top chunk and, when contiguous,
 * spans system_mem bytes: its first chunk is there (rounded to 16). A
 * static binary's TLS, or a foreign sbrk, may sit first: then the first
 * offset of the [heap] mapping from which the chunks chain to top.
 */
static int walk_main_arena(struct walk *w, uint64_t arena, const struct mapping *m, size_t nm)
{
	uint64_t top, topsize, system_mem;

	if (rd_u64(&w->rd, arena + MS_TOP, &top) < 0 ||
	    rd_u64(&w->rd, arena + MS_SYSTEM_MEM, &system_mem) < 0 ||
	    rd_u64(&w->rd, top + 8, &topsize) < 0)
		return fail(w, "cannot read glibc's main arena");
	uint64_t end = top + (topsize & ~SIZE_BITS);
	uint64_t first = (end - system_mem + 15) & ~15ull;
	size_t n0 = w->n;
	uint64_t bins0 = w->h->bin_chunks;
	if (walk_heap(w, first, end, top) == 0)
		return 0;
	const struct mapping *hm = mapping_of(m, nm, top);
	if (!hm)
		return fail(w, "glibc's top chunk 0x%" PRIx64 " is in no mapping", top);
	for (uint64_t c = hm->start; c < top && c < hm->start + (1u << 20); c += 16) {
		w->n = n0;
		w->h->bin_chunks = bins0;
		if (walk_heap(w, c, end, top) == 0)
			return 0;
	}
	return fail(w, "the chunks of glibc's main heap do not chain up to its top chunk");
}

/* A thread arena: its heaps from the one holding top back to the first. */
static int walk_thread_arena(struct walk *w, uint64_t arena)
{
	uint64_t top, topsize;

	if (rd_u64(&w->rd, arena + MS_TOP, &top) < 0 || rd_u64(&w->rd, top + 8, &topsize) < 0)
		return fail(w, "cannot read the arena at 0x%" PRIx64, arena);
	/* The first heap holds the arena: heap_info's size is their distance. */
	uint64_t info_size = arena - (arena & ~(ARENA_HEAP_SIZE - 1));
	if (info_size < 32 || info_size > 256 || (info_size & 15))
		return fail(w, "the arena at 0x%" PRIx64 " is not in a heap of its own", arena);
	uint64_t heap = top & ~(ARENA_HEAP_SIZE - 1);
	for (unsigned hops = 0; heap; hops++) {
		uint64_t ar_ptr, prev, size;
		if (hops > 4096 || rd_u64(&w->rd, heap, &ar_ptr) < 0 ||
		    rd_u64(&w->rd, heap + 8, &prev) < 0 || rd_u64(&w->rd, heap + 16, &size) < 0 ||
		    ar_ptr != arena || size > ARENA_HEAP_SIZE)
			return fail(w, "a heap of the arena at 0x%" PRIx64 " does not hold together",
				    arena);
		uint64_t first = heap + info_size;
		if (heap == (arena & ~(ARENA_HEAP_SIZE - 1)))
			first = (arena + GLIBC_MALLOC_STATE_SIZE + 15) & ~15ull;
		bool newest = top >= heap && top < heap + ARENA_HEAP_SIZE;
		if (walk_heap(w, first, newest ? top + (topsize & ~SIZE_BITS) : heap + size,
			      newest ? top : 0) < 0)
			return -1;
		w->h->heaps++;
		heap = prev;
	}
	return 0;
}

/*
 * mmapped chunks: each at the start of its own mapping (neighbours may be
 * merged into one), header (0, size | IS_MMAPPED), size a page multiple.
 * memalign moves the header up by the alignment's lead, keeping the old
 * one at the start: a second header in the first page whose prev_size is
 * its offset wins.
 */
static void find_mmapped(struct walk *w, const struct mapping *m, size_t nm)
{
	uint64_t page[PAGE / 8];

	for (size_t i = 0; i < nm; i++) {
		if (!m[i].anon || !m[i].rw)
			continue;
		for (uint64_t a = m[i].start; a + PAGE <= m[i].end;) {
			if (proc_read(w->p, a, page, PAGE) < 0)
				break;
			uint64_t size = page[1] & ~SIZE_BITS;
			if (page[0] != 0 || (page[1] & (IS_MMAPPED | NON_MAIN_ARENA)) != IS_MMAPPED ||
			    !size || (size & (PAGE - 1)) || a + size > m[i].end || a + size < a)
				break;
			uint64_t c = a;
			for (uint64_t off = 16; off + 16 <= PAGE; off += 16)
				if (page[off / 8] == off && page[off / 8 + 1] == ((size - off) | IS_MMAPPED)) {
					c = a + off;
					break;
				}
			add_chunk(w, c, size - (c - a), true);
			w->h->mmapped++;
			w->h->mmapped_bytes += size;	/* the lead too, as mallinfo's hblkhd */
			a += size;
		}
	}
}

int glibc_heap_walk(struct process *p, const uint64_t *tps, size_t ntp, struct glibc_heap *h)
{
	struct mapping *m = NULL;
	size_t nm = read_mappings(p->pid, &m);
	struct walk w = { .p = p, .h = h, .rd = { .p = p, .buf = xmalloc(WINDOW) } };
	int rc = -1;
	uint64_t t0 = now_ns();

	memset(h, 0, sizeof(*h));
	h->allocator = "glibc";
	h->main_arena = find_main_arena(p, m, nm);
	if (!h->main_arena) {
		fail(&w, "no glibc main_arena in its data");
		goto out;
	}
	uint64_t arenas[MAX_ARENAS];
	unsigned na = 0;
	for (uint64_t a = h->main_arena; na < MAX_ARENAS;) {
		arenas[na++] = a;
		if (rd_u64(&w.rd, a + MS_NEXT, &a) < 0 || !a || a == h->main_arena)
			break;
	}
	if (walk_main_arena(&w, h->main_arena, m, nm) < 0)
		goto out;
	h->heaps = 1;
	for (unsigned i = 1; i < na; i++)
		if (walk_thread_arena(&w, arenas[i]) < 0)
			goto out;
	h->arenas = na;
	uint64_t t_walk = now_ns();
	find_mmapped(&w, m, nm);
	/* Each heap's chunks come in address order: sort only if the heaps
	 * or mmapped chunks did not. */
	for (size_t i = 1; i < w.n; i++)
		if (w.c[i - 1].addr > w.c[i].addr) {
			qsort(w.c, w.n, sizeof(*w.c), by_addr);
			break;
		}
	uint64_t t_sort = now_ns();
	for (unsigned i = 0; i < na; i++)
		if (walk_fastbins(&w, arenas[i]) < 0)
			goto out;
	if (walk_tcaches(&w, tps, ntp, m, nm) < 0)
		goto out;
	debug("glibc heap: %zu chunks walked in %.3f ms, mmapped and sorted in %.3f ms, "
	      "free lists in %.3f ms", w.n, (t_walk - t0) / 1e6, (t_sort - t_walk) / 1e6,
	      (now_ns() - t_sort) / 1e6);

	/* The blocks are written over the chunk list (a block is smaller than
	 * a chunk, and block k never lies past chunk k), which is then
	 * shrunk: a process of millions of blocks holds one list, not two. */
	_Static_assert(sizeof(struct glibc_block) <= sizeof(struct chunk),
		       "blocks overwrite the chunk list in place");
	struct glibc_block *b = (struct glibc_block *)(void *)w.c;
	for (size_t i = 0; i < w.n; i++) {
		struct chunk c = w.c[i];
		if (c.free)
			continue;
		/* malloc_usable_size: the next chunk's prev_size word is usable
		 * by an in-use chunk; an mmapped chunk has no neighbour. */
		uint64_t size = c.size - (c.mmapped ? 16 : 8);
		b[h->n++] = (struct glibc_block){ c.addr + 16, size };
		h->bytes += size;
	}
	h->blocks = xrealloc(b, (h->n + 1) * sizeof(*b));
	w.c = NULL;
	rc = 0;
out:
	free(m);
	free(w.c);
	free(w.rd.buf);
	return rc;
}

void glibc_heap_release(struct glibc_heap *h)
{
	free(h->blocks);
	h->blocks = NULL;
	h->n = 0;
}
