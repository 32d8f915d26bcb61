/*
 * ehframe: unwind tables from .eh_frame_hdr, or built from .eh_frame (see
 * ehframe.h).
 */
#include "symbols/ehframe.h"

#include <dwarf.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>

#include "symbols/cfi_parse.h"
#include "symbols/pagecache.h"
#include "symbols/symbols.h"

void eh_tables_init(struct eh_tables *e, struct symbols *syms, struct pagecache *pc)
{
	*e = (struct eh_tables){ .syms = syms, .pc = pc, .synth_next = EH_SYNTH_BASE };
}

void eh_tables_free(struct eh_tables *e)
{
	eh_tables_drop(e);
	free(e->v);
	e->v = NULL;
	e->cap = 0;
}

/*
 * Fill T from the module's .eh_frame_hdr: version 1, the encodings of
 * eh_frame_ptr, fde_count and the table, then eh_frame_ptr, fde_count
 * and a sorted table of (initial location, FDE address) pairs, both
 * datarel sdata4 relative to the header: the only layout libunwind's
 * remote table search reads. False for anything else.
 */
static bool hdr_table(struct eh_tables *e, const struct symbols_module *m,
		      struct eh_table *t)
{
	uint8_t hdr[4];
	uint64_t p = m->eh_frame_hdr, fde_count = 0;
	size_t sz;

	if (!m->eh_frame_hdr || pagecache_read(e->pc, p, hdr, sizeof(hdr)) < 0)
		return false;
	if (hdr[0] != 1 || hdr[2] == DW_EH_PE_omit ||
	    hdr[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
		return false;
	p += 4;
	if (hdr[1] != DW_EH_PE_omit) {
		if (!(sz = cfi_encoded_size(hdr[1])))
			return false;
		p += sz;
	}
	if ((hdr[2] & 0x70) != 0 || !(sz = cfi_encoded_size(hdr[2])))
		return false;
	switch (sz) {
	case 2: {
		uint16_t v;

		if (pagecache_read(e->pc, p, &v, 2) < 0)
			return false;
		fde_count = v;
		break;
	}
	case 4: {
		uint32_t v;

		if (pagecache_read(e->pc, p, &v, 4) < 0)
			return false;
		fde_count = v;
		break;
	}
	default:
		if (pagecache_read(e->pc, p, &fde_count, 8) < 0)
			return false;
		break;
	}
	p += sz;
	if (fde_count == 0 ||
	    (m->eh_frame_hdr_size &&
	     p + fde_count * 8 > m->eh_frame_hdr + m->eh_frame_hdr_size))
		return false;
	memset(&t->di, 0, sizeof(t->di));
	t->di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
	t->di.start_ip = m->start;
	t->di.end_ip = m->end;
	t->di.u.rti.segbase = m->eh_frame_hdr;
	t->di.u.rti.table_data = p;
	/* In words, whatever the entry size: 8-byte entries, 8-byte words. */
	t->di.u.rti.table_len = fde_count * 8 / sizeof(unw_word_t);
	return true;
}

/* ---- .eh_frame without a header: the table built here ---- */

static int cmp_entry(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

/*
 * Build the binary search table .eh_frame_hdr would hold from the
 * module's .eh_frame section (read from its ELF file, which is what is
 * mapped): sorted (initial pc, FDE) pairs relative to .eh_frame.
 */
static bool synth_table(struct eh_tables *e, const struct symbols_module *m,
			struct eh_table *t)
{
	struct cfi_eh eh;
	struct cfi_fde fde;
	size_t n = 0, cap = 0;
	uint64_t seg;
	int32_t *ents = NULL;

	if (cfi_eh_open(&eh, m->elf) < 0)
		return false;
	seg = eh.addr + m->bias;
	while (cfi_eh_next(&eh, &fde)) {
		int64_t rel = (int64_t)(fde.pc + m->bias - seg);

		if (rel != (int32_t)rel || fde.at - eh.base > INT32_MAX)
			continue;
		if (n == cap) {
			int32_t *grown;

			cap = cap ? cap * 2 : 256;
			if (!(grown = realloc(ents, cap * 2 * sizeof(*grown)))) {
				free(ents);
				return false;
			}
			ents = grown;
		}
		ents[2 * n] = (int32_t)rel;
		ents[2 * n + 1] = (int32_t)(fde.at - eh.base);
		n++;
	}
	if (!n) {
		free(ents);
		return false;
	}
	qsort(ents, n, 2 * sizeof(*ents), cmp_entry);
	t->synth = ents;
	t->synth_bytes = n * 2 * sizeof(*ents);
	t->synth_addr = e->synth_next;
	e->synth_next += (t->synth_bytes + 2 * PAGECACHE_PAGE_SIZE) & PAGECACHE_PAGE_MASK;
	memset(&t->di, 0, sizeof(t->di));
	t->di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
	t->di.start_ip = m->start;
	t->di.end_ip = m->end;
	t->di.u.rti.segbase = seg;
	t->di.u.rti.table_data = t->synth_addr;
	t->di.u.rti.table_len = t->synth_bytes / sizeof(unw_word_t);
	return true;
}

/* Serve a word of a synthetic table to libunwind. */
int eh_tables_synth_read(const struct eh_tables *e, uint64_t addr, unw_word_t *valp)
{
	for (size_t i = 0; i < e->n; i++) {
		const struct eh_table *t = &e->v[i];
		uint64_t off = addr - t->synth_addr;

		if (t->synth && addr >= t->synth_addr && off < t->synth_bytes) {
			size_t n = t->synth_bytes - off < sizeof(*valp)
				? t->synth_bytes - off : sizeof(*valp);

			*valp = 0;
			memcpy(valp, (const unsigned char *)t->synth + off, n);
			return 0;
		}
	}
	return -UNW_EINVAL;
}

void eh_tables_drop(struct eh_tables *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i].synth);
	e->n = 0;
	e->last = 0;
	e->synth_next = EH_SYNTH_BASE;
}

/* The cached table of the module under IP, made on first use. */
struct eh_table *eh_tables_at(struct eh_tables *e, uint64_t ip)
{
	struct symbols_module m;
	struct eh_table *t;

	if (e->n) {
		t = &e->v[e->last];
		if (ip >= t->start && ip < t->end)
			return t;
		for (size_t i = 0; i < e->n; i++) {
			t = &e->v[i];
			if (ip >= t->start && ip < t->end) {
				e->last = i;
				return t;
			}
		}
	}
	if (symbols_module_at(e->syms, ip, &m) < 0)
		return NULL;
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 16;

		if (!(t = realloc(e->v, cap * sizeof(*t))))
			return NULL;
		e->v = t;
		e->cap = cap;
	}
	t = &e->v[e->n];
	memset(t, 0, sizeof(*t));
	t->start = m.start;
	t->end = m.end;
	t->usable = hdr_table(e, &m, t) || synth_table(e, &m, t);
	e->last = e->n++;
	return t;
}

