#ifndef PTLEAK_SIGNALS_H
#define PTLEAK_SIGNALS_H
/*
 * signals: what every signal sent to ptleak does, in one table
 * (signals.c), so that no signal whose default action would kill ptleak
 * takes the traced program with it.
 *
 * Both modes: SIGUSR1 asks for a leak check (ptleak --check sends it);
 * SIGALRM is ptleak's own ticker.
 *
 * Attach mode (-p): every other such signal makes ptleak leave: detach
 * cleanly (code, return addresses and pages put back), report, exit 0. A crash (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
 * SIGABRT, SIGSYS, SIGTRAP) restores the program through /proc/PID/mem
 * from the handler, then ptleak dies of it.
 *
 * Launch mode: ptleak is a wrapper, as time(1) is. A signal sent to
 * ptleak by a process (kill, timeout(1)) is passed on to the program; one
 * the kernel raised (a terminal's Ctrl-C or Ctrl-\, which reach the
 * program by themselves as they go to the whole foreground group, an
 * rlimit, a write of ours to a closed pipe) is not. A crash restores the
 * program, detaches it, and ptleak dies: the program runs on untraced.
 *
 * SIGHUP ignored when ptleak starts (nohup) stays ignored.
 *
 * Only SIGKILL cannot be handled: in trap mode the int3s stay in the
 * program and its next allocator call dies of SIGTRAP.
 *
 * The handlers only set flags and count; the event loop acts on them.
 */
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

enum sig_action {
	SIGACT_KEEP,		/* left as it is (job control, SIGCHLD, ...) */
	SIGACT_FORWARD,		/* launch: to the program, if a process sent it */
	SIGACT_LEAVE,		/* attach: detach cleanly, report, exit */
	SIGACT_WAKE,		/* only wakes the event loop: the ticker */
	SIGACT_CHECK,		/* a leak check now (SIGUSR1, ptleak --check) */
	SIGACT_CRASH,		/* restore the program, then die of the signal */
};

/* Incremented by every handler: a wait polling for stops gives up. */
extern volatile sig_atomic_t signals_caught;
/* SIGUSR1 asked for a leak check; the loop clears it. */
extern volatile sig_atomic_t signals_check;
/* The signal that asked ptleak to leave (attach mode), 0 if none. */
extern volatile sig_atomic_t signals_leave;

/*
 * First thing in main: SIGUSR1 (ptleak --check's) asks for a leak check
 * from now on, instead of killing ptleak before it traces anything (the
 * check comes once the program runs). SA_RESTART: ptleak may be reading
 * its suppressions from a pipe.
 */
void signals_early(void);
/* In the child about to exec the program: SIGUSR1 as ptleak inherited it
 * (ignored stays ignored, which a handler's reset at exec would undo). */
void signals_early_undo(void);

/*
 * Install the table for the mode. PROGRAM (launch) receives forwarded
 * signals. RESTORE gives the program its code back and detaches it; it
 * runs in a signal handler (only syscalls and ptleak's own memory) before
 * ptleak dies of a crash, and at exit. Call after the fork, so that the
 * program inherits ptleak's original dispositions.
 */
void signals_install(bool attach, pid_t program, void (*restore)(void));

#endif
