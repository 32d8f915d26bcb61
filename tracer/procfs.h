#ifndef PTLEAK_PROCFS_H
#define PTLEAK_PROCFS_H
/*
 * procfs: what the tracer reads from /proc about a process or thread.
 * procfs_task_status, procfs_status_value and procfs_sig_pending use only
 * open, read and close (the emergency detach runs in a signal handler);
 * the others may allocate.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* /proc/PID/task/TID/status into BUF (NUL-terminated). false if gone. */
bool procfs_task_status(pid_t pid, pid_t tid, char *buf, size_t size);

/* The value of status line FIELD ("SigPnd", "Tgid") in BUF, NULL if none:
 * matched at a line's start, so "Tgid" is not "NStgid". */
const char *procfs_status_value(const char *buf, const char *field);

/* Whether signal SIG is queued for the thread (SigPnd) of status BUF. */
bool procfs_sig_pending(const char *buf, int sig);

/* Whether SIG is queued for thread TID of PID, read now. */
bool procfs_task_sig_pending(pid_t pid, pid_t tid, int sig);

/* Numeric field FIELD ("Tgid", "TracerPid") of /proc/PID/status; -1 if
 * absent or gone. */
long procfs_status_field(pid_t pid, const char *field);

/* Thread TID of PID is gone, a zombie, or has SIGKILL pending (zapped by
 * another thread's exit_group or a fatal signal). */
bool procfs_thread_dying(pid_t pid, pid_t tid);

/* /proc/PID/comm into BUF without the newline; "?" if unreadable. */
void procfs_comm(pid_t pid, char *buf, size_t size);

/* PID's command line as a NULL-terminated array of strings (all owned by
 * the caller); {"?"} if unreadable or empty. Empty strings and spaces at
 * its end are dropped (argv rewritten as a title, padded): what ps shows. */
char **procfs_cmdline(pid_t pid);

/* State letter ('R', 'S', 'Z', ...) and flags (PF_*) of /proc/PID/stat;
 * -1 if there is no such process. */
int procfs_stat(pid_t pid, char *state, unsigned long *flags);

#endif
