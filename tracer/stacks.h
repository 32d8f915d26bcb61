#ifndef PTLEAK_STACKS_H
#define PTLEAK_STACKS_H
/*
 * stacks: every distinct call stack stored once. A block keeps only a
 * stack id; addresses are symbolized only for the stacks the report shows.
 */
#include <stddef.h>
#include <stdint.h>

struct stacks;

struct stacks *stacks_new(void);	/* aborts on out of memory */
void stacks_free(struct stacks *s);
void stacks_clear(struct stacks *s);
struct stacks *stacks_clone(const struct stacks *s);	/* same ids */

/* Id (>= 1) of the stack PCS[0..N), innermost first; the same array
 * always gets the same id. N == 0 gives 0. */
uint32_t stacks_intern(struct stacks *s, const uint64_t *pcs, size_t n);

/* The frames of stack ID; *n gets their count. NULL and 0 for id 0. */
const uint64_t *stacks_get(const struct stacks *s, uint32_t id, size_t *n);

size_t stacks_count(const struct stacks *s);

#endif
