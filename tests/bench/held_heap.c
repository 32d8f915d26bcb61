/*
 * held_heap.c N: a program that has been running a while: N blocks of 16
 * to 128 bytes malloc'ed, every third freed again (tcache, fastbins and
 * bins hold those), the rest kept; prints "ready" and waits for stdin to
 * close. For the bench of ptleak -p: how long reading the heap from
 * before the attach keeps the program stopped, and a leak check on it.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	void **v = malloc((size_t)n * sizeof(*v));

	for (long i = 0; i < n; i++)
		v[i] = malloc(16 + (size_t)(i % 8) * 16);
	for (long i = 0; i < n; i += 3) {
		free(v[i]);
		v[i] = NULL;
	}
	printf("ready\n");
	fflush(stdout);
	while (getchar() != EOF)
		;
	return 0;
}
