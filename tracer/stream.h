#ifndef PTLEAK_STREAM_H
#define PTLEAK_STREAM_H
/*
 * stream: stdio streams for ptleak's reports that no signal can cut.
 *
 * ptleak's handlers are installed without SA_RESTART (waitpid must return
 * EINTR), and a ticker (attach mode always, launch mode with --interval)
 * sends SIGALRM several times a second. A write(2) to a full pipe that a
 * signal interrupts before it wrote anything fails with EINTR, and
 * glibc's stdio then drops what it had buffered: a report piped into a
 * slow reader lost a loss record now and then. These streams write
 * through a loop that restarts on EINTR and goes on after a partial
 * write, so only a real error (EPIPE, ENOSPC) stops them, and ferror()
 * says so as for any stream.
 */
#include <stdio.h>

/* A write-only, fully buffered stream over FD; fclose() closes FD. NULL
 * with errno set if stdio cannot make one. */
FILE *stream_fdopen(int fd);

/* stderr becomes such a stream over descriptor 2, unbuffered as stderr
 * is (fclose() of it leaves the descriptor open). Call once, first. */
void stream_stderr(void);

#endif
