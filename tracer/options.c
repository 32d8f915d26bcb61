/*
 * options: command-line parsing by hand (getopt would permute PROGRAM's
 * own options into ours).
 */
#include "tracer/options.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tracer/util.h"
#include "tracer/version.h"

static const char usage[] =
"usage: ptleak [OPTIONS] [--] PROGRAM [ARGS...]\n"
"       ptleak [OPTIONS] -p PID\n"
"       ptleak --check PID\n"
"\n"
"Run PROGRAM under ptrace (or attach to process PID), record every\n"
"allocation and free, and report the blocks never freed when it exits\n"
"(or when ptleak leaves). No LD_PRELOAD, no recompiling.\n"
"\n"
"options:\n"
"  -o, --output=FILE           write the text report to FILE (default stderr);\n"
"      --log-file=FILE         %p in FILE is the pid: one file per process\n"
"      --json=FILE             also write the report as JSON to FILE\n"
"      --pprof=FILE            also write a gzip'd pprof profile (inuse/alloc\n"
"                              space and objects, leak kind as a label)\n"
"      --folded=FILE           also write the leaked bytes as collapsed stacks\n"
"                              (flamegraph.pl, inferno, speedscope)\n"
"      --html=FILE             also write a self-contained HTML page: loss\n"
"                              records, flame graphs, the heap over time\n"
"      --xml=FILE              also write valgrind's XML (protocol 4) to FILE\n"
"      --xml=yes --xml-file=FILE  the same, in valgrind's words\n"
"      --sarif=FILE            also write SARIF 2.1.0 (code scanning) to FILE\n"
"      --error-exitcode=N      exit with N (1-255) if leaks were found (0: off)\n"
"      --show-leak-kinds=K     loss records to show: definite,indirect,possible,\n"
"                              reachable, all or none (default definite,possible)\n"
"      --errors-for-leak-kinds=K  kinds that count for --error-exitcode\n"
"                              (default definite)\n"
"      --num-callers=N         return addresses per stack, 1-64 (default 12;\n"
"                              inlined frames come on top, as valgrind's)\n"
"      --show-below-main       keep the frames below main\n"
"      --leak-check=full       the default (=summary: no loss records)\n"
"      --show-reachable=yes    = --show-leak-kinds=all (=no: the default)\n"
"      --suppressions=FILE     suppress the loss records FILE matches: valgrind's\n"
"                              format ({ Memcheck:Leak fun:/obj:/src: ... }) or\n"
"                              LeakSanitizer's (leak:PATTERN); repeatable\n"
"      --gen-suppressions=all  print a valgrind suppression after each loss\n"
"                              record (=yes: the same, without asking)\n"
"      --no-default-suppressions  do not read the default file (glibc's and\n"
"                              ld.so's one-time allocations)\n"
"      --mode=MODE             how allocator calls are seen: 'trap' (an int3\n"
"                              and a ptrace stop per call) or 'fast' (a probe\n"
"                              written into the program records them in memory\n"
"                              shared with ptleak; default " MODE_DEFAULT_NAME ",\n"
"                              or $PTLEAK_MODE)\n"
"  -q, --quiet                 no banner, only the report\n"
"  -v, --verbose               also list the suppressions used, with counts\n"
"  -f, --follow-forks          trace forked children too, one report each\n"
"      --trace-children=yes    the same (=no: the default)\n"
"  -p, --pid=PID               attach to running process PID; leave on\n"
"                              SIGINT/SIGTERM (or any signal that would end\n"
"                              ptleak), after --duration, or at its exit\n"
"      --duration=SECONDS      with -p: leave after SECONDS\n"
"      --interval=SECONDS      print the top allocation sites by live bytes and\n"
"                              their growth every SECONDS\n"
"                              (a --pprof/--folded/--html path with %n gets\n"
"                              a snapshot file per interval, %n = 1, 2, ...)\n"
"      --track-mmap            also follow anonymous mmap/mremap/munmap made\n"
"                              outside the allocator; report regions still mapped\n"
"      --check=PID             ask the ptleak tracing process PID (or ptleak PID\n"
"                              itself) for a leak check now, as kill -USR1 does\n"
"\n"
"A leak check while the program runs: send SIGUSR1 to ptleak (or run\n"
"ptleak --check PID): the program is stopped for a scan, the leaks so far\n"
"and their changes since the last check are reported, and it runs on.\n"
"  -h, --help                  show this help\n"
"      --version               show the version\n"
"\n"
"exit status:\n"
"  PROGRAM's own exit status, or 128+S if it was killed by signal S;\n"
"  with -p: 0 after leaving it running or seeing it exit;\n"
"  N    with --error-exitcode=N, when leaks of the counted kinds were found;\n"
"  125  ptleak itself failed (bad option, report file not writable, ptrace\n"
"       not permitted, no such process, already traced, ...);\n"
"  126  PROGRAM was found but could not be executed;\n"
"  127  PROGRAM was not found.\n";

static noreturn __attribute__((format(printf, 1, 2))) void bad(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ptleak: %s (try 'ptleak --help')\n", msg);
	exit(EXIT_PTLEAK_FAILURE);
}

static long parse_int(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		bad("%s: '%s' is not a number from %ld to %ld", opt, s, lo, hi);
	return v;
}

static double parse_seconds(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 1e7)
		bad("%s: '%s' is not a positive number of seconds", opt, s);
	return v;
}

static unsigned parse_kinds(const char *opt, const char *s)
{
	static const struct { const char *name; unsigned flags; } names[] = {
		{ "definite", KIND_DEFINITE }, { "indirect", KIND_INDIRECT },
		{ "possible", KIND_POSSIBLE }, { "reachable", KIND_REACHABLE },
		{ "all", KIND_DEFINITE | KIND_INDIRECT | KIND_POSSIBLE | KIND_REACHABLE },
		{ "none", 0 },
	};
	unsigned flags = 0;
	char *copy = xstrdup(s), *save = NULL;

	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i;
		for (i = 0; i < ARRAY_SIZE(names); i++)
			if (!strcmp(tok, names[i].name))
				break;
		if (i == ARRAY_SIZE(names))
			bad("%s: unknown leak kind '%s'", opt, tok);
		flags |= names[i].flags;
	}
	free(copy);
	return flags;
}

/* If ARG is --NAME=VALUE or --NAME VALUE, return VALUE (advancing *I). */
static const char *value_of(const char *name, int argc, char **argv, int *i)
{
	const char *arg = argv[*i];
	size_t n = strlen(name);

	if (strncmp(arg, name, n))
		return NULL;
	if (arg[n] == '=')
		return arg + n + 1;
	if (arg[n] != '\0')
		return NULL;
	if (*i + 1 >= argc)
		bad("option '%s' needs a value", name);
	return argv[++*i];
}

/* Every option, for "did you mean" (the value part is not compared). */
static const char *const known[] = {
	"-o", "--output", "--log-file", "--json", "--xml", "--xml-file", "--sarif",
	"--pprof", "--folded", "--html",
	"--error-exitcode", "--show-leak-kinds", "--errors-for-leak-kinds",
	"--num-callers", "--show-below-main", "--leak-check", "--show-reachable",
	"--suppressions", "--gen-suppressions", "--no-default-suppressions",
	"-q", "--quiet", "-v", "--verbose", "-f", "--follow-forks", "--trace-children",
	"-p", "--pid", "--duration", "--interval", "--check", "-h", "--help", "--version",
};

static size_t edit_distance(const char *a, size_t na, const char *b)
{
	size_t nb = strlen(b), row[64], prev;

	if (na >= ARRAY_SIZE(row) || nb >= ARRAY_SIZE(row))
		return SIZE_MAX;
	for (size_t j = 0; j <= nb; j++)
		row[j] = j;
	for (size_t i = 1; i <= na; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= nb; j++) {
			size_t cur = row[j];
			size_t sub = prev + (a[i - 1] != b[j - 1]);
			size_t best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
			row[j] = sub < best ? sub : best;
			prev = cur;
		}
	}
	return row[nb];
}

/* The known option nearest to ARG ("--levk-check=full", "-F"), or NULL. */
static const char *closest_option(const char *arg)
{
	size_t n = strcspn(arg, "="), best = SIZE_MAX;
	const char *pick = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
		const char *k = known[i];
		if (strlen(k) == n && !strncasecmp(arg, k, n))
			return k;	/* -F: -f */
		if (n > 3 && !strncmp(arg, k, n))
			return k;	/* a prefix: --follow */
		size_t d = edit_distance(arg, n, k);
		if (d < best) {
			best = d;
			pick = k;
		}
	}
	/* Two letters are always one edit apart: only case counts there. */
	if (n <= 2 || best > (n > 9 ? 3 : 2))
		return NULL;
	return pick;
}

static noreturn void unknown_option(const char *a)
{
	const char *near = closest_option(a);

	if (near)
		bad("unknown option '%s' (did you mean %s?)", a, near);
	bad("unknown option '%s'", a);
}

static bool parse_yes_no(const char *opt, const char *v)
{
	if (!strcmp(v, "yes"))
		return true;
	if (!strcmp(v, "no"))
		return false;
	bad("%s: '%s' is not yes or no", opt, v);
}

/* A report path: valgrind's %p, %q{VAR} and %% only. */
static const char *report_path(const char *opt, const char *v)
{
	if (!*v)
		bad("%s: empty file name", opt);
	for (const char *c = strchr(v, '%'); c; c = strchr(c + 2, '%')) {
		if (c[1] == 'p' || c[1] == '%')
			continue;
		if (c[1] == 'q' && c[2] == '{' && strchr(c + 3, '}'))
			continue;
		bad("%s: '%s': %%%c is not %%p (the pid), %%q{VAR} or %%%%", opt, v,
		    c[1] ? c[1] : ' ');
	}
	return v;
}

void options_parse(struct options *o, int argc, char **argv)
{
	bool xml_yes = false;
	const char *xml_file = NULL;

	const char *v;
	int i;

	memset(o, 0, sizeof(*o));
	o->start_ns = now_ns();
	o->self_argv = argv;
	o->show_kinds = KIND_DEFINITE | KIND_POSSIBLE;
	o->error_kinds = KIND_DEFINITE;
	o->num_callers = 12;
	o->fast = MODE_DEFAULT_FAST;
	const char *env = getenv("PTLEAK_MODE");
	if (env && *env) {
		if (strcmp(env, "fast") && strcmp(env, "trap"))
			bad("PTLEAK_MODE: '%s' is neither 'fast' nor 'trap'", env);
		o->fast = !strcmp(env, "fast");
	}

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			break;	/* PROGRAM */
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(usage, stdout);
			exit(0);
		} else if (!strcmp(a, "--version")) {
			printf("ptleak %s\n", PTLEAK_VERSION);
			exit(0);
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			o->quiet = true;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			o->verbose = true;
		} else if ((v = value_of("--suppressions", argc, argv, &i))) {
			o->suppressions = xrealloc(o->suppressions, (size_t)(o->n_suppressions + 1) *
						   sizeof(*o->suppressions));
			o->suppressions[o->n_suppressions++] = v;
		} else if (!strcmp(a, "--no-default-suppressions")) {
			o->no_default_suppressions = true;
		} else if ((v = value_of("--gen-suppressions", argc, argv, &i))) {
			if (!strcmp(v, "all") || !strcmp(v, "yes"))
				o->gen_suppressions = true;
			else if (!strcmp(v, "no"))
				o->gen_suppressions = false;
			else
				bad("--gen-suppressions: '%s' is not all, yes or no", v);
		} else if (!strcmp(a, "-f") || !strcmp(a, "--follow-forks")) {
			o->follow_forks = true;
		} else if ((v = value_of("--trace-children", argc, argv, &i))) {
			o->follow_forks = parse_yes_no("--trace-children", v);
		} else if ((v = value_of("--show-reachable", argc, argv, &i))) {
			o->show_kinds = parse_yes_no("--show-reachable", v)
				? KIND_DEFINITE | KIND_INDIRECT | KIND_POSSIBLE | KIND_REACHABLE
				: KIND_DEFINITE | KIND_POSSIBLE;
		} else if ((v = value_of("--leak-check", argc, argv, &i))) {
			if (!strcmp(v, "summary"))
				o->show_kinds = 0;
			else if (strcmp(v, "full") && strcmp(v, "yes"))
				bad("--leak-check: '%s': ptleak always checks (full, yes, or "
				    "summary for no loss records)", v);
		} else if (!strcmp(a, "-p")) {
			if (i + 1 >= argc)
				bad("option '%s' needs a value", a);
			o->pid = (int)parse_int("-p", argv[++i], 1, INT32_MAX);
		} else if ((v = value_of("--pid", argc, argv, &i))) {
			o->pid = (int)parse_int("--pid", v, 1, INT32_MAX);
		} else if ((v = value_of("--duration", argc, argv, &i))) {
			o->duration = parse_seconds("--duration", v);
		} else if ((v = value_of("--interval", argc, argv, &i))) {
			o->interval = parse_seconds("--interval", v);
		} else if (!strcmp(a, "--track-mmap")) {
			o->track_mmap = true;
		} else if ((v = value_of("--check", argc, argv, &i))) {
			o->check_pid = (int)parse_int("--check", v, 1, INT32_MAX);
		} else if (!strcmp(a, "--show-below-main")) {
			o->show_below_main = true;
		} else if (!strcmp(a, "-o")) {
			if (i + 1 >= argc)
				bad("option '%s' needs a value", a);
			o->output = report_path("-o", argv[++i]);
		} else if (!strncmp(a, "-o", 2) && a[2] != '-') {
			o->output = report_path("-o", a + 2);
		} else if ((v = value_of("--output", argc, argv, &i))) {
			o->output = report_path("--output", v);
		} else if ((v = value_of("--log-file", argc, argv, &i))) {
			o->output = report_path("--log-file", v);
		} else if ((v = value_of("--json", argc, argv, &i))) {
			o->json = report_path("--json", v);
		} else if ((v = value_of("--xml-file", argc, argv, &i))) {
			xml_file = report_path("--xml-file", v);
		} else if ((v = value_of("--xml", argc, argv, &i))) {
			xml_yes = !strcmp(v, "yes");
			o->xml = xml_yes || !strcmp(v, "no") ? NULL : report_path("--xml", v);
		} else if ((v = value_of("--sarif", argc, argv, &i))) {
			o->sarif = report_path("--sarif", v);
		} else if ((v = value_of("--pprof", argc, argv, &i))) {
			o->pprof = v;
		} else if ((v = value_of("--folded", argc, argv, &i))) {
			o->folded = v;
		} else if ((v = value_of("--html", argc, argv, &i))) {
			o->html = v;
		} else if ((v = value_of("--error-exitcode", argc, argv, &i))) {
			o->error_exitcode = (int)parse_int("--error-exitcode", v, 0, 255);
		} else if ((v = value_of("--mode", argc, argv, &i))) {
			if (strcmp(v, "fast") && strcmp(v, "trap"))
				bad("--mode: '%s' is neither 'fast' nor 'trap'", v);
			o->fast = !strcmp(v, "fast");
		} else if ((v = value_of("--num-callers", argc, argv, &i))) {
			o->num_callers = (int)parse_int("--num-callers", v, 1, 64);
		} else if ((v = value_of("--show-leak-kinds", argc, argv, &i))) {
			o->show_kinds = parse_kinds("--show-leak-kinds", v);
		} else if ((v = value_of("--errors-for-leak-kinds", argc, argv, &i))) {
			o->error_kinds = parse_kinds("--errors-for-leak-kinds", v);
		} else {
			unknown_option(a);
		}
	}
	o->self_argc = i;
	if (xml_file)
		o->xml = xml_file;
	else if (xml_yes)
		bad("%s", "--xml=yes needs --xml-file=FILE (or write --xml=FILE)");
	if (o->check_pid) {
		if (o->pid || i < argc)
			bad("--check %d asks a running ptleak: no -p, no program", o->check_pid);
		return;
	}
	if (o->pid) {
		if (i < argc)
			bad("-p %d and a program '%s' given: choose one", o->pid, argv[i]);
		return;
	}
	if (o->duration)
		bad("%s", "--duration goes with -p PID");
	if (i >= argc) {
		fputs("ptleak: no program given (try 'ptleak --help')\n", stderr);
		exit(EXIT_PTLEAK_FAILURE);
	}
	o->argv = argv + i;
}

void options_release(struct options *o)
{
	free(o->suppressions);
	free(o->program);
	o->suppressions = NULL;
	o->program = NULL;
}
