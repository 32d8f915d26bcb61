#ifndef PTLEAK_CHECK_CMD_H
#define PTLEAK_CHECK_CMD_H
/*
 * check_cmd: `ptleak --check PID`, a leak check asked of a running ptleak
 * from another terminal. PID is the traced program (its TracerPid is the
 * ptleak to ask) or that ptleak itself; the ptleak gets SIGUSR1 and writes
 * the check to its own report stream. Nothing is waited for.
 */

/* Ask; returns ptleak's exit status (0, or 125 with a one-line error). */
int check_cmd_run(int pid);

#endif
