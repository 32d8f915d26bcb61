/*
 * signals: the table and the handlers (see signals.h).
 */
#include "tracer/signals.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tracer/util.h"

volatile sig_atomic_t signals_caught;
volatile sig_atomic_t signals_leave;
volatile sig_atomic_t signals_check;

static volatile pid_t forward_to;
static void (*restore_program)(void);

/*
 * One row per signal whose default action ends ptleak (signal(7): Term
 * or Core), and what it does in each mode. Real-time signals from
 * SIGRTMIN up act like SIGUSR2. SIGKILL and SIGSTOP cannot be caught; the
 * stop signals and SIGCONT, SIGCHLD, SIGURG, SIGWINCH keep their default.
 * A new meaning for a signal is a new action and a changed row here.
 */
static const struct {
	int sig;
	enum sig_action launch, attach;
} table[] = {
	{ SIGHUP, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGINT, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGQUIT, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGTERM, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGPIPE, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGUSR1, SIGACT_CHECK, SIGACT_CHECK },	/* ptleak --check sends it */
	{ SIGUSR2, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGALRM, SIGACT_WAKE, SIGACT_WAKE },	/* the ticker (launch: --interval) */
	{ SIGPOLL, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGPROF, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGVTALRM, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGXCPU, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGXFSZ, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGSTKFLT, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGPWR, SIGACT_FORWARD, SIGACT_LEAVE },
	{ SIGSEGV, SIGACT_CRASH, SIGACT_CRASH },
	{ SIGBUS, SIGACT_CRASH, SIGACT_CRASH },
	{ SIGILL, SIGACT_CRASH, SIGACT_CRASH },
	{ SIGFPE, SIGACT_CRASH, SIGACT_CRASH },
	{ SIGABRT, SIGACT_CRASH, SIGACT_CRASH },
	{ SIGSYS, SIGACT_CRASH, SIGACT_CRASH },
	{ SIGTRAP, SIGACT_CRASH, SIGACT_CRASH },
};

static enum sig_action signals_action(int sig, bool attach)
{
	for (size_t i = 0; i < ARRAY_SIZE(table); i++)
		if (table[i].sig == sig)
			return attach ? table[i].attach : table[i].launch;
	if (sig >= 32 && sig <= SIGRTMAX)	/* the real-time ones, glibc's included */
		return signals_action(SIGUSR2, attach);
	return SIGACT_KEEP;
}

/* Raised by the kernel (a terminal, an rlimit) or by a write of ours to a
 * closed pipe (SIGPIPE and SIGXFSZ come "from" the writer itself). */
static bool not_sent_by_another(const siginfo_t *si)
{
	return si->si_code == SI_KERNEL || si->si_code > 0 ||
	       (si->si_code == SI_USER && si->si_pid == getpid());
}

static void on_forward(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	signals_caught++;
	if (!not_sent_by_another(si) && forward_to > 0)
		kill(forward_to, sig);
}

static void on_leave(int sig, siginfo_t *si, void *uc)
{
	(void)si, (void)uc;
	signals_caught++;
	if (!signals_leave)
		signals_leave = sig;
}

static void on_check(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)si, (void)uc;
	signals_caught++;
	signals_check = 1;
}

static void on_wake(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)si, (void)uc;
	signals_caught++;
}

static void on_crash(int sig, siginfo_t *si, void *uc)
{
	(void)si, (void)uc;
	if (restore_program)
		restore_program();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void restore_at_exit(void)
{
	if (restore_program)
		restore_program();
}

/*
 * glibc keeps the real-time signals below SIGRTMIN (thread cancellation,
 * setxid) for itself and its sigaction() refuses them, but kill -32 would
 * still end ptleak, which uses neither (one thread, no cancellation, no
 * set*id): their handler is installed with the raw syscall, with a
 * restorer of our own as glibc's is not exported. Blocking them would not
 * last: glibc's sigprocmask() drops them from every mask it sets, and
 * libunwind sets masks.
 */
void signals_restorer(void);
__asm__(".pushsection .text\n"
	".type signals_restorer, @function\n"
	"signals_restorer:\n"
	"\tmov $15, %eax\n"		/* rt_sigreturn */
	"\tsyscall\n"
	".size signals_restorer, . - signals_restorer\n"
	".popsection\n");

static void raw_sigaction(int sig, void (*handler)(int, siginfo_t *, void *))
{
	struct {
		void (*handler)(int, siginfo_t *, void *);
		unsigned long flags;
		void (*restorer)(void);
		uint64_t mask;
	} ka = { handler, SA_SIGINFO | 0x04000000 /* SA_RESTORER */, signals_restorer, 0 };

	syscall(SYS_rt_sigaction, sig, &ka, NULL, sizeof(ka.mask));
}

/*
 * SIGHUP ignored when ptleak starts stays ignored: nohup meant ptleak to
 * outlive the terminal. Other inherited ignores are not kept: a
 * non-interactive shell starts every background job with SIGINT and
 * SIGQUIT ignored, and `ptleak -p PID & ... kill -INT $!` must still
 * make it leave.
 */
static bool inherited_ignore(int sig)
{
	struct sigaction old;

	return sig == SIGHUP && sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN;
}

static struct sigaction usr1_inherited;

void signals_early(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_sigaction = on_check;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGUSR1, &sa, &usr1_inherited);
}

void signals_early_undo(void)
{
	sigaction(SIGUSR1, &usr1_inherited, NULL);
}

void signals_install(bool attach, pid_t program, void (*restore)(void))
{
	static void (*const handlers[])(int, siginfo_t *, void *) = {
		[SIGACT_FORWARD] = on_forward, [SIGACT_LEAVE] = on_leave,
		[SIGACT_WAKE] = on_wake, [SIGACT_CRASH] = on_crash, [SIGACT_CHECK] = on_check,
	};

	forward_to = program;
	restore_program = restore;
	for (int sig = 1; sig <= SIGRTMAX; sig++) {
		enum sig_action a = signals_action(sig, attach);
		struct sigaction sa;

		if (a == SIGACT_KEEP || inherited_ignore(sig))
			continue;
		memset(&sa, 0, sizeof(sa));
		sigemptyset(&sa.sa_mask);
		/* No SA_RESTART: waitpid must return EINTR. */
		sa.sa_sigaction = handlers[a];
		sa.sa_flags = SA_SIGINFO | (a == SIGACT_CRASH ? SA_RESETHAND : 0);
		if (sig < SIGRTMIN && sig >= 32)
			raw_sigaction(sig, handlers[a]);
		else
			sigaction(sig, &sa, NULL);
	}
	atexit(restore_at_exit);
}
