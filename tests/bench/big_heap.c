/*
 * big_heap: holds SIZE_MB of live blocks in COUNT blocks at exit, linked
 * into a list from a global (so all still reachable). For timing the
 * reachability scan, and for measuring ptleak's own memory per live block.
 * Each block's first word points to the next block.
 *
 * usage: big_heap COUNT SIZE_MB [wait]
 *
 * With "wait" (for ptleak -p): prints "ready", reads a line from stdin,
 * allocates, prints "allocated", then holds the blocks until stdin ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void **head;

int main(int argc, char **argv)
{
	long count = argc > 1 ? atol(argv[1]) : 1000000;
	long mb = argc > 2 ? atol(argv[2]) : 1024;
	int wait = argc > 3 && !strcmp(argv[3], "wait");
	size_t size = (size_t)(mb << 20) / (size_t)(count ? count : 1);
	void **prev = NULL;
	char line[64];

	if (size < sizeof(void *))
		size = sizeof(void *);
	if (wait) {
		printf("ready\n");
		fflush(stdout);
		if (!fgets(line, sizeof line, stdin))
			return 1;
	}
	for (long i = 0; i < count; i++) {
		void **b = malloc(size);
		memset(b, 0, size);
		b[0] = prev;
		prev = b;
	}
	head = prev;
	printf("%s%ld blocks of %zu bytes\n", wait ? "allocated " : "", count, size);
	if (wait) {
		fflush(stdout);
		while (fgets(line, sizeof line, stdin))
			;
	}
	return 0;
}
