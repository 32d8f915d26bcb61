#ifndef PTLEAK_REPORT_H
#define PTLEAK_REPORT_H
/*
 * report: the leak report of one process, as text in valgrind's words
 * (stderr or -o FILE) and as JSON (--json FILE). doc/output.md is the
 * contract for both.
 */
struct process;
struct options;

/* Open the report files of O now, so that an unwritable path fails before
 * the program runs: dies with status 125. */
void report_open(const struct options *o);

/*
 * Report process P, which exited or which ptleak is leaving: its text
 * block goes out now, its JSON entry is kept for report_close. Scans P
 * first if that was not done (no memory left: every block counted as
 * definitely lost, and the report says so).
 */
void report_process(struct process *p, const struct options *o);

/*
 * The module list of P just changed: resolve now, and keep, the frames
 * of recorded stacks that point into modules no longer mapped, before
 * another module mapped at the same addresses could claim them.
 */
void report_freeze_unmapped(struct process *p);
void report_frozen_free(void *frozen);

/* Attach mode, --interval: live bytes and blocks since attaching and the
 * top allocation sites with their growth since the last call. */
void report_interval(struct process *p, const struct options *o);

/*
 * Write the JSON document and close the files. Returns the number of
 * leaked blocks of the kinds O->error_kinds counts, over every process
 * reported, or -1 if a report file could not be written (a message was
 * printed).
 */
int report_close(const struct options *o);

#endif
