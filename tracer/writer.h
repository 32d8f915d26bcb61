#ifndef PTLEAK_WRITER_H
#define PTLEAK_WRITER_H
/*
 * writer: one output format of the report. report.c holds the table of
 * writers; a format is one file defining a `const struct report_writer`
 * plus a line in that table (and its option in options.c).
 *
 * For each report file the user asked for, report.c opens the file before
 * the program runs, calls ->process once per reported process (with the
 * process's model, in the order processes end), and ->finish once at the
 * end. A writer that needs the whole run (one JSON document for every
 * process) keeps what ->process gives it in its state; one that streams
 * (the text report) writes at once.
 *
 * Errors: writers write through stdio; report.c checks the stream when it
 * closes it, so a full disk is reported once, with the file's name.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

struct report_model;
struct options;

struct writer_out {
	FILE *f;
	const char *path;	/* NULL: stderr */
	void *state;		/* the writer's own, NULL at first */
	unsigned n_processes;	/* processes written so far */
};

struct report_writer {
	const char *name;		/* "text", "json" */
	/* The file O asks this writer to write, NULL if none. */
	const char *(*path)(const struct options *o);
	bool to_stderr;			/* without a path, write to stderr */
	/* Leak kinds (enum leak_kind_flag) whose frames the writer shows. */
	unsigned (*kinds)(const struct options *o);
	void (*process)(struct writer_out *w, const struct report_model *m,
			const struct options *o);
	void (*finish)(struct writer_out *w, const struct options *o);	/* may be NULL */
	/* Launch mode, at the start (unless -q): the banner for PID running
	 * ARGV. May be NULL. */
	void (*begin)(struct writer_out *w, pid_t pid, char *const *argv,
		      const struct options *o);
	/* A leak check on demand (m->check > 0, changes filled by
	 * model_compare), while the program runs on. May be NULL: the format
	 * has no place for checks. */
	void (*check)(struct writer_out *w, const struct report_model *m,
		      const struct options *o);
};

extern const struct report_writer writer_text;
extern const struct report_writer writer_json;
extern const struct report_writer writer_pprof;
extern const struct report_writer writer_folded;
extern const struct report_writer writer_html;
extern const struct report_writer writer_xml;
extern const struct report_writer writer_sarif;

/* "160 (16 direct, 144 indirect) bytes in 1 blocks are definitely lost
 * in loss record 2 of 3": record I of M in valgrind's words, in BUF. */
const char *writer_record_what(const struct report_model *m, size_t i, char buf[256]);
/* S with XML's five special characters escaped (nothing for NULL). */
void writer_xml_str(FILE *f, const char *s);

/* 1234567 -> "1,234,567" in BUF. */
const char *writer_num(uint64_t v, char buf[32]);
/* A signed change, "+1,234" or "-12" (and "+0"), in BUF. */
const char *writer_delta(int64_t v, char buf[32]);
/* A JSON string literal for S (null for NULL). */
void writer_json_str(FILE *f, const char *s);
/* Folded-stack form of FR[0..NF) (innermost first): root first, ';'
 * between frames (writer_folded.c). */
struct model_frame;
void writer_folded_stack(FILE *f, const struct model_frame *fr, size_t nf);
/* The kinds --folded counts as leaked: --show-leak-kinds' (and indirect
 * with definite). */
unsigned writer_folded_kinds(const struct options *o);
/* The same, safe inside an HTML <script> element too (<, >, & escaped). */
void writer_json_str_html(FILE *f, const char *s);
/* "pid":..,"ppid":..,"command":[..],"exit":{..} of M (null: running). */
void writer_json_identity(FILE *f, const struct report_model *m, bool in_html);
/*
 * For writers that write the whole run at the end (one document for every
 * process, or the main process's alone): what a writer_body writes for a
 * model, kept as text until ->finish puts it in place.
 */
typedef void writer_body(FILE *f, const struct report_model *m, const struct options *o);
/* BODY's text for M in a new string (dies out of memory, as x*alloc). */
char *writer_text_of(writer_body *body, const struct report_model *m, const struct options *o);
/* Texts kept in order: writer_texts_put writes them, SEP between them,
 * and frees them (T is empty again). */
struct writer_texts {
	char **v;
	size_t n;
};
void writer_texts_add(struct writer_texts *t, char *text);
void writer_texts_put(FILE *f, struct writer_texts *t, const char *sep);
/* The same with a writer's whole state one list of texts (W->state):
 * BODY's text for M kept; the kept texts written and W->state NULL again. */
void writer_keep(struct writer_out *w, writer_body *body, const struct report_model *m,
		 const struct options *o);
void writer_put_kept(struct writer_out *w, const char *sep);
/* The last path component of PATH (PATH itself if it has no '/'). */
const char *writer_base_name(const char *path);

#endif
