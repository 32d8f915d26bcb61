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
 * A static musl binary's mallocng heap is read the same way (musl_heap.h).
 * When the program's malloc is neither (another module defines malloc:
 * jemalloc, tcmalloc, mimalloc...; or neither allocator's state is found),
 * or its heap does not hold together, nothing is added: p->before_why
 * says why, and the scan stays conservative.
 */
#include <stdbool.h>
#include <stddef.h>

struct process;
struct preattach;

/*
 * Read the inventory of P (attached, every thread stopped, symbols read):
 * only the reading needs the program stopped. NULL if nothing can be
 * known: p->before_why says why, and *TORN whether it was the C library's
 * heap caught half updated (a thread stopped inside malloc or free): then
 * reading it again after the threads ran a moment may succeed.
 */
struct preattach *preattach_read(struct process *p, bool *torn);

/* PA (NULL too) unused. */
void preattach_discard(struct preattach *pa);

/*
 * The blocks of PA into P's heap, after the threads were resumed but
 * before any of their events is handled (a free of such a block must
 * find it); sets p->before_known, frees PA. Returns the number of blocks.
 */
size_t preattach_record(struct process *p, struct preattach *pa);

/*
 * At a scan of P (every thread stopped): forget the blocks from before the
 * attach that glibc no longer holds live. A thread inside free (or a
 * moving realloc) when ptleak attached released its block after the walk
 * without a hooked call: without this it would stay in the table, lost.
 * Walks the heap again; nothing changes if that walk fails. Returns the
 * number of blocks forgotten.
 */
size_t preattach_verify(struct process *p);

#endif
