/*
 * writer_json: one JSON document for the whole run (doc/output.md), so
 * each process's entry is kept until the end.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/util.h"
#include "tracer/version.h"
#include "tracer/writer.h"

struct json_state {
	struct writer_texts processes;	/* one JSON object per reported process */
	struct writer_texts checks;	/* one per check on demand, in order */
};

static struct json_state *state_of(struct writer_out *w)
{
	if (!w->state)
		w->state = xcalloc(1, sizeof(struct json_state));
	return w->state;
}

static const char *json_path(const struct options *o)
{
	return o->json;
}

static unsigned json_kinds(const struct options *o)
{
	return KIND_DEFINITE | KIND_INDIRECT | KIND_POSSIBLE | KIND_REACHABLE;
}

static void write_frame_list(FILE *f, const struct model_frame *fr, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		const struct symbol_info *si = &fr[k].si;
		fprintf(f, "%s{\"address\":\"0x%" PRIx64 "\",\"function\":", k ? "," : "",
			fr[k].pc);
		writer_json_str(f, si->function);
		fputs(",\"file\":", f);
		writer_json_str(f, si->line ? si->file : NULL);
		if (si->file && si->line)
			fprintf(f, ",\"line\":%d", si->line);
		else
			fputs(",\"line\":null", f);
		fputs(",\"module\":", f);
		writer_json_str(f, si->module);
		if (si->module)
			fprintf(f, ",\"module_offset\":\"0x%" PRIx64 "\"", si->module_offset);
		else
			fputs(",\"module_offset\":null", f);
		fprintf(f, ",\"inlined\":%s}", fr[k].inlined ? "true" : "false");
	}
}

static void write_frames(FILE *f, const struct model_record *rec)
{
	write_frame_list(f, rec->frames, rec->n_frames);
}

/* Loss record I of M; CHECK: with its change since the last check. */
static void write_record(FILE *f, const struct report_model *m, const struct model_record *rec,
			 size_t i, bool check)
{
	fprintf(f, "%s{\"kind\":\"%s\",\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64
		",\"indirect_bytes\":%" PRIu64 ",\"indirect_blocks\":%" PRIu64
		",\"before_attach\":%s,\"age\":",
		i ? "," : "", leak_kind_name(rec->kind), rec->bytes, rec->blocks,
		rec->indirect_bytes, rec->indirect_blocks, rec->before_attach ? "true" : "false");
	if (rec->before_attach)
		fputs("null", f);
	else
		fprintf(f, "{\"oldest_s\":%.3f,\"median_s\":%.3f}",
			model_age_s(m, rec->oldest_ns), model_age_s(m, rec->median_ns));
	if (check)
		fprintf(f, ",\"change\":\"%s\",\"delta_bytes\":%" PRId64 ",\"delta_blocks\":%" PRId64,
			record_change_name(rec->change), rec->delta_bytes, rec->delta_blocks);
	fputs(",\"suppressed_by\":", f);
	const struct model_supp_use *u = model_supp_of(m, rec);
	writer_json_str(f, u ? u->name : NULL);
	fputs(",\"addresses\":[", f);
	for (uint64_t k = 0; k < rec->blocks; k++)
		fprintf(f, "%s\"0x%" PRIx64 "\"", k ? "," : "", rec->addrs[k]);
	fputs("],\"stack\":[", f);
	write_frames(f, rec);
	fputs("]}", f);
}

/* --track-mmap: "mmap_regions", apart from the leaks. */
static void write_mmaps(FILE *f, const struct report_model *m)
{
	if (!m->mmaps_tracked)
		return;
	fprintf(f, ",\"mmap_regions\":{\"bytes\":%" PRIu64 ",\"regions\":%" PRIu64
		",\"thread_stack_bytes\":%" PRIu64 ",\"thread_stack_regions\":%" PRIu64
		",\"records\":[", m->mmap_bytes, m->mmap_regions, m->thread_stack_bytes,
		m->thread_stack_regions);
	for (size_t i = 0; i < m->n_mmaps; i++) {
		const struct model_mmap *r = &m->mmaps[i];
		fprintf(f, "%s{\"bytes\":%" PRIu64 ",\"regions\":%" PRIu64 ",\"oldest_s\":%.3f"
			",\"addresses\":[", i ? "," : "", r->bytes, r->regions,
			model_age_s(m, r->oldest_ns));
		for (uint64_t k = 0; k < r->regions; k++)
			fprintf(f, "%s\"0x%" PRIx64 "\"", k ? "," : "", r->starts[k]);
		fputs("],\"stack\":[", f);
		write_frame_list(f, r->frames, r->n_frames);
		fputs("]}", f);
	}
	fputs("]}", f);
}

static void write_process(FILE *f, const struct report_model *m, const struct options *o)
{
	const struct heap_stats *st = &m->heap;

	fputc('{', f);
	writer_json_identity(f, m, false);
	if (m->attached) {
		fprintf(f, ",\"attached\":true,\"traced_s\":%.3f,\"before_attach_known\":%s",
			model_age_s(m, m->attach_ns), m->before_known ? "true" : "false");
		if (!m->before_known) {
			fputs(",\"before_attach_why\":", f);
			writer_json_str(f, m->before_why);
		} else {
			fputs(",\"before_attach_allocator\":", f);
			writer_json_str(f, m->before_allocator);
		}
	}
	fputs(",\"summary\":{", f);
	for (int k = 0; k < LEAK__COUNT; k++)
		fprintf(f, "\"%s\":{\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64 "},",
			leak_kind_name((enum leak_kind)k), m->totals.bytes[k], m->totals.blocks[k]);
	uint64_t sb = 0, sn = 0;
	for (int k = 0; k < LEAK__COUNT; k++) {
		sb += m->suppressed.bytes[k];
		sn += m->suppressed.blocks[k];
	}
	fprintf(f, "\"suppressed\":{\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64 "},", sb, sn);
	fprintf(f, "\"allocations\":%" PRIu64 ",\"frees\":%" PRIu64
		",\"bytes_allocated\":%" PRIu64 ",\"peak_bytes\":%" PRIu64
		",\"scanned\":%s,\"scan_ms\":%.3f",
		st->allocations, st->frees, st->bytes_allocated, st->peak_bytes,
		m->scanned ? "true" : "false", m->scan_ns / 1e6);
	if (m->attached && m->before_known)
		fprintf(f, ",\"before_attach\":{\"found_bytes\":%" PRIu64 ",\"found_blocks\":%" PRIu64
			",\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64 ",\"read_ms\":%.3f}",
			st->before_found_bytes, st->before_found_blocks, st->before_bytes,
			st->before_blocks, m->before_read_ns / 1e6);
	fputs("},\"leaks\":[", f);
	for (size_t i = 0; i < m->n_records; i++)
		write_record(f, m, &m->records[i], i, false);
	fputs("]", f);
	write_mmaps(f, m);
	fputs(",\"suppressions_used\":[", f);
	for (size_t i = 0; i < m->n_supp_used; i++) {
		const struct model_supp_use *u = &m->supp_used[i];
		fprintf(f, "%s{\"name\":", i ? "," : "");
		writer_json_str(f, u->name);
		fputs(",\"file\":", f);
		writer_json_str(f, u->file);
		fprintf(f, ",\"line\":%d,\"records\":%" PRIu64 ",\"bytes\":%" PRIu64
			",\"blocks\":%" PRIu64 "}", u->line, u->records, u->bytes, u->blocks);
	}
	fputs("]}", f);
}

static void json_process(struct writer_out *w, const struct report_model *m,
			 const struct options *o)
{
	writer_texts_add(&state_of(w)->processes, writer_text_of(write_process, m, o));
}

/* A check on demand: its summary with changes, its records with theirs. */
static void write_check(FILE *f, const struct report_model *m, const struct options *o)
{
	fprintf(f, "{\"pid\":%d,\"check\":%u,\"since_check\":%u,\"t_s\":%.3f,\"stopped_ms\":%.3f,"
		"\"summary\":{", m->pid, m->check, m->prev_check,
		model_age_s(m, m->attach_ns), m->stopped_ns / 1e6);
	for (int k = 0; k < LEAK__COUNT; k++)
		fprintf(f, "%s\"%s\":{\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64
			",\"delta_bytes\":%" PRId64 ",\"delta_blocks\":%" PRId64 "}", k ? "," : "",
			leak_kind_name((enum leak_kind)k), m->totals.bytes[k], m->totals.blocks[k],
			m->delta_bytes[k], m->delta_blocks[k]);
	fprintf(f, ",\"live_bytes\":%" PRIu64 ",\"live_blocks\":%" PRIu64 ",\"allocations\":%" PRIu64
		",\"frees\":%" PRIu64 "},\"gone\":{\"records\":%zu,\"bytes\":%" PRIu64
		",\"blocks\":%" PRIu64 "},\"leaks\":[", m->heap.live_bytes, m->heap.live_blocks,
		m->heap.allocations, m->heap.frees, m->n_gone, m->gone_bytes, m->gone_blocks);
	for (size_t i = 0; i < m->n_records; i++)
		write_record(f, m, &m->records[i], i, true);
	fputs("]", f);
	write_mmaps(f, m);
	fputs("}", f);
}

static void json_check(struct writer_out *w, const struct report_model *m,
		       const struct options *o)
{
	writer_texts_add(&state_of(w)->checks, writer_text_of(write_check, m, o));
}

static void json_finish(struct writer_out *w, const struct options *o)
{
	struct json_state *s = state_of(w);

	fprintf(w->f, "{\"tool\":\"ptleak\",\"version\":\"%s\",\"processes\":[", PTLEAK_VERSION);
	writer_texts_put(w->f, &s->processes, ",");
	fputs("],\"checks\":[", w->f);
	writer_texts_put(w->f, &s->checks, ",");
	fputs("]}\n", w->f);
	free(s);
	w->state = NULL;
}

const struct report_writer writer_json = {
	.name = "json",
	.path = json_path,
	.kinds = json_kinds,
	.process = json_process,
	.finish = json_finish,
	.check = json_check,
};
