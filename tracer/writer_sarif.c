/*
 * writer_sarif: SARIF 2.1.0 for code-scanning UIs. One run per traced
 * process (its invocation: command line, pid, exit), three rules
 * (definitely and indirectly lost are errors, possibly lost a warning;
 * still reachable blocks are no defect and not reported), and one result
 * per loss record of those kinds: located at its first frame in source
 * that exists on this machine (the program's own code, not libc's
 * "./malloc/malloc.c"), the whole allocation stack attached, bytes and
 * blocks as properties. A suppressed record is still a result, with a
 * SARIF suppression naming what suppressed it, as code scanning expects.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/util.h"
#include "tracer/version.h"
#include "tracer/writer.h"

static const char *sarif_path(const struct options *o)
{
	return o->sarif;
}

static unsigned sarif_kinds(const struct options *o)
{
	return KIND_DEFINITE | KIND_INDIRECT | KIND_POSSIBLE;
}

static const struct {
	const char *id, *name, *level, *text;
} rules[LEAK__COUNT] = {
	[LEAK_DEFINITE] = { "definitely-lost", "DefinitelyLost", "error",
			    "Memory definitely lost: no pointer to the block is left." },
	[LEAK_INDIRECT] = { "indirectly-lost", "IndirectlyLost", "error",
			    "Memory indirectly lost: only lost blocks point to the block." },
	[LEAK_POSSIBLE] = { "possibly-lost", "PossiblyLost", "warning",
			    "Memory possibly lost: only pointers into the middle of the block "
			    "are left." },
};

/* PATH as a URI reference: an absolute path as file://, a relative one
 * as is; bytes outside RFC 3986's unreserved set and '/' %-encoded. */
static void write_uri(FILE *f, const char *path)
{
	static const char ok[] = "-._~/";

	fputc('"', f);
	if (path[0] == '/')
		fputs("file://", f);
	for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || strchr(ok, *c))
			fputc(*c, f);
		else
			fprintf(f, "%%%02X", *c);
	}
	fputc('"', f);
}

/*
 * A location: the source file and line if known, the function. (The
 * instruction address goes in the frame's properties: SARIF's
 * address.absoluteAddress is read as a 32-bit int by Microsoft's SDK,
 * and a 64-bit process's addresses do not fit.)
 */
static void write_location(FILE *f, const struct model_frame *fr)
{
	const struct symbol_info *si = &fr->si;
	bool src = si->file && si->line;

	fputs("{", f);
	if (src) {
		fputs("\"physicalLocation\":{\"artifactLocation\":{\"uri\":", f);
		write_uri(f, si->file);
		fprintf(f, "},\"region\":{\"startLine\":%d}}", si->line);
	}
	if (si->function) {
		fprintf(f, "%s\"logicalLocations\":[{\"fullyQualifiedName\":", src ? "," : "");
		writer_json_str(f, si->function);
		fputs(",\"kind\":\"function\"}]", f);
	}
	fputs("}", f);
}

/* The frame a code-scanning UI should point at: the first whose source
 * file is on this machine, else the first with line info, else none. */
static const struct model_frame *primary_frame(const struct model_record *rec)
{
	const struct model_frame *any = NULL;

	for (size_t k = 0; k < rec->n_frames; k++) {
		const struct symbol_info *si = &rec->frames[k].si;
		if (!si->file || !si->line)
			continue;
		if (si->file[0] == '/' && access(si->file, R_OK) == 0)
			return &rec->frames[k];
		if (!any)
			any = &rec->frames[k];
	}
	return any;
}

static void write_result(FILE *f, const struct report_model *m, size_t i, bool first)
{
	const struct model_record *rec = &m->records[i];
	const struct model_frame *at = primary_frame(rec);
	char what[256];

	fprintf(f, "%s{\"ruleId\":\"%s\",\"ruleIndex\":%d,\"level\":\"%s\",\"message\":{\"text\":",
		first ? "" : ",", rules[rec->kind].id, (int)rec->kind, rules[rec->kind].level);
	writer_json_str(f, writer_record_what(m, i, what));
	fputs("},\"locations\":[", f);
	if (at)
		write_location(f, at);
	fputs("],\"stacks\":[{\"message\":{\"text\":\"allocation stack\"},\"frames\":[", f);
	for (size_t k = 0; k < rec->n_frames; k++) {
		const struct symbol_info *si = &rec->frames[k].si;
		fputs(k ? ",{\"location\":" : "{\"location\":", f);
		write_location(f, &rec->frames[k]);
		if (si->module) {
			fputs(",\"module\":", f);
			writer_json_str(f, si->module);
		}
		fprintf(f, ",\"properties\":{\"address\":\"0x%" PRIx64 "\"", rec->frames[k].pc);
		if (si->module)
			fprintf(f, ",\"moduleOffset\":\"0x%" PRIx64 "\"", si->module_offset);
		if (rec->frames[k].inlined)
			fputs(",\"inlined\":true", f);
		fputs("}}", f);
	}
	fprintf(f, "]}],\"properties\":{\"bytes\":%" PRIu64 ",\"blocks\":%" PRIu64
		",\"indirectBytes\":%" PRIu64 ",\"indirectBlocks\":%" PRIu64 "}",
		rec->bytes, rec->blocks, rec->indirect_bytes, rec->indirect_blocks);
	const struct model_supp_use *u = model_supp_of(m, rec);
	if (u) {
		char *why = NULL;
		if (asprintf(&why, "suppressed by '%s' (%s:%d)", u->name, u->file, u->line) < 0)
			why = NULL;
		fputs(",\"suppressions\":[{\"kind\":\"external\",\"status\":\"accepted\","
		      "\"justification\":", f);
		writer_json_str(f, why ? why : u->name);
		fputs("}]", f);
		free(why);
	}
	fputs("}", f);
}

static void write_run(FILE *f, const struct report_model *m, const struct options *o)
{
	int status = m->exit_status;
	bool first = true;

	fprintf(f, "{\"tool\":{\"driver\":{\"name\":\"ptleak\",\"version\":\"%s\","
		"\"rules\":[", PTLEAK_VERSION);
	for (int k = 0; k <= LEAK_POSSIBLE; k++) {
		fprintf(f, "%s{\"id\":\"%s\",\"name\":\"%s\",\"shortDescription\":{\"text\":",
			k ? "," : "", rules[k].id, rules[k].name);
		writer_json_str(f, rules[k].text);
		fprintf(f, "},\"defaultConfiguration\":{\"level\":\"%s\"}}", rules[k].level);
	}
	fputs("]}},\"invocations\":[{\"executionSuccessful\":true,\"arguments\":[", f);
	for (char *const *v = m->argv; v && *v; v++) {
		if (v != m->argv)
			fputc(',', f);
		writer_json_str(f, *v);
	}
	fprintf(f, "],\"processId\":%d", m->pid);
	if (status >= 0 && WIFEXITED(status))
		fprintf(f, ",\"exitCode\":%d", WEXITSTATUS(status));
	else if (status >= 0 && WIFSIGNALED(status))
		fprintf(f, ",\"exitSignalNumber\":%d", WTERMSIG(status));
	fputs("}],\"results\":[", f);
	for (size_t i = 0; i < m->n_records; i++) {
		if (m->records[i].kind > LEAK_POSSIBLE)
			continue;
		write_result(f, m, i, first);
		first = false;
	}
	fputs("]}", f);
}

static void sarif_process(struct writer_out *w, const struct report_model *m,
			  const struct options *o)
{
	writer_keep(w, write_run, m, o);
}

static void sarif_finish(struct writer_out *w, const struct options *o)
{
	fputs("{\"$schema\":\"https://json.schemastore.org/sarif-2.1.0.json\","
	      "\"version\":\"2.1.0\",\"runs\":[", w->f);
	writer_put_kept(w, ",");
	fputs("]}\n", w->f);
}

const struct report_writer writer_sarif = {
	.name = "SARIF",
	.path = sarif_path,
	.kinds = sarif_kinds,
	.process = sarif_process,
	.finish = sarif_finish,
};
