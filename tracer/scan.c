/*
 * scan: the reachability scan behind leak kinds (see scan.h).
 *
 * Memory is read with process_vm_readv in large pieces: roots in 1 MiB
 * windows, reached blocks in batches of up to IOV_MAX blocks per call, so
 * a heap of a million blocks costs about a thousand syscalls.
 *
 * glibc specifics, each recognised from the memory itself and skipped
 * when it does not match (musl, jemalloc):
 *  - a block whose chunk size word (ptr - 8) has NON_MAIN_ARENA set lives
 *    in a thread arena heap: 64 MiB aligned, heap_info at its start. Its
 *    free chunks hold stale pointers, so the whole heap is not a root.
 *  - main_arena (struct malloc_state, 2200 bytes in glibc 2.27 and later)
 *    sits in libc's data. Its bins point at chunk headers, which can lie
 *    inside the last bytes of a live neighbour. glibc_heap.c finds it by
 *    its shape.
 */
#include "tracer/scan.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "tracer/allocdb.h"
#include "tracer/glibc_heap.h"
#include "symbols/symbols.h"
#include "tracer/fast.h"
#include "tracer/hooks.h"
#include "tracer/mmaps.h"
#include "tracer/proc.h"
#include "tracer/util.h"

#define WINDOW (1u << 20)
#define BATCH_BYTES (8u << 20)
#define CACHE_WINDOW (256u << 10)
#define CACHE_SLOTS 16
#define FEW 64			/* mark stack this short: read through the cache */
#define ARENA_HEAP_SIZE (64ull << 20)	/* glibc HEAP_MAX_SIZE on 64-bit */

enum mark { UNREACHED, REACHABLE, POSSIBLE, INDIRECT };

/* glibc's DTV: the TCB points one dtv_t (16 bytes) past the start of its
 * calloc'ed block (the length sits in front). */
#define DTV_BIAS 16

struct interval {
	uint64_t start, end;
};

struct scan {
	struct process *p;
	pid_t tid;		/* a live thread: reads go through its memory */
	struct block *b;
	size_t n;
	uint8_t *state;
	size_t *clique;		/* leader of an INDIRECT block's clique */
	size_t *stack;
	size_t n_stack, cap_stack;
	uint64_t lo, hi;	/* address range of all blocks */
	struct interval *ex;	/* excluded from roots, sorted */
	size_t n_ex, cap_ex;
	uint8_t *buf;
	uint64_t words;
	/* Windows of tracee memory, for walking a chain of blocks (a linked
	 * list keeps one block at a time on the mark stack). */
	struct {
		uint64_t start;
		size_t len;	/* 0: empty */
		uint8_t *data;
	} cache[CACHE_SLOTS];
	unsigned cache_next;
	/* clique phase */
	size_t leader;
	bool in_clique;
};

static const char *const kind_names[LEAK__COUNT] = {
	[LEAK_DEFINITE] = "definitely_lost",
	[LEAK_INDIRECT] = "indirectly_lost",
	[LEAK_POSSIBLE] = "possibly_lost",
	[LEAK_REACHABLE] = "still_reachable",
};

const char *leak_kind_name(enum leak_kind k)
{
	return k < LEAK__COUNT ? kind_names[k] : "?";
}

void scan_result_free(struct scan_result *res)
{
	if (!res)
		return;
	free(res->blocks);
	free(res->kind);
	free(res->leader);
	free(res);
}

/* Index of the block containing address A, or -1. */
static ssize_t find_block(const struct scan *s, uint64_t a)
{
	size_t lo = 0, hi = s->n;

	if (a < s->lo || a >= s->hi)
		return -1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->b[mid].ptr <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	const struct block *b = &s->b[lo - 1];
	if (a == b->ptr || a - b->ptr < b->size)
		return (ssize_t)(lo - 1);
	return -1;
}

static void push(struct scan *s, size_t i)
{
	if (s->n_stack == s->cap_stack) {
		s->cap_stack = s->cap_stack ? s->cap_stack * 2 : 1024;
		s->stack = xrealloc(s->stack, s->cap_stack * sizeof(*s->stack));
	}
	s->stack[s->n_stack++] = i;
}

/* One word W found in memory reached with certainty DEFINITE. */
static void consider(struct scan *s, uint64_t w, bool definite)
{
	ssize_t j = find_block(s, w);

	if (j < 0)
		return;
	size_t i = (size_t)j;
	if (s->in_clique) {
		/* valgrind's clique rule: any pointer from the clique claims an
		 * unreached block; a former clique leader joins with its own. */
		if (i != s->leader && s->state[i] == UNREACHED) {
			s->state[i] = INDIRECT;
			s->clique[i] = s->leader;
			push(s, i);
		}
		return;
	}
	uint8_t m = definite && w == s->b[i].ptr ? REACHABLE : POSSIBLE;
	if (s->state[i] == UNREACHED || (s->state[i] == POSSIBLE && m == REACHABLE)) {
		s->state[i] = m;
		push(s, i);
	}
}

/*
 * Is the word at DATA + OFF (remote address ADDR + OFF) the dtv field of a
 * glibc TCB (tcbhead_t: tcb, dtv, self; tcb and self point at the TCB
 * itself)? Then it points 16 bytes into the DTV's block, and that is the
 * DTV heuristic's start pointer, also for a thread ptleak never saw (one
 * being created as the process ends).
 */
static bool tcb_dtv(uint64_t addr, const uint8_t *data, size_t off, size_t len)
{
	uint64_t tcb, self, at = addr + off - 8;

	if (off < 8 || off + 16 > len)
		return false;
	memcpy(&tcb, data + off - 8, 8);
	memcpy(&self, data + off + 8, 8);
	return tcb == at && self == at;
}

static void scan_words(struct scan *s, uint64_t addr, const uint8_t *data, size_t len,
		       bool definite)
{
	size_t skip = (8 - (addr & 7)) & 7;

	for (size_t off = skip; off + 8 <= len; off += 8) {
		uint64_t w;
		memcpy(&w, data + off, 8);
		if (w < s->lo || w >= s->hi)
			continue;
		if (definite && !s->in_clique && tcb_dtv(addr, data, off, len)) {
			ssize_t j = find_block(s, w);
			if (j >= 0 && w == s->b[j].ptr + DTV_BIAS)
				w = s->b[j].ptr;
		}
		consider(s, w, definite);
	}
	s->words += len / 8;
}

/*
 * Read tracee memory as the program itself could: process_vm_readv
 * fails on PROT_NONE and guard pages, which /proc/PID/mem (proc_read's
 * fallback) would read. Through a live thread: a main thread gone with
 * pthread_exit has no memory of its own any more. 0, or -1.
 */
static int scan_read(struct scan *s, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { buf, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };

	return process_vm_readv(s->tid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

static int scan_read_u64(struct scan *s, uint64_t addr, uint64_t *out)
{
	return scan_read(s, addr, out, sizeof(*out));
}

/* Scan remote range [a, e), reading it in windows; where a window is not
 * readable, page by page: unreadable pages are skipped. */
static void scan_range(struct scan *s, uint64_t a, uint64_t e, bool definite)
{
	while (a < e) {
		size_t len = e - a > WINDOW ? WINDOW : (size_t)(e - a);
		if (scan_read(s, a, s->buf, len) == 0) {
			scan_words(s, a, s->buf, len, definite);
		} else {
			uint64_t pe = a + len;
			for (uint64_t q = a; q < pe;) {
				uint64_t next = (q & ~4095ull) + 4096;
				if (next > pe)
					next = pe;
				if (scan_read(s, q, s->buf, next - q) == 0)
					scan_words(s, q, s->buf, next - q, definite);
				q = next;
			}
		}
		a += len;
	}
}

/* Scan remote range [a, e) as a root. */
static void scan_remote(struct scan *s, uint64_t a, uint64_t e)
{
	scan_range(s, (a + 7) & ~7ull, e, true);
}

/* Where a block stops covering memory (a 0-byte block covers its start). */
static uint64_t block_end(const struct block *b)
{
	return b->ptr + (b->size ? b->size : 1);
}

/* First block ending after A (blocks do not overlap: ends are sorted). */
static size_t first_block_after(const struct scan *s, uint64_t a)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (block_end(&s->b[mid]) <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Scan [a, e) as a root, skipping live blocks and excluded intervals. */
static void scan_root(struct scan *s, uint64_t a, uint64_t e)
{
	size_t bi = first_block_after(s, a), xi = 0;

	while (xi < s->n_ex && s->ex[xi].end <= a)
		xi++;
	while (a < e) {
		uint64_t stop = e, resume_at = e;
		if (bi < s->n && s->b[bi].ptr < stop) {
			stop = s->b[bi].ptr;
			resume_at = block_end(&s->b[bi]);
		}
		if (xi < s->n_ex && s->ex[xi].start < stop) {
			stop = s->ex[xi].start;
			resume_at = s->ex[xi].end;
		}
		if (stop > a)
			scan_remote(s, a, stop);
		if (resume_at <= a)
			resume_at = a + 1;
		a = resume_at;
		while (bi < s->n && block_end(&s->b[bi]) <= a)
			bi++;
		while (xi < s->n_ex && s->ex[xi].end <= a)
			xi++;
	}
}

/* The bytes of block I, from a cached window when they fit in one; NULL
 * if unreadable. */
static const uint8_t *block_bytes(struct scan *s, size_t i)
{
	uint64_t ptr = s->b[i].ptr, size = s->b[i].size;

	if (size > CACHE_WINDOW / 2)
		return NULL;
	for (unsigned k = 0; k < CACHE_SLOTS; k++)
		if (s->cache[k].len && ptr >= s->cache[k].start &&
		    ptr + size <= s->cache[k].start + s->cache[k].len)
			return s->cache[k].data + (ptr - s->cache[k].start);
	unsigned k = s->cache_next++ % CACHE_SLOTS;
	if (!s->cache[k].data)
		s->cache[k].data = xmalloc(CACHE_WINDOW);
	/* An aligned window catches the neighbours on both sides; if its
	 * start is not mapped, start at the block itself. */
	uint64_t starts[2] = { ptr & ~(uint64_t)(CACHE_WINDOW - 1), ptr };
	for (int t = 0; t < 2; t++) {
		struct iovec l = { s->cache[k].data, CACHE_WINDOW };
		struct iovec r = { (void *)(uintptr_t)starts[t], CACHE_WINDOW };
		ssize_t got = process_vm_readv(s->tid, &l, 1, &r, 1, 0);
		if (got > 0 && starts[t] + (uint64_t)got >= ptr + size) {
			s->cache[k].start = starts[t];
			s->cache[k].len = (size_t)got;
			return s->cache[k].data + (ptr - starts[t]);
		}
	}
	s->cache[k].len = 0;
	return NULL;
}

/* Scan the contents of the blocks on the mark stack until it is empty. */
static void drain(struct scan *s)
{
	struct iovec local[IOV_MAX], remote[IOV_MAX];
	size_t idx[IOV_MAX];

	while (s->n_stack) {
		if (s->n_stack < FEW) {
			size_t i = s->stack[--s->n_stack];
			const uint8_t *data = block_bytes(s, i);
			bool definite = s->state[i] == REACHABLE && !s->in_clique;
			if (data) {
				scan_words(s, s->b[i].ptr, data, s->b[i].size, definite);
				continue;
			}
			s->stack[s->n_stack++] = i;	/* too big: the batch path */
		}
		size_t k = 0, total = 0;
		while (s->n_stack && k < IOV_MAX) {
			size_t i = s->stack[s->n_stack - 1];
			uint64_t size = s->b[i].size;
			if (size > BATCH_BYTES) {
				/* A huge block on its own, window by window. */
				if (k)
					break;
				s->n_stack--;
				bool definite = s->state[i] == REACHABLE && !s->in_clique;
				scan_range(s, s->b[i].ptr, s->b[i].ptr + size, definite);
				continue;
			}
			if (total + size > BATCH_BYTES)
				break;
			s->n_stack--;
			local[k] = (struct iovec){ s->buf + total, size };
			remote[k] = (struct iovec){ (void *)(uintptr_t)s->b[i].ptr, size };
			idx[k++] = i;
			total += size;
		}
		if (!k)
			continue;
		ssize_t got = process_vm_readv(s->tid, local, k, remote, k, 0);
		bool short_read = false;
		for (size_t j = 0; j < k; j++) {
			size_t i = idx[j];
			bool definite = s->state[i] == REACHABLE && !s->in_clique;
			uint8_t *data = local[j].iov_base;
			size_t off = (size_t)(data - s->buf);
			if (short_read || got < 0 || (size_t)got < off + local[j].iov_len) {
				/* The read stopped here: this block and the rest
				 * on their own, past their unreadable pages
				 * (scan_range reuses buf: only later entries'
				 * bytes are lost, and they are read again). */
				short_read = true;
				scan_range(s, s->b[i].ptr, s->b[i].ptr + local[j].iov_len, definite);
				continue;
			}
			scan_words(s, s->b[i].ptr, data, local[j].iov_len, definite);
		}
	}
}

static void exclude(struct scan *s, uint64_t start, uint64_t end)
{
	if (s->n_ex == s->cap_ex) {
		s->cap_ex = s->cap_ex ? s->cap_ex * 2 : 16;
		s->ex = xrealloc(s->ex, s->cap_ex * sizeof(*s->ex));
	}
	s->ex[s->n_ex++] = (struct interval){ start, end };
}

static int by_start(const void *a, const void *b)
{
	const struct interval *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* glibc thread arenas: heaps of blocks whose chunk says NON_MAIN_ARENA.
 * An arena heap reserves its whole aligned 64 MiB, so the first block of
 * each such range tells for all of them. */
static void exclude_arena_heaps(struct scan *s)
{
	uint64_t last = UINT64_MAX;

	for (size_t i = 0; i < s->n; i++) {
		uint64_t ptr = s->b[i].ptr, sizeword, heap_size;
		uint64_t h = ptr & ~(ARENA_HEAP_SIZE - 1);
		if (h == last || ptr < 16)
			continue;
		last = h;
		if (scan_read_u64(s, ptr - 8, &sizeword) < 0)
			continue;
		/* NON_MAIN_ARENA (4) set, IS_MMAPPED (2) clear, a sane size */
		if ((sizeword & 6) != 4 || (sizeword & ~7ull) < s->b[i].size)
			continue;
		if (scan_read_u64(s, h + 16, &heap_size) < 0 ||
		    heap_size > ARENA_HEAP_SIZE || h + heap_size < ptr + s->b[i].size)
			continue;
		exclude(s, h, h + ARENA_HEAP_SIZE);
	}
}

/* Look for glibc's main_arena in the data mapping [start, start+len),
 * whose contents are in DATA (glibc_heap.c knows its shape). */
static void exclude_main_arena(struct scan *s, uint64_t start, const uint8_t *data, size_t len)
{
	uint64_t a = glibc_main_arena_in(s->p, start, data, len);

	if (a) {
		debug("main_arena at 0x%" PRIx64, a);
		exclude(s, a, a + GLIBC_MALLOC_STATE_SIZE);
	}
}

/* An allocator that is not the C library's (hooks.h): what it mapped for
 * itself, and its own shared object's data and bss. Live blocks inside
 * count when reached, as everywhere. */
static void exclude_foreign_allocator(struct scan *s)
{
	struct symbols_range mods[8];
	size_t n = hooks_alloc_modules(s->p, mods, ARRAY_SIZE(mods));

	for (size_t i = 0; i < n; i++)
		exclude(s, mods[i].start, mods[i].end);
	if (!s->p->db->alloc_regions)
		return;
	size_t nr;
	const struct mmap_region *r = mmaps_list(s->p->db->alloc_regions, &nr);
	for (size_t i = 0; i < nr; i++)
		exclude(s, r[i].start, r[i].end);
	debug("foreign allocator: %zu modules, %zu regions excluded", n, nr);
}

struct region {
	uint64_t start, end;
	bool file, heap, stack;
	bool relro;		/* read-only, written before it was protected */
};

/*
 * The root candidates from /proc/PID/smaps: every readable, writable
 * mapping, plus read-only private file mappings the program wrote to
 * before protecting them (RELRO: .data.rel.ro and the GOT, which in a
 * static binary hold pointers to blocks malloc'ed during startup); those
 * pages show as anonymous (copied on write).
 */
static size_t read_maps(pid_t pid, pid_t tid, struct region **out)
{
	char path[64], line[4096];
	struct region *v = NULL, cur = { 0 };
	bool keep = false;	/* cur is a root candidate */
	size_t n = 0, cap = 0;
	FILE *f;

	/* A live thread's view: a leader gone with pthread_exit shows none. */
	snprintf(path, sizeof(path), "/proc/%d/task/%d/smaps", pid, tid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	for (;;) {
		bool eof = !fgets(line, sizeof(line), f);
		uint64_t a, e, off;
		char perms[8], name[4096] = "";
		unsigned long inode, anon_kb;

		if (!eof && cur.relro && sscanf(line, "Anonymous: %lu kB", &anon_kb) == 1) {
			keep = anon_kb > 0;
			continue;
		}
		if (!eof && sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %*s %lu %4095[^\n]",
				   &a, &e, perms, &off, &inode, name) < 5)
			continue;	/* another smaps field */
		if (keep) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				v = xrealloc(v, cap * sizeof(*v));
			}
			v[n++] = cur;
		}
		if (eof)
			break;
		const char *nm = name;
		while (*nm == ' ')
			nm++;
		bool readable = perms[0] == 'r', writable = perms[1] == 'w';
		cur = (struct region){
			.start = a, .end = e, .file = inode != 0,
			.heap = !strcmp(nm, "[heap]"), .stack = !strcmp(nm, "[stack]"),
			/* read-only private data of a file: kept if written */
			.relro = readable && !writable && perms[2] != 'x' &&
				 perms[3] == 'p' && inode != 0,
		};
		keep = readable && writable;
	}
	fclose(f);
	*out = v;
	return n;
}

/* Thread pointers and last stack pointers of P's exited threads: the
 * ring of reaped ones, and those that reached their exit event and are
 * not reaped yet. */
struct dead_ctx {
	struct past_thread *out;
	size_t n, max;
};

static void add_dead(struct thread *t, void *arg)
{
	struct dead_ctx *c = arg;

	if (t->exiting && t->exit_sp && c->n < c->max)
		c->out[c->n++] = (struct past_thread){ t->fs_base, t->exit_sp };
}

static size_t dead_threads(struct process *p, struct past_thread *out, size_t max)
{
	struct dead_ctx c = { .out = out, .max = max };
	unsigned past = p->n_past < ARRAY_SIZE(p->past) ? p->n_past : (unsigned)ARRAY_SIZE(p->past);

	for (unsigned i = 0; i < past && c.n < max; i++)
		c.out[c.n++] = p->past[i];
	thread_foreach(p, add_dead, &c);
	return c.n;
}

/* Thread pointers of threads in the registry that are not dead (live
 * ones, stopped for the scan or not, and those dying with the process)
 * first, then those of the dead (for the DTV heuristic). */
struct live_ctx {
	uint64_t *out;
	size_t n, max;
	bool dead;	/* the pass collecting the dead ones */
};

static void add_tp(struct thread *t, void *arg)
{
	struct live_ctx *c = arg;
	struct user_regs_struct r;

	/* A thread whose first stop is still queued (its creator's clone
	 * event came first) has its DTV already, but no fs_base of ours yet;
	 * in that stop, its registers can be read now. */
	if (!t->fs_base && thread_getregs(t->tid, &r) == 0)
		t->fs_base = r.fs_base;
	bool dead = t->exiting && t->exit_sp;

	if (dead == c->dead && t->fs_base && c->n < c->max)
		c->out[c->n++] = t->fs_base;
}

/* glibc's TCB: tcbhead_t { void *tcb; dtv_t *dtv; ... }, the DTV pointer
 * one dtv_t (16 bytes) past the start of its block. */
#define TCB_DTV_OFFSET 8

static void mark_dtvs(struct scan *s, const uint64_t *tps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t dtv;
		if (scan_read_u64(s, tps[i] + TCB_DTV_OFFSET, &dtv) < 0)
			continue;
		ssize_t j = find_block(s, dtv);
		if (j >= 0 && dtv == s->b[j].ptr + DTV_BIAS)
			consider(s, s->b[j].ptr, true);
	}
}

/*
 * A thread being born has its TCB and DTV before it has a thread pointer
 * we could know (pthread_create between allocating them and clone, when
 * the process exits). glibc puts the TCB at the top of the new thread's
 * stack mapping, its first word pointing at itself: look for that shape
 * in the last 64 KiB of anonymous writable mappings.
 */
#define TCB_SEARCH (64u << 10)
static void mark_unborn_dtvs(struct scan *s, const struct region *r, size_t nr)
{
	uint64_t *buf = xmalloc(TCB_SEARCH);

	for (size_t i = 0; i < nr; i++) {
		if (r[i].file || r[i].heap || r[i].stack || r[i].relro ||
		    r[i].end - r[i].start < TCB_SEARCH)
			continue;
		uint64_t at = r[i].end - TCB_SEARCH;
		if (proc_read(s->p, at, buf, TCB_SEARCH) < 0)
			continue;
		for (size_t k = 0; k + 1 < TCB_SEARCH / 8; k++) {
			if (buf[k] != at + 8 * k)
				continue;
			ssize_t j = find_block(s, buf[k + 1]);
			if (j >= 0 && buf[k + 1] == s->b[j].ptr + DTV_BIAS)
				consider(s, s->b[j].ptr, true);
		}
	}
	free(buf);
}

static void scan_registers(struct scan *s, const struct scan_thread *t)
{
	scan_words(s, 0, (const uint8_t *)&t->regs, sizeof(t->regs), true);
	if (t->has_fp)
		scan_words(s, 0, (const uint8_t *)t->fp.xmm_space, sizeof(t->fp.xmm_space), true);
}

static bool in_region(const struct region *r, uint64_t a)
{
	return a >= r->start && a < r->end;
}

/*
 * Where root scanning of region R starts: its start, where a live
 * thread's stack counts from if its stack pointer is inside (the dead
 * frames below are no root), or R->end when it is a dead thread's stack.
 */
static uint64_t root_start(const struct region *r, const struct scan_thread *th, size_t n,
			   const struct past_thread *dead, size_t n_dead,
			   const uint64_t *live_tps, size_t n_live)
{
	uint64_t from = UINT64_MAX;

	for (size_t i = 0; i < n; i++) {
		if (!in_region(r, th[i].regs.rsp))
			continue;
		if (r->stack || in_region(r, th[i].regs.fs_base))
			from = th[i].stack_from < from ? th[i].stack_from : from;
		else
			return r->start;	/* not a stack we know the shape of */
	}
	if (from != UINT64_MAX)
		return from > r->start ? from : r->start;
	for (size_t i = 0; i < n_live; i++)
		if (in_region(r, live_tps[i]))
			return r->start;	/* a live thread we have no registers of */
	for (size_t i = 0; i < n_dead; i++)
		if (in_region(r, dead[i].sp) && (r->stack || in_region(r, dead[i].tp)))
			return r->end;
	return r->start;
}

static struct scan_result *scan_blocks(struct process *p, const struct scan_thread *th,
				       size_t n_th, bool conservative, bool final)
{
	struct scan_result *res = xcalloc(1, sizeof(*res));
	uint64_t t0 = now_ns();

	/* The final scan: the table's memory becomes the result's. */
	res->blocks = final ? heap_take_sorted(p->db->heap, &res->n)
			    : heap_snapshot(p->db->heap, &res->n);
	res->kind = xcalloc(res->n + 1, 1);
	res->leader = xcalloc(res->n + 1, sizeof(*res->leader));
	if (!n_th) {
		for (size_t i = 0; i < res->n; i++)
			res->kind[i] = LEAK_DEFINITE;
		return res;
	}

	struct scan s = { .p = p, .tid = th[0].tid, .b = res->blocks, .n = res->n };
	s.state = xcalloc(s.n + 1, 1);
	s.clique = xcalloc(s.n + 1, sizeof(*s.clique));
	s.buf = xmalloc(BATCH_BYTES > WINDOW ? BATCH_BYTES : WINDOW);
	if (s.n) {
		s.lo = s.b[0].ptr;
		const struct block *last = &s.b[s.n - 1];
		s.hi = last->ptr + (last->size ? last->size : 1);
	}

	struct region *r = NULL;
	size_t nr = read_maps(p->pid, s.tid, &r);

	/* Exclusions first: allocator state that is not the program's. */
	if (!conservative) {
		exclude_arena_heaps(&s);
		exclude_foreign_allocator(&s);
	}
	for (size_t i = 0; i < nr; i++) {
		size_t len = r[i].end - r[i].start;
		if (!r[i].file || len > (64u << 20))
			continue;
		uint8_t *data = xmalloc(len);
		if (scan_read(&s, r[i].start, data, len) == 0)
			exclude_main_arena(&s, r[i].start, data, len);
		free(data);
	}
	if (s.n_ex)	/* qsort(NULL, 0, ...) is undefined */
		qsort(s.ex, s.n_ex, sizeof(*s.ex), by_start);

	/* Mark from the roots. */
	struct past_thread *dead = xmalloc((ARRAY_SIZE(p->past) + 1024) * sizeof(*dead));
	size_t n_dead = dead_threads(p, dead, ARRAY_SIZE(p->past) + 1024);
	uint64_t *tps = xmalloc((n_th + n_dead + 2048) * sizeof(*tps));
	struct live_ctx lc = { .out = tps, .max = 1024 };
	thread_foreach(p, add_tp, &lc);
	size_t n_live = lc.n;
	lc.dead = true;
	thread_foreach(p, add_tp, &lc);
	size_t ntp = lc.n;
	for (size_t i = 0; i < n_th; i++) {
		scan_registers(&s, &th[i]);
		tps[ntp++] = th[i].regs.fs_base;
	}
	for (size_t i = 0; i < n_dead; i++)
		tps[ntp++] = dead[i].tp;
	/* Fast mode: threads seldom stop, but the probe keeps the thread
	 * pointer of every thread that allocated. */
	ntp += fast_thread_pointers(p, tps + ntp, 1024);
	mark_dtvs(&s, tps, ntp);
	mark_unborn_dtvs(&s, r, nr);
	drain(&s);
	uint64_t first_chunk = heap_stats(p->db->heap)->min_ptr - 16;
	for (size_t i = 0; i < nr; i++) {
		uint64_t a = r[i].start, e = r[i].end;
		if (r[i].heap && !conservative) {
			/* The brk heap is the allocator's from its first chunk on;
			 * what was sbrk'd before (a static binary's TLS) is a root. */
			if (first_chunk < e)
				e = first_chunk > a ? first_chunk : a;
		}
		if (fast_owns(p, a))
			continue;	/* the probe's ring and state: ptleak's */
		uint64_t from = root_start(&r[i], th, n_th, dead, n_dead, tps, n_live);
		if (from > a)
			a = from;
		if (a < e)
			scan_root(&s, a, e);
		drain(&s);
	}
	free(dead);
	free(tps);

	/* Cliques among the unreached, in address order as valgrind does. */
	s.in_clique = true;
	for (size_t i = 0; i < s.n; i++) {
		if (s.state[i] != UNREACHED)
			continue;
		s.leader = i;
		push(&s, i);
		drain(&s);
	}

	for (size_t i = 0; i < s.n; i++) {
		switch (s.state[i]) {
		case REACHABLE: res->kind[i] = LEAK_REACHABLE; break;
		case POSSIBLE: res->kind[i] = LEAK_POSSIBLE; break;
		case INDIRECT: {
			/* A leader claimed later passed its clique on. */
			size_t l = s.clique[i];
			while (s.state[l] == INDIRECT)
				l = s.clique[l];
			res->kind[i] = LEAK_INDIRECT;
			res->leader[i] = l;
			break;
		}
		default: res->kind[i] = LEAK_DEFINITE; break;
		}
	}
	res->scanned = true;
	res->words_scanned = s.words;
	res->ns = now_ns() - t0;
	debug("scan: %zu blocks, %" PRIu64 " words, %zu exclusions, %.3f ms",
	      s.n, s.words, s.n_ex, res->ns / 1e6);
	free(r);
	free(s.state);
	free(s.clique);
	free(s.stack);
	free(s.ex);
	free(s.buf);
	for (unsigned k = 0; k < CACHE_SLOTS; k++)
		free(s.cache[k].data);
	return res;
}

struct scan_result *scan_process(struct process *p, const struct scan_thread *th,
				 size_t n_th, bool conservative)
{
	return scan_blocks(p, th, n_th, conservative, false);
}

struct scan_result *scan_process_final(struct process *p, const struct scan_thread *th,
				       size_t n_th, bool conservative)
{
	return scan_blocks(p, th, n_th, conservative, true);
}
