/*
 * Fixture for unwind_test: a known call chain a -> b -> c in its own
 * compilation unit, built -g -O0 so that every call stays a real call
 * with a line of its own. c() stops the (traced) process with SIGSTOP;
 * the test unwinds it from there. fixture_on_signal runs the same chain
 * from a signal handler, to unwind through the signal frame.
 * fixture_nocfi has no unwind info at all, like musl's malloc: the test
 * unwinds from registers placed at its first instruction. The *_line
 * variables tell the test which line each frame must resolve to.
 */
#include <signal.h>

void a(void);
void b(void);
void c(void);
void fixture_on_signal(int sig);

extern const int fixture_a_line, fixture_b_line, fixture_c_line;

__attribute__((noinline)) void c(void)
{
	raise(SIGSTOP);
}
const int fixture_c_line = __LINE__ - 2;

__attribute__((noinline)) void b(void)
{
	c();
}
const int fixture_b_line = __LINE__ - 2;

__attribute__((noinline)) void a(void)
{
	b();
}
const int fixture_a_line = __LINE__ - 2;

__attribute__((noinline)) void fixture_on_signal(int sig)
{
	a();
}

/* No .cfi directives, hence no FDE. Never called. */
__asm__(".text\n"
	".globl fixture_nocfi\n"
	".type fixture_nocfi, @function\n"
	"fixture_nocfi:\n"
	"\tret\n"
	".size fixture_nocfi, .-fixture_nocfi\n");
