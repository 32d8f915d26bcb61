#ifndef PTLEAK_PREATTACH_H
#define PTLEAK_PREATTACH_H
/*
 * preattach: at -p, the blocks the program already holds when ptleak
 * attaches. With every thread stopped, before anything is hooked, glibc's
 * heap is walked (glibc_heap.h) and each live block enters P's heap as an
 * OP_BEFORE_ATTACH event: it has a size but no stack, a later free of it
 * is known, and the scan classifies it like any other block, so a leak
 * from before the attach is found and leak kinds are exact.
 *
 * When the program's malloc is not glibc's (another module defines
 * malloc: jemalloc, tcmalloc, mimalloc...; or glibc's state is not found:
 * a static musl binary), or its heap does not hold together, nothing is
 * added: p->before_why says why, and the scan stays conservative.
 */
struct process;

/*
 * Take the inventory of P (attached, every thread stopped, symbols
 * read). Sets p->before_known, or p->before_why. Returns the number of
 * blocks added, -1 if none could be known.
 */
long preattach_inventory(struct process *p);

#endif
