#ifndef PTLEAK_REPORT_H
#define PTLEAK_REPORT_H
/*
 * report: the leak reports of the run, in every format the user asked for
 * (the writers of writer.h: text on stderr or -o FILE, JSON with --json
 * FILE, ...). doc/output.md is the contract of each format.
 */
#include <stdint.h>
#include <sys/types.h>

struct process;
struct options;
struct scan_result;

/* Open the report files of O now, so that an unwritable path fails before
 * the program runs: dies with status 125. */
void report_open(const struct options *o);

/* Launch mode: the banner, now that PID runs ARGV (not with -q). */
void report_banner(pid_t pid, char *const *argv, const struct options *o);

/*
 * Report process P, which exited or which ptleak is leaving, to every
 * writer. P must have been scanned (p->scan); reported once.
 */
void report_process(struct process *p, const struct options *o);

/*
 * A leak check on demand (SIGUSR1, ptleak --check): P was stopped and
 * scanned into SCAN (the caller's), and may run on again. Its model is
 * compared with P's previous check and handed to every writer that has a
 * place for checks; it is kept for the next one. STOPPED_NS: how long
 * the program was stopped for it.
 */
void report_check(struct process *p, const struct scan_result *scan, const struct options *o,
		  uint64_t stopped_ns);

/* Attach mode, --interval: live bytes and blocks since attaching and the
 * top allocation sites with their growth since the last call. */
void report_interval(struct process *p, const struct options *o);

/*
 * Complete and close every report file. Returns the number of leaked
 * blocks of the kinds O->error_kinds counts, over every process reported,
 * or -1 if a report file could not be written (a message was printed).
 */
int report_close(const struct options *o);

#endif
