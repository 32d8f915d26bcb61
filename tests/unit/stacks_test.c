/*
 * stacks_test: the stack table (tracer/stacks.h): the same frames always
 * get the same id, different frames (a prefix, one frame changed, another
 * order) a different one, ids survive growth, a clone and nothing else.
 * Prints "ok ..." / "FAIL ..." lines; exits 1 on any failure.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "tracer/stacks.h"


static bool holds(const struct stacks *s, uint32_t id, const uint64_t *pcs, size_t n)
{
	size_t k;
	const uint64_t *got = stacks_get(s, id, &k);

	return k == n && (n == 0 || (got && !memcmp(got, pcs, n * sizeof(*pcs))));
}

/* Stack number I of the many-stacks test: depth 1..16, frames derived
 * from I so that neighbours share prefixes. */
static size_t make_stack(uint32_t i, uint64_t *pcs)
{
	size_t n = i % 16 + 1;

	for (size_t k = 0; k < n; k++)
		pcs[k] = 0x400000 + (k ? (i / 7) * 16 + k : i);
	return n;
}

int main(void)
{
	struct stacks *s = stacks_new();
	uint64_t a[3] = { 0x401000, 0x402000, 0x403000 };
	uint64_t b[3] = { 0x401000, 0x402000, 0x403001 };	/* last frame differs */
	uint64_t c[3] = { 0x402000, 0x401000, 0x403000 };	/* same frames, other order */
	uint64_t copy[3];

	check(stacks_intern(s, a, 0) == 0 && stacks_count(s) == 0, "no frames: id 0, nothing stored");
	size_t k0;
	check(stacks_get(s, 0, &k0) == NULL && k0 == 0, "id 0 has no frames");
	uint32_t ia = stacks_intern(s, a, 3);
	memcpy(copy, a, sizeof(a));
	check(ia >= 1 && stacks_intern(s, copy, 3) == ia, "the same frames (another array) get the same id %u", ia);
	uint32_t ib = stacks_intern(s, b, 3), ic = stacks_intern(s, c, 3);
	uint32_t ip = stacks_intern(s, a, 2);	/* a prefix */
	check(ib != ia && ic != ia && ic != ib && ip != ia && ip != ib && ip != ic,
	      "a changed frame, another order, a prefix: four different ids");
	check(holds(s, ia, a, 3) && holds(s, ib, b, 3) && holds(s, ic, c, 3) && holds(s, ip, a, 2),
	      "each id gives back its own frames");
	check(stacks_count(s) == 4, "4 stacks stored (%zu)", stacks_count(s));
	size_t kx;
	check(stacks_get(s, 5, &kx) == NULL && kx == 0, "an unknown id has no frames");

	/* Growth: many stacks, interned twice; ids stable across rehashes. */
	enum { N = 50000 };
	uint32_t *ids = malloc(N * sizeof(*ids));
	uint64_t pcs[16];
	bool stable = true, distinct = true, kept = true;
	for (uint32_t i = 0; i < N; i++) {
		size_t n = make_stack(i, pcs);
		ids[i] = stacks_intern(s, pcs, n);
		distinct &= ids[i] == 4 + i + 1;
	}
	for (uint32_t i = 0; i < N; i++) {
		size_t n = make_stack(i, pcs);
		stable &= stacks_intern(s, pcs, n) == ids[i];
		kept &= holds(s, ids[i], pcs, n);
	}
	check(distinct, "%d different stacks get consecutive new ids", N);
	check(stable && kept && stacks_count(s) == 4 + N,
	      "after the table grew: the same ids, the same frames, %zu stacks", stacks_count(s));
	check(holds(s, ia, a, 3) && stacks_intern(s, a, 3) == ia, "the first stack survived growth");

	/* A clone: same ids, and independent of the original. */
	struct stacks *cl = stacks_clone(s);
	bool same = true;
	for (uint32_t i = 0; i < N; i += 97) {
		size_t n = make_stack(i, pcs);
		same &= holds(cl, ids[i], pcs, n) && stacks_intern(cl, pcs, n) == ids[i];
	}
	uint64_t d[1] = { 0xdead };
	uint32_t in_clone = stacks_intern(cl, d, 1);
	check(same && in_clone == 4 + N + 1, "a clone has the same ids and goes on numbering");
	check(stacks_count(s) == 4 + N && stacks_intern(s, d, 1) == in_clone &&
	      stacks_count(cl) == 4 + N + 1, "the original did not see the clone's stack");
	stacks_clear(s);
	check(stacks_count(s) == 0 && stacks_intern(s, b, 3) == 1 && holds(s, 1, b, 3),
	      "after clear: empty, numbering starts again");
	stacks_free(cl);
	stacks_free(s);
	free(ids);
	return failures ? 1 : 0;
}
