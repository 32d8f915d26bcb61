#ifndef PTLEAK_FRAMES_H
#define PTLEAK_FRAMES_H
/*
 * frames: the symbolized frames of one process's interned stacks.
 *
 * Symbolizing is lazy (only what a report shows), with one exception: when
 * a module is unmapped (dlclose), the frames of recorded stacks that point
 * into it are resolved at once and kept, before another module mapped at
 * the same addresses could claim them. Call frames_freeze_unmapped after
 * every symbols_refresh.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "symbols/symbols.h"

struct stacks;
struct frames;

struct frames *frames_new(void);	/* aborts on out of memory */
void frames_free(struct frames *f);	/* NULL is fine */

/* The module list of SYMS just changed: resolve and keep the frames of
 * STACKS that point into the modules it found unmapped. */
void frames_freeze_unmapped(struct frames *f, struct symbols *syms,
			    const struct stacks *stacks);

/* Frame I of stack ID (innermost is 0) as the frames of its inline chain
 * (symbols_describe_inlined), at most MAX (>= 1) into OUT; returns how
 * many. A frozen frame is its out-of-line function alone. Cannot fail:
 * unknown parts are NULL/0. Strings are owned by SYMS. */
size_t frames_describe(const struct frames *f, struct symbols *syms,
		       const struct stacks *stacks, uint32_t id, size_t i,
		       struct symbol_info *out, size_t max);

#endif
