/*
 * unwind_test: symbols/ and the libunwind unwinder against a real stopped
 * process.
 *
 * The test forks itself. The child becomes traced (PTRACE_TRACEME),
 * dlopens libthread_db (lazily: its ps_* imports are never called),
 * stops once so the parent sees that library mapped, then dlcloses it and
 * calls a -> b -> c (unwind_fixture.c, built -O0), and c stops again with
 * raise(SIGSTOP). Last it raises SIGUSR1,
 * whose handler runs the same chain, so that c stops a third time with a
 * signal frame on the stack. The parent checks:
 *  - the backtrace holds c, b, a, main in that order, with the right
 *    files and the lines of the calls (return addresses looked up at -1);
 *  - an address in the dlclose'd library is still symbolized;
 *  - malloc and free are found in libc.so.6, one call per address;
 *  - _dl_debug_state and _r_debug are found in ld-linux*;
 *  - C++ names are demangled;
 *  - registers at the entry of a function without unwind info (as at
 *    musl's malloc) unwind to its caller and on to main;
 *  - the backtrace from the signal handler reaches main through the
 *    signal frame;
 * and it prints the mean cost of 10000 backtraces of the stopped child.
 * Prints "ok ..." / "FAIL: ..." lines; exits 1 on any failure. A 60 s
 * alarm bounds it, and the child dies with its parent (PDEATHSIG).
 *
 * Build and run (from the top of the tree):
 *   mkdir -p build/unit &&
 *   gcc -std=gnu11 -g -O0 -c -o build/unit/unwind_fixture.o \
 *       tests/unit/unwind_fixture.c &&
 *   gcc -std=gnu11 -g -O2 -I. -D_GNU_SOURCE -o build/unit/unwind_test \
 *       tests/unit/unwind_test.c build/unit/unwind_fixture.o \
 *       symbols/symbols.c symbols/unwind_libunwind.c \
 *       -ldw -lelf -lunwind-ptrace -lunwind-x86_64 -lunwind -lstdc++ &&
 *   ./build/unit/unwind_test
 * (-DN_TIMED=N changes the number of timed backtraces.)
 */
#include "symbols/symbols.h"
#include "symbols/unwind.h"
#include "tests/unit/check.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* unwind_fixture.c */
void a(void);
void fixture_on_signal(int sig);
void fixture_nocfi(void);
extern const int fixture_a_line, fixture_b_line, fixture_c_line;

#define MAX_FRAMES 64
#ifndef N_TIMED
#define N_TIMED 10000
#endif

static pid_t child = -1;

static __attribute__((noreturn)) void die(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	exit(1);
}

static const char *base_name(const char *path)
{
	const char *p = path ? strrchr(path, '/') : NULL;

	return p ? p + 1 : path ? path : "(null)";
}

static bool streq(const char *x, const char *y)
{
	return x && y && !strcmp(x, y);
}

static void run_child(int fd)
{
	void *h, *sym = NULL;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0)
		_exit(2);
	h = dlopen("libthread_db.so.1", RTLD_LAZY | RTLD_LOCAL);
	if (h)
		sym = dlsym(h, "td_init");
	if (write(fd, &sym, sizeof(sym)) != sizeof(sym))
		_exit(2);
	raise(SIGSTOP);		/* parent: libthread_db is mapped */
	if (h)
		dlclose(h);
	a();			/* stops in c() */
	signal(SIGUSR1, fixture_on_signal);
	raise(SIGUSR1);		/* stops in c(), inside the handler */
	_exit(0);
}

static void wait_stop(int sig)
{
	int st;

	if (waitpid(child, &st, 0) != child)
		die("waitpid");
	if (!WIFSTOPPED(st) || WSTOPSIG(st) != sig) {
		printf("FAIL: child did not stop with %s (status 0x%x)\n",
		       strsignal(sig), st);
		kill(child, SIGKILL);
		exit(1);
	}
}

struct found {
	int n_malloc, n_free, n_other;
	bool malloc_in_libc, free_in_libc;
	uint64_t new_addr;
};

/* Counts are of libc.so.6 only: a sanitizer runtime defines malloc too. */
static void on_func(void *arg, const char *name, uint64_t addr, uint64_t size,
		    const char *module)
{
	struct found *f = arg;
	bool libc = streq(base_name(module), "libc.so.6");

	if (streq(name, "_Znwm"))
		f->new_addr = addr;
	if (!libc)
		return;
	if (streq(name, "malloc")) {
		f->n_malloc++;
		f->malloc_in_libc = true;
	} else if (streq(name, "free")) {
		f->n_free++;
		f->free_in_libc = true;
	} else {
		f->n_other++;	/* __libc_malloc, cfree: deduplicated away */
	}
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void print_stack(struct symbols *s, const uint64_t *pcs, int n)
{
	for (int i = 0; i < n; i++) {
		struct symbol_info si;

		symbols_describe(s, pcs[i], i > 0, &si);
		printf("  #%-2d 0x%" PRIx64 " %s (%s:%d) in %s\n", i, pcs[i],
		       si.function ? si.function : "??", base_name(si.file),
		       si.line, si.module ? si.module : "??");
	}
}

/* Index of the first frame from FROM on named NAME, or -1. */
static int find_frame(struct symbols *s, const uint64_t *pcs, int n, int from,
		      const char *name)
{
	for (int i = from; i < n; i++) {
		struct symbol_info si;

		symbols_describe(s, pcs[i], i > 0, &si);
		if (streq(si.function, name))
			return i;
	}
	return -1;
}

static void check_stack(struct symbols *s, const uint64_t *pcs, int n)
{
	static const char *const want[] = { "c", "b", "a", "main" };
	const int *want_line[] = { &fixture_c_line, &fixture_b_line,
				   &fixture_a_line, NULL };
	int first;

	print_stack(s, pcs, n);
	first = find_frame(s, pcs, n, 0, "c");
	check(first >= 0, "frame c found");
	if (first < 0)
		return;
	for (int k = 0; k < 4; k++) {
		struct symbol_info si;
		int i = first + k;

		if (i >= n) {
			check(0, "frame %s present", want[k]);
			continue;
		}
		symbols_describe(s, pcs[i], true, &si);
		check(streq(si.function, want[k]), "frame %d is %s (got %s)", i,
		      want[k], si.function ? si.function : "??");
		check(streq(base_name(si.file), k < 3 ? "unwind_fixture.c"
					      : "unwind_test.c"),
		      "frame %s file %s", want[k], base_name(si.file));
		if (want_line[k])
			check(si.line == *want_line[k], "frame %s line %d (want %d)",
			      want[k], si.line, *want_line[k]);
		else
			check(si.line > 0, "frame %s line %d nonzero", want[k],
			      si.line);
	}
}

/*
 * Registers as they would be on entry to fixture_nocfi had b() called it
 * instead of c(): rsp at the slot holding the return address into b
 * (found on the child's stack), rbp as b left it (c's -O0 prologue pushed
 * it just below). The unwind must go fixture_nocfi, b, a, main.
 */
static void check_entry_unwind(struct symbols *s, struct unwinder *u,
			       const struct user_regs_struct *regs,
			       const uint64_t *pcs, int n)
{
	struct user_regs_struct e = *regs;
	uint64_t out[MAX_FRAMES], slot = 0;
	int ic = find_frame(s, pcs, n, 0, "c"), m, ok;

	if (ic < 0 || ic + 1 >= n) {
		check(0, "entry unwind: no frame c to start from");
		return;
	}
	for (uint64_t a = regs->rsp; a < regs->rsp + 65536; a += 8) {
		errno = 0;
		long w = ptrace(PTRACE_PEEKDATA, child, (void *)(uintptr_t)a, NULL);

		if (errno)
			break;
		if ((uint64_t)w == pcs[ic + 1]) {
			slot = a;
			break;
		}
	}
	errno = 0;
	e.rbp = (uint64_t)ptrace(PTRACE_PEEKDATA, child,
				 (void *)(uintptr_t)(slot - 8), NULL);
	if (!slot || errno) {
		check(0, "entry unwind: return address into b not on the stack");
		return;
	}
	e.rip = (uintptr_t)fixture_nocfi;
	e.rsp = slot;
	m = unwinder_backtrace(u, child, &e, out, MAX_FRAMES);
	print_stack(s, out, m);
	ok = m >= 4 && find_frame(s, out, m, 0, "fixture_nocfi") == 0 &&
	     find_frame(s, out, m, 1, "b") == 1 &&
	     find_frame(s, out, m, 2, "a") == 2 &&
	     find_frame(s, out, m, 3, "main") == 3;
	check(ok, "entry of a function without unwind info: nocfi, b, a, main");
}

int main(void)
{
	static const char *const names[] = { "malloc", "free", "__libc_malloc",
					     "cfree", "_Znwm" };
	struct user_regs_struct regs;
	uint64_t pcs[MAX_FRAMES], pcs2[MAX_FRAMES], dl_addr = 0;
	struct symbols_module m;
	struct symbol_info si;
	struct symbols *s;
	struct unwinder *u;
	struct found f = { 0 };
	void *td_init = NULL;
	int fds[2], n, n2, same = 1, ok;
	double t0, cold, mean;

	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(60);
	if (pipe(fds) < 0)
		die("pipe");
	if ((child = fork()) < 0)
		die("fork");
	if (child == 0)
		run_child(fds[1]);

	/* First stop: libthread_db is mapped. */
	wait_stop(SIGSTOP);
	if (read(fds[0], &td_init, sizeof(td_init)) != sizeof(td_init))
		die("read td_init address from child");
	dl_addr = (uintptr_t)td_init;
	check(dl_addr != 0, "child dlopened libthread_db.so.1");
	if (!(s = symbols_new(child))) {
		printf("FAIL: %s\n", symbols_errmsg(NULL));
		kill(child, SIGKILL);
		return 1;
	}
	m.path = NULL;
	ok = dl_addr && symbols_module_at(s, dl_addr, &m) == 0;
	check(ok && strstr(m.path, "libthread_db"),
	      "td_init is in live module %s", ok ? base_name(m.path) : "?");

	/* Second stop: in c(), libthread_db unmapped. */
	if (ptrace(PTRACE_CONT, child, NULL, NULL) < 0)
		die("PTRACE_CONT");
	wait_stop(SIGSTOP);
	check(symbols_refresh(s) == 0, "symbols_refresh: %s", symbols_errmsg(s));
	check(symbols_module_at(s, dl_addr, &m) < 0,
	      "libthread_db no longer live after dlclose");
	symbols_describe(s, dl_addr, false, &si);
	check(streq(si.function, "td_init") && si.module &&
	      strstr(si.module, "libthread_db"),
	      "unmapped address still symbolized: %s in %s",
	      si.function ? si.function : "??", si.module ? si.module : "??");

	if (ptrace(PTRACE_GETREGS, child, NULL, &regs) < 0)
		die("PTRACE_GETREGS");
	if (!(u = unwinder_new(child, s)))
		die("unwinder_new");

	t0 = now_us();
	n = unwinder_backtrace(u, child, &regs, pcs, MAX_FRAMES);
	cold = now_us() - t0;
	check(n >= 1 && pcs[0] == regs.rip, "pcs[0] is rip, %d frames", n);
	check_stack(s, pcs, n);
	check(unwinder_backtrace(u, child, &regs, pcs2, 1) == 1 &&
	      pcs2[0] == regs.rip, "max 1 gives rip only");
	check(unwinder_backtrace(u, child, &regs, pcs2, 0) == 0, "max 0 gives 0");

	/* Symbol search. */
	check(symbols_find_functions(s, names, sizeof(names) / sizeof(names[0]),
				     on_func, &f) > 0, "symbols_find_functions");
	check(f.malloc_in_libc && f.free_in_libc, "malloc and free in libc.so.6");
	check(f.n_malloc == 1 && f.n_free == 1 && f.n_other == 0,
	      "one callback per address in libc (malloc %d, free %d, aliases %d)",
	      f.n_malloc, f.n_free, f.n_other);
	check(symbols_lookup_name(s, "ld-linux", "_dl_debug_state") != 0,
	      "_dl_debug_state in ld-linux");
	check(symbols_lookup_name(s, "ld-linux", "_r_debug") != 0,
	      "_r_debug in ld-linux");
	check(symbols_lookup_name(s, "ld-linux", "no_such_symbol") == 0,
	      "unknown name gives 0");
	if (f.new_addr) {
		symbols_describe(s, f.new_addr, false, &si);
		check(streq(si.function, "operator new(unsigned long)"),
		      "demangled _Znwm: %s", si.function ? si.function : "??");
	} else {
		check(0, "_Znwm found in libstdc++");
	}

	/* Cost: tables and code pages cached, stack re-read every time. */
	t0 = now_us();
	for (int i = 0; i < N_TIMED; i++) {
		n2 = unwinder_backtrace(u, child, &regs, pcs2, MAX_FRAMES);
		if (n2 != n || memcmp(pcs, pcs2, n * sizeof(*pcs)))
			same = 0;
	}
	mean = (now_us() - t0) / N_TIMED;
	check(same, "%d repeated backtraces identical", N_TIMED);
	unwinder_flush(u);
	t0 = now_us();
	n2 = unwinder_backtrace(u, child, &regs, pcs2, MAX_FRAMES);
	check(n2 == n && !memcmp(pcs, pcs2, n * sizeof(*pcs)),
	      "same backtrace after unwinder_flush (%.1f us)", now_us() - t0);
	printf("backtrace: %d frames, %.2f us mean over %d (first, cold: %.1f us)\n",
	       n, mean, N_TIMED, cold);

	check_entry_unwind(s, u, &regs, pcs, n);

	/* Third stop: c() called from a SIGUSR1 handler. */
	if (ptrace(PTRACE_CONT, child, NULL, NULL) < 0)
		die("PTRACE_CONT");
	wait_stop(SIGUSR1);
	if (ptrace(PTRACE_CONT, child, NULL, (void *)(uintptr_t)SIGUSR1) < 0)
		die("PTRACE_CONT SIGUSR1");
	wait_stop(SIGSTOP);
	if (ptrace(PTRACE_GETREGS, child, NULL, &regs) < 0)
		die("PTRACE_GETREGS");
	n = unwinder_backtrace(u, child, &regs, pcs, MAX_FRAMES);
	print_stack(s, pcs, n);
	{
		int ic = find_frame(s, pcs, n, 0, "c");
		int ih = find_frame(s, pcs, n, 0, "fixture_on_signal");
		int im = ih < 0 ? -1 : find_frame(s, pcs, n, ih, "main");

		check(ic >= 0 && ih == ic + 3, "handler frame 3 above c (c %d, handler %d)",
		      ic, ih);
		check(im > ih + 1, "main reached through the signal frame (%d)", im);
	}

	unwinder_free(u);
	symbols_free(s);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	if (failures)
		printf("FAIL: %d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
