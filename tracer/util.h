#ifndef PTLEAK_UTIL_H
#define PTLEAK_UTIL_H
/*
 * util: the few helpers every module needs. Only main and setup code may
 * die(); library code returns errors. Out of memory is the exception: the
 * x*alloc helpers abort with a message, as git's do.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

/* ptleak's own failure: exit status 125 (see --help). */
#define EXIT_PTLEAK_FAILURE 125

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* "ptleak: " + message + newline on stderr. */
void error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* error(), then exit(EXIT_PTLEAK_FAILURE). */
noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Debug trace on stderr when PTLEAK_DEBUG is set in ptleak's environment. */
void debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int debug_enabled;

uint64_t now_ns(void);	/* CLOCK_MONOTONIC */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
