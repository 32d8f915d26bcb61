/*
 * writer_pprof: the report as a gzip'd profile.proto (github.com/google/
 * pprof, proto/profile.proto), as Go's heap profiles are: sample types
 * alloc_objects, alloc_space, inuse_objects, inuse_space.
 *
 * Each loss record is one sample of its stack: its blocks are in use (at
 * exit, at detach, or at a --interval snapshot) and were allocated, and
 * a label "kind" says its leak kind ("live" in a snapshot). What a stack
 * allocated and freed is one more sample with kind "freed" and only the
 * alloc values. So every kind of sum is right: inuse per stack, alloc per
 * stack, and -tagfocus=kind=definitely_lost keeps the leaks. Records a
 * suppression matched are there too (the memory was in use), labelled
 * "suppressed" with its name; blocks from before an attach (no stack)
 * are labelled before_attach.
 *
 * Ids of strings, functions, mappings and locations come from interning
 * their keys in struct stacks tables (the same dense-id hash the tracer
 * uses for call stacks); each entry is encoded once, when first seen.
 */
#include <stdlib.h>
#include <string.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/pb.h"
#include "tracer/stacks.h"
#include "tracer/util.h"
#include "tracer/version.h"
#include "tracer/writer.h"

/* profile.proto field numbers */
enum {
	PROFILE_SAMPLE_TYPE = 1, PROFILE_SAMPLE, PROFILE_MAPPING, PROFILE_LOCATION,
	PROFILE_FUNCTION, PROFILE_STRING_TABLE, PROFILE_TIME_NANOS = 9,
	PROFILE_DURATION_NANOS, PROFILE_PERIOD_TYPE, PROFILE_PERIOD, PROFILE_COMMENT,
	PROFILE_DEFAULT_SAMPLE_TYPE,
};

struct pprof_state {
	struct stacks *strs, *funcs, *maps, *locs;	/* key -> id */
	struct pb samples, locations, functions;	/* encoded */
	struct pb *mappings;	/* one encoded Mapping per id - 1 */
	size_t n_mappings;
	uint64_t main_mapping;	/* the program's executable's */
	const char *exe;	/* of the process being written */
	struct pb msg, sub;	/* scratch */
	uint64_t comments[64];
	size_t n_comments;
	uint64_t time_ns, duration_ns;
	bool label_pid;
};

static const char *pprof_path(const struct options *o)
{
	return o->pprof;
}

static unsigned pprof_kinds(const struct options *o)
{
	return KIND_DEFINITE | KIND_INDIRECT | KIND_POSSIBLE | KIND_REACHABLE | MODEL_SITES;
}

/* Intern KEY[0..N) in T; *is_new says whether it was first seen now. */
static uint64_t intern(struct stacks *t, const uint64_t *key, size_t n, bool *is_new)
{
	size_t before = stacks_count(t);
	uint32_t id = stacks_intern(t, key, n);

	*is_new = stacks_count(t) != before;
	return id;
}

/* Index of S in the string table ("" is 0: interned first). */
static uint64_t str(struct pprof_state *s, const char *text)
{
	size_t len = text ? strlen(text) : 0;
	size_t nw = 1 + (len + 7) / 8;
	uint64_t stackbuf[64], *w = nw <= 64 ? stackbuf : xmalloc(nw * sizeof(*w));
	bool is_new;

	memset(w, 0, nw * sizeof(*w));
	w[0] = len;
	if (len)
		memcpy(w + 1, text, len);
	uint64_t id = intern(s->strs, w, nw, &is_new);
	if (w != stackbuf)
		free(w);
	return id - 1;
}

static uint64_t mapping(struct pprof_state *s, const struct symbol_info *si)
{
	uint64_t key[4] = { str(s, si->module), si->module_start, si->module_end,
			    str(s, si->build_id) };
	bool is_new;
	uint64_t id = intern(s->maps, key, 4, &is_new);

	if (is_new) {
		pb_reset(&s->msg);
		pb_uint(&s->msg, 1, id);
		pb_uint(&s->msg, 2, si->module_start);
		pb_uint(&s->msg, 3, si->module_end);
		pb_uint(&s->msg, 5, key[0]);
		pb_uint(&s->msg, 6, key[3]);
		/* Symbolized here: pprof must not look for the binaries. */
		pb_uint(&s->msg, 7, 1);
		pb_uint(&s->msg, 8, 1);
		pb_uint(&s->msg, 9, 1);
		s->mappings = xrealloc(s->mappings, id * sizeof(*s->mappings));
		s->mappings[id - 1] = (struct pb){ 0 };
		pb_msg(&s->mappings[id - 1], PROFILE_MAPPING, &s->msg);
		s->n_mappings = id;
	}
	return id;
}

static uint64_t function(struct pprof_state *s, const struct symbol_info *si)
{
	uint64_t key[2] = { str(s, si->function), str(s, si->file) };
	bool is_new;
	uint64_t id = intern(s->funcs, key, 2, &is_new);

	if (is_new) {
		pb_reset(&s->msg);
		pb_uint(&s->msg, 1, id);
		pb_uint(&s->msg, 2, key[0]);
		pb_uint(&s->msg, 3, key[0]);
		pb_uint(&s->msg, 4, key[1]);
		pb_msg(&s->functions, PROFILE_FUNCTION, &s->msg);
	}
	return id;
}

/* The location of the frames F[0..N-1] of one pc (an inline chain,
 * innermost first, N >= 1): one Line each, innermost first, as pprof
 * wants inlined functions. */
static uint64_t location(struct pprof_state *s, const struct model_frame *f, size_t n)
{
	const struct symbol_info *si = &f[n - 1].si;
	uint64_t map = si->module ? mapping(s, si) : 0;
	if (map && !s->main_mapping && s->exe && !strcmp(si->module, s->exe))
		s->main_mapping = map;
	uint64_t key[2 + 2 * MODEL_MAX_FRAMES] = { map, f->pc };
	for (size_t i = 0; i < n; i++) {
		key[2 + 2 * i] = f[i].si.function ? function(s, &f[i].si) : 0;
		key[3 + 2 * i] = (uint64_t)(f[i].si.file ? f[i].si.line : 0);
	}
	bool is_new;
	uint64_t id = intern(s->locs, key, 2 + 2 * n, &is_new);

	if (is_new) {
		pb_reset(&s->msg);
		pb_uint(&s->msg, 1, id);
		pb_uint(&s->msg, 2, map);
		pb_uint(&s->msg, 3, f->pc);
		for (size_t i = 0; i < n; i++) {
			if (!key[2 + 2 * i])
				continue;	/* without a function pprof shows the address */
			pb_reset(&s->sub);
			pb_uint(&s->sub, 1, key[2 + 2 * i]);
			pb_int(&s->sub, 2, (int64_t)key[3 + 2 * i]);
			pb_msg(&s->msg, 4, &s->sub);
		}
		pb_msg(&s->locations, PROFILE_LOCATION, &s->msg);
	}
	return id;
}

/* A string label KEY=VALUE into the sample being built (s->msg). */
static void label(struct pprof_state *s, const char *key, const char *value)
{
	pb_reset(&s->sub);
	pb_uint(&s->sub, 1, str(s, key));
	pb_uint(&s->sub, 2, str(s, value));
	pb_msg(&s->msg, 3, &s->sub);
}

static void sample(struct pprof_state *s, const struct model_frame *fr, size_t nf,
		   const uint64_t values[4], const char *kind, pid_t pid,
		   const struct model_supp_use *supp, bool before_attach)
{
	uint64_t locs[MODEL_MAX_FRAMES];
	struct pb num = { 0 };
	size_t nl = 0;

	if (nf > MODEL_MAX_FRAMES)
		nf = MODEL_MAX_FRAMES;
	for (size_t i = 0, j; i < nf; i = j) {
		for (j = i + 1; j < nf && fr[j - 1].inlined; j++)
			;
		locs[nl++] = location(s, &fr[i], j - i);	/* leaf first, as pprof wants */
	}
	pb_reset(&s->msg);
	pb_packed(&s->msg, 1, locs, nl);
	pb_packed(&s->msg, 2, values, 4);
	label(s, "kind", kind);
	if (supp)
		label(s, "suppressed", supp->name ? supp->name : "?");
	if (before_attach)
		label(s, "before_attach", "true");
	if (s->label_pid) {
		pb_uint(&num, 1, str(s, "pid"));
		pb_int(&num, 3, pid);
		pb_msg(&s->msg, 3, &num);
	}
	pb_free(&num);
	pb_msg(&s->samples, PROFILE_SAMPLE, &s->msg);
}

static struct pprof_state *state_new(const struct options *o)
{
	struct pprof_state *s = xcalloc(1, sizeof(*s));

	s->strs = stacks_new();
	s->funcs = stacks_new();
	s->maps = stacks_new();
	s->locs = stacks_new();
	s->label_pid = o->follow_forks;
	str(s, "");
	return s;
}

static void comment(struct pprof_state *s, const char *text)
{
	if (s->n_comments < ARRAY_SIZE(s->comments))
		s->comments[s->n_comments++] = str(s, text);
}

static void pprof_process(struct writer_out *w, const struct report_model *m,
			  const struct options *o)
{
	struct pprof_state *s = w->state;
	char line[512];
	int k = 0;

	if (!s)
		s = w->state = state_new(o);
	k = snprintf(line, sizeof(line), "ptleak %s: process %d:", PTLEAK_VERSION, m->pid);
	for (char *const *v = m->argv; v && *v && k > 0 && (size_t)k < sizeof(line); v++)
		k += snprintf(line + k, sizeof(line) - (size_t)k, " %s", *v);
	comment(s, line);
	if (m->snapshot) {
		snprintf(line, sizeof(line), "snapshot %u of a running process, no leak kinds",
			 m->snapshot_no);
		comment(s, line);
	} else if (m->attached) {
		comment(s, "blocks allocated since ptleak attached");
	}
	s->exe = m->exe;
	if (!s->time_ns)
		s->time_ns = m->wall_ns - (m->now_ns - m->start_ns);
	if (m->now_ns - m->start_ns > s->duration_ns)
		s->duration_ns = m->now_ns - m->start_ns;
	for (size_t i = 0; i < m->n_records; i++) {
		const struct model_record *rec = &m->records[i];
		uint64_t v[4] = { rec->blocks, rec->bytes, rec->blocks, rec->bytes };
		sample(s, rec->frames, rec->n_frames, v, model_kind_name(m, rec), m->pid,
		       model_supp_of(m, rec), rec->before_attach);
	}
	for (size_t i = 0; i < m->n_sites; i++) {
		const struct model_site *site = &m->sites[i];
		if (site->alloc_blocks <= site->live_blocks)
			continue;
		uint64_t v[4] = { site->alloc_blocks - site->live_blocks,
				  site->alloc_bytes - site->live_bytes, 0, 0 };
		sample(s, site->frames, site->n_frames, v, "freed", m->pid, NULL, false);
	}
}

static void value_type(struct pprof_state *s, struct pb *out, unsigned field,
		       const char *type, const char *unit)
{
	pb_reset(&s->sub);
	pb_uint(&s->sub, 1, str(s, type));
	pb_uint(&s->sub, 2, str(s, unit));
	pb_msg(out, field, &s->sub);
}

static void pprof_finish(struct writer_out *w, const struct options *o)
{
	struct pprof_state *s = w->state ? w->state : state_new(o);
	struct pb prof = { 0 };

	value_type(s, &prof, PROFILE_SAMPLE_TYPE, "alloc_objects", "count");
	value_type(s, &prof, PROFILE_SAMPLE_TYPE, "alloc_space", "bytes");
	value_type(s, &prof, PROFILE_SAMPLE_TYPE, "inuse_objects", "count");
	value_type(s, &prof, PROFILE_SAMPLE_TYPE, "inuse_space", "bytes");
	value_type(s, &prof, PROFILE_PERIOD_TYPE, "space", "bytes");
	pb_uint(&prof, PROFILE_PERIOD, 1);
	pb_uint(&prof, PROFILE_DEFAULT_SAMPLE_TYPE, str(s, "inuse_space"));
	pb_packed(&prof, PROFILE_COMMENT, s->comments, s->n_comments);
	pb_uint(&prof, PROFILE_TIME_NANOS, s->time_ns);
	pb_uint(&prof, PROFILE_DURATION_NANOS, s->duration_ns);
	/* pprof takes the first mapping for the program. */
	if (s->main_mapping)
		pb_append(&prof, &s->mappings[s->main_mapping - 1]);
	for (size_t i = 0; i < s->n_mappings; i++) {
		if (i + 1 != s->main_mapping)
			pb_append(&prof, &s->mappings[i]);
		pb_free(&s->mappings[i]);
	}
	free(s->mappings);
	pb_append(&prof, &s->samples);	/* each already a run of fields */
	pb_append(&prof, &s->locations);
	pb_append(&prof, &s->functions);
	size_t n_strs = stacks_count(s->strs);
	for (uint32_t id = 1; id <= n_strs; id++) {
		size_t nw;
		const uint64_t *wds = stacks_get(s->strs, id, &nw);
		pb_bytes(&prof, PROFILE_STRING_TABLE, wds + 1, (size_t)wds[0]);
	}
	pb_gzip(w->f, prof.p, prof.n);
	pb_free(&prof);
	pb_free(&s->samples);
	pb_free(&s->locations);
	pb_free(&s->functions);
	pb_free(&s->msg);
	pb_free(&s->sub);
	stacks_free(s->strs);
	stacks_free(s->funcs);
	stacks_free(s->maps);
	stacks_free(s->locs);
	free(s);
	w->state = NULL;
}

const struct report_writer writer_pprof = {
	.name = "pprof",
	.path = pprof_path,
	.kinds = pprof_kinds,
	.process = pprof_process,
	.finish = pprof_finish,
};
