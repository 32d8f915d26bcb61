/*
 * ptleak: an out-of-process leak finder. Set up, run the event loop,
 * report. See README.md and doc/internals.md.
 */
#include <stdlib.h>

#include "tracer/check_cmd.h"
#include "tracer/launch.h"
#include "tracer/options.h"
#include "tracer/report.h"
#include "tracer/signals.h"
#include "tracer/stream.h"
#include "tracer/target.h"
#include "tracer/tracer.h"
#include "tracer/util.h"

int main(int argc, char **argv)
{
	struct options opts;
	struct event ev;

	signals_early();	/* a leak check asked this early is no death */
	stream_stderr();	/* reports and messages: no signal cuts them */
	debug_enabled = getenv("PTLEAK_DEBUG") != NULL;
	options_parse(&opts, argc, argv);
	if (opts.check_pid)
		return check_cmd_run(opts.check_pid);
	/* PROGRAM (or -p's process) first: a name that does not resolve
	 * (127, 126) or a process that cannot be traced (125) must leave
	 * every file as it was, and report_open refuses to write over it. */
	if (!opts.pid)
		opts.program = launch_resolve(opts.argv[0]);
	else
		target_check(opts.pid);
	report_open(&opts);
	struct tracer *tr = opts.pid ? tracer_attach(&opts) : tracer_launch(&opts);
	while (tracer_next_event(tr, &ev))
		tracer_dispatch(tr, &ev);
	int rc = tracer_finish(tr);
	options_release(&opts);
	return rc;
}
