/*
 * report: every report goes out through here. For each process that ends
 * (or that ptleak leaves) its model is built once and handed to every
 * writer whose file the user asked for (writer.h); the files are opened
 * before the program runs and completed at the end.
 */
#include "tracer/report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tracer/allocdb.h"
#include "tracer/frames.h"
#include "tracer/heap.h"
#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/proc.h"
#include "tracer/scan.h"
#include "tracer/stacks.h"
#include "tracer/stream.h"
#include "tracer/suppress.h"
#include "tracer/util.h"
#include "tracer/writer.h"

/* The formats. A new one: its file, and a line here. */
static const struct report_writer *const writers[] = {
	&writer_text,
	&writer_json,
	&writer_pprof,
	&writer_folded,
	&writer_html,
	&writer_xml,
	&writer_sarif,
};

static struct writer_out outs[ARRAY_SIZE(writers)];
static bool active[ARRAY_SIZE(writers)];
static bool per_process[ARRAY_SIZE(writers)];	/* path has %p: a file each */
static char *paths[ARRAY_SIZE(writers)];	/* %p expanded (attach mode), owned */
static const char *program;	/* PROGRAM resolved: never a report's file */
static bool own_files_failed;	/* a %p file could not be written */
static uint64_t counted_leaks;
static struct suppressions *supps;	/* NULL: none loaded */

const char *writer_num(uint64_t v, char buf[32])
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

const char *writer_delta(int64_t v, char buf[32])
{
	char num[32];

	/* At most 26 characters for 2^64 with separators: fits with a sign. */
	snprintf(buf, 32, "%c%s", v < 0 ? '-' : '+',
		 writer_num(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, num));
	return buf;
}

static void json_str(FILE *f, const char *s, bool in_html)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(f, "\\%c", *c);
		else if (*c < 0x20 || (in_html && (*c == '<' || *c == '>' || *c == '&')))
			fprintf(f, "\\u%04x", *c);
		else
			fputc(*c, f);
	}
	fputc('"', f);
}

void writer_json_str(FILE *f, const char *s)
{
	json_str(f, s, false);
}

void writer_json_str_html(FILE *f, const char *s)
{
	json_str(f, s, true);
}

void writer_json_identity(FILE *f, const struct report_model *m, bool in_html)
{
	int status = m->exit_status;

	fprintf(f, "\"pid\":%d,\"ppid\":%d,\"command\":[", m->pid, m->ppid);
	for (char *const *v = m->argv; v && *v; v++) {
		if (v != m->argv)
			fputc(',', f);
		json_str(f, *v, in_html);
	}
	fputs("],\"exit\":", f);
	if (status < 0)
		fputs("null", f);
	else if (WIFSIGNALED(status))
		fprintf(f, "{\"signal\":%d}", WTERMSIG(status));
	else
		fprintf(f, "{\"code\":%d}", WEXITSTATUS(status));
}

char *writer_text_of(writer_body *body, const struct report_model *m, const struct options *o)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&buf, &len);

	if (!mf)
		die("cannot keep the report of process %d: out of memory", m->pid);
	body(mf, m, o);
	if (ferror(mf) | fclose(mf))
		die("cannot keep the report of process %d: out of memory", m->pid);
	return buf;
}

void writer_texts_add(struct writer_texts *t, char *text)
{
	t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
	t->v[t->n++] = text;
}

void writer_texts_put(FILE *f, struct writer_texts *t, const char *sep)
{
	for (size_t i = 0; i < t->n; i++) {
		fprintf(f, "%s%s", i ? sep : "", t->v[i]);
		free(t->v[i]);
	}
	free(t->v);
	*t = (struct writer_texts){ 0 };
}

void writer_keep(struct writer_out *w, writer_body *body, const struct report_model *m,
		 const struct options *o)
{
	if (!w->state)
		w->state = xcalloc(1, sizeof(struct writer_texts));
	writer_texts_add(w->state, writer_text_of(body, m, o));
}

void writer_put_kept(struct writer_out *w, const char *sep)
{
	if (w->state)
		writer_texts_put(w->f, w->state, sep);
	free(w->state);
	w->state = NULL;
}

const char *writer_record_what(const struct report_model *m, size_t i, char buf[256])
{
	const struct model_record *rec = &m->records[i];
	char a[32], b[32], c[32], d[32];

	if (rec->kind == LEAK_DEFINITE && rec->indirect_bytes)
		snprintf(buf, 256, "%s (%s direct, %s indirect) bytes in %s blocks are %s "
			 "in loss record %zu of %zu",
			 writer_num(rec->bytes + rec->indirect_bytes, a), writer_num(rec->bytes, b),
			 writer_num(rec->indirect_bytes, c), writer_num(rec->blocks, d),
			 leak_kind_words(rec->kind), i + 1, m->n_records);
	else
		snprintf(buf, 256, "%s bytes in %s blocks are %s in loss record %zu of %zu",
			 writer_num(rec->bytes, a), writer_num(rec->blocks, b),
			 leak_kind_words(rec->kind), i + 1, m->n_records);
	return buf;
}

void writer_xml_str(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			/* XML 1.0 has no way to write most control characters. */
			if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
				fputc('?', f);
			else
				fputc(*s, f);
		}
	}
}

const char *writer_base_name(const char *path)
{
	const char *s = path ? strrchr(path, '/') : NULL;

	return s ? s + 1 : path;
}

/* PATH opened for writing, or NULL with errno set: EEXIST for an existing
 * executable file, ETXTBSY for PROGRAM itself (under any name), which a
 * report never replaces. */
static FILE *try_open_report(const char *path)
{
	struct stat st, prog;

	/* `--pprof PROG ARGS` is a typo, not a wish to lose PROG. */
	if (stat(path, &st) == 0) {
		if (program && stat(program, &prog) == 0 && st.st_dev == prog.st_dev &&
		    st.st_ino == prog.st_ino) {
			errno = ETXTBSY;
			return NULL;
		}
		if (S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
			errno = EEXIST;
			return NULL;
		}
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	FILE *f = fd < 0 ? NULL : stream_fdopen(fd);

	if (!f && fd >= 0)
		close(fd);
	return f;
}

static const char *open_error(const char *path)
{
	static char why[512];

	if (errno == EEXIST)
		snprintf(why, sizeof(why), "refusing to write report '%s' over an executable file",
			 path);
	else if (errno == ETXTBSY)
		snprintf(why, sizeof(why), "refusing to write report '%s' over the program to run",
			 path);
	else
		snprintf(why, sizeof(why), "cannot write report '%s': %s", path, strerror(errno));
	return why;
}

static FILE *open_report(const char *path)
{
	FILE *f = try_open_report(path);

	if (!f)
		die("%s", open_error(path));
	return f;
}

/* --pprof=heap.%n.pb.gz and the like: one file per --interval snapshot
 * and one for the final report, %n its number (1, 2, ...). */
static bool numbered[ARRAY_SIZE(writers)];
static char *numbered_paths[ARRAY_SIZE(writers)];	/* the final file's */
static unsigned n_snapshots;

static char *number_path(const char *pattern, unsigned n)
{
	size_t cap = strlen(pattern) + 1, len = 0;
	char *out = xmalloc(cap);

	for (const char *c = pattern; *c; c++) {
		char num[16];
		const char *piece = c;
		size_t plen = 1;
		if (c[0] == '%' && c[1] == 'n') {
			plen = (size_t)snprintf(num, sizeof(num), "%u", n);
			piece = num;
			c++;
		}
		if (len + plen + 1 > cap) {
			cap = 2 * (len + plen + 1);
			out = xrealloc(out, cap);
		}
		memcpy(out + len, piece, plen);
		len += plen;
	}
	out[len] = '\0';
	return out;
}

/* A numbered report's directory must be writable before the run starts. */
static void check_numbered(const char *pattern)
{
	char *dir = xstrdup(pattern), *slash = strrchr(dir, '/');

	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (access(slash ? dir : ".", W_OK) != 0)
		die("cannot write reports '%s': %s: %s", pattern, slash ? dir : ".",
		    strerror(errno));
	free(dir);
}

/* TEMPLATE with valgrind's escapes expanded: %p the pid, %q{VAR} the
 * variable's value, %% a percent sign; others (--pprof's %n) are kept. */
static char *expand_path(const char *tmpl, pid_t pid)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return xstrdup(tmpl);
	for (const char *c = tmpl; *c; c++) {
		if (*c != '%') {
			fputc(*c, f);
		} else if (c[1] == 'p') {
			fprintf(f, "%d", (int)pid);
			c++;
		} else if (c[1] == '%') {
			fputc('%', f);
			c++;
		} else if (c[1] == 'q' && c[2] == '{' && strchr(c + 3, '}')) {
			const char *end = strchr(c + 3, '}');
			char *name = strndup(c + 3, (size_t)(end - c - 3));
			const char *val = name ? getenv(name) : NULL;
			fputs(val ? val : "", f);
			free(name);
			c = end;
		} else {
			fputc('%', f);	/* %n: number_path's, later */
		}
	}
	fclose(f);
	return buf;
}

/* A %p path is opened once per process, when it is reported; now only
 * its directory is checked, so that a typo still fails before the run. */
static void check_dir_of(const char *tmpl)
{
	char *path = expand_path(tmpl, getpid());
	char *slash = strrchr(path, '/');
	const char *dir = slash ? (slash == path ? "/" : path) : ".";

	if (slash && slash != path)
		*slash = '\0';
	if (access(dir, W_OK | X_OK) < 0)
		die("cannot write report '%s': directory '%s': %s", tmpl, dir, strerror(errno));
	free(path);
}

/* The default suppression file, then --suppressions, in order; a broken
 * one stops ptleak before anything runs. */
static void load_suppressions(const struct options *o)
{
	char *def = o->no_default_suppressions ? NULL : suppress_default_path();
	char *err;

	if (!def && !o->n_suppressions)
		return;
	supps = suppressions_new();
	if (def && suppressions_load(supps, def, &err) < 0)
		die("%s", err ? err : def);
	if (o->verbose)
		fprintf(stderr, "ptleak: default suppressions: %s\n",
			def ? def : "none found (looked next to the ptleak binary)");
	free(def);
	for (int i = 0; i < o->n_suppressions; i++)
		if (suppressions_load(supps, o->suppressions[i], &err) < 0)
			die("%s", err ? err : o->suppressions[i]);
}

/* The final file of numbered writer I: the number after the snapshots. */
static void open_numbered(size_t i)
{
	if (!numbered[i] || outs[i].f)
		return;
	numbered_paths[i] = number_path(outs[i].path, n_snapshots + 1);
	outs[i].path = numbered_paths[i];
	outs[i].f = open_report(outs[i].path);
}

/* Close W's file; -1 (and a message) if anything could not be written. */
static int close_out(struct writer_out *w)
{
	if (ferror(w->f) | fclose(w->f)) {
		error("cannot write report '%s': %s", w->path, strerror(errno));
		return -1;
	}
	return 0;
}

void report_open(const struct options *o)
{
	program = o->program;
	load_suppressions(o);
	for (size_t i = 0; i < ARRAY_SIZE(writers); i++) {
		const char *path = writers[i]->path(o);
		if (!path && !writers[i]->to_stderr)
			continue;
		active[i] = true;
		if (path && strstr(path, "%n")) {
			/* Opened when the final report is made (report_process). */
			check_numbered(path);
			numbered[i] = true;
			outs[i] = (struct writer_out){ .path = path };
			continue;
		}
		if (path && strstr(path, "%p") && !o->pid) {
			per_process[i] = true;	/* the pids are not known yet */
			outs[i] = (struct writer_out){ .path = path, .f = stderr };
			check_dir_of(path);
			continue;
		}
		paths[i] = path ? expand_path(path, o->pid) : NULL;
		outs[i] = (struct writer_out){ .path = paths[i],
					       .f = path ? open_report(paths[i]) : stderr };
	}
}

/* One whole report file for process M of writer I (a %p path); false if
 * it could not be written (a message was printed). */
static bool write_own_file(size_t i, const struct report_model *m, const struct options *o)
{
	char *path = expand_path(writers[i]->path(o), m->pid);
	struct writer_out w = { .path = path, .f = try_open_report(path) };
	bool ok = w.f != NULL;

	if (!w.f) {
		error("%s", open_error(path));
	} else {
		writers[i]->process(&w, m, o);
		if (writers[i]->finish)
			writers[i]->finish(&w, o);
		ok = close_out(&w) == 0;
	}
	free(path);
	return ok;
}

static FILE *text_stream(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(writers); i++)
		if (writers[i] == &writer_text && active[i])
			return outs[i].f;
	return stderr;
}

/* The model of P from scan R, filtered by the suppressions, with the
 * frames the active writers (those with a place for checks: CHECKS) and
 * the suppressions need. */
static struct report_model *filtered_model(struct process *p, const struct scan_result *r,
					   const struct options *o, bool checks)
{
	unsigned kinds = suppressions_kinds(supps);

	for (size_t i = 0; i < ARRAY_SIZE(writers); i++)
		if (active[i] && (!checks || writers[i]->check))
			kinds |= writers[i]->kinds(o);
	struct report_model *m = model_build(p, r, o, kinds);
	suppressions_apply(supps, m);
	return m;
}

void report_process(struct process *p, const struct options *o)
{
	if (p->reported || !p->db || !p->scan)
		return;
	p->reported = true;
	struct report_model *m = filtered_model(p, p->scan, o, false);
	for (size_t i = 0; i < ARRAY_SIZE(writers); i++) {
		if (!active[i])
			continue;
		if (per_process[i]) {
			own_files_failed |= !write_own_file(i, m, o);
			continue;
		}
		open_numbered(i);
		writers[i]->process(&outs[i], m, o);
		outs[i].n_processes++;
	}
	for (int k = 0; k < LEAK__COUNT; k++)
		if (o->error_kinds & leak_kind_flag((enum leak_kind)k))
			counted_leaks += m->totals.blocks[k];
	model_free(m);
}

void report_banner(pid_t pid, char *const *argv, const struct options *o)
{
	if (o->quiet)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(writers); i++)
		if (active[i] && !per_process[i] && writers[i]->begin)
			writers[i]->begin(&outs[i], pid, argv, o);	/* %p: with its file */
}

/* The last check of each process, for the changes of the next one. */
static struct last_check {
	pid_t pid;
	struct report_model *m;
} *checks;
static size_t n_checks;

static struct last_check *last_check_of(pid_t pid)
{
	for (size_t i = 0; i < n_checks; i++)
		if (checks[i].pid == pid)
			return &checks[i];
	checks = xrealloc(checks, (n_checks + 1) * sizeof(*checks));
	checks[n_checks] = (struct last_check){ .pid = pid };
	return &checks[n_checks++];
}

void report_check(struct process *p, const struct scan_result *scan, const struct options *o,
		  uint64_t stopped_ns)
{
	struct last_check *lc = last_check_of(p->pid);
	struct report_model *m = filtered_model(p, scan, o, true);
	m->check = lc->m ? lc->m->check + 1 : 1;
	m->stopped_ns = stopped_ns;
	model_compare(m, lc->m);
	for (size_t i = 0; i < ARRAY_SIZE(writers); i++)
		if (active[i] && !per_process[i] && writers[i]->check)
			writers[i]->check(&outs[i], m, o);
	model_free(lc->m);
	lc->m = m;
}

int report_close(const struct options *o)
{
	int rc = 0;

	for (size_t i = 0; i < n_checks; i++)
		model_free(checks[i].m);
	free(checks);
	checks = NULL;
	n_checks = 0;
	for (size_t i = 0; i < ARRAY_SIZE(writers); i++) {
		struct writer_out *w = &outs[i];
		if (!active[i] || per_process[i])
			continue;
		open_numbered(i);
		if (writers[i]->finish)
			writers[i]->finish(w, o);
		active[i] = false;
		if (!w->path) {
			fflush(w->f);
			continue;
		}
		if (close_out(w) < 0)
			rc = -1;
		free(numbered_paths[i]);
		numbered_paths[i] = NULL;
		free(paths[i]);
		paths[i] = NULL;
	}
	suppressions_free(supps);
	supps = NULL;
	if (rc < 0 || own_files_failed)
		return -1;
	return counted_leaks > INT32_MAX ? INT32_MAX : (int)counted_leaks;
}

/* --interval: per-stack live bytes now and at the previous call. */
struct site_total {
	uint32_t stack_id;
	uint8_t call;
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

static double age_s(uint64_t now, uint64_t t)
{
	return t && now > t ? (double)(now - t) / 1e9 : 0.0;
}

/*
 * --interval with numbered report paths: snapshot N of P's live blocks
 * (model_snapshot, no scan) to a file of each numbered writer, named on
 * the text stream F. A file that cannot be written is said and skipped:
 * ptleak stays attached.
 */
static void write_snapshots(struct process *p, const struct options *o, FILE *f)
{
	unsigned parts = 0;

	for (size_t i = 0; i < ARRAY_SIZE(writers); i++)
		if (active[i] && numbered[i])
			parts |= writers[i]->kinds(o);
	if (!parts)
		return;
	unsigned n = ++n_snapshots;
	struct report_model *m = model_snapshot(p, o, parts, n);
	fprintf(f, "==%d==   snapshot %u:", p->pid, n);
	for (size_t i = 0; i < ARRAY_SIZE(writers); i++) {
		if (!active[i] || !numbered[i])
			continue;
		char *path = number_path(outs[i].path, n);
		struct writer_out w = { .path = path, .f = try_open_report(path) };
		if (!w.f) {
			error("%s", open_error(path));
			free(path);
			continue;
		}
		writers[i]->process(&w, m, o);
		w.n_processes = 1;
		if (writers[i]->finish)
			writers[i]->finish(&w, o);
		if (close_out(&w) == 0)
			fprintf(f, " %s", path);
		free(path);
	}
	fputc('\n', f);
	model_free(m);
}

void report_interval(struct process *p, const struct options *o)
{
	size_t nb, ns = stacks_count(p->db->stacks) + 1;
	struct block *b = heap_snapshot(p->db->heap, &nb);
	struct site_total *tot = xcalloc(ns, sizeof(*tot));
	const struct heap_stats *st = heap_stats(p->db->heap);
	uint64_t now = now_ns();
	FILE *f = text_stream();
	char a[32], c[32], d[32], e[32];
	struct model_frame fr[4];

	for (size_t i = 0; i < ns; i++)
		tot[i] = (struct site_total){ .stack_id = (uint32_t)i,
					      .prev_bytes = i < n_prev ? prev_bytes[i] : 0 };
	for (size_t i = 0; i < nb; i++) {
		if (b[i].before_attach)
			continue;	/* no site: not part of what grows since */
		tot[b[i].stack_id].bytes += b[i].size;
		tot[b[i].stack_id].blocks++;
		tot[b[i].stack_id].call = b[i].call;
	}
	prev_bytes = xrealloc(prev_bytes, ns * sizeof(*prev_bytes));
	for (size_t i = 0; i < ns; i++)
		prev_bytes[i] = tot[i].bytes;
	n_prev = ns;
	uint64_t live_bytes = st->live_bytes - st->before_bytes;
	uint64_t live_blocks = st->live_blocks - st->before_blocks;
	int64_t dbytes = (int64_t)(live_bytes - prev_live_bytes);
	int64_t dblocks = (int64_t)(live_blocks - prev_live_blocks);
	uint64_t since = prev_tick_ns ? prev_tick_ns : p->attach_ns;
	fprintf(f, "==%d== [t=%.1fs] live%s: %s bytes in %s blocks "
		"(%s bytes, %s blocks in %.1fs)\n", p->pid, age_s(now, p->attach_ns),
		p->attached ? " since attach" : "", writer_num(live_bytes, a), writer_num(live_blocks, c),
		writer_delta(dbytes, d), writer_delta(dblocks, e), age_s(now, since));
	prev_live_bytes = live_bytes;
	prev_live_blocks = live_blocks;
	prev_tick_ns = now;
	qsort(tot, ns, sizeof(*tot), by_live_bytes);
	for (size_t i = 0; i < ns && i < 10 && tot[i].bytes; i++) {
		int64_t g = (int64_t)(tot[i].bytes - tot[i].prev_bytes);
		fprintf(f, "==%d==   %s bytes in %s blocks (%s bytes) at", p->pid,
			writer_num(tot[i].bytes, a), writer_num(tot[i].blocks, c),
			writer_delta(g, d));
		size_t nf = model_frames(p, o, tot[i].stack_id, (enum alloc_call)tot[i].call,
					 fr, ARRAY_SIZE(fr));
		for (size_t k = 0; k < nf; k++) {
			const struct symbol_info *si = &fr[k].si;
			fprintf(f, "%s %s", k ? " <" : "", si->function ? si->function : "???");
			if (k && si->file && si->line)
				fprintf(f, " (%s:%d)", writer_base_name(si->file), si->line);
		}
		fputc('\n', f);
	}
	write_snapshots(p, o, f);
	fflush(f);
	free(tot);
	free(b);
}
