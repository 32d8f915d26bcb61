/*
 * big_heap: holds SIZE_MB of live blocks in COUNT blocks at exit, linked
 * into a list from a global (so all still reachable), for timing the
 * reachability scan. Each block's first word points to the next block.
 *
 * usage: big_heap COUNT SIZE_MB
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void **head;

int main(int argc, char **argv)
{
	long count = argc > 1 ? atol(argv[1]) : 1000000;
	long mb = argc > 2 ? atol(argv[2]) : 1024;
	size_t size = (size_t)(mb << 20) / (size_t)count;
	void **prev = NULL;

	for (long i = 0; i < count; i++) {
		void **b = malloc(size);
		memset(b, 0, size);
		b[0] = prev;
		prev = b;
	}
	head = prev;
	printf("%ld blocks of %zu bytes\n", count, size);
	return 0;
}
