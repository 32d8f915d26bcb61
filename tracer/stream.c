/*
 * stream: stdio over a write loop that survives signals (see stream.h).
 */
#include "tracer/stream.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

/* The descriptor is the cookie itself; stderr's is marked so that its
 * fclose leaves it open. */
#define KEEP_OPEN ((intptr_t)1 << 32)

static ssize_t write_all(void *cookie, const char *buf, size_t len)
{
	int fd = (int)((intptr_t)cookie & ~KEEP_OPEN);
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)	/* stdio marks the stream failed: ferror() */
			return done ? (ssize_t)done : -1;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int close_fd(void *cookie)
{
	intptr_t c = (intptr_t)cookie;

	return c & KEEP_OPEN ? 0 : close((int)c);
}

static FILE *open_cookie(intptr_t cookie)
{
	cookie_io_functions_t io = { .write = write_all, .close = close_fd };

	return fopencookie((void *)cookie, "w", io);
}

FILE *stream_fdopen(int fd)
{
	return open_cookie(fd);
}

void stream_stderr(void)
{
	FILE *f = open_cookie(STDERR_FILENO | KEEP_OPEN);

	/* glibc's stderr is an ordinary variable, meant to be assignable. */
	if (f && setvbuf(f, NULL, _IONBF, 0) == 0)
		stderr = f;
}
