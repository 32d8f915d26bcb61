/*
 * writer_folded: collapsed stacks, one line per stack, root first:
 *     main;parse;xstrdup;malloc 4096
 * the input of flamegraph.pl, inferno-flamegraph and speedscope. The
 * value is leaked bytes: the blocks of the kinds --show-leak-kinds shows
 * (indirectly lost ones too whenever definitely lost ones are shown, as
 * the text report counts them), each under its own allocation stack, not
 * the suppressed ones (as in the text report). In
 * a --interval snapshot: every live block. Identical lines are summed,
 * lines sorted (flamegraph.pl's order), across every reported process.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/util.h"
#include "tracer/writer.h"

struct folded_line {
	char *stack;
	uint64_t bytes;
};

struct folded_state {
	struct folded_line *v;
	size_t n, cap;
};

static const char *folded_path(const struct options *o)
{
	return o->folded;
}

unsigned writer_folded_kinds(const struct options *o)
{
	unsigned k = o->show_kinds;

	if (k & KIND_DEFINITE)
		k |= KIND_INDIRECT;
	return k;
}

/* A frame's name as a folded stack can hold it: no ';' (the separator)
 * and no line breaks. */
static void put_name(FILE *f, const struct symbol_info *si)
{
	const char *s = si->function;
	char unknown[64];

	if (!s) {
		snprintf(unknown, sizeof(unknown), "[%s]",
			 si->module ? writer_base_name(si->module) : "unknown");
		s = unknown;
	}
	for (; *s; s++)
		fputc(*s == ';' || *s == '\n' || *s == '\r' ? '_' : *s, f);
}

void writer_folded_stack(FILE *f, const struct model_frame *fr, size_t nf)
{
	for (size_t i = nf; i-- > 0;) {
		put_name(f, &fr[i].si);
		if (i)
			fputc(';', f);
	}
}

static void folded_process(struct writer_out *w, const struct report_model *m,
			   const struct options *o)
{
	struct folded_state *s = w->state;
	unsigned kinds = writer_folded_kinds(o);

	if (!s)
		s = w->state = xcalloc(1, sizeof(*s));
	for (size_t i = 0; i < m->n_records; i++) {
		const struct model_record *rec = &m->records[i];
		char *buf = NULL;
		size_t len = 0;
		if ((!m->snapshot && !(kinds & leak_kind_flag(rec->kind))) || !rec->bytes ||
		    !rec->n_frames || rec->suppressed_by >= 0)
			continue;
		FILE *mf = open_memstream(&buf, &len);
		if (!mf)
			continue;
		writer_folded_stack(mf, rec->frames, rec->n_frames);
		fclose(mf);
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 64;
			s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
		}
		s->v[s->n++] = (struct folded_line){ .stack = buf, .bytes = rec->bytes };
	}
}

static int by_stack(const void *a, const void *b)
{
	return strcmp(((const struct folded_line *)a)->stack,
		      ((const struct folded_line *)b)->stack);
}

static void folded_finish(struct writer_out *w, const struct options *o)
{
	struct folded_state *s = w->state;

	if (!s)
		return;
	if (s->n)	/* no leaks: v is NULL, which qsort may not take */
		qsort(s->v, s->n, sizeof(*s->v), by_stack);
	for (size_t i = 0, j; i < s->n; i = j) {
		uint64_t sum = 0;
		for (j = i; j < s->n && !strcmp(s->v[j].stack, s->v[i].stack); j++)
			sum += s->v[j].bytes;
		fprintf(w->f, "%s %" PRIu64 "\n", s->v[i].stack, sum);
	}
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].stack);
	free(s->v);
	free(s);
	w->state = NULL;
}

const struct report_writer writer_folded = {
	.name = "folded",
	.path = folded_path,
	.kinds = writer_folded_kinds,
	.process = folded_process,
	.finish = folded_finish,
};
