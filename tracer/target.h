#ifndef PTLEAK_TARGET_H
#define PTLEAK_TARGET_H
/*
 * target: what -p PID names, checked before anything else happens (no
 * report file is opened for a process that cannot be traced). Setup code:
 * dies with one line and status 125 when PID is no process, a zombie or
 * a kernel thread, saying which; the other refusals (another tracer,
 * permissions) are found by attaching (tracer.c).
 */
#include <sys/types.h>

void target_check(pid_t pid);

#endif
