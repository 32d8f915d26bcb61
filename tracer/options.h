#ifndef PTLEAK_OPTIONS_H
#define PTLEAK_OPTIONS_H
/*
 * options: ptleak's command line. Options end at PROGRAM: everything after
 * it is PROGRAM's, with or without `--`. With -p PID there is no PROGRAM.
 */
#include <stdbool.h>
#include <stdint.h>

/* Leak kinds as flags, for --show-leak-kinds and --errors-for-leak-kinds. */
enum leak_kind_flag {
	KIND_DEFINITE = 1 << 0,
	KIND_INDIRECT = 1 << 1,
	KIND_POSSIBLE = 1 << 2,
	KIND_REACHABLE = 1 << 3,
};

/* The default of --mode. */
#define MODE_DEFAULT_FAST 1
#define MODE_DEFAULT_NAME "fast"

struct options {
	const char *output;	/* -o: text report file, NULL = stderr */
	const char *json;	/* --json: JSON file, NULL = none */
	const char *pprof;	/* --pprof: gzip'd profile.proto */
	const char *folded;	/* --folded: collapsed stacks */
	const char *html;	/* --html: the page */
	const char *xml;	/* --xml=FILE, --xml=yes --xml-file=FILE */
	const char *sarif;	/* --sarif=FILE */
	/* Report paths may hold valgrind's %p (the pid: one file per
	 * process), %q{VAR} (an environment variable) and %%. */
	int error_exitcode;	/* 0 = off */
	unsigned show_kinds;
	unsigned error_kinds;
	int num_callers;
	bool show_below_main;
	bool quiet;
	bool follow_forks;	/* -f */
	bool fast;		/* --mode=fast: the in-process probe (tracer/fast.h) */
	int pid;		/* -p: attach to this process; 0 = launch */
	double duration;	/* attach: leave after this many seconds; 0 = no */
	double interval;	/* periodic top sites (both modes); 0 = no */
	bool track_mmap;	/* --track-mmap: anonymous regions mapped outside the allocator */
	int check_pid;		/* --check PID: ask the ptleak tracing PID for a leak check */
	char **argv;		/* PROGRAM and its arguments; NULL with -p */
	const char **suppressions;	/* --suppressions=FILE, in order */
	int n_suppressions;
	bool no_default_suppressions;
	bool gen_suppressions;	/* --gen-suppressions=all|yes */
	bool verbose;		/* -v: suppressions used, ... */
	char *program;		/* PROGRAM resolved (main, before any file opens) */
	char **self_argv;	/* ptleak's own argv up to PROGRAM (XML's vargv) */
	int self_argc;
	uint64_t start_ns;	/* when ptleak started (CLOCK_MONOTONIC) */
};

/*
 * Parse ARGV into O. Prints usage/version and exits 0 for -h/--version;
 * on bad input prints a one-line error and exits 125 (an unknown option
 * names the closest known one). valgrind's spellings are accepted where
 * they mean the same (--leak-check=full, --log-file, --trace-children,
 * --show-reachable, --xml=yes --xml-file, --error-exitcode=0).
 */
void options_parse(struct options *o, int argc, char **argv);

/* Free what options_parse and main allocated in O (the sanitizer build
 * checks ptleak's own leaks at exit). */
void options_release(struct options *o);

#endif
