/*
 * pagecache: whole pages of another process (see pagecache.h).
 */
#include "symbols/pagecache.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "symbols/maps.h"

#define N_STACK_PAGES 32	/* volatile pages per generation */
#define MAX_RO_PAGES 4096	/* 16 MiB of cached code and tables */
#define RO_GEN 0		/* generation of pages valid until flush */

struct page {
	uint64_t addr;
	uint64_t gen;		/* RO_GEN, or the generation that read it */
	unsigned char data[PAGECACHE_PAGE_SIZE];
};

struct pagecache {
	pid_t pid;
	pid_t tid;		/* reads go through it (a live thread) */
	const struct maps_ranges *ro;
	uint64_t gen;			/* current generation, never RO_GEN */
	struct page *last;		/* last page served */
	struct page **ro_pages;		/* hash by address, power of two */
	size_t n_ro_pages, cap_ro_pages;
	struct page *stack;		/* N_STACK_PAGES volatile pages */
	size_t n_stack;			/* used in this generation */
};

struct pagecache *pagecache_new(pid_t pid, const struct maps_ranges *ro)
{
	struct pagecache *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->pid = pid;
	pc->tid = pid;
	pc->ro = ro;
	pc->gen = RO_GEN + 1;
	pc->cap_ro_pages = 2 * MAX_RO_PAGES;
	if (!(pc->ro_pages = calloc(pc->cap_ro_pages, sizeof(*pc->ro_pages))) ||
	    !(pc->stack = calloc(N_STACK_PAGES, sizeof(*pc->stack)))) {
		pagecache_free(pc);
		errno = ENOMEM;
		return NULL;
	}
	return pc;
}

static void drop_ro_pages(struct pagecache *pc)
{
	for (size_t i = 0; i < pc->cap_ro_pages; i++)
		free(pc->ro_pages[i]);
	memset(pc->ro_pages, 0, pc->cap_ro_pages * sizeof(*pc->ro_pages));
	pc->n_ro_pages = 0;
	pc->last = NULL;
}

void pagecache_free(struct pagecache *pc)
{
	if (!pc)
		return;
	if (pc->ro_pages)
		drop_ro_pages(pc);
	free(pc->ro_pages);
	free(pc->stack);
	free(pc);
}

void pagecache_flush(struct pagecache *pc)
{
	drop_ro_pages(pc);
	pagecache_new_generation(pc, pc->tid);
}

void pagecache_new_generation(struct pagecache *pc, pid_t tid)
{
	pc->tid = tid ? tid : pc->pid;
	pc->gen++;
	pc->n_stack = 0;
}

static size_t ro_slot(const struct pagecache *pc, uint64_t addr)
{
	size_t mask = pc->cap_ro_pages - 1;
	size_t i = (size_t)((addr >> 12) * 0x9e3779b97f4a7c15ULL >> 20) & mask;

	while (pc->ro_pages[i] && pc->ro_pages[i]->addr != addr)
		i = (i + 1) & mask;
	return i;
}

static bool read_page(const struct pagecache *pc, uint64_t addr, void *buf)
{
	struct iovec local = { buf, PAGECACHE_PAGE_SIZE };
	struct iovec remote = { (void *)(uintptr_t)addr, PAGECACHE_PAGE_SIZE };

	return process_vm_readv(pc->tid, &local, 1, &remote, 1, 0) ==
	       (ssize_t)PAGECACHE_PAGE_SIZE;
}

/*
 * A stack or data page, read with the page above it in the same call:
 * unwinding walks the stack upwards, and a backtrace that crosses a page
 * boundary would otherwise pay a second process_vm_readv. A missing page
 * above only shortens the read.
 */
static const unsigned char *get_volatile_page(struct pagecache *pc, uint64_t addr)
{
	struct page *p, *q;
	struct iovec local[2], remote;
	ssize_t got;

	/* Deeper than N_STACK_PAGES pages: start over, keeps it correct. */
	if (pc->n_stack + 2 > N_STACK_PAGES)
		pc->n_stack = 0;
	p = &pc->stack[pc->n_stack];
	q = p + 1;
	/* A failed read may leave them half written: no longer pages. */
	p->addr = q->addr = 1;
	if (pc->last == p || pc->last == q)
		pc->last = NULL;
	local[0].iov_base = p->data;
	local[0].iov_len = PAGECACHE_PAGE_SIZE;
	local[1].iov_base = q->data;
	local[1].iov_len = PAGECACHE_PAGE_SIZE;
	remote.iov_base = (void *)(uintptr_t)addr;
	remote.iov_len = 2 * PAGECACHE_PAGE_SIZE;
	got = process_vm_readv(pc->tid, local, 2, &remote, 1, 0);
	if (got < (ssize_t)PAGECACHE_PAGE_SIZE)
		return NULL;
	p->addr = addr;
	p->gen = pc->gen;
	pc->n_stack++;
	if (got == 2 * (ssize_t)PAGECACHE_PAGE_SIZE) {
		q->addr = addr + PAGECACHE_PAGE_SIZE;
		q->gen = pc->gen;
		pc->n_stack++;
	}
	pc->last = p;
	return p->data;
}

const unsigned char *pagecache_page(struct pagecache *pc, uint64_t addr)
{
	struct page *p = pc->last;
	size_t i;

	if (p && p->addr == addr && (p->gen == RO_GEN || p->gen == pc->gen))
		return p->data;
	for (i = 0; i < pc->n_stack; i++)
		if (pc->stack[i].addr == addr) {
			pc->last = &pc->stack[i];
			return pc->stack[i].data;
		}
	if (maps_contains(pc->ro, addr)) {
		i = ro_slot(pc, addr);
		if (pc->ro_pages[i]) {
			pc->last = pc->ro_pages[i];
			return pc->last->data;
		}
		if (pc->n_ro_pages >= MAX_RO_PAGES) {
			drop_ro_pages(pc);
			i = ro_slot(pc, addr);
		}
		if (!(p = malloc(sizeof(*p))))
			return NULL;
		if (!read_page(pc, addr, p->data)) {
			free(p);
			return NULL;
		}
		p->addr = addr;
		p->gen = RO_GEN;
		pc->ro_pages[i] = p;
		pc->n_ro_pages++;
		pc->last = p;
		return p->data;
	}
	return get_volatile_page(pc, addr);
}

int pagecache_read(struct pagecache *pc, uint64_t addr, void *buf, size_t len)
{
	unsigned char *out = buf;

	while (len > 0) {
		uint64_t page = addr & PAGECACHE_PAGE_MASK;
		size_t off = addr - page;
		size_t n = PAGECACHE_PAGE_SIZE - off < len ? PAGECACHE_PAGE_SIZE - off : len;
		const unsigned char *data = pagecache_page(pc, page);

		if (!data)
			return -1;
		memcpy(out, data + off, n);
		out += n;
		addr += n;
		len -= n;
	}
	return 0;
}
