/*
 * alloc_loop: an allocation-heavy program. N rounds of malloc + free of
 * small blocks of varying size, which is the worst case for a tracer that
 * stops on every allocator call (3 stops per round: malloc's entry and
 * return, free's entry). Leaks nothing.
 *
 * usage: alloc_loop N
 */
#include <stdio.h>
#include <stdlib.h>

/* The pointer escapes, so the compiler cannot drop the malloc/free pair. */
void *volatile sink;

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	unsigned long sum = 0;

	for (long i = 0; i < n; i++) {
		char *p = malloc(16 + (i & 255));
		p[0] = (char)i;
		sum += (unsigned char)p[0];
		sink = p;
		free(sink);
	}
	printf("%lu\n", sum);
	return 0;
}
