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
 * Write P's report per O. Returns the number of leaked blocks of the
 * kinds O->error_kinds counts, or -1 if a report file could not be
 * written (a message was printed).
 */
int report_write(struct process *p, const struct options *o);

#endif
