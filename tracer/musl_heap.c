/*
 * musl_heap: walking mallocng's meta areas from outside (see musl_heap.h).
 *
 * Layouts (x86-64, musl 1.2.1 - 1.2.5):
 *   struct malloc_context: secret (8), pagesize (8), init_done, mmap_counter
 *     (4 each), free_meta_head, avail_meta (8 each), three size_t counts,
 *     meta_area_head at 64, meta_area_tail, ...
 *   struct meta_area: check (the secret), next, nslots (int), then the
 *     metas (40 bytes each) from offset 24.
 *   struct meta: prev, next, mem (its group: NULL when the meta is free),
 *     avail_mask, freed_mask (int each), then one word of bit fields:
 *     last_idx:5, freeable:1, sizeclass:6, maplen (pages, the rest).
 *   struct group: its meta, active_idx, padding to 16, then the slots;
 *     a slot's stride is size_classes[sizeclass] * 16, or, for a single
 *     mmapped slot (last_idx 0, maplen set), maplen pages less 16.
 *   A block at P: P[-3] holds the slot index (5 bits) and the reserved
 *     count (3 bits: 5 means "stored as a 32-bit word at the slot's end
 *     minus 4"; 6, that the slot holds a smaller group, whose own meta
 *     lists it; 7 at the slot's start means "entered at an offset", the
 *     offset in 16-byte units in the 16 bits at P[-2]); P[-2] holds the
 *     block's offset from the group's slots in 16-byte units (with P[-4]
 *     set, 32 bits at P[-8]); the slot ends 4 bytes before the next one's
 *     start.
 */
#include "tracer/musl_heap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracer/proc.h"
#include "tracer/util.h"

#define CTX_META_AREA_HEAD 64u
#define AREA_SLOTS 24u
#define META_SIZE 40u
#define UNIT 16u
#define IB 4u
#define NCLASSES 48u
#define MAX_AREAS 65536u

struct meta {
	uint64_t prev, next, mem;
	uint32_t avail_mask, freed_mask;
	uint64_t bits;
};

static int why(struct glibc_heap *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int why(struct glibc_heap *h, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(h->why, sizeof(h->why), fmt, ap);
	va_end(ap);
	return -1;
}

static void add(struct glibc_heap *h, size_t *cap, uint64_t ptr, uint64_t size)
{
	if (h->n == *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		h->blocks = xrealloc(h->blocks, *cap * sizeof(*h->blocks));
	}
	h->blocks[h->n++] = (struct glibc_block){ ptr, size };
	h->bytes += size;
}

/* The block in the in-use slot [SLOT, SLOT + STRIDE) of group GROUP: its
 * address and size into *PTR, *SIZE. false if the header does not hold
 * together. */
static bool slot_block(struct process *p, uint64_t storage, uint64_t slot, uint64_t stride,
		       uint64_t *ptr, uint64_t *size)
{
	uint8_t hdr[4];
	uint64_t b = slot, end = slot + stride - IB;

	if (proc_read(p, b - 4, hdr, 4) < 0)
		return false;
	if ((hdr[1] >> 5) == 7) {
		/* Entered at an offset: the real header is OFF units in. */
		uint16_t off = (uint16_t)(hdr[2] | hdr[3] << 8);
		b += (uint64_t)UNIT * off;
		if (b >= end || proc_read(p, b - 4, hdr, 4) < 0)
			return false;
	}
	uint64_t units = (uint16_t)(hdr[2] | hdr[3] << 8);
	if (hdr[0]) {
		/* A big offset: 32 bits, in the 4 bytes before. */
		uint32_t u32;
		if (proc_read(p, b - 8, &u32, 4) < 0)
			return false;
		units = u32;
	}
	if (storage + (uint64_t)UNIT * units != b)
		return false;	/* the header's offset back to the group's slots */
	uint64_t reserved = hdr[1] >> 5;
	if (reserved == 6) {
		*ptr = 0;	/* a smaller group nested in this slot: its own meta has it */
		return true;
	}
	if (reserved >= 5) {
		uint32_t r;
		if (reserved != 5 || proc_read(p, end - 4, &r, 4) < 0)
			return false;
		reserved = r;
	}
	if (reserved > end - b)
		return false;
	*ptr = b;
	*size = end - reserved - b;
	return true;
}

int musl_heap_walk(struct process *p, uint64_t ctx, uint64_t classes, struct glibc_heap *h)
{
	uint16_t size_classes[NCLASSES];
	uint64_t secret, area;
	size_t cap = 0;

	memset(h, 0, sizeof(*h));
	h->allocator = "musl";
	if (proc_read(p, classes, size_classes, sizeof(size_classes)) < 0 ||
	    proc_read_u64(p, ctx, &secret) < 0 ||
	    proc_read_u64(p, ctx + CTX_META_AREA_HEAD, &area) < 0)
		return why(h, "cannot read musl's malloc state: %s", strerror(errno));
	for (unsigned n_areas = 0; area; n_areas++) {
		uint64_t check, next;
		int32_t nslots;
		if (n_areas > MAX_AREAS || proc_read_u64(p, area, &check) < 0 ||
		    proc_read_u64(p, area + 8, &next) < 0 ||
		    proc_read(p, area + 16, &nslots, 4) < 0 || check != secret || nslots < 0)
			return why(h, "a meta area of musl's malloc (0x%" PRIx64 ") does not hold "
				   "together", area);
		for (int32_t i = 0; i < nslots; i++) {
			struct meta m;
			uint64_t a = area + AREA_SLOTS + (uint64_t)i * META_SIZE;
			if (proc_read(p, a, &m, sizeof(m)) < 0)
				return why(h, "cannot read musl's meta at 0x%" PRIx64, a);
			if (!m.mem)
				continue;	/* a free meta */
			unsigned last_idx = m.bits & 31, sizeclass = (m.bits >> 6) & 63;
			uint64_t maplen = m.bits >> 12, stride;
			if (!last_idx && maplen)
				stride = maplen * 4096 - UNIT;
			else if (sizeclass < NCLASSES)
				stride = (uint64_t)UNIT * size_classes[sizeclass];
			else
				return why(h, "musl's meta at 0x%" PRIx64 " has size class %u", a,
					   sizeclass);
			uint64_t storage = m.mem + UNIT;
			for (unsigned k = 0; k <= last_idx; k++) {
				uint64_t ptr, size;
				if ((m.avail_mask | m.freed_mask) & (1u << k))
					continue;
				if (!slot_block(p, storage, storage + stride * k, stride, &ptr, &size))
					return why(h, "a slot of musl's group at 0x%" PRIx64 " does not "
						   "hold together", m.mem);
				if (ptr)
					add(h, &cap, ptr, size);
			}
		}
		area = next;
	}
	/* The metas are in allocation order, not by address. */
	qsort(h->blocks, h->n, sizeof(*h->blocks), glibc_block_cmp);
	return 0;
}
