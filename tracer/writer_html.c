/*
 * writer_html: one self-contained page (tracer/page.html, built into
 * ptleak) with the report's data as JSON in a <script> element: the
 * summary, the loss records with their stacks and source lines, the heap
 * over time with the top sites' series. The page draws everything itself
 * (canvas flame graphs and timeline, a virtualized record list) and
 * fetches nothing. doc/output.md describes the data.
 *
 * Frames are written once in a table and records refer to them by index,
 * so 100,000 records of 12 frames stay a few megabytes. Source lines are
 * read here, at report time, from the files the line tables name (each
 * file read once, the ones larger than 16 MiB skipped).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/stacks.h"
#include "tracer/util.h"
#include "tracer/version.h"
#include "tracer/writer.h"

/* tracer/page.S: the page, with one marker where the data goes. */
extern const char html_page_start[], html_page_end[];
static const char data_marker[] = "<!--PTLEAK-DATA-->";

struct source_file {
	char *text;		/* NULL: unreadable */
	size_t len;
	size_t *lines;		/* offsets of line starts, made on first use */
	size_t n_lines;
};

static const char *html_path(const struct options *o)
{
	return o->html;
}

static unsigned html_kinds(const struct options *o)
{
	return KIND_DEFINITE | KIND_INDIRECT | KIND_POSSIBLE | KIND_REACHABLE | MODEL_TIMELINE;
}

static void load(struct source_file *sf, const char *path)
{
	FILE *f = fopen(path, "rb");
	long size;

	if (!f)
		return;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && size < (16l << 20) &&
	    fseek(f, 0, SEEK_SET) == 0) {
		sf->text = xmalloc((size_t)size + 1);
		sf->len = fread(sf->text, 1, (size_t)size, f);
		sf->text[sf->len] = '\0';
		sf->lines = xmalloc((sf->len + 2) * sizeof(*sf->lines));
		sf->lines[sf->n_lines++] = 0;
		for (size_t i = 0; i < sf->len; i++)
			if (sf->text[i] == '\n')
				sf->lines[sf->n_lines++] = i + 1;
	}
	fclose(f);
}

/* Line LINE of SF as a JSON string (null if there is none). */
static void put_line(FILE *f, const struct source_file *sf, int line)
{
	if (!sf->text || line < 1 || (size_t)line > sf->n_lines) {
		fputs("null", f);
		return;
	}
	size_t a = sf->lines[line - 1], b = a;
	while (b < sf->len && sf->text[b] != '\n' && b - a < 240)
		b++;
	char save = sf->text[b];
	sf->text[b] = '\0';
	writer_json_str_html(f, sf->text + a);
	sf->text[b] = save;
}

struct frame_table {
	struct stacks *ids;		/* (pc, function, file, line) -> id */
	struct stacks *file_ids;	/* file name pointer -> id */
	struct source_file *files;
	size_t n_files;
	FILE *out;			/* the "frames" array being written */
};

static uint64_t frame_id(struct frame_table *t, const struct model_frame *fr)
{
	const struct symbol_info *si = &fr->si;
	uint64_t key[4] = { fr->pc, (uint64_t)(uintptr_t)si->function,
			    (uint64_t)(uintptr_t)si->file, (uint64_t)si->line };
	size_t before = stacks_count(t->ids);
	uint64_t id = stacks_intern(t->ids, key, 4);

	if (stacks_count(t->ids) == before)
		return id - 1;
	FILE *f = t->out;
	fprintf(f, "%s[", before ? "," : "");
	writer_json_str_html(f, si->function);
	fputc(',', f);
	writer_json_str_html(f, si->file && si->line ? si->file : NULL);
	fprintf(f, ",%d,", si->file ? si->line : 0);
	writer_json_str_html(f, si->module);
	fprintf(f, ",\"0x%" PRIx64 "\",", fr->pc);
	if (si->file && si->line) {
		uint64_t fk = (uint64_t)(uintptr_t)si->file;
		size_t nf = stacks_count(t->file_ids);
		uint32_t fid = stacks_intern(t->file_ids, &fk, 1);
		if (fid > nf) {
			t->files = xrealloc(t->files, fid * sizeof(*t->files));
			t->files[fid - 1] = (struct source_file){ 0 };
			load(&t->files[fid - 1], si->file);
			t->n_files = fid;
		}
		put_line(f, &t->files[fid - 1], si->line);
	} else {
		fputs("null", f);
	}
	fputc(']', f);
	return id - 1;
}

static void frame_list(FILE *f, struct frame_table *t, const struct model_frame *fr, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", frame_id(t, &fr[i]));
	fputc(']', f);
}

static double secs(const struct report_model *m, uint64_t t)
{
	return t > m->start_ns ? (double)(t - m->start_ns) / 1e9 : 0.0;
}

static void write_timeline(FILE *f, const struct report_model *m, struct frame_table *t)
{
	static const char *const cols[] = { "t", "bytes", "blocks", "max", "min" };

	fputs(",\"timeline\":{", f);
	for (size_t c = 0; c < ARRAY_SIZE(cols); c++) {
		fprintf(f, "%s\"%s\":[", c ? "," : "", cols[c]);
		for (size_t i = 0; i < m->n_samples; i++) {
			const struct timeline_sample *s = &m->samples[i];
			if (i)
				fputc(',', f);
			if (c == 0)
				fprintf(f, "%.4f", secs(m, s->t_ns));
			else
				fprintf(f, "%" PRIu64, c == 1 ? s->bytes : c == 2 ? s->blocks
						       : c == 3 ? s->max_bytes : s->min_bytes);
		}
		fputc(']', f);
	}
	fprintf(f, ",\"peak\":{\"t\":%.4f,\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64 "}}",
		secs(m, m->peak_ns), m->heap.peak_bytes, m->peak_blocks);
	fputs(",\"series\":[", f);
	for (size_t k = 0; k < m->n_series; k++) {
		const struct model_series *s = &m->series[k];
		fprintf(f, "%s{\"peak\":%" PRIu64 ",\"final\":%" PRIu64 ",\"first\":%zu,\"stack\":",
			k ? "," : "", s->peak, s->final, s->first_sample);
		frame_list(f, t, s->frames, s->n_frames);
		fputs(",\"bytes\":[", f);
		for (size_t i = s->first_sample; i < m->n_samples; i++)
			fprintf(f, "%s%" PRIu64, i > s->first_sample ? "," : "", s->bytes[i]);
		fputs("]}", f);
	}
	fputc(']', f);
}

static void write_process(FILE *f, const struct report_model *m, const struct options *o)
{
	struct frame_table t = { .ids = stacks_new(), .file_ids = stacks_new() };
	char *frames = NULL;
	size_t frames_len = 0;

	t.out = open_memstream(&frames, &frames_len);
	if (!t.out)
		die("out of memory writing the HTML report");
	fputc('{', f);
	writer_json_identity(f, m, true);
	fprintf(f, ",\"attached\":%s,\"snapshot\":%u,\"traced_s\":%.3f,\"scanned\":%s",
		m->attached ? "true" : "false", m->snapshot ? m->snapshot_no : 0,
		secs(m, m->now_ns), m->scanned ? "true" : "false");
	fputs(",\"summary\":{", f);
	for (int k = 0; k < LEAK__COUNT; k++)
		fprintf(f, "\"%s\":[%" PRIu64 ",%" PRIu64 "],", leak_kind_name((enum leak_kind)k),
			m->totals.bytes[k], m->totals.blocks[k]);
	fprintf(f, "\"allocations\":%" PRIu64 ",\"frees\":%" PRIu64 ",\"bytes_allocated\":%"
		PRIu64 ",\"peak_bytes\":%" PRIu64 "}", m->heap.allocations, m->heap.frees,
		m->heap.bytes_allocated, m->heap.peak_bytes);
	fputs(",\"records\":[", f);
	for (size_t i = 0; i < m->n_records; i++) {
		const struct model_record *rec = &m->records[i];
		fprintf(f, "%s[\"%s\",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.3f,", i ? "," : "",
			model_kind_name(m, rec), rec->bytes, rec->blocks, rec->indirect_bytes,
			model_age_s(m, rec->oldest_ns));
		frame_list(f, &t, rec->frames, rec->n_frames);
		const struct model_supp_use *supp = model_supp_of(m, rec);
		fputc(',', f);
		writer_json_str_html(f, supp ? (supp->name ? supp->name : "?") : NULL);
		fprintf(f, ",%s]", rec->before_attach ? "true" : "false");
	}
	fputc(']', f);
	write_timeline(f, m, &t);
	fclose(t.out);
	fputs(",\"frames\":[", f);
	fwrite(frames, 1, frames_len, f);
	fputs("]}", f);
	free(frames);
	for (size_t i = 0; i < t.n_files; i++) {
		free(t.files[i].text);
		free(t.files[i].lines);
	}
	free(t.files);
	stacks_free(t.ids);
	stacks_free(t.file_ids);
}

static void html_process(struct writer_out *w, const struct report_model *m,
			 const struct options *o)
{
	writer_keep(w, write_process, m, o);
}

static void html_finish(struct writer_out *w, const struct options *o)
{
	size_t size = (size_t)(html_page_end - html_page_start);
	const char *at = memmem(html_page_start, size, data_marker, strlen(data_marker));
	size_t head = at ? (size_t)(at - html_page_start) : size;

	fwrite(html_page_start, 1, head, w->f);
	fprintf(w->f, "{\"tool\":\"ptleak\",\"version\":\"%s\",\"processes\":[", PTLEAK_VERSION);
	writer_put_kept(w, ",");
	fputs("]}", w->f);
	if (at)
		fwrite(at + strlen(data_marker), 1, size - head - strlen(data_marker), w->f);
}

const struct report_writer writer_html = {
	.name = "html",
	.path = html_path,
	.kinds = html_kinds,
	.process = html_process,
	.finish = html_finish,
};
