/*
 * compute: a compute-heavy program with a handful of allocations (a sieve
 * of primes in one big block, repeated). What a tracer costs a program
 * that rarely calls the allocator.
 *
 * usage: compute ROUNDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 20;
	const long n = 4000000;
	long primes = 0;

	for (long r = 0; r < rounds; r++) {
		char *sieve = malloc(n);
		memset(sieve, 1, n);
		for (long i = 2; i * i < n; i++)
			if (sieve[i])
				for (long j = i * i; j < n; j += i)
					sieve[j] = 0;
		primes = 0;
		for (long i = 2; i < n; i++)
			primes += sieve[i];
		free(sieve);
	}
	printf("%ld\n", primes);
	return 0;
}
