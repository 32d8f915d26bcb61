#ifndef PTLEAK_PAGECACHE_H
#define PTLEAK_PAGECACHE_H
/*
 * pagecache: another process's memory, read a whole 4 KiB page at a time
 * with process_vm_readv and served from a cache. Pages of the read-only
 * ranges the caller gives (maps.h: code, .eh_frame_hdr, .eh_frame) stay
 * cached until pagecache_flush; every other page (stack, writable data)
 * belongs to one generation only: pagecache_new_generation() (each
 * backtrace starts one) makes them stale. A stack or data page is read
 * together with the page above it (unwinding walks the stack upwards).
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PAGECACHE_PAGE_SIZE 4096u
#define PAGECACHE_PAGE_MASK (~(uint64_t)(PAGECACHE_PAGE_SIZE - 1))

struct maps_ranges;
struct pagecache;

/* A cache of PID's memory; RO is the caller's and read on every miss (it
 * may change, with a pagecache_flush). NULL with errno on failure. */
struct pagecache *pagecache_new(pid_t pid, const struct maps_ranges *ro);
void pagecache_free(struct pagecache *pc);

/* Forget every page (the mappings changed). */
void pagecache_flush(struct pagecache *pc);

/* Pages outside the read-only ranges read before now are stale. From
 * now on, read through thread TID of the process (0: the PID itself): a
 * main thread gone with pthread_exit has no memory to read through. */
void pagecache_new_generation(struct pagecache *pc, pid_t tid);

/* The page at page-aligned ADDR, or NULL if the process has none there.
 * Valid until the next call. */
const unsigned char *pagecache_page(struct pagecache *pc, uint64_t addr);

/* Copy LEN bytes at ADDR (may cross pages). 0, or -1 if unreadable. */
int pagecache_read(struct pagecache *pc, uint64_t addr, void *buf, size_t len);

#endif
