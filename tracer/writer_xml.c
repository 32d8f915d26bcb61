/*
 * writer_xml: valgrind's XML output, protocol 4, as memcheck writes it
 * for a leak check, so that what reads valgrind's XML (CI plugins, IDEs,
 * ValgrindCI) reads ptleak's unchanged: the preamble, pid, ppid, tool
 * (memcheck: readers check it), args, the RUNNING and FINISHED status,
 * one <error> per loss record shown (--show-leak-kinds, not suppressed)
 * with its kind, xwhat (text, leakedbytes, leakedblocks) and stack, a
 * <suppression> in each and after each with --gen-suppressions (valgrind
 * writes it in both places), then errorcounts (leaks
 * are not counted there, as in valgrind) and suppcounts.
 *
 * One document is one process, as in valgrind: the file holds the
 * launched (or attached) program's; with %p in the path each traced
 * process gets a file of its own (report.c).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/suppress.h"
#include "tracer/util.h"
#include "tracer/version.h"
#include "tracer/writer.h"

struct xml_state {
	char *doc;		/* the chosen process's document */
	bool main_seen;		/* it is the program's, not a child's */
};

static const char *xml_path(const struct options *o)
{
	return o->xml;
}

static unsigned xml_kinds(const struct options *o)
{
	return o->show_kinds;
}

static const char *const error_kind[LEAK__COUNT] = {
	[LEAK_DEFINITE] = "Leak_DefinitelyLost",
	[LEAK_INDIRECT] = "Leak_IndirectlyLost",
	[LEAK_POSSIBLE] = "Leak_PossiblyLost",
	[LEAK_REACHABLE] = "Leak_StillReachable",
};

static void tag(FILE *f, const char *indent, const char *name, const char *text)
{
	fprintf(f, "%s<%s>", indent, name);
	writer_xml_str(f, text);
	fprintf(f, "</%s>\n", name);
}

/* valgrind's clock: days:hours:minutes:seconds.milliseconds, and a space. */
static void elapsed(FILE *f, uint64_t ns)
{
	uint64_t ms = ns / 1000000, s = ms / 1000;

	fprintf(f, "  <time>%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 ".%03" PRIu64
		" </time>\n", s / 86400, s / 3600 % 24, s / 60 % 60, s % 60, ms % 1000);
}

static void write_frame(FILE *f, const struct model_frame *fr)
{
	const struct symbol_info *si = &fr->si;
	char ip[32];

	snprintf(ip, sizeof(ip), "0x%" PRIX64, fr->pc);
	fputs("    <frame>\n", f);
	tag(f, "      ", "ip", ip);
	if (si->module)
		tag(f, "      ", "obj", si->module);
	if (si->function)
		tag(f, "      ", "fn", si->function);
	if (si->file && si->line) {
		const char *base = writer_base_name(si->file);
		if (base != si->file) {
			char *dir = strndup(si->file, (size_t)(base - si->file - 1));
			tag(f, "      ", "dir", dir && *dir ? dir : "/");
			free(dir);
		}
		tag(f, "      ", "file", base);
		fprintf(f, "      <line>%d</line>\n", si->line);
	}
	fputs("    </frame>\n", f);
}

/* valgrind's <suppression> element: the block in pieces, and raw. */
static void write_suppression(FILE *f, const struct model_record *rec)
{
	char *raw = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&raw, &len);
	bool fun;

	fputs("  <suppression>\n    <sname>insert_a_suppression_name_here</sname>\n"
	      "    <skind>Memcheck:Leak</skind>\n", f);
	fprintf(f, "    <skaux>match-leak-kinds: %s</skaux>\n", suppress_kind_name(rec->kind));
	for (size_t k = suppress_first_frame(rec); k < rec->n_frames; k++) {
		const char *v = suppress_frame_value(&rec->frames[k].si, &fun);
		fprintf(f, "    <sframe> <%s>", fun ? "fun" : "obj");
		writer_xml_str(f, v);
		fprintf(f, "</%s> </sframe>\n", fun ? "fun" : "obj");
	}
	if (m) {
		suppress_write_block(m, rec);
		fclose(m);
		/* CDATA cannot hold "]]>"; a suppression never does. */
		fprintf(f, "    <rawtext>\n<![CDATA[\n%s]]>\n    </rawtext>\n", raw ? raw : "");
	}
	free(raw);
	fputs("  </suppression>\n", f);
}

static void write_document(FILE *f, const struct report_model *m, const struct options *o)
{
	char what[256];
	size_t unique = 0;

	fputs("<?xml version=\"1.0\"?>\n\n<valgrindoutput>\n\n"
	      "<protocolversion>4</protocolversion>\n<protocoltool>memcheck</protocoltool>\n\n"
	      "<preamble>\n", f);
	fprintf(f, "  <line>ptleak-%s, an out-of-process leak finder</line>\n", PTLEAK_VERSION);
	fputs("  <line>Command:", f);
	for (char *const *v = m->argv; v && *v; v++) {
		fputc(' ', f);
		writer_xml_str(f, *v);
	}
	fputs("</line>\n</preamble>\n\n", f);
	fprintf(f, "<pid>%d</pid>\n<ppid>%d</ppid>\n<tool>memcheck</tool>\n\n", m->pid, m->ppid);
	fputs("<args>\n  <vargv>\n", f);
	tag(f, "    ", "exe", o->self_argc > 0 ? o->self_argv[0] : "ptleak");
	for (int i = 1; i < o->self_argc; i++)
		tag(f, "    ", "arg", o->self_argv[i]);
	fputs("  </vargv>\n  <argv>\n", f);
	for (char *const *v = m->argv; v && *v; v++)
		tag(f, "    ", v == m->argv ? "exe" : "arg", *v);
	fputs("  </argv>\n</args>\n\n", f);
	fputs("<status>\n  <state>RUNNING</state>\n", f);
	elapsed(f, (m->attached ? m->attach_ns : o->start_ns) - o->start_ns);
	fputs("</status>\n\n\n<status>\n  <state>FINISHED</state>\n", f);
	elapsed(f, m->now_ns > o->start_ns ? m->now_ns - o->start_ns : 0);
	fputs("</status>\n\n", f);
	for (size_t i = 0; i < m->n_records; i++) {
		const struct model_record *rec = &m->records[i];
		if (!(o->show_kinds & leak_kind_flag(rec->kind)) || rec->suppressed_by >= 0)
			continue;
		fprintf(f, "<error>\n  <unique>0x%zx</unique>\n  <tid>1</tid>\n  <kind>%s</kind>\n"
			"  <xwhat>\n", unique++, error_kind[rec->kind]);
		tag(f, "    ", "text", writer_record_what(m, i, what));
		fprintf(f, "    <leakedbytes>%" PRIu64 "</leakedbytes>\n"
			"    <leakedblocks>%" PRIu64 "</leakedblocks>\n  </xwhat>\n  <stack>\n",
			rec->bytes + rec->indirect_bytes, rec->blocks);
		for (size_t k = 0; k < rec->n_frames; k++)
			write_frame(f, &rec->frames[k]);
		/* The protocol wants a frame; a block from before the attach
		 * (-p) has no stack. */
		if (!rec->n_frames)
			fputs("    <frame>\n      <ip>0x0</ip>\n      <fn>(allocated before "
			      "ptleak attached)</fn>\n    </frame>\n", f);
		fputs("  </stack>\n", f);
		bool gen = o->gen_suppressions && rec->n_frames;
		if (gen)
			write_suppression(f, rec);
		fputs("</error>\n\n", f);
		/* valgrind repeats it after the error, for readers of either. */
		if (gen)
			write_suppression(f, rec);
	}
	fputs("<errorcounts>\n</errorcounts>\n\n<suppcounts>\n", f);
	for (size_t i = 0; i < m->n_supp_used; i++) {
		fprintf(f, "  <pair>\n    <count>%" PRIu64 "</count>\n", m->supp_used[i].records);
		tag(f, "    ", "name", m->supp_used[i].name);
		fputs("  </pair>\n", f);
	}
	fputs("</suppcounts>\n\n</valgrindoutput>\n\n", f);
}

static void xml_process(struct writer_out *w, const struct report_model *m,
			const struct options *o)
{
	struct xml_state *s = w->state;
	bool is_main = o->pid ? m->pid == o->pid : m->ppid == getpid();

	if (!s)
		s = w->state = xcalloc(1, sizeof(*s));
	if (s->main_seen || (s->doc && !is_main))
		return;	/* a child's, after the first: only with %p */
	free(s->doc);
	s->doc = writer_text_of(write_document, m, o);
	s->main_seen = is_main;
}

static void xml_finish(struct writer_out *w, const struct options *o)
{
	struct xml_state *s = w->state;

	if (s && s->doc)
		fputs(s->doc, w->f);
	if (s)
		free(s->doc);
	free(s);
	w->state = NULL;
}

const struct report_writer writer_xml = {
	.name = "XML",
	.path = xml_path,
	.kinds = xml_kinds,
	.process = xml_process,
	.finish = xml_finish,
};
