/*
 * report: loss records and the summaries.
 *
 * A loss record is the blocks of one leak kind allocated from one stack.
 * Records are numbered largest first. Frames are symbolized here, and
 * only for the records written.
 */
#include "tracer/report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "symbols/symbols.h"
#include "tracer/breakpoint.h"
#include "tracer/heap.h"
#include "tracer/options.h"
#include "tracer/proc.h"
#include "tracer/scan.h"
#include "tracer/stacks.h"
#include "tracer/util.h"
#include "tracer/version.h"

struct record {
	enum leak_kind kind;
	uint32_t stack_id;
	uint64_t bytes, blocks;
	uint64_t indirect_bytes;	/* definite records: their cliques */
	uint64_t oldest_ns, median_ns;	/* allocation times */
};

struct totals {
	uint64_t bytes[LEAK__COUNT], blocks[LEAK__COUNT];
};

static const char *const kind_words[LEAK__COUNT] = {
	[LEAK_DEFINITE] = "definitely lost",
	[LEAK_INDIRECT] = "indirectly lost",
	[LEAK_POSSIBLE] = "possibly lost",
	[LEAK_REACHABLE] = "still reachable",
};

static const unsigned kind_flags[LEAK__COUNT] = {
	[LEAK_DEFINITE] = KIND_DEFINITE,
	[LEAK_INDIRECT] = KIND_INDIRECT,
	[LEAK_POSSIBLE] = KIND_POSSIBLE,
	[LEAK_REACHABLE] = KIND_REACHABLE,
};

/* 1234567 -> "1,234,567" */
static const char *num(uint64_t v, char buf[32])
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v), k = 0;

	for (int i = 0; i < n; i++) {
		buf[k++] = tmp[i];
		if ((n - i - 1) % 3 == 0 && i != n - 1)
			buf[k++] = ',';
	}
	buf[k] = '\0';
	return buf;
}

static int by_record(const void *a, const void *b)
{
	const struct record *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

static int by_size(const void *a, const void *b)
{
	const struct record *x = a, *y = b;
	uint64_t xs = x->bytes + x->indirect_bytes, ys = y->bytes + y->indirect_bytes;

	if (xs != ys)
		return xs > ys ? -1 : 1;
	if (x->blocks != y->blocks)
		return x->blocks > y->blocks ? -1 : 1;
	return by_record(a, b);
}

struct member {
	enum leak_kind kind;
	uint32_t stack_id;
	uint64_t time_ns;
	uint64_t size;
};

static int by_member(const void *a, const void *b)
{
	const struct member *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->stack_id != y->stack_id)
		return x->stack_id < y->stack_id ? -1 : 1;
	return x->time_ns < y->time_ns ? -1 : x->time_ns > y->time_ns;
}

/* Group blocks into records, largest first. */
static struct record *make_records(const struct scan_result *r, size_t *n_out,
				   struct totals *t)
{
	struct member *m = xmalloc((r->n + 1) * sizeof(*m));
	struct record *v = xcalloc(r->n + 1, sizeof(*v));
	size_t n = 0;

	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < r->n; i++) {
		enum leak_kind k = (enum leak_kind)r->kind[i];
		m[i] = (struct member){ .kind = k, .stack_id = r->blocks[i].stack_id,
					.time_ns = r->blocks[i].time_ns, .size = r->blocks[i].size };
		t->bytes[k] += r->blocks[i].size;
		t->blocks[k]++;
	}
	qsort(m, r->n, sizeof(*m), by_member);
	for (size_t i = 0, j; i < r->n; i = j) {
		struct record *rec = &v[n++];
		*rec = (struct record){ .kind = m[i].kind, .stack_id = m[i].stack_id,
					.oldest_ns = m[i].time_ns };
		for (j = i; j < r->n && m[j].kind == m[i].kind && m[j].stack_id == m[i].stack_id; j++) {
			rec->bytes += m[j].size;
			rec->blocks++;
		}
		rec->median_ns = m[i + (j - i) / 2].time_ns;
	}
	free(m);
	/* Indirect bytes hang under the definite record of their leader. */
	for (size_t i = 0; i < r->n; i++) {
		if (r->kind[i] != LEAK_INDIRECT)
			continue;
		struct record key = { .kind = LEAK_DEFINITE,
				      .stack_id = r->blocks[r->leader[i]].stack_id };
		struct record *rec = bsearch(&key, v, n, sizeof(*v), by_record);
		if (rec)
			rec->indirect_bytes += r->blocks[i].size;
	}
	qsort(v, n, sizeof(*v), by_size);
	*n_out = n;
	return v;
}

struct frame {
	uint64_t pc;
	struct symbol_info si;
};

/* Frames resolved while their module was still the one at their address
 * (sorted by stack id, then frame index). */
struct frozen_frame {
	uint32_t stack_id, index;
	struct symbol_info si;	/* strings owned by the process's symbols */
};

struct frozen_set {
	struct frozen_frame *v;
	size_t n, cap;
};

void report_frozen_free(void *frozen)
{
	struct frozen_set *f = frozen;

	if (f)
		free(f->v);
	free(f);
}

static int by_frame(const void *a, const void *b)
{
	const struct frozen_frame *x = a, *y = b;

	if (x->stack_id != y->stack_id)
		return x->stack_id < y->stack_id ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* The frozen frame I of stack ID among the first N (sorted) entries. */
static const struct frozen_frame *frozen_in(const struct frozen_set *f, size_t n,
					   uint32_t id, size_t i)
{
	struct frozen_frame key = { .stack_id = id, .index = (uint32_t)i };

	return f && n ? bsearch(&key, f->v, n, sizeof(*f->v), by_frame) : NULL;
}

static const struct frozen_frame *frozen_at(const struct process *p, uint32_t id, size_t i)
{
	const struct frozen_set *f = p->frozen;

	return frozen_in(f, f ? f->n : 0, id, i);
}

void report_freeze_unmapped(struct process *p)
{
	struct symbols_range gone[64];
	size_t ng = symbols_unmapped(p->syms, gone, ARRAY_SIZE(gone));
	size_t ns = stacks_count(p->stacks);

	if (!ng)
		return;
	if (!p->frozen)
		p->frozen = xcalloc(1, sizeof(struct frozen_set));
	struct frozen_set *f = p->frozen;
	size_t sorted = f->n;	/* what earlier calls froze */
	for (uint32_t id = 1; id <= ns; id++) {
		size_t n;
		const uint64_t *pcs = stacks_get(p->stacks, id, &n);
		for (size_t i = 0; i < n; i++) {
			bool in_gone = false;
			for (size_t g = 0; g < ng && !in_gone; g++)
				in_gone = pcs[i] >= gone[g].start && pcs[i] < gone[g].end;
			if (!in_gone || frozen_in(f, sorted, id, i))
				continue;
			if (f->n == f->cap) {
				f->cap = f->cap ? f->cap * 2 : 64;
				f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
			}
			struct frozen_frame *fr = &f->v[f->n++];
			fr->stack_id = id;
			fr->index = (uint32_t)i;
			symbols_describe(p->syms, pcs[i], i > 0, &fr->si);
		}
	}
	qsort(f->v, f->n, sizeof(*f->v), by_frame);
}

/* Symbolized frames of a stack, cut below main unless asked. */
static size_t get_frames(struct process *p, const struct options *o, uint32_t id,
			 struct frame *out, size_t max)
{
	size_t n;
	const uint64_t *pcs = stacks_get(p->stacks, id, &n);

	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++) {
		const struct frozen_frame *fz = frozen_at(p, id, i);
		out[i].pc = pcs[i];
		if (fz)
			out[i].si = fz->si;
		else
			symbols_describe(p->syms, pcs[i], i > 0, &out[i].si);
		/* The entry point by the name it was called by, not an alias
		 * (__libc_malloc). */
		struct site *s = i == 0 && p->bp ? bp_find(p->bp, pcs[0]) : NULL;
		if (s && s->kind == SITE_ALLOC)
			out[i].si.function = alloc_call_name((enum alloc_call)s->call);
		if (!o->show_below_main && out[i].si.function &&
		    !strcmp(out[i].si.function, "main"))
			return i + 1;
	}
	return n;
}

static const char *base_name(const char *path)
{
	const char *s = path ? strrchr(path, '/') : NULL;

	return s ? s + 1 : path;
}

static double age_s(uint64_t now, uint64_t t)
{
	return t && now > t ? (double)(now - t) / 1e9 : 0.0;
}

static void write_frames_text(FILE *f, pid_t pid, const struct frame *fr, size_t nf)
{
	for (size_t k = 0; k < nf; k++) {
		const struct symbol_info *si = &fr[k].si;
		fprintf(f, "==%d==    %s 0x%" PRIX64 ": %s ", pid, k ? "by" : "at",
			fr[k].pc, si->function ? si->function : "???");
		if (si->file && si->line)
			fprintf(f, "(%s:%d)\n", base_name(si->file), si->line);
		else
			fprintf(f, "(in %s)\n", si->module ? si->module : "???");
	}
}

static void write_text(FILE *f, struct process *p, const struct options *o,
		       const struct record *rec, size_t n, const struct totals *t,
		       uint64_t now)
{
	const struct heap_stats *st = heap_stats(p->heap);
	const struct scan_result *r = p->scan_result;
	char a[32], b[32], c[32], d[32];
	pid_t pid = p->pid;
	struct frame fr[64];

	if (!o->quiet) {
		fprintf(f, "==%d== ptleak-%s, an out-of-process leak finder\n", pid, PTLEAK_VERSION);
		fprintf(f, "==%d== Command:", pid);
		for (char **v = p->argv; v && *v; v++)
			fprintf(f, " %s", *v);
		fprintf(f, "\n");
		if (p->attached)
			fprintf(f, "==%d== Traced for %.1f s since attaching; blocks allocated before "
				"are not known\n", pid, age_s(now, p->attach_ns));
		fprintf(f, "==%d==\n", pid);
	}
	fprintf(f, "==%d== HEAP SUMMARY:\n", pid);
	fprintf(f, "==%d==     in use at %s: %s bytes in %s blocks\n", pid,
		p->exit_status >= 0 ? "exit" : "detach",
		num(st->live_bytes, a), num(st->live_blocks, b));
	fprintf(f, "==%d==   total heap usage: %s allocs, %s frees, %s bytes allocated\n",
		pid, num(st->allocations, a), num(st->frees, b), num(st->bytes_allocated, c));
	fprintf(f, "==%d==\n", pid);
	if (!r->scanned)
		fprintf(f, "==%d== no reachability scan (the process's memory was gone): "
			"every unfreed block is counted as definitely lost\n==%d==\n", pid, pid);
	for (size_t i = 0; i < n; i++) {
		if (!(o->show_kinds & kind_flags[rec[i].kind]))
			continue;
		if (rec[i].kind == LEAK_DEFINITE && rec[i].indirect_bytes)
			fprintf(f, "==%d== %s (%s direct, %s indirect) bytes in %s blocks are %s "
				"in loss record %zu of %zu", pid,
				num(rec[i].bytes + rec[i].indirect_bytes, a), num(rec[i].bytes, b),
				num(rec[i].indirect_bytes, c), num(rec[i].blocks, d),
				kind_words[rec[i].kind], i + 1, n);
		else
			fprintf(f, "==%d== %s bytes in %s blocks are %s in loss record %zu of %zu",
				pid, num(rec[i].bytes, a), num(rec[i].blocks, b),
				kind_words[rec[i].kind], i + 1, n);
		if (p->attached)
			fprintf(f, " (ages: oldest %.1f s, median %.1f s)",
				age_s(now, rec[i].oldest_ns), age_s(now, rec[i].median_ns));
		fputc('\n', f);
		write_frames_text(f, pid, fr, get_frames(p, o, rec[i].stack_id, fr, ARRAY_SIZE(fr)));
		fprintf(f, "==%d==\n", pid);
	}
	fprintf(f, "==%d== LEAK SUMMARY:\n", pid);
	for (int k = 0; k < LEAK__COUNT; k++)
		fprintf(f, "==%d==    %15s: %s bytes in %s blocks\n", pid, kind_words[k],
			num(t->bytes[k], a), num(t->blocks[k], b));
	fprintf(f, "==%d==         suppressed: 0 bytes in 0 blocks\n", pid);
}

static void json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(f, "\\%c", *c);
		else if (*c < 0x20)
			fprintf(f, "\\u%04x", *c);
		else
			fputc(*c, f);
	}
	fputc('"', f);
}

static void write_json(FILE *f, struct process *p, const struct options *o,
		       const struct record *rec, size_t n, const struct totals *t,
		       uint64_t now)
{
	const struct heap_stats *st = heap_stats(p->heap);
	const struct scan_result *r = p->scan_result;
	struct frame fr[64];
	int status = p->exit_status;

	fprintf(f, "{\"pid\":%d,\"command\":[", p->pid);
	for (char **v = p->argv; v && *v; v++) {
		if (v != p->argv)
			fputc(',', f);
		json_str(f, *v);
	}
	fputs("],\"exit\":", f);
	if (status < 0)
		fputs("null", f);
	else if (WIFSIGNALED(status))
		fprintf(f, "{\"signal\":%d}", WTERMSIG(status));
	else
		fprintf(f, "{\"code\":%d}", WEXITSTATUS(status));
	if (p->attached)
		fprintf(f, ",\"attached\":true,\"traced_s\":%.3f", age_s(now, p->attach_ns));
	fputs(",\"summary\":{", f);
	for (int k = 0; k < LEAK__COUNT; k++)
		fprintf(f, "\"%s\":{\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64 "},",
			leak_kind_name((enum leak_kind)k), t->bytes[k], t->blocks[k]);
	fprintf(f, "\"allocations\":%" PRIu64 ",\"frees\":%" PRIu64
		",\"bytes_allocated\":%" PRIu64 ",\"peak_bytes\":%" PRIu64
		",\"scanned\":%s,\"scan_ms\":%.3f},\"leaks\":[",
		st->allocations, st->frees, st->bytes_allocated, st->peak_bytes,
		r->scanned ? "true" : "false", r->ns / 1e6);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s{\"kind\":\"%s\",\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64
			",\"indirect_bytes\":%" PRIu64
			",\"age\":{\"oldest_s\":%.3f,\"median_s\":%.3f},\"stack\":[",
			i ? "," : "", leak_kind_name(rec[i].kind), rec[i].bytes, rec[i].blocks,
			rec[i].indirect_bytes, age_s(now, rec[i].oldest_ns),
			age_s(now, rec[i].median_ns));
		size_t nf = get_frames(p, o, rec[i].stack_id, fr, ARRAY_SIZE(fr));
		for (size_t k = 0; k < nf; k++) {
			const struct symbol_info *si = &fr[k].si;
			fprintf(f, "%s{\"address\":\"0x%" PRIx64 "\",\"function\":", k ? "," : "", fr[k].pc);
			json_str(f, si->function);
			fputs(",\"file\":", f);
			json_str(f, si->line ? base_name(si->file) : NULL);
			if (si->file && si->line)
				fprintf(f, ",\"line\":%d", si->line);
			else
				fputs(",\"line\":null", f);
			fputs(",\"module\":", f);
			json_str(f, si->module);
			fputc('}', f);
		}
		fputs("]}", f);
	}
	fputs("]}", f);
}

static FILE *text_file, *json_file;
static char **json_entries;	/* one JSON object per reported process */
static size_t n_json;
static uint64_t counted_leaks;

static FILE *open_report(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "w");

	if (!f)
		die("cannot write report '%s': %s", path, strerror(errno));
	return f;
}

void report_open(const struct options *o)
{
	if (o->output)
		text_file = open_report(o->output);
	if (o->json)
		json_file = open_report(o->json);
}

static FILE *text_stream(void)
{
	return text_file ? text_file : stderr;
}

void report_process(struct process *p, const struct options *o)
{
	struct totals t;
	size_t n;
	uint64_t now = now_ns();

	if (p->reported || !p->heap)
		return;
	p->reported = true;
	if (!p->scan_result)
		p->scan_result = scan_process(p, NULL, 0, false);
	struct record *rec = make_records(p->scan_result, &n, &t);
	FILE *f = text_stream();
	if (n_json)
		fprintf(f, "\n");
	write_text(f, p, o, rec, n, &t, now);
	fflush(f);
	if (json_file) {
		char *buf = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&buf, &len);
		if (m) {
			write_json(m, p, o, rec, n, &t, now);
			fclose(m);
		}
		json_entries = xrealloc(json_entries, (n_json + 1) * sizeof(*json_entries));
		json_entries[n_json] = buf;
	}
	n_json++;
	for (int k = 0; k < LEAK__COUNT; k++)
		if (o->error_kinds & kind_flags[k])
			counted_leaks += t.blocks[k];
	free(rec);
}

static int finish(FILE *f, const char *path)
{
	if (ferror(f) | fclose(f)) {
		error("cannot write report '%s': %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int report_close(const struct options *o)
{
	int rc = 0;

	if (json_file) {
		fprintf(json_file, "{\"tool\":\"ptleak\",\"version\":\"%s\",\"processes\":[",
			PTLEAK_VERSION);
		for (size_t i = 0; i < n_json; i++) {
			fprintf(json_file, "%s%s", i ? "," : "", json_entries[i] ? json_entries[i] : "{}");
			free(json_entries[i]);
		}
		fputs("]}\n", json_file);
		rc |= finish(json_file, o->json);
		free(json_entries);
	}
	if (text_file)
		rc |= finish(text_file, o->output);
	if (rc < 0)
		return -1;
	return counted_leaks > INT32_MAX ? INT32_MAX : (int)counted_leaks;
}

/* --interval: per-stack live bytes now and at the previous call. */
struct site_total {
	uint32_t stack_id;
	uint64_t bytes, blocks, prev_bytes;
};

static uint64_t *prev_bytes;	/* by stack id */
static size_t n_prev;
static uint64_t prev_live_bytes, prev_live_blocks, prev_tick_ns;

static int by_live_bytes(const void *a, const void *b)
{
	const struct site_total *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

void report_interval(struct process *p, const struct options *o)
{
	size_t nb, ns = stacks_count(p->stacks) + 1;
	struct block *b = heap_snapshot(p->heap, &nb);
	struct site_total *tot = xcalloc(ns, sizeof(*tot));
	const struct heap_stats *st = heap_stats(p->heap);
	uint64_t now = now_ns();
	FILE *f = text_stream();
	char a[32], c[32], d[32], e[32];
	struct frame fr[64];

	for (size_t i = 0; i < ns; i++)
		tot[i] = (struct site_total){ .stack_id = (uint32_t)i,
					      .prev_bytes = i < n_prev ? prev_bytes[i] : 0 };
	for (size_t i = 0; i < nb; i++) {
		tot[b[i].stack_id].bytes += b[i].size;
		tot[b[i].stack_id].blocks++;
	}
	prev_bytes = xrealloc(prev_bytes, ns * sizeof(*prev_bytes));
	for (size_t i = 0; i < ns; i++)
		prev_bytes[i] = tot[i].bytes;
	n_prev = ns;
	int64_t dbytes = (int64_t)(st->live_bytes - prev_live_bytes);
	int64_t dblocks = (int64_t)(st->live_blocks - prev_live_blocks);
	uint64_t since = prev_tick_ns ? prev_tick_ns : p->attach_ns;
	fprintf(f, "==%d== [t=%.1fs] live since attach: %s bytes in %s blocks "
		"(%s%s bytes, %s%s blocks in %.1fs)\n", p->pid, age_s(now, p->attach_ns),
		num(st->live_bytes, a), num(st->live_blocks, c),
		dbytes < 0 ? "-" : "+", num((uint64_t)(dbytes < 0 ? -dbytes : dbytes), d),
		dblocks < 0 ? "-" : "+", num((uint64_t)(dblocks < 0 ? -dblocks : dblocks), e),
		age_s(now, since));
	prev_live_bytes = st->live_bytes;
	prev_live_blocks = st->live_blocks;
	prev_tick_ns = now;
	qsort(tot, ns, sizeof(*tot), by_live_bytes);
	for (size_t i = 0; i < ns && i < 10 && tot[i].bytes; i++) {
		int64_t g = (int64_t)(tot[i].bytes - tot[i].prev_bytes);
		fprintf(f, "==%d==   %s bytes in %s blocks (%s%s bytes) at", p->pid,
			num(tot[i].bytes, a), num(tot[i].blocks, c), g < 0 ? "-" : "+",
			num((uint64_t)(g < 0 ? -g : g), d));
		size_t nf = get_frames(p, o, tot[i].stack_id, fr, 4);
		for (size_t k = 0; k < nf; k++) {
			const struct symbol_info *si = &fr[k].si;
			fprintf(f, "%s %s", k ? " <" : "", si->function ? si->function : "???");
			if (k && si->file && si->line)
				fprintf(f, " (%s:%d)", base_name(si->file), si->line);
		}
		fputc('\n', f);
	}
	fflush(f);
	free(tot);
	free(b);
}
