/*
 * writer_text: the report in valgrind memcheck's words, for a person:
 * the banner (command, how the process ended), HEAP SUMMARY, the loss
 * records of the kinds --show-leak-kinds asks for, LEAK SUMMARY, then
 * valgrind's hints (what was not shown, untraced children) and its ERROR
 * SUMMARY line. Streams: each process is written when it ends.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tracer/model.h"
#include "tracer/options.h"
#include "tracer/suppress.h"
#include "tracer/util.h"
#include "tracer/version.h"
#include "tracer/writer.h"

static const char *text_path(const struct options *o)
{
	return o->output;
}

static unsigned text_kinds(const struct options *o)
{
	return o->show_kinds;
}

static void write_frames(FILE *f, pid_t pid, const struct model_frame *fr, size_t nf)
{
	for (size_t k = 0; k < nf; k++) {
		const struct symbol_info *si = &fr[k].si;
		fprintf(f, "==%d==    %s 0x%" PRIX64 ": %s ", pid, k ? "by" : "at",
			fr[k].pc, si->function ? si->function : "???");
		if (si->file && si->line)
			fprintf(f, "(%s:%d)\n", writer_base_name(si->file), si->line);
		else if (!si->function && si->module)	/* for addr2line later */
			fprintf(f, "(in %s+0x%" PRIx64 ")\n", si->module, si->module_offset);
		else
			fprintf(f, "(in %s)\n", si->module ? si->module : "???");
	}
}

/* One argument as valgrind's Command: line writes it: spaces, '\\', '<'
 * and '>' escaped, control and non-ASCII bytes as '_', so that the
 * command stays one line however its arguments look. */
static void write_arg(FILE *f, const char *a)
{
	for (const unsigned char *c = (const unsigned char *)a; *c; c++) {
		if (*c < 0x20 || *c >= 0x7f)
			fputc('_', f);
		else if (*c == ' ' || *c == '\\' || *c == '<' || *c == '>')
			fprintf(f, "\\%c", *c);
		else
			fputc(*c, f);
	}
}

/* How the process ended, in valgrind's words for a signal. */
static void write_ending(FILE *f, const struct report_model *m)
{
	int st = m->exit_status;

	if (st < 0)
		return;
	if (WIFSIGNALED(st)) {
		const char *abbrev = sigabbrev_np(WTERMSIG(st));
		fprintf(f, "==%d== Process terminating with default action of signal %d (SIG%s)%s\n",
			m->pid, WTERMSIG(st), abbrev ? abbrev : "?",
			WCOREDUMP(st) ? ", core dumped" : "");
	} else {
		fprintf(f, "==%d== Process exited with code %d\n", m->pid, WEXITSTATUS(st));
	}
	fprintf(f, "==%d==\n", m->pid);
}

/* valgrind's closing hints: what was not shown and how to see it. */
static void write_hints(FILE *f, const struct report_model *m, const struct options *o)
{
	size_t hidden[LEAK__COUNT] = { 0 }, n_hidden = 0, suppressed = 0, errors = 0;
	pid_t pid = m->pid;

	for (size_t i = 0; i < m->n_records; i++) {
		const struct model_record *rec = &m->records[i];
		if (rec->suppressed_by >= 0)
			suppressed++;
		else if (!(o->show_kinds & leak_kind_flag(rec->kind)))
			hidden[rec->kind]++, n_hidden++;
		else if (o->error_kinds & leak_kind_flag(rec->kind))
			errors++;
	}
	fprintf(f, "==%d==\n", pid);
	if (hidden[LEAK_REACHABLE])
		fprintf(f, "==%d== Reachable blocks (those to which a pointer was found) are not shown.\n"
			"==%d== To see them, rerun with: --leak-check=full --show-leak-kinds=all\n",
			pid, pid);
	if (n_hidden) {
		fprintf(f, "==%d== %zu of %zu loss records not shown (", pid, n_hidden, m->n_records);
		const char *sep = "";
		for (int k = 0; k < LEAK__COUNT; k++)
			if (hidden[k]) {
				fprintf(f, "%s%zu %s", sep, hidden[k], leak_kind_words((enum leak_kind)k));
				sep = ", ";
			}
		fputs("): --show-leak-kinds=all shows them\n", f);
	}
	if (suppressed && !o->verbose)
		fprintf(f, "==%d== %zu loss records suppressed: rerun with -v to see the "
			"suppressions used\n", pid, suppressed);
	if (m->untraced_children)
		fprintf(f, "==%d== %u child process%s ran untraced: rerun with -f "
			"(--trace-children=yes) to trace %s\n", pid, m->untraced_children,
			m->untraced_children == 1 ? "" : "es",
			m->untraced_children == 1 ? "it" : "them");
	fprintf(f, "==%d==\n==%d== ERROR SUMMARY: %zu errors from %zu contexts "
		"(suppressed: %zu from %zu)\n", pid, pid, errors, errors, suppressed,
		m->n_supp_used);
}

static void write_record(FILE *f, const struct report_model *m, size_t i,
			 const struct options *o)
{
	const struct model_record *rec = &m->records[i];
	char what[256];
	pid_t pid = m->pid;

	fprintf(f, "==%d== %s", pid, writer_record_what(m, i, what));
	if (m->attached && !rec->before_attach)
		fprintf(f, " (ages: oldest %.1f s, median %.1f s)",
			model_age_s(m, rec->oldest_ns), model_age_s(m, rec->median_ns));
	fputc('\n', f);
	if (rec->before_attach)
		fprintf(f, "==%d==    allocated before ptleak attached\n", pid);
	write_frames(f, pid, rec->frames, rec->n_frames);
	fprintf(f, "==%d==\n", pid);
	if (o->gen_suppressions && rec->n_frames)
		suppress_write_block(f, rec);
}

/* --track-mmap: its own section, after the leak kinds. */
static void write_mmaps(FILE *f, const struct report_model *m)
{
	char a[32], b[32];
	pid_t pid = m->pid;

	fprintf(f, "==%d==\n==%d== MMAP SUMMARY (anonymous memory mapped outside the allocator):\n",
		pid, pid);
	fprintf(f, "==%d==     still mapped at %s: %s bytes in %s regions\n", pid,
		m->check ? "the check" : m->exit_status >= 0 ? "exit" : "detach",
		writer_num(m->mmap_bytes, a), writer_num(m->mmap_regions, b));
	if (m->thread_stack_regions)
		fprintf(f, "==%d==     (and %s bytes in %s thread stacks glibc keeps for reuse)\n",
			pid, writer_num(m->thread_stack_bytes, a),
			writer_num(m->thread_stack_regions, b));
	for (size_t i = 0; i < m->n_mmaps; i++) {
		const struct model_mmap *r = &m->mmaps[i];
		fprintf(f, "==%d==\n==%d== %s bytes in %s regions are still mapped in mmap record "
			"%zu of %zu", pid, pid, writer_num(r->bytes, a), writer_num(r->regions, b),
			i + 1, m->n_mmaps);
		if (m->attached && r->oldest_ns)
			fprintf(f, " (oldest %.1f s)", model_age_s(m, r->oldest_ns));
		fputc('\n', f);
		write_frames(f, pid, r->frames, r->n_frames);
	}
}

/* The text writer's state: the process whose banner went out at the start. */
struct text_state {
	pid_t banner_pid;
};

static pid_t banner_pid_of(const struct writer_out *w)
{
	const struct text_state *s = w->state;

	return s ? s->banner_pid : 0;
}

static void write_banner(FILE *f, pid_t pid, char *const *argv)
{
	fprintf(f, "==%d== ptleak-%s, an out-of-process leak finder\n", pid, PTLEAK_VERSION);
	fprintf(f, "==%d== Command:", pid);
	for (char *const *v = argv; v && *v; v++) {
		fputc(' ', f);
		write_arg(f, *v);
	}
	fprintf(f, "\n");
}

/* Launch mode: the banner when tracing begins, so that a long run does not
 * stay silent; the report at the end goes on from it. */
static void text_begin(struct writer_out *w, pid_t pid, char *const *argv,
		       const struct options *o)
{
	struct text_state *s = w->state;

	if (!s)
		s = w->state = xcalloc(1, sizeof(*s));
	s->banner_pid = pid;
	write_banner(w->f, pid, argv);
	fprintf(w->f, "==%d==\n", pid);
	fflush(w->f);
}

static void text_finish(struct writer_out *w, const struct options *o)
{
	free(w->state);
	w->state = NULL;
}

static void text_process(struct writer_out *w, const struct report_model *m,
			 const struct options *o)
{
	FILE *f = w->f;
	const struct heap_stats *st = &m->heap;
	char a[32], b[32], c[32], d[32];
	pid_t pid = m->pid;

	if (w->n_processes)
		fputc('\n', f);
	if (!o->quiet && m->pid != banner_pid_of(w)) {
		write_banner(f, pid, m->argv);
		if (m->attached && m->before_known)
			fprintf(f, "==%d== Traced for %.1f s since attaching; the blocks from before "
				"were read from %s's heap\n", pid, model_age_s(m, m->attach_ns),
				m->before_allocator);
		else if (m->attached)
			fprintf(f, "==%d== Traced for %.1f s since attaching; blocks allocated before "
				"are not known (%s): leak kinds are conservative\n", pid,
				model_age_s(m, m->attach_ns), m->before_why ? m->before_why : "?");
		fprintf(f, "==%d==\n", pid);
	} else if (!o->quiet) {
		fprintf(f, "==%d==\n", pid);
	}
	if (!o->quiet)
		write_ending(f, m);
	fprintf(f, "==%d== HEAP SUMMARY:\n", pid);
	fprintf(f, "==%d==     in use at %s: %s bytes in %s blocks\n", pid,
		m->exit_status >= 0 ? "exit" : "detach",
		writer_num(st->live_bytes, a), writer_num(st->live_blocks, b));
	fprintf(f, "==%d==   total heap usage: %s allocs, %s frees, %s bytes allocated\n",
		pid, writer_num(st->allocations, a), writer_num(st->frees, b),
		writer_num(st->bytes_allocated, c));
	if (m->attached && m->before_known)
		fprintf(f, "==%d==    before the attach: %s bytes in %s blocks were live, "
			"%s bytes in %s blocks still are\n", pid,
			writer_num(st->before_found_bytes, a), writer_num(st->before_found_blocks, b),
			writer_num(st->before_bytes, c), writer_num(st->before_blocks, d));
	fprintf(f, "==%d==\n", pid);
	if (!m->scanned)
		fprintf(f, "==%d== no reachability scan (the process's memory was gone): "
			"every unfreed block is counted as definitely lost\n==%d==\n", pid, pid);
	for (size_t i = 0; i < m->n_records; i++)
		if ((o->show_kinds & leak_kind_flag(m->records[i].kind)) &&
		    m->records[i].suppressed_by < 0)
			write_record(f, m, i, o);
	fprintf(f, "==%d== LEAK SUMMARY:\n", pid);
	for (int k = 0; k < LEAK__COUNT; k++)
		fprintf(f, "==%d==    %15s: %s bytes in %s blocks\n", pid,
			leak_kind_words((enum leak_kind)k), writer_num(m->totals.bytes[k], a),
			writer_num(m->totals.blocks[k], b));
	uint64_t sb = 0, sn = 0;
	for (int k = 0; k < LEAK__COUNT; k++) {
		sb += m->suppressed.bytes[k];
		sn += m->suppressed.blocks[k];
	}
	fprintf(f, "==%d==         suppressed: %s bytes in %s blocks\n", pid,
		writer_num(sb, a), writer_num(sn, b));
	if (m->mmaps_tracked)
		write_mmaps(f, m);
	if (!o->quiet)
		write_hints(f, m, o);
	/* valgrind -v's list, in its words: records matched, name, where. */
	for (size_t i = 0; o->verbose && i < m->n_supp_used; i++) {
		const struct model_supp_use *u = &m->supp_used[i];
		fprintf(f, "--%d-- used_suppression: %6" PRIu64 " %s %s:%d suppressed: %s bytes "
			"in %s blocks\n", pid, u->records, u->name, u->file, u->line,
			writer_num(u->bytes, a), writer_num(u->blocks, b));
	}
	fflush(f);
}

/* A record of a check: "1,000 (+400) bytes in 5 (+2) blocks are ... (increased)". */
static void write_check_record(FILE *f, const struct report_model *m, size_t i)
{
	const struct model_record *rec = &m->records[i];
	char a[32], b[32], c[32], d[32];
	pid_t pid = m->pid;

	fprintf(f, "==%d== %s (%s) bytes in %s (%s) blocks are %s in loss record %zu of %zu",
		pid, writer_num(rec->bytes + rec->indirect_bytes, a),
		writer_delta(rec->delta_bytes, b), writer_num(rec->blocks, c),
		writer_delta(rec->delta_blocks, d), leak_kind_words(rec->kind), i + 1,
		m->n_records);
	if (rec->indirect_bytes)
		fprintf(f, " (%s direct, %s indirect)", writer_num(rec->bytes, a),
			writer_num(rec->indirect_bytes, b));
	fprintf(f, " (%s)\n", record_change_name(rec->change));
	if (rec->before_attach)
		fprintf(f, "==%d==    allocated before ptleak attached\n", pid);
	write_frames(f, pid, rec->frames, rec->n_frames);
	fprintf(f, "==%d==\n", pid);
}

/*
 * A check on demand, in the words of valgrind's `leak_check full
 * increased` (vgdb): the records of the shown kinds that are new or
 * changed since the last check, with their changes, and the summary with
 * its changes.
 */
static void text_check(struct writer_out *w, const struct report_model *m,
		       const struct options *o)
{
	FILE *f = w->f;
	pid_t pid = m->pid;
	char a[32], b[32], c[32], d[32];
	size_t unchanged = 0;

	fprintf(f, "==%d== LEAK CHECK %u (on request, the program stopped %.1f ms), changes since ",
		pid, m->check, m->stopped_ns / 1e6);
	if (m->prev_check)
		fprintf(f, "check %u:\n", m->prev_check);
	else
		fprintf(f, "%s:\n", m->attached ? "the attach" : "the start");
	fprintf(f, "==%d==     in use now: %s bytes in %s blocks\n", pid,
		writer_num(m->heap.live_bytes, a), writer_num(m->heap.live_blocks, b));
	fprintf(f, "==%d==   total heap usage: %s allocs, %s frees, %s bytes allocated\n", pid,
		writer_num(m->heap.allocations, a), writer_num(m->heap.frees, b),
		writer_num(m->heap.bytes_allocated, c));
	fprintf(f, "==%d==\n", pid);
	for (size_t i = 0; i < m->n_records; i++) {
		const struct model_record *rec = &m->records[i];
		if (!(o->show_kinds & leak_kind_flag(rec->kind)) || rec->suppressed_by >= 0)
			continue;
		if (rec->change == CHANGE_NONE)
			unchanged++;
		else
			write_check_record(f, m, i);
	}
	if (unchanged)
		fprintf(f, "==%d== (%zu loss record%s unchanged since check %u, not shown)\n"
			"==%d==\n", pid, unchanged, unchanged == 1 ? "" : "s", m->prev_check, pid);
	if (m->n_gone)
		fprintf(f, "==%d== (%zu loss record%s of check %u gone: %s bytes in %s blocks "
			"freed or of another kind now)\n==%d==\n", pid, m->n_gone,
			m->n_gone == 1 ? "" : "s", m->prev_check,
			writer_num(m->gone_bytes, a), writer_num(m->gone_blocks, b), pid);
	fprintf(f, "==%d== LEAK SUMMARY:\n", pid);
	for (int k = 0; k < LEAK__COUNT; k++)
		fprintf(f, "==%d==    %15s: %s (%s) bytes in %s (%s) blocks\n", pid,
			leak_kind_words((enum leak_kind)k), writer_num(m->totals.bytes[k], a),
			writer_delta(m->delta_bytes[k], b), writer_num(m->totals.blocks[k], c),
			writer_delta(m->delta_blocks[k], d));
	if (m->mmaps_tracked)
		write_mmaps(f, m);
	fprintf(f, "==%d== END OF LEAK CHECK %u\n", pid, m->check);
	fflush(f);
}

const struct report_writer writer_text = {
	.name = "text",
	.path = text_path,
	.to_stderr = true,
	.kinds = text_kinds,
	.process = text_process,
	.begin = text_begin,
	.finish = text_finish,
	.check = text_check,
};
