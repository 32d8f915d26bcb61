/*
 * probe_walk_test: the probe's stack walk (probe/walk.h) over the rows
 * symbols/cfi_rows.c derives, against libunwind (symbols/unwind.h, what
 * trap mode uses), on real programs.
 *
 *   probe_walk_test [-n HITS] [PROGRAM [ARGS...]]
 *
 * Without PROGRAM (as the suite runs it: unit:probe_walk) it checks
 * Debian's sqlite3 running INSERTs, python3 doing json, and perl filling
 * a hash: real code, at -O2, without frame pointers.
 * PROGRAM runs traced; an int3 on malloc (found once libc is mapped, at
 * ld.so's r_brk) stops it at every call, up to HITS times (default 3000).
 * At each stop both walk the same stack from the same registers: every
 * walk the probe finishes on its own must give exactly libunwind's
 * frames; the walks it hands to ptleak (a frame without a usable row, as
 * the probe would) are counted. Prints one "ok"/"FAIL" line with the
 * counts and the rows' coverage; exits 1 on any mismatch, or when more
 * than 2% of the walks are handed over (glibc programs have .eh_frame
 * for nearly all their code). A 120 s alarm bounds it.
 */
#include "probe/walk.h"
#include "symbols/cfi_rows.h"
#include "symbols/symbols.h"
#include "symbols/unwind.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROWS_CAP (64u << 20)

static pid_t child;
static struct probe_shared *sh;
static size_t rows_used;
static uint64_t done_starts[PROBE_MODULES];
static size_t n_done;

static __attribute__((noreturn)) void fail(const char *what)
{
	fprintf(stderr, "FAIL probe_walk: %s: %s\n", what, strerror(errno));
	if (child > 0)
		kill(child, SIGKILL);
	exit(1);
}

static void on_module(void *arg, const struct cfi_module *m)
{
	size_t bytes = m->n_rows * sizeof(struct probe_row);

	(void)arg;
	if (!m->n_usable || sh->n_modules >= PROBE_MODULES || rows_used + bytes > ROWS_CAP)
		return;
	uint64_t off = sh->rows_off + rows_used;
	memcpy((char *)sh + off, m->rows, bytes);
	rows_used += bytes;
	sh->modules[sh->n_modules++] = (struct probe_module){
		.start = m->start, .end = m->end, .rows_off = off,
		.n_rows = (uint32_t)m->n_rows, .live = 1,
	};
	done_starts[n_done++] = m->module_start;
}

static int find_row(void *ctx, uint64_t pc, struct probe_row *out)
{
	(void)ctx;
	return walk_find_row(sh, pc, out);
}

static uint64_t read_word(void *ctx, uint64_t addr)
{
	uint64_t v = 0;
	struct iovec l = { &v, 8 }, r = { (void *)(uintptr_t)addr, 8 };

	(void)ctx;
	process_vm_readv(child, &l, 1, &r, 1, 0);
	return v;
}

/* The upper end of the mapping holding RSP, as ptleak hands it over. */
static uint64_t stack_hi(uint64_t rsp)
{
	char path[64], line[512];
	uint64_t lo, hi, found = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", child);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%" SCNx64 "-%" SCNx64, &lo, &hi) == 2 && rsp >= lo && rsp < hi)
			found = hi;
	fclose(f);
	return found;
}

struct found {
	uint64_t malloc_at;
};

static void on_func(void *arg, const char *name, uint64_t addr, uint64_t size,
		    const char *module)
{
	struct found *f = arg;

	(void)size;
	if (!strcmp(name, "malloc") && strstr(module, "libc.so"))
		f->malloc_at = addr;
}

static int wait_trap(void)
{
	int status;

	for (;;) {
		if (waitpid(child, &status, 0) < 0)
			fail("waitpid");
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return -1;
		if (WSTOPSIG(status) == SIGTRAP)
			return 0;
		ptrace(PTRACE_CONT, child, 0, (void *)(long)WSTOPSIG(status));
	}
}

static void poke_byte(uint64_t addr, uint8_t b, uint8_t *old)
{
	errno = 0;
	long w = ptrace(PTRACE_PEEKDATA, child, (void *)addr, 0);
	if (errno)
		fail("peek");
	if (old)
		*old = (uint8_t)w;
	w = (w & ~0xffL) | b;
	if (ptrace(PTRACE_POKEDATA, child, (void *)addr, (void *)w) < 0)
		fail("poke");
}

/* PROGRAM ARGV traced, both walks compared at up to HITS mallocs. */
static bool check_program(char **argv, long hits)
{
	size_t size = (sizeof(struct probe_shared) + 4095) / 4096 * 4096 + ROWS_CAP;
	free(sh);
	sh = calloc(1, size);
	if (!sh)
		fail("calloc");
	sh->rows_off = size - ROWS_CAP;
	rows_used = n_done = 0;
	child = fork();
	if (child == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (wait_trap() < 0)
		fail("exec");
	struct symbols *s = symbols_new(child);
	if (!s)
		fail("symbols_new");
	uint64_t rbrk = symbols_lookup_name(s, "ld-linux", "_dl_debug_state");
	uint8_t rbrk_orig = 0, malloc_orig = 0;
	struct found fnd = { 0 };
	if (!rbrk)
		fail("no r_brk (a static program? give a dynamic one)");
	poke_byte(rbrk, 0xcc, &rbrk_orig);
	struct unwinder *u = NULL;
	long n_hits = 0, same = 0, handed = 0, mismatch = 0;

	ptrace(PTRACE_CONT, child, 0, 0);
	while (n_hits < hits && wait_trap() == 0) {
		struct user_regs_struct r;
		ptrace(PTRACE_GETREGS, child, 0, &r);
		uint64_t at = r.rip - 1;
		if (at == rbrk) {
			symbols_refresh(s);
			if (!fnd.malloc_at) {
				const char *names[] = { "malloc" };
				symbols_find_functions(s, names, 1, on_func, &fnd);
				if (fnd.malloc_at)
					poke_byte(fnd.malloc_at, 0xcc, &malloc_orig);
			}
			cfi_rows_build(s, done_starts, n_done, on_module, NULL);
			if (u)
				unwinder_flush(u);
		} else if (at == fnd.malloc_at) {
			if (!u && !(u = unwinder_new(child, s)))
				fail("unwinder_new");
			r.rip = at;
			uint64_t want[64], got[64];
			int nw = unwinder_backtrace(u, child, &r, want, 12);
			int ng = walk_stack(find_row, read_word, NULL, at, r.rsp, r.rbp,
					    stack_hi(r.rsp), got, 12);
			n_hits++;
			if (ng < 0) {
				handed++;
			} else if (ng == nw && !memcmp(want, got, (size_t)ng * 8)) {
				same++;
			} else if (mismatch++ < 5) {
				fprintf(stderr, "mismatch at hit %ld:\n", n_hits);
				for (int i = 0; i < (nw > ng ? nw : ng); i++) {
					struct symbol_info si;
					uint64_t pc = i < nw ? want[i] : (i < ng ? got[i] : 0);
					symbols_describe(s, pc, i > 0, &si);
					fprintf(stderr, "  %2d libunwind %#18" PRIx64 "  probe %#18" PRIx64 "  %s\n",
						i, i < nw ? want[i] : 0, i < ng ? got[i] : 0,
						si.function ? si.function : "?");
				}
			}
		} else {
			ptrace(PTRACE_CONT, child, 0, (void *)SIGTRAP);
			continue;
		}
		/* Step over the int3: the original byte, one step, the int3 back. */
		uint8_t orig = at == rbrk ? rbrk_orig : malloc_orig;
		poke_byte(at, orig, NULL);
		r.rip = at;
		ptrace(PTRACE_SETREGS, child, 0, &r);
		ptrace(PTRACE_SINGLESTEP, child, 0, 0);
		if (wait_trap() < 0)
			break;
		poke_byte(at, 0xcc, NULL);
		ptrace(PTRACE_CONT, child, 0, 0);
	}
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	symbols_free(s);
	if (u)
		unwinder_free(u);
	size_t rows = 0;
	for (uint32_t i = 0; i < sh->n_modules; i++)
		rows += sh->modules[i].n_rows;
	bool ok = n_hits > 0 && mismatch == 0 && handed * 50 <= n_hits;
	printf("%s probe_walk %s: %ld mallocs, %ld walks equal to libunwind's, %ld handed to "
	       "ptleak, %ld different; %u modules, %zu rows\n",
	       ok ? "ok" : "FAIL", argv[0], n_hits, same, handed, mismatch, sh->n_modules, rows);
	return ok;
}

static bool check_copy(const char *const *cmd, long hits)
{
	char *argv[8] = { 0 };
	bool ok;

	for (int i = 0; cmd[i] && i < 7; i++)
		argv[i] = strdup(cmd[i]);
	ok = check_program(argv, hits);
	for (int i = 0; argv[i]; i++)
		free(argv[i]);
	return ok;
}

int main(int argc, char **argv)
{
	long hits = 3000;
	int a = 1;

	if (argc > 2 && !strcmp(argv[1], "-n")) {
		hits = atol(argv[2]);
		a = 3;
	}
	alarm(120);
	if (a < argc)
		return check_program(argv + a, hits) ? 0 : 1;
	static const char *const sqlite[] = { "sqlite3", ":memory:",
		"create table t(a, b); with recursive c(x) as (select 1 union all select x + 1 "
		"from c where x < 3000) insert into t select x, printf('%0100d', x) from c; "
		"select count(*) from t;", NULL };
	/* Debian's python3, not a wrapper script in PATH (pyenv's). */
	static const char *const python[] = { "/usr/bin/python3", "-c",
		"import json\nd = [{'k%d' % i: [i, str(i) * 5]} for i in range(3000)]\n"
		"json.loads(json.dumps(d))\n", NULL };
	static const char *const perl[] = { "perl", "-e",
		"my %h; $h{$_} = [($_) x 3] for 1 .. 20000; print scalar(keys %h)", NULL };
	bool ok = check_copy(sqlite, hits);
	ok = check_copy(python, hits) && ok;
	ok = check_copy(perl, hits) && ok;
	return ok ? 0 : 1;
}
