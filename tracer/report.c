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

/* Group blocks into records, largest first. */
static struct record *make_records(const struct scan_result *r, size_t *n_out,
				   struct totals *t)
{
	struct record *v = xcalloc(r->n + 1, sizeof(*v));
	size_t n = 0;

	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < r->n; i++) {
		enum leak_kind k = (enum leak_kind)r->kind[i];
		v[n++] = (struct record){ .kind = k, .stack_id = r->blocks[i].stack_id,
					  .bytes = r->blocks[i].size, .blocks = 1 };
		t->bytes[k] += r->blocks[i].size;
		t->blocks[k]++;
	}
	qsort(v, n, sizeof(*v), by_record);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && v[m - 1].kind == v[i].kind && v[m - 1].stack_id == v[i].stack_id) {
			v[m - 1].bytes += v[i].bytes;
			v[m - 1].blocks += v[i].blocks;
		} else {
			v[m++] = v[i];
		}
	}
	/* Indirect bytes hang under the definite record of their leader. */
	for (size_t i = 0; i < r->n; i++) {
		if (r->kind[i] != LEAK_INDIRECT)
			continue;
		struct record key = { .kind = LEAK_DEFINITE,
				      .stack_id = r->blocks[r->leader[i]].stack_id };
		struct record *rec = bsearch(&key, v, m, sizeof(*v), by_record);
		if (rec)
			rec->indirect_bytes += r->blocks[i].size;
	}
	qsort(v, m, sizeof(*v), by_size);
	*n_out = m;
	return v;
}

struct frame {
	uint64_t pc;
	struct symbol_info si;
};

/* Symbolized frames of a stack, cut below main unless asked. */
static size_t get_frames(struct process *p, const struct options *o, uint32_t id,
			 struct frame *out, size_t max)
{
	size_t n;
	const uint64_t *pcs = stacks_get(p->stacks, id, &n);

	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++) {
		out[i].pc = pcs[i];
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

static void write_text(FILE *f, struct process *p, const struct options *o,
		       const struct record *rec, size_t n, const struct totals *t)
{
	const struct heap_stats *st = heap_stats(p->heap);
	const struct scan_result *r = p->scan_result;
	char a[32], b[32], c[32], d[32];
	pid_t pid = p->pid;
	struct frame fr[64];

	if (!o->quiet) {
		fprintf(f, "==%d== ptleak-%s, an out-of-process leak finder\n", pid, PTLEAK_VERSION);
		fprintf(f, "==%d== Command:", pid);
		for (char **v = p->argv; *v; v++)
			fprintf(f, " %s", *v);
		fprintf(f, "\n==%d==\n", pid);
	}
	fprintf(f, "==%d== HEAP SUMMARY:\n", pid);
	fprintf(f, "==%d==     in use at exit: %s bytes in %s blocks\n", pid,
		num(st->live_bytes, a), num(st->live_blocks, b));
	fprintf(f, "==%d==   total heap usage: %s allocs, %s frees, %s bytes allocated\n",
		pid, num(st->allocations, a), num(st->frees, b), num(st->bytes_allocated, c));
	fprintf(f, "==%d==\n", pid);
	if (r && !r->scanned)
		fprintf(f, "==%d== no reachability scan (the process's memory was gone): "
			"every unfreed block is counted as definitely lost\n==%d==\n", pid, pid);
	for (size_t i = 0; i < n; i++) {
		if (!(o->show_kinds & kind_flags[rec[i].kind]))
			continue;
		if (rec[i].kind == LEAK_DEFINITE && rec[i].indirect_bytes)
			fprintf(f, "==%d== %s (%s direct, %s indirect) bytes in %s blocks are %s "
				"in loss record %zu of %zu\n", pid,
				num(rec[i].bytes + rec[i].indirect_bytes, a), num(rec[i].bytes, b),
				num(rec[i].indirect_bytes, c), num(rec[i].blocks, d),
				kind_words[rec[i].kind], i + 1, n);
		else
			fprintf(f, "==%d== %s bytes in %s blocks are %s in loss record %zu of %zu\n",
				pid, num(rec[i].bytes, a), num(rec[i].blocks, b),
				kind_words[rec[i].kind], i + 1, n);
		size_t nf = get_frames(p, o, rec[i].stack_id, fr, ARRAY_SIZE(fr));
		for (size_t k = 0; k < nf; k++) {
			const struct symbol_info *si = &fr[k].si;
			fprintf(f, "==%d==    %s 0x%" PRIX64 ": %s ", pid, k ? "by" : "at",
				fr[k].pc, si->function ? si->function : "???");
			if (si->file && si->line)
				fprintf(f, "(%s:%d)\n", base_name(si->file), si->line);
			else
				fprintf(f, "(in %s)\n", si->module ? si->module : "???");
		}
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
		       const struct record *rec, size_t n, const struct totals *t)
{
	const struct heap_stats *st = heap_stats(p->heap);
	const struct scan_result *r = p->scan_result;
	struct frame fr[64];
	int status = p->exit_status;

	fprintf(f, "{\"tool\":\"ptleak\",\"version\":\"%s\",\"processes\":[{\"pid\":%d,\"command\":[",
		PTLEAK_VERSION, p->pid);
	for (char **v = p->argv; *v; v++) {
		if (v != p->argv)
			fputc(',', f);
		json_str(f, *v);
	}
	fputs("],\"exit\":", f);
	if (status >= 0 && WIFSIGNALED(status))
		fprintf(f, "{\"signal\":%d}", WTERMSIG(status));
	else
		fprintf(f, "{\"code\":%d}", status >= 0 ? WEXITSTATUS(status) : -1);
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
			",\"indirect_bytes\":%" PRIu64 ",\"stack\":[",
			i ? "," : "", leak_kind_name(rec[i].kind), rec[i].bytes, rec[i].blocks,
			rec[i].indirect_bytes);
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
	fputs("]}]}\n", f);
}

static FILE *text_file, *json_file;

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

static int finish(FILE *f, const char *path)
{
	if (ferror(f) | fclose(f)) {
		error("cannot write report '%s': %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int report_write(struct process *p, const struct options *o)
{
	struct totals t;
	size_t n;
	int rc = 0;

	if (!p->scan_result)
		p->scan_result = scan_process(p, NULL);
	struct record *rec = make_records(p->scan_result, &n, &t);

	FILE *f = text_file ? text_file : stderr;
	write_text(f, p, o, rec, n, &t);
	if (text_file)
		rc |= finish(f, o->output);
	else
		fflush(stderr);
	if (json_file) {
		write_json(json_file, p, o, rec, n, &t);
		rc |= finish(json_file, o->json);
	}
	free(rec);
	if (rc < 0)
		return -1;
	uint64_t counted = 0;
	for (int k = 0; k < LEAK__COUNT; k++)
		if (o->error_kinds & kind_flags[k])
			counted += t.blocks[k];
	return counted > INT32_MAX ? INT32_MAX : (int)counted;
}
