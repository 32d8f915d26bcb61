/*
 * model: grouping blocks into loss records and symbolizing their frames.
 *
 * Blocks are sorted by (kind, stack, allocation time) so that each record
 * is one run, its oldest and median ages read off directly; indirectly
 * lost blocks are then added to the definitely lost record of the block
 * that leads their clique.
 */
#include "tracer/model.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tracer/allocdb.h"
#include "tracer/frames.h"
#include "tracer/mmaps.h"
#include "tracer/options.h"
#include "tracer/proc.h"
#include "tracer/stacks.h"
#include "tracer/util.h"

static const char *const kind_words[LEAK__COUNT] = {
	[LEAK_DEFINITE] = "definitely lost",
	[LEAK_INDIRECT] = "indirectly lost",
	[LEAK_POSSIBLE] = "possibly lost",
	[LEAK_REACHABLE] = "still reachable",
};

const char *record_change_name(enum record_change c)
{
	static const char *const names[] = {
		[CHANGE_NONE] = "unchanged", [CHANGE_NEW] = "new",
		[CHANGE_INCREASED] = "increased", [CHANGE_DECREASED] = "decreased",
	};

	return c <= CHANGE_DECREASED ? names[c] : "?";
}

const char *leak_kind_words(enum leak_kind k)
{
	return k < LEAK__COUNT ? kind_words[k] : "?";
}

unsigned leak_kind_flag(enum leak_kind k)
{
	return k < LEAK__COUNT ? 1u << k : 0;
}

const struct model_supp_use *model_supp_of(const struct report_model *m,
					   const struct model_record *rec)
{
	for (size_t i = 0; rec->suppressed_by >= 0 && i < m->n_supp_used; i++)
		if (m->supp_used[i].index == rec->suppressed_by)
			return &m->supp_used[i];
	return NULL;
}

double model_age_s(const struct report_model *m, uint64_t t)
{
	return t && m->now_ns > t ? (double)(m->now_ns - t) / 1e9 : 0.0;
}

/* Blocks are grouped through an array of their indices (4 bytes a block,
 * not a copy of each: a process may hold millions), sorted by (kind,
 * before the attach, stack, time, address). */
struct members_of {
	const struct scan_result *r;
};

static int by_member(const void *a, const void *b, void *arg)
{
	const struct scan_result *r = ((const struct members_of *)arg)->r;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	const struct block *x = &r->blocks[i], *y = &r->blocks[j];

	if (r->kind[i] != r->kind[j])
		return r->kind[i] < r->kind[j] ? -1 : 1;
	if (x->before_attach != y->before_attach)
		return x->before_attach ? -1 : 1;
	if (x->stack_id != y->stack_id)
		return x->stack_id < y->stack_id ? -1 : 1;
	if (x->time_ms != y->time_ms)
		return x->time_ms < y->time_ms ? -1 : 1;
	return x->ptr < y->ptr ? -1 : x->ptr > y->ptr;
}

static int by_record(const void *a, const void *b)
{
	const struct model_record *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->before_attach != y->before_attach)
		return x->before_attach ? -1 : 1;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

static int by_size(const void *a, const void *b)
{
	const struct model_record *x = a, *y = b;
	uint64_t xs = x->bytes + x->indirect_bytes, ys = y->bytes + y->indirect_bytes;

	if (xs != ys)
		return xs > ys ? -1 : 1;
	if (x->blocks != y->blocks)
		return x->blocks > y->blocks ? -1 : 1;
	return by_record(a, b);
}

static int by_addr(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Group the blocks of R into records (sorted by kind and stack). */
static void make_records(struct report_model *m, const struct heap *h,
			 const struct scan_result *r)
{
	uint32_t *mb = xmalloc((r->n + 1) * sizeof(*mb));
	struct model_record *v = xcalloc(r->n + 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++) {
		enum leak_kind k = (enum leak_kind)r->kind[i];
		mb[i] = (uint32_t)i;
		m->totals.bytes[k] += r->blocks[i].size;
		m->totals.blocks[k]++;
	}
	struct members_of ctx = { r };
	qsort_r(mb, r->n, sizeof(*mb), by_member, &ctx);
	for (size_t i = 0, j; i < r->n; i = j) {
		struct model_record *rec = &v[n++];
		const struct block *first = &r->blocks[mb[i]];
		enum leak_kind k = (enum leak_kind)r->kind[mb[i]];
		*rec = (struct model_record){ .kind = k, .stack_id = first->stack_id,
					      .before_attach = first->before_attach,
					      .call = (enum alloc_call)first->call,
					      .oldest_ns = heap_block_time_ns(h, first),
					      .suppressed_by = -1 };
		for (j = i; j < r->n && r->kind[mb[j]] == k &&
			    r->blocks[mb[j]].before_attach == first->before_attach &&
			    r->blocks[mb[j]].stack_id == first->stack_id; j++) {
			rec->bytes += r->blocks[mb[j]].size;
			rec->blocks++;
		}
		rec->median_ns = heap_block_time_ns(h, &r->blocks[mb[i + (j - i) / 2]]);
		rec->addrs = xmalloc(rec->blocks * sizeof(*rec->addrs));
		for (size_t q = i; q < j; q++)
			rec->addrs[q - i] = r->blocks[mb[q]].ptr;
		qsort(rec->addrs, rec->blocks, sizeof(*rec->addrs), by_addr);
	}
	free(mb);
	for (size_t i = 0; i < r->n; i++) {
		if (r->kind[i] != LEAK_INDIRECT)
			continue;
		const struct block *lead = &r->blocks[r->leader[i]];
		struct model_record key = { .kind = LEAK_DEFINITE, .stack_id = lead->stack_id,
					    .before_attach = lead->before_attach };
		struct model_record *rec = bsearch(&key, v, n, sizeof(*v), by_record);
		if (rec) {
			rec->indirect_bytes += r->blocks[i].size;
			rec->indirect_blocks++;
		}
	}
	qsort(v, n, sizeof(*v), by_size);
	m->records = v;
	m->n_records = n;
}

static int by_stack_then_start(const void *a, const void *b)
{
	const struct mmap_region *x = a, *y = b;

	if (x->stack_id != y->stack_id)
		return x->stack_id < y->stack_id ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int by_mmap_size(const void *a, const void *b)
{
	const struct model_mmap *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

/* Made by glibc's pthread_create for a thread's stack? */
static bool thread_stack(const struct model_frame *fr, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fr[i].si.function && (!strcmp(fr[i].si.function, "allocate_stack") ||
					  !strncmp(fr[i].si.function, "pthread_create", 14)))
			return true;
	return false;
}

/* The regions of P's mmaps grouped by stack, symbolized. */
static void make_mmaps(struct report_model *m, struct process *p, const struct options *o)
{
	size_t n;
	const struct mmap_region *regs = mmaps_list(p->db->mmaps, &n);
	struct mmap_region *v = xmalloc((n + 1) * sizeof(*v));
	struct model_frame fr[MODEL_MAX_FRAMES];

	m->mmaps_tracked = true;
	memcpy(v, regs, n * sizeof(*v));
	qsort(v, n, sizeof(*v), by_stack_then_start);
	m->mmaps = xcalloc(n + 1, sizeof(*m->mmaps));
	for (size_t i = 0, j; i < n; i = j) {
		uint64_t bytes = 0, oldest = v[i].time_ns;
		for (j = i; j < n && v[j].stack_id == v[i].stack_id; j++) {
			bytes += v[j].end - v[j].start;
			if (v[j].time_ns && (!oldest || v[j].time_ns < oldest))
				oldest = v[j].time_ns;
		}
		size_t nf = model_frames(p, o, v[i].stack_id, CALL_MMAP, fr, ARRAY_SIZE(fr));
		if (thread_stack(fr, nf)) {
			m->thread_stack_bytes += bytes;
			m->thread_stack_regions += j - i;
			continue;
		}
		struct model_mmap *r = &m->mmaps[m->n_mmaps++];
		*r = (struct model_mmap){ .stack_id = v[i].stack_id, .bytes = bytes,
					  .regions = j - i, .oldest_ns = oldest, .n_frames = nf };
		r->starts = xmalloc(r->regions * sizeof(*r->starts));
		for (size_t k = i; k < j; k++)
			r->starts[k - i] = v[k].start;
		r->frames = xmalloc((nf + 1) * sizeof(*r->frames));
		memcpy(r->frames, fr, nf * sizeof(*fr));
		m->mmap_bytes += bytes;
		m->mmap_regions += r->regions;
	}
	qsort(m->mmaps, m->n_mmaps, sizeof(*m->mmaps), by_mmap_size);
	free(v);
}

size_t model_frames(struct process *p, const struct options *o, uint32_t id,
		    enum alloc_call call, struct model_frame *out, size_t max)
{
	size_t n, k = 0;
	const uint64_t *pcs = stacks_get(p->db->stacks, id, &n);
	struct symbol_info si[MODEL_MAX_FRAMES];

	/* Each return address gives its inline chain, but the entry point
	 * (frame 0) is one frame named by the call, as valgrind's
	 * replacement is one function: the first of its chain, which has
	 * the pc's own file:line. --num-callers counted the return
	 * addresses (the unwinder stopped there), not the frames, as
	 * valgrind's does. */
	for (size_t i = 0; i < n && k < max; i++) {
		size_t room = max - k < MODEL_MAX_FRAMES ? max - k : MODEL_MAX_FRAMES;
		size_t nf = frames_describe(p->frames, p->syms, p->db->stacks, id, i,
					    si, i == 0 ? 1 : room);
		if (i == 0) {
			/* The call's name; a C++ operator keeps its symbol's
			 * mangled name (_Znwm), which suppressions match. */
			bool cxx = si[0].linkage_name && !strncmp(si[0].linkage_name, "_Z", 2);
			/* An allocator's own API (mallocx, mi_zalloc): the
			 * symbol at the entry is the function called. */
			if (!alloc_call_is_api(call) || !si[0].function) {
				si[0].function = alloc_call_name(call);
				if (!cxx)
					si[0].linkage_name = si[0].function;
			}
		}
		for (size_t j = 0; j < nf; j++, k++) {
			out[k].pc = pcs[i];
			out[k].inlined = j + 1 < nf;
			out[k].si = si[j];
			if (!o->show_below_main && si[j].function &&
			    !strcmp(si[j].function, "main"))
				return k + 1;
		}
	}
	return k;
}

/* The frames of stack ID into a new array *OUT, *N of them. */
static void symbolize(struct process *p, const struct options *o, uint32_t id,
		      enum alloc_call call, struct model_frame **out, size_t *n)
{
	struct model_frame fr[MODEL_MAX_FRAMES];

	*n = model_frames(p, o, id, call, fr, ARRAY_SIZE(fr));
	*out = xmalloc((*n + 1) * sizeof(**out));
	memcpy(*out, fr, *n * sizeof(*fr));
}

static void make_sites(struct report_model *m, struct process *p, const struct options *o)
{
	size_t n;
	const struct heap_site *hs = heap_sites(p->db->heap, &n);

	m->sites = xcalloc(n + 1, sizeof(*m->sites));
	for (size_t id = 0; id < n; id++) {
		if (!hs[id].alloc_blocks && !hs[id].live_blocks)
			continue;
		struct model_site *s = &m->sites[m->n_sites++];
		*s = (struct model_site){ .stack_id = (uint32_t)id,
					  .call = (enum alloc_call)hs[id].call,
					  .alloc_bytes = hs[id].alloc_bytes,
					  .alloc_blocks = hs[id].alloc_blocks,
					  .live_bytes = hs[id].live_bytes,
					  .live_blocks = hs[id].live_blocks };
		symbolize(p, o, s->stack_id, s->call, &s->frames, &s->n_frames);
	}
}

static int by_peak(const void *a, const void *b)
{
	const struct model_series *x = a, *y = b;
	uint64_t xs = x->peak > x->final ? x->peak : x->final;
	uint64_t ys = y->peak > y->final ? y->peak : y->final;

	if (xs != ys)
		return xs > ys ? -1 : 1;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

static void make_timeline(struct report_model *m, struct process *p, const struct options *o)
{
	heap_timeline_close(p->db->heap, m->now_ns);
	const struct timeline *tl = heap_timeline(p->db->heap);
	size_t n_hs;
	const struct heap_site *hs = heap_sites(p->db->heap, &n_hs);
	struct timeline_sample *v = xmalloc((tl->n + 1) * sizeof(*v));
	struct model_series all[TIMELINE_SITES];
	size_t n = 0;

	memcpy(v, tl->samples, tl->n * sizeof(*v));
	m->samples = v;
	m->n_samples = tl->n;
	m->peak_ns = tl->peak_ns;
	m->peak_blocks = tl->peak_blocks;
	for (size_t k = 0; k < TIMELINE_SITES; k++) {
		const struct timeline_site *ts = &tl->sites[k];
		if (!ts->stack_id)
			continue;
		all[n++] = (struct model_series){
			.stack_id = ts->stack_id, .peak = ts->peak,
			.final = ts->stack_id < n_hs ? hs[ts->stack_id].live_bytes : 0,
			.first_sample = ts->first_sample, .bytes = ts->bytes,
		};
	}
	qsort(all, n, sizeof(*all), by_peak);
	if (n > MODEL_SERIES)
		n = MODEL_SERIES;
	m->series = xcalloc(n + 1, sizeof(*m->series));
	for (size_t i = 0; i < n; i++) {
		struct model_series *s = &m->series[i];
		*s = all[i];
		s->bytes = xcalloc(m->n_samples + 1, sizeof(*s->bytes));
		memcpy(s->bytes, all[i].bytes, m->n_samples * sizeof(*s->bytes));
		enum alloc_call call = s->stack_id < n_hs ? (enum alloc_call)hs[s->stack_id].call
							  : CALL_MALLOC;
		symbolize(p, o, s->stack_id, call, &s->frames, &s->n_frames);
	}
	m->n_series = n;
}

static void model_start(struct report_model *m, struct process *p)
{
	struct timespec ts;

	m->pid = p->pid;
	m->ppid = p->ppid;
	m->argv = p->argv;
	m->exit_status = p->exit_status;
	m->attached = p->attached;
	m->untraced_children = p->untraced_children;
	m->attach_ns = p->attach_ns;
	m->before_known = p->before_known;
	m->before_why = p->before_known ? NULL : p->before_why;
	m->before_read_ns = p->before_read_ns;
	m->before_allocator = p->before_allocator ? p->before_allocator : "glibc";
	m->now_ns = now_ns();
	clock_gettime(CLOCK_REALTIME, &ts);
	m->wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	m->exe = p->syms ? symbols_exe(p->syms) : NULL;
	m->heap = *heap_stats(p->db->heap);
	m->start_ns = heap_timeline(p->db->heap)->start_ns;
	if (p->attached && p->attach_ns)
		m->start_ns = p->attach_ns;
}

static void model_parts(struct report_model *m, struct process *p, const struct options *o,
			unsigned parts)
{
	if (parts & MODEL_SITES)
		make_sites(m, p, o);
	if (parts & MODEL_TIMELINE)
		make_timeline(m, p, o);
}

struct report_model *model_build(struct process *p, const struct scan_result *r,
				 const struct options *o, unsigned kinds)
{
	struct report_model *m = xcalloc(1, sizeof(*m));

	model_start(m, p);
	m->scanned = r->scanned;
	m->words_scanned = r->words_scanned;
	m->scan_ns = r->ns;
	make_records(m, p->db->heap, r);
	for (size_t i = 0; i < m->n_records; i++) {
		struct model_record *rec = &m->records[i];
		if (!(kinds & leak_kind_flag(rec->kind)) || rec->before_attach)
			continue;
		symbolize(p, o, rec->stack_id, rec->call, &rec->frames, &rec->n_frames);
	}
	if (p->db->mmaps)
		make_mmaps(m, p, o);
	model_parts(m, p, o, kinds);
	return m;
}

struct report_model *model_snapshot(struct process *p, const struct options *o,
				    unsigned parts, unsigned no)
{
	struct report_model *m = xcalloc(1, sizeof(*m));
	struct scan_result r = { .scanned = false };

	model_start(m, p);
	m->exit_status = -1;
	m->snapshot = true;
	m->snapshot_no = no;
	r.blocks = heap_snapshot(p->db->heap, &r.n);
	r.kind = xcalloc(r.n + 1, sizeof(*r.kind));
	memset(r.kind, LEAK_REACHABLE, r.n);
	make_records(m, p->db->heap, &r);
	free(r.kind);
	free(r.blocks);
	for (size_t i = 0; i < m->n_records; i++) {
		struct model_record *rec = &m->records[i];
		symbolize(p, o, rec->stack_id, rec->call, &rec->frames, &rec->n_frames);
	}
	model_parts(m, p, o, parts);
	return m;
}

static int by_site_id(const void *a, const void *b)
{
	const struct model_site *x = a, *y = b;

	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

const struct model_site *model_site_of(const struct report_model *m, uint32_t id)
{
	struct model_site key = { .stack_id = id };

	return m->n_sites ? bsearch(&key, m->sites, m->n_sites, sizeof(key), by_site_id) : NULL;
}

const char *model_kind_name(const struct report_model *m, const struct model_record *rec)
{
	return m->snapshot ? "live" : leak_kind_name(rec->kind);
}

void model_free(struct report_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_records; i++) {
		free(m->records[i].addrs);
		free(m->records[i].frames);
	}
	for (size_t i = 0; i < m->n_mmaps; i++) {
		free(m->mmaps[i].starts);
		free(m->mmaps[i].frames);
	}
	free(m->mmaps);
	free(m->records);
	free(m->supp_used);
	for (size_t i = 0; i < m->n_sites; i++)
		free(m->sites[i].frames);
	free(m->sites);
	for (size_t i = 0; i < m->n_series; i++) {
		free(m->series[i].bytes);
		free(m->series[i].frames);
	}
	free(m->series);
	free(m->samples);
	free(m);
}

void model_compare(struct report_model *m, const struct report_model *prev)
{
	struct model_record *old = NULL;
	bool *seen = NULL;
	size_t n_old = prev ? prev->n_records : 0;

	m->prev_check = prev ? prev->check : 0;
	for (int k = 0; k < LEAK__COUNT; k++) {
		m->delta_bytes[k] = (int64_t)m->totals.bytes[k] -
				    (int64_t)(prev ? prev->totals.bytes[k] : 0);
		m->delta_blocks[k] = (int64_t)m->totals.blocks[k] -
				     (int64_t)(prev ? prev->totals.blocks[k] : 0);
	}
	if (n_old) {
		old = xmalloc(n_old * sizeof(*old));
		memcpy(old, prev->records, n_old * sizeof(*old));
		qsort(old, n_old, sizeof(*old), by_record);
		seen = xcalloc(n_old, sizeof(*seen));
	}
	for (size_t i = 0; i < m->n_records; i++) {
		struct model_record *rec = &m->records[i];
		const struct model_record *was =
			n_old ? bsearch(rec, old, n_old, sizeof(*old), by_record) : NULL;
		rec->delta_bytes = (int64_t)rec->bytes - (int64_t)(was ? was->bytes : 0);
		rec->delta_blocks = (int64_t)rec->blocks - (int64_t)(was ? was->blocks : 0);
		if (was)
			seen[was - old] = true;
		if (!was)
			rec->change = CHANGE_NEW;
		else if (rec->delta_bytes > 0 || (!rec->delta_bytes && rec->delta_blocks > 0))
			rec->change = CHANGE_INCREASED;
		else if (rec->delta_bytes < 0 || rec->delta_blocks < 0)
			rec->change = CHANGE_DECREASED;
		else
			rec->change = CHANGE_NONE;
	}
	for (size_t i = 0; i < n_old; i++) {
		if (seen[i])
			continue;
		m->n_gone++;
		m->gone_bytes += old[i].bytes;
		m->gone_blocks += old[i].blocks;
	}
	free(seen);
	free(old);
}

_Static_assert(KIND_DEFINITE == 1u << LEAK_DEFINITE && KIND_INDIRECT == 1u << LEAK_INDIRECT &&
	       KIND_POSSIBLE == 1u << LEAK_POSSIBLE && KIND_REACHABLE == 1u << LEAK_REACHABLE,
	       "leak_kind_flag() relies on the flags following the kinds");
