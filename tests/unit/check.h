/*
 * check.h: the one reporting helper of the C unit tests (tests/unit/):
 * check(OK, FORMAT, ...) prints "ok ..." or "FAIL: ..." and counts the
 * failures in `failures`; a test exits 1 if any.
 */
#ifndef PTLEAK_UNIT_CHECK_H
#define PTLEAK_UNIT_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int failures;

__attribute__((format(printf, 2, 3), unused))
static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	printf(ok ? "ok " : "FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (!ok)
		failures++;
}

#endif
