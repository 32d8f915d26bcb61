/*
 * live: a leak check on demand while the program runs (SIGUSR1, ptleak
 * --check), as a state of the event loop (session.h).
 *
 * check_begin interrupts every running thread and the loop collects the
 * stops (LOOP_CHECKING: a thread that hit a site has its rip rewound and
 * makes the call after the check; a return is recorded as usual). With
 * every thread stopped, check_finish drains the sources, scans each traced
 * process with the registers of all its threads, resumes every thread
 * (job-stopped ones stay so, signals that arrived are delivered), and
 * only then builds and writes the reports: the program runs while they
 * are written, and none of its events is handled before they are done, so
 * each report is of the moment of its scan.
 */
#include <stdlib.h>

#include "tracer/preattach.h"
#include "tracer/proc.h"
#include "tracer/report.h"
#include "tracer/scan.h"
#include "tracer/session.h"
#include "tracer/source.h"
#include "tracer/util.h"

void check_begin(struct tracer *tr)
{
	tr->check_start_ns = now_ns();
	interrupt_all(tr);
	loop_collect_stops(tr, LOOP_CHECKING);
}

/* A traced process with its program's image, not yet scanned for good. */
static bool checkable(const struct process *p)
{
	return p->role == ROLE_TRACED && p->db && !p->scan && p->exec_seen;
}

bool check_ready(const struct tracer *tr)
{
	for (size_t i = 0; i < tr->n_procs; i++)
		if (checkable(tr->procs[i]))
			return true;
	return false;
}

void check_finish(struct tracer *tr)
{
	struct process **ps = xcalloc(tr->n_procs + 1, sizeof(*ps));
	struct scan_result **scans = xcalloc(tr->n_procs + 1, sizeof(*scans));
	size_t n = 0;

	for (size_t i = 0; i < tr->n_procs; i++) {
		struct process *p = tr->procs[i];
		size_t nr;
		if (!checkable(p))
			continue;
		if (sources_drain(p) < 0)
			error("process %d: some allocation events could not be read", p->pid);
		struct scan_thread *regs = regs_of_threads(p, &nr);
		if (nr)
			preattach_verify(p);
		if (nr) {
			ps[n] = p;
			scans[n++] = scan_process(p, regs, nr, p->attached && !p->before_known);
		}
		free(regs);
	}
	uint64_t stopped = now_ns() - tr->check_start_ns;
	tr->state = LOOP_TRACING;
	resume_all(tr);
	for (size_t i = 0; i < n; i++) {
		report_check(ps[i], scans[i], tr->o, stopped);
		scan_result_free(scans[i]);
	}
	free(ps);
	free(scans);
}
