/*
 * alloc_threads: T threads, each doing N rounds of malloc + free of small
 * blocks (the multi-threaded allocation-heavy workload, W4). Leaks
 * nothing.
 *
 * usage: alloc_threads T N
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long rounds;

static void *work(void *arg)
{
	unsigned long sum = 0;
	void *volatile sink;

	for (long i = 0; i < rounds; i++) {
		char *p = malloc(16 + (i & 255));
		p[0] = (char)i;
		sum += (unsigned char)p[0];
		sink = p;
		free(sink);
	}
	return (void *)sum;
}

int main(int argc, char **argv)
{
	int t = argc > 1 ? atoi(argv[1]) : 4;
	pthread_t th[64];
	unsigned long sum = 0;

	rounds = argc > 2 ? atol(argv[2]) : 250000;
	if (t < 1 || t > 64)
		return 2;
	for (int i = 0; i < t; i++)
		pthread_create(&th[i], NULL, work, NULL);
	for (int i = 0; i < t; i++) {
		void *r;
		pthread_join(th[i], &r);
		sum += (unsigned long)r;
	}
	printf("%lu\n", sum);
	return 0;
}
