/*
 * heap_test: the allocation database (tracer/allocdb.h, heap.h) and the
 * conformance test every event source must pass.
 *
 * A scenario is what a program did, as a script of allocator calls by
 * thread (a call's entry and its return are separate steps, so two threads
 * can interleave inside a realloc), and what the database must hold after
 * it: the live blocks (address, size, stack, call) and the counters. A
 * source conforms when the events it produces for each script leave the
 * database exactly so, with sequence numbers in arrival order.
 *
 * Each source has a feeder below that turns a script step into its own
 * events and delivers them the way the tracer would; the ptrace source's
 * feeder uses hooks.c's own event builders (hooks_entry_event,
 * hooks_return_event). The fast source's feeder runs the probe's own code
 * (probe/probe.c, compiled in here): each thread of the script is a
 * thread of this test, which enters and leaves the probe as a program's
 * thread would, so the probe encodes the calls into a ring in this
 * process (fast_setup_local) and fast_drain decodes them into the
 * database, after every step or once at the end. A new source adds its
 * feeder to feeders[].
 *
 * Prints "ok ..." / "FAIL ..." lines; exits 1 on any failure.
 */
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "tracer/allocdb.h"
#include "tracer/fast.h"
#include "tracer/heap.h"
#include "tracer/hooks.h"
#include "tracer/proc.h"
#include "tracer/stacks.h"

/* The probe itself, as ptleak writes it into programs. */
#include "probe/probe.c"
#undef load
#undef store


/* ---- scripts -------------------------------------------------------- */

enum step_kind { ENTER, RETURN };

struct step {
	enum step_kind kind;
	int tid;
	enum alloc_call call;
	uint64_t args[3];
	uint64_t ret;		/* RETURN: rax; posix_memalign: the *memptr value */
	uint32_t stack;		/* the stack id the call's entry interns */
};

struct want_block {
	uint64_t ptr, size;
	uint32_t stack;
	enum alloc_call call;
};

struct scenario {
	const char *name;
	const struct step *steps;
	size_t n_steps;
	const struct want_block *live;
	size_t n_live;
	uint64_t allocations, frees, unknown_frees, peak_bytes;
};

#define A1(x) { (x), 0, 0 }
#define A2(x, y) { (x), (y), 0 }
#define A3(x, y, z) { (x), (y), (z) }
/* One call without another thread in between: entry, then return. */
#define CALL(t, c, args, r, st) { ENTER, (t), (c), args, 0, (st) }, { RETURN, (t), (c), args, (r), (st) }

static const struct step s_basic[] = {
	CALL(1, CALL_MALLOC, A1(10), 0x1000, 1),
	CALL(1, CALL_MALLOC, A1(20), 0x2000, 2),
	CALL(1, CALL_FREE, A1(0x1000), 0, 0),
	CALL(1, CALL_FREE, A1(0), 0, 0),		/* free(NULL): nothing */
	CALL(1, CALL_FREE, A1(0x9000), 0, 0),		/* allocated before tracing */
	CALL(1, CALL_MALLOC, A1(0), 0, 3),		/* malloc failed: nothing */
};
static const struct want_block w_basic[] = { { 0x2000, 20, 2, CALL_MALLOC } };

static const struct step s_kinds[] = {
	CALL(1, CALL_CALLOC, A2(7, 9), 0x1000, 1),
	CALL(1, CALL_CALLOC, A2(UINT64_MAX / 2, 3), 0, 2),	/* overflow: NULL */
	CALL(1, CALL_POSIX_MEMALIGN, A3(0x7ff0, 64, 100), 0x2000, 3),
	CALL(1, CALL_ALIGNED_ALLOC, A2(64, 128), 0x3000, 4),
	CALL(1, CALL_MEMALIGN, A2(32, 48), 0x4000, 5),
	CALL(1, CALL_VALLOC, A1(5000), 0x10000, 6),
	CALL(1, CALL_PVALLOC, A1(5000), 0x20000, 7),
	CALL(1, CALL_REALLOCARRAY, A3(0, 6, 11), 0x5000, 8),
	CALL(1, CALL_REALLOC, A2(0, 33), 0x6000, 9),		/* realloc(NULL, n) */
};
static const struct want_block w_kinds[] = {
	{ 0x1000, 63, 1, CALL_CALLOC },
	{ 0x2000, 100, 3, CALL_POSIX_MEMALIGN },
	{ 0x3000, 128, 4, CALL_ALIGNED_ALLOC },
	{ 0x4000, 48, 5, CALL_MEMALIGN },
	{ 0x5000, 66, 8, CALL_REALLOCARRAY },
	{ 0x6000, 33, 9, CALL_REALLOC },
	{ 0x10000, 5000, 6, CALL_VALLOC },
	{ 0x20000, 8192, 7, CALL_PVALLOC },		/* rounded to the page (4 KiB) */
};

/* Thread 1's realloc frees 0x1000 inside the call; thread 2's malloc gets
 * that address before the realloc returns. */
static const struct step s_realloc_race[] = {
	CALL(1, CALL_MALLOC, A1(10), 0x1000, 1),
	{ ENTER, 1, CALL_REALLOC, A2(0x1000, 50), 0, 3 },
	CALL(2, CALL_MALLOC, A1(8), 0x1000, 2),
	{ RETURN, 1, CALL_REALLOC, A2(0x1000, 50), 0x3000, 3 },
};
static const struct want_block w_realloc_race[] = {
	{ 0x1000, 8, 2, CALL_MALLOC },
	{ 0x3000, 50, 3, CALL_REALLOC },
};

static const struct step s_realloc_fail[] = {
	CALL(1, CALL_MALLOC, A1(10), 0x1000, 1),
	CALL(1, CALL_REALLOC, A2(0x1000, 1ull << 50), 0, 2),	/* failed: kept */
	CALL(1, CALL_MALLOC, A1(30), 0x2000, 3),
	CALL(1, CALL_REALLOC, A2(0x2000, 0), 0, 4),		/* realloc(p, 0): freed */
	CALL(1, CALL_MALLOC, A1(40), 0x4000, 5),
	CALL(1, CALL_REALLOC, A2(0x4000, 40), 0x4000, 6),	/* in place */
	CALL(1, CALL_REALLOCARRAY, A3(0x4000, 4, 20), 0x5000, 7),
};
static const struct want_block w_realloc_fail[] = {
	{ 0x1000, 10, 1, CALL_MALLOC },
	{ 0x5000, 80, 7, CALL_REALLOCARRAY },
};

/* A free we never saw (an entry point not hooked): the address comes back
 * from malloc; the old block is gone, not counted twice. */
static const struct step s_missed_free[] = {
	CALL(1, CALL_MALLOC, A1(100), 0x1000, 1),
	CALL(1, CALL_MALLOC, A1(10), 0x1000, 2),
	CALL(3, CALL_POSIX_MEMALIGN, A3(0x7ff0, 64, 1), 0, 4),	/* failed (rax != 0) */
};
static const struct want_block w_missed_free[] = { { 0x1000, 10, 2, CALL_MALLOC } };

/* An allocator's own API (jemalloc's, mimalloc's), by argument shape:
 * mallocx(40, flags), mi_heap_malloc(heap, 24), mi_heap_calloc(heap, 3,
 * 8), mi_mallocn(5, 10), mi_pvalloc(10), mi_heap_realloc(heap, p, 64),
 * mi_reallocn(p, 4, 10) in place, xallocx(p, 100, 20, 0) growing in place
 * to a real size of 128 (the block: 120), xallocx(p, 100, 0, 0) that
 * cannot (the old block stays), dallocx, mi_posix_memalign. */
static const struct step s_api[] = {
	CALL(1, CALL_API_SIZE0, A2(40, 0x100), 0x1000, 1),
	CALL(1, CALL_API_SIZE1, A2(0x7000, 24), 0x2000, 2),
	CALL(1, CALL_API_COUNT12, A3(0x7000, 3, 8), 0x3000, 3),
	CALL(1, CALL_API_COUNT01, A2(5, 10), 0x4000, 4),
	CALL(1, CALL_API_PAGES0, A1(10), 0x8000, 5),
	CALL(1, CALL_API_REALLOC12, A3(0x7000, 0x2000, 64), 0x5000, 6),
	CALL(1, CALL_API_REALLOCN012, A3(0x3000, 4, 10), 0x3000, 7),
	CALL(1, CALL_API_XALLOCX, A3(0x1000, 100, 20), 128, 8),
	CALL(1, CALL_API_XALLOCX, A3(0x4000, 100, 0), 64, 9),
	CALL(1, CALL_API_FREE, A2(0x8000, 0), 0, 0),
	CALL(1, CALL_API_POSIX_MEMALIGN, A3(0x7ff0, 64, 72), 0x9000, 10),
};
static const struct want_block w_api[] = {
	{ 0x1000, 120, 8, CALL_API_XALLOCX },
	{ 0x3000, 40, 7, CALL_API_REALLOCN012 },
	{ 0x4000, 50, 4, CALL_API_COUNT01 },
	{ 0x5000, 64, 6, CALL_API_REALLOC12 },
	{ 0x9000, 72, 10, CALL_API_POSIX_MEMALIGN },
};

#define SC(n, s, w, a, f, u, pk) { n, s, sizeof(s) / sizeof(s[0]), w, sizeof(w) / sizeof(w[0]), a, f, u, pk }
static const struct scenario scenarios[] = {
	SC("basic", s_basic, w_basic, 2, 1, 1, 30),
	SC("kinds", s_kinds, w_kinds, 8, 0, 0, 63 + 100 + 128 + 48 + 5000 + 8192 + 66 + 33),
	SC("realloc_race", s_realloc_race, w_realloc_race, 3, 1, 0, 58),
	SC("realloc_fail", s_realloc_fail, w_realloc_fail, 5, 3, 0, 90),
	SC("missed_free", s_missed_free, w_missed_free, 2, 0, 0, 100),
	SC("api", s_api, w_api, 9, 4, 0, 40 + 24 + 24 + 50 + 4096 - 24 + 64 - 24 + 40 - 40 + 120),
};

/* ---- feeders: one per source ----------------------------------------- */

struct feeder {
	const char *source;
	/* Deliver step S to DB as the source would. */
	void (*feed)(struct allocdb *db, const struct step *s);
	/* Optional: before the first step, after the last. */
	void (*begin)(struct allocdb *db);
	void (*end)(void);
	/* Optional: the script's number of the stack interned as ID (a
	 * source may intern in another order); else ID itself. */
	uint32_t (*script_stack)(struct allocdb *db, uint32_t id);
};

static void feed_ptrace(struct allocdb *db, const struct step *s)
{
	struct alloc_event ev;

	if (s->kind == ENTER) {
		if (hooks_entry_event(s->call, s->tid, s->args, &ev))
			allocdb_record(db, &ev);
		return;
	}
	uint64_t rax = s->ret;
	bool pm = s->call == CALL_POSIX_MEMALIGN || s->call == CALL_API_POSIX_MEMALIGN;
	if (pm)
		rax = s->ret ? 0 : 12;	/* ENOMEM when it got nothing */
	if (!hooks_return_event(s->call, s->tid, s->args, rax, s->stack, &ev))
		return;
	if (pm && rax == 0)
		ev.ptr = s->ret;	/* what the source reads from *memptr */
	allocdb_record(db, &ev);
}

/*
 * The fast source. One thread of this test per thread of the script,
 * each with its own thread pointer and so its own slot in the probe;
 * each step runs on its thread (the others wait), in the script's order.
 * A step's entry is probe_enter() with the registers the program's call
 * would have, its return probe_exit() with the result, as probe_entry's
 * assembly calls them. Each call's frame sits in FRAMES, the "stack"
 * the probe is told about: its return address is 0, so the probe's walk
 * ends at frame 0, the site, whose address stands for the script's stack
 * (stack K: SITE_BASE + 16 K; fast_script_stack reads K back from the
 * stack a block got).
 */
#define SCRIPT_THREADS 4
#define SITE_BASE 0x400000u

static struct fast_feed {
	struct process *p;
	struct probe_shared *sh;
	bool batched;	/* drain once, at the end */
	struct worker {
		pthread_t th;
		sem_t go, done;
		const struct step *step;	/* NULL: leave */
		bool started;
	} w[SCRIPT_THREADS];
	struct probe_frame frames[SCRIPT_THREADS];
	struct probe_site sites[SCRIPT_THREADS];
	uint64_t memptr[SCRIPT_THREADS];	/* posix_memalign's *memptr */
} ff;

/* Step S on the thread it belongs to (K: its index). */
static void probe_step(int k, const struct step *s)
{
	struct probe_frame *f = &ff.frames[k];
	struct probe_site *site = &ff.sites[k];
	bool pm = s->call == CALL_POSIX_MEMALIGN || s->call == CALL_API_POSIX_MEMALIGN;

	if (s->kind == ENTER) {
		memset(f, 0, sizeof(*f));
		*site = (struct probe_site){ .addr = SITE_BASE + 16u * s->stack,
					     .slot = 0, .call = (uint32_t)s->call };
		f->r11 = (uint64_t)site;
		f->rdi = s->args[0];
		f->rsi = s->args[1];
		f->rdx = s->args[2];
		if (pm)
			f->rdi = (uint64_t)&ff.memptr[k];	/* int posix_memalign(void **, ...) */
		f->ret = 0;
		f->slot = UINT32_MAX;
		if (!probe_enter(f))
			f->slot = UINT32_MAX;	/* not wrapped: free, or passed through */
		return;
	}
	if (f->slot == UINT32_MAX)
		return;	/* the probe recorded this call at its entry, or not at all */
	uint64_t rax = s->ret;
	if (pm) {
		ff.memptr[k] = s->ret;
		rax = s->ret ? 0 : 12;	/* ENOMEM when it got nothing */
	}
	probe_exit(f, rax);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int k = (int)(w - ff.w);

	for (;;) {
		sem_wait(&w->go);
		if (!w->step)
			return NULL;
		probe_step(k, w->step);
		sem_post(&w->done);
	}
}

static void fast_begin(struct allocdb *db)
{
	ff.p = process_new(getpid(), ROLE_TRACED);
	ff.p->db = db;
	ff.sh = fast_setup_local(ff.p);
	if (!ff.sh) {
		printf("FAIL cannot map a ring\n");
		exit(1);
	}
	/* What fast_setup writes into the program's control page. */
	probe_ctl = (struct probe_ctl){
		.armed = 1, .tracer_pid = getpid(), .num_callers = 12,
		.shared = (uint64_t)ff.sh,
	};
	ff.sh->stacks[0].lo = (uint64_t)ff.frames;
	ff.sh->stacks[0].hi = (uint64_t)(ff.frames + SCRIPT_THREADS);
	ff.sh->n_stacks = 1;
}

static void fast_feed(struct allocdb *db, const struct step *s)
{
	int k = s->tid % SCRIPT_THREADS;
	struct worker *w = &ff.w[k];

	(void)db;
	if (!w->started) {
		sem_init(&w->go, 0, 0);
		sem_init(&w->done, 0, 0);
		w->started = pthread_create(&w->th, NULL, worker_main, w) == 0;
		if (!w->started) {
			printf("FAIL cannot start a thread\n");
			exit(1);
		}
	}
	w->step = s;
	sem_post(&w->go);
	sem_wait(&w->done);
	if (!ff.batched)
		fast_drain(ff.p, 0);
}

static void fast_end(void)
{
	fast_drain(ff.p, 0);
	check(ff.sh->head == ff.sh->tail && !ff.sh->dead,
	      "fast%s: the ring is drained (%" PRIu64 " cells), the probe alive",
	      ff.batched ? " (drained once)" : "", ff.sh->tail);
	for (int k = 0; k < SCRIPT_THREADS; k++) {
		struct worker *w = &ff.w[k];
		if (!w->started)
			continue;
		w->step = NULL;
		sem_post(&w->go);
		pthread_join(w->th, NULL);
		sem_destroy(&w->go);
		sem_destroy(&w->done);
		w->started = false;
	}
	ff.p->db = NULL;	/* run_scenario's */
	fast_free(ff.p);
	process_free(ff.p);
	ff.p = NULL;
}

static uint32_t fast_script_stack(struct allocdb *db, uint32_t id)
{
	size_t n;
	const uint64_t *pcs = stacks_get(db->stacks, id, &n);

	return n == 1 && pcs[0] >= SITE_BASE ? (uint32_t)((pcs[0] - SITE_BASE) / 16) : UINT32_MAX;
}

static void fast_begin_batched(struct allocdb *db)
{
	fast_begin(db);
	ff.batched = true;
}

static void fast_begin_each(struct allocdb *db)
{
	fast_begin(db);
	ff.batched = false;
}

static const struct feeder feeders[] = {
	{ "ptrace", feed_ptrace, NULL, NULL, NULL },
	{ "fast", fast_feed, fast_begin_each, fast_end, fast_script_stack },
	{ "fast-batched", fast_feed, fast_begin_batched, fast_end, fast_script_stack },
};

static void run_scenario(const struct feeder *f, const struct scenario *sc)
{
	struct allocdb *db = allocdb_new();
	uint64_t seq0 = allocdb_last_seq();

	if (f->begin)
		f->begin(db);
	for (size_t i = 0; i < sc->n_steps; i++)
		f->feed(db, &sc->steps[i]);
	if (f->end)
		f->end();
	const struct heap_stats *st = heap_stats(db->heap);
	size_t n;
	struct block *b = heap_snapshot(db->heap, &n);
	bool same = n == sc->n_live;
	uint64_t live_bytes = 0, last_seq = 0;
	bool seq_ok = true;
	for (size_t i = 0; same && i < n; i++) {
		const struct want_block *w = &sc->live[i];
		uint32_t stack = f->script_stack ? f->script_stack(db, b[i].stack_id) : b[i].stack_id;
		if (b[i].ptr != w->ptr || b[i].size != w->size || stack != w->stack) {
			same = false;
			printf("    block %zu: 0x%" PRIx64 " %" PRIu64 " bytes stack %u, want "
			       "0x%" PRIx64 " %" PRIu64 " bytes stack %u\n", i, b[i].ptr,
			       b[i].size, stack, w->ptr, w->size, w->stack);
		}
		live_bytes += b[i].size;
		if (b[i].seq <= seq0 || b[i].seq > allocdb_last_seq())
			seq_ok = false;
		if (b[i].seq > last_seq)
			last_seq = b[i].seq;
	}
	check(same, "%s/%s: %zu live blocks, each with its address, size and stack",
	      f->source, sc->name, sc->n_live);
	check(st->live_blocks == sc->n_live && st->live_bytes == live_bytes,
	      "%s/%s: live counters %" PRIu64 " blocks %" PRIu64 " bytes", f->source, sc->name,
	      st->live_blocks, st->live_bytes);
	check(st->allocations == sc->allocations && st->frees == sc->frees &&
	      st->unknown_frees == sc->unknown_frees,
	      "%s/%s: %" PRIu64 " allocations (want %" PRIu64 "), %" PRIu64 " frees (want %"
	      PRIu64 "), %" PRIu64 " unknown frees (want %" PRIu64 ")", f->source, sc->name,
	      st->allocations, sc->allocations, st->frees, sc->frees, st->unknown_frees,
	      sc->unknown_frees);
	check(st->peak_bytes == sc->peak_bytes, "%s/%s: peak %" PRIu64 " bytes (want %" PRIu64 ")",
	      f->source, sc->name, st->peak_bytes, sc->peak_bytes);
	check(seq_ok, "%s/%s: every block's sequence number is one of this run's",
	      f->source, sc->name);
	free(b);
	allocdb_free(db);
}

/* ---- the database itself -------------------------------------------- */

static void test_seq_and_clone(void)
{
	struct allocdb *db = allocdb_new();
	uint64_t pcs[3] = { 0x401000, 0x402000, 0x403000 };
	uint32_t id = allocdb_intern(db, pcs, 3);
	struct alloc_event a = { .op = OP_ALLOC, .call = CALL_MALLOC, .tid = 1, .ptr = 0x100,
				 .size = 16, .stack_id = id };
	struct alloc_event b = a;

	b.ptr = 0x200;
	uint64_t s1 = allocdb_record(db, &a), s2 = allocdb_record(db, &b);
	check(s1 == a.seq && s2 == b.seq && s2 == s1 + 1 && allocdb_last_seq() == s2,
	      "allocdb_record stamps consecutive sequence numbers (%" PRIu64 ", %" PRIu64 ")",
	      s1, s2);
	/* One counter across databases: events of two processes still order. */
	struct allocdb *other = allocdb_new();
	struct alloc_event c = a;
	uint64_t s3 = allocdb_record(other, &c);
	check(s3 == s2 + 1, "the sequence is shared by every database");

	struct allocdb *cl = allocdb_clone(db);
	size_t n, ncl;
	struct block *bl = heap_snapshot(db->heap, &n), *bc = heap_snapshot(cl->heap, &ncl);
	check(n == 2 && ncl == 2 && !memcmp(bl, bc, n * sizeof(*bl)),
	      "a clone holds the same blocks, sequence numbers included");
	size_t k;
	const uint64_t *got = stacks_get(cl->stacks, id, &k);
	check(k == 3 && !memcmp(got, pcs, sizeof(pcs)) && allocdb_intern(cl, pcs, 3) == id,
	      "a clone keeps stack ids");
	/* The clone is independent. */
	struct alloc_event f = { .op = OP_FREE, .call = CALL_FREE, .tid = 1, .ptr = 0x100 };
	allocdb_record(cl, &f);
	check(heap_stats(db->heap)->live_blocks == 2 && heap_stats(cl->heap)->live_blocks == 1,
	      "freeing in the clone leaves the original alone");
	free(bl);
	free(bc);
	allocdb_free(cl);
	allocdb_free(other);
	allocdb_free(db);
}

/* Many blocks, freed in a scattered order: the table grows, deletion
 * shifts runs back, and nothing is lost or found twice. */
static void test_many(void)
{
	struct allocdb *db = allocdb_new();
	const size_t N = 200000;
	uint64_t want_bytes = 0;

	for (size_t i = 0; i < N; i++) {
		/* Addresses 16 bytes apart share their low bits, as real ones do. */
		struct alloc_event ev = { .op = OP_ALLOC, .call = CALL_MALLOC, .tid = 1,
					  .ptr = 0x10000 + 16 * i, .size = i % 100 + 1 };
		allocdb_record(db, &ev);
	}
	for (size_t i = 0; i < N; i++) {
		size_t j = (i * 7919) % N;	/* a permutation: 7919 is prime */
		if (j % 3 == 0) {
			struct alloc_event ev = { .op = OP_FREE, .call = CALL_FREE, .tid = 1,
						  .ptr = 0x10000 + 16 * j };
			allocdb_record(db, &ev);
		}
	}
	size_t live = 0;
	for (size_t j = 0; j < N; j++)
		if (j % 3) {
			live++;
			want_bytes += j % 100 + 1;
		}
	size_t n;
	struct block *b = heap_snapshot(db->heap, &n);
	bool sorted = true, right = true;
	size_t k = 0;
	for (size_t j = 0; j < N && right; j++) {
		if (j % 3 == 0)
			continue;
		right = k < n && b[k].ptr == 0x10000 + 16 * j && b[k].size == j % 100 + 1;
		k++;
	}
	for (size_t i = 1; i < n; i++)
		sorted &= b[i - 1].ptr < b[i].ptr;
	const struct heap_stats *st = heap_stats(db->heap);
	check(n == live && right && sorted, "%zu blocks, %zu freed in scattered order: %zu left, "
	      "sorted by address, each the right one", N, N - live, n);
	check(st->live_blocks == live && st->live_bytes == want_bytes && st->frees == N - live &&
	      st->min_ptr == 0x10000, "counters after the churn");
	free(b);
	allocdb_free(db);
}

/* Addresses spread over the whole table (runs wrap around its end),
 * allocated and freed while it doubles in place over and over: after each
 * round every live block is found again (a free of each one takes it),
 * and none is lost. */
static void test_grow_in_place(void)
{
	struct allocdb *db = allocdb_new();
	const size_t N = 300000;
	uint64_t *ptrs = malloc(N * sizeof(*ptrs));
	uint64_t x = 88172645463325252ull;
	bool all_found = true;
	size_t live = 0;

	for (size_t i = 0; i < N; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;	/* xorshift64 */
		ptrs[i] = (x | 1) & 0x7fffffffffffull;	/* odd: never 0, all distinct enough */
		struct alloc_event ev = { .op = OP_ALLOC, .call = CALL_MALLOC, .tid = 1,
					  .ptr = ptrs[i], .size = 8 };
		allocdb_record(db, &ev);
		live++;
		if (i % 4 == 3) {	/* free one of the last four: holes in the runs */
			struct alloc_event fr = { .op = OP_FREE, .call = CALL_FREE, .tid = 1,
						  .ptr = ptrs[i - 2] };
			allocdb_record(db, &fr);
			ptrs[i - 2] = 0;
			live--;
		}
	}
	/* xorshift repeats no value within its period: the addresses are distinct. */
	check(heap_stats(db->heap)->live_blocks == live, "%zu random addresses live after "
	      "doubling the table in place %s", live, "(none lost)");
	size_t n;
	struct block *b = heap_snapshot(db->heap, &n);
	bool sorted = n == live;
	for (size_t i = 1; i < n; i++)
		sorted &= b[i - 1].ptr < b[i].ptr;
	check(sorted, "the snapshot of %zu random addresses is sorted", n);
	free(b);
	for (size_t i = 0; i < N; i++) {
		if (!ptrs[i])
			continue;
		uint64_t before = heap_stats(db->heap)->live_blocks;
		struct alloc_event fr = { .op = OP_FREE, .call = CALL_FREE, .tid = 1, .ptr = ptrs[i] };
		allocdb_record(db, &fr);
		all_found &= heap_stats(db->heap)->live_blocks == before - 1;
	}
	check(all_found && heap_stats(db->heap)->live_blocks == 0,
	      "each of them found by its free");
	free(ptrs);
	allocdb_free(db);
}

/* A block the program allocated between the attach and a second
 * reading of its heap (the first found it half updated) is in that
 * reading too: it stays the program's own, with its stack. */
static void test_before_attach_known(void)
{
	struct allocdb *db = allocdb_new();
	uint32_t stack = allocdb_intern(db, (const uint64_t[]){ 0x401000, 0x402000 }, 2);
	struct alloc_event a = { .op = OP_ALLOC, .call = CALL_MALLOC, .tid = 1,
				 .ptr = 0x10000, .size = 40, .stack_id = stack };
	allocdb_record(db, &a);
	uint64_t found[] = { 0x10000, 0x20000 };
	for (size_t i = 0; i < 2; i++) {
		struct alloc_event ev = { .op = OP_BEFORE_ATTACH, .ptr = found[i], .size = 40 };
		allocdb_record(db, &ev);
	}
	const struct heap_stats *st = heap_stats(db->heap);
	size_t n;
	struct block *b = heap_snapshot(db->heap, &n);
	check(n == 2 && b[0].ptr == 0x10000 && b[0].stack_id == stack && !b[0].before_attach &&
	      b[1].ptr == 0x20000 && b[1].before_attach,
	      "a block allocated since the attach %s", "keeps its stack when the heap is read");
	check(st->before_found_blocks == 1 && st->before_blocks == 1 && st->live_blocks == 2,
	      "and counts once, as the program's (found %" PRIu64 ", before %" PRIu64 ")",
	      st->before_found_blocks, st->before_blocks);
	free(b);
	allocdb_free(db);
}

int main(void)
{
	if (sysconf(_SC_PAGESIZE) != 4096) {
		printf("FAIL the scenarios assume 4 KiB pages (pvalloc)\n");
		return 1;
	}
	for (size_t f = 0; f < sizeof(feeders) / sizeof(feeders[0]); f++)
		for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
			run_scenario(&feeders[f], &scenarios[i]);
	test_seq_and_clone();
	test_many();
	test_grow_in_place();
	test_before_attach_known();
	return failures ? 1 : 0;
}
