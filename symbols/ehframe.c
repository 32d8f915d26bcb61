/*
 * ehframe: unwind tables from .eh_frame_hdr, or built from .eh_frame (see
 * ehframe.h).
 */
#include "symbols/ehframe.h"

#include <dwarf.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>

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

/* Size of a DW_EH_PE-encoded value of fixed size; 0 if not fixed. */
static size_t encoded_size(uint8_t enc)
{
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		return 8;
	case DW_EH_PE_udata2:
	case DW_EH_PE_sdata2:
		return 2;
	case DW_EH_PE_udata4:
	case DW_EH_PE_sdata4:
		return 4;
	default:
		return 0;
	}
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
		if (!(sz = encoded_size(hdr[1])))
			return false;
		p += sz;
	}
	if ((hdr[2] & 0x70) != 0 || !(sz = encoded_size(hdr[2])))
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

static bool read_uleb(const unsigned char **p, const unsigned char *end,
		      uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*p < end && shift < 64) {
		unsigned char b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/*
 * Decode a pointer of encoding ENC at *P, which lies at ELF address VADDR.
 * Only what .eh_frame uses in practice: absolute or pc-relative, fixed
 * size or LEB128.
 */
static bool read_encoded(const unsigned char **p, const unsigned char *end,
			 uint8_t enc, uint64_t vaddr, uint64_t *out)
{
	const unsigned char *q = *p;
	size_t sz = encoded_size(enc);
	uint64_t v = 0;

	if (enc & DW_EH_PE_indirect)
		return false;
	if (sz) {
		if ((size_t)(end - q) < sz)
			return false;
		if (sz == 2) {
			uint16_t x;

			memcpy(&x, q, 2);
			v = (enc & 0x0f) == DW_EH_PE_sdata2 ? (uint64_t)(int16_t)x : x;
		} else if (sz == 4) {
			uint32_t x;

			memcpy(&x, q, 4);
			v = (enc & 0x0f) == DW_EH_PE_sdata4 ? (uint64_t)(int32_t)x : x;
		} else {
			memcpy(&v, q, 8);
		}
		q += sz;
	} else if ((enc & 0x0f) == DW_EH_PE_uleb128) {
		if (!read_uleb(&q, end, &v))
			return false;
	} else if ((enc & 0x0f) == DW_EH_PE_sleb128) {
		unsigned shift = 0;
		unsigned char b;

		do {
			if (q >= end || shift >= 64)
				return false;
			b = *q++;
			v |= (uint64_t)(b & 0x7f) << shift;
			shift += 7;
		} while (b & 0x80);
		if (shift < 64 && (b & 0x40))
			v |= ~(uint64_t)0 << shift;
	} else {
		return false;
	}
	switch (enc & 0x70) {
	case DW_EH_PE_absptr:
		break;
	case DW_EH_PE_pcrel:
		v += vaddr;
		break;
	default:
		return false;
	}
	*p = q;
	*out = v;
	return true;
}

/* The FDE pointer encoding of the CIE at CIE (its length field), which
 * lies at ELF address VADDR; false if it cannot be read. */
static bool cie_encoding(const unsigned char *cie, const unsigned char *end,
			 uint64_t vaddr, uint8_t *enc)
{
	const unsigned char *p = cie, *cend;
	const char *aug;
	uint32_t len, id;
	uint64_t skip;
	uint8_t version;

	if (end - p < 9)
		return false;
	memcpy(&len, p, 4);
	memcpy(&id, p + 4, 4);
	if (len == 0xffffffff || len > (size_t)(end - p - 4) || id != 0)
		return false;
	cend = p + 4 + len;
	p += 8;
	version = *p++;
	aug = (const char *)p;
	p = memchr(p, 0, cend - p);
	if (!p || (version != 1 && version != 3) || strstr(aug, "eh"))
		return false;
	p++;
	if (!read_uleb(&p, cend, &skip))	/* code alignment */
		return false;
	if (!read_uleb(&p, cend, &skip))	/* data alignment (sleb) */
		return false;
	if (version == 1)
		p++;			/* return address column */
	else if (!read_uleb(&p, cend, &skip))
		return false;
	*enc = DW_EH_PE_absptr;
	if (aug[0] != 'z')
		return aug[0] == '\0';
	if (!read_uleb(&p, cend, &skip))	/* augmentation data length */
		return false;
	for (const char *a = aug + 1; *a; a++) {
		uint64_t ignored;
		uint8_t penc;

		if (p >= cend)
			return false;
		switch (*a) {
		case 'R':
			*enc = *p++;
			return true;
		case 'L':
			p++;
			break;
		case 'P':
			penc = *p++;
			if (!read_encoded(&p, cend, penc,
					  vaddr + (uint64_t)(p - cie), &ignored))
				return false;
			break;
		case 'S':
		case 'B':
		case 'G':
			break;
		default:
			return false;
		}
	}
	return true;
}

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
	Elf *elf = m->elf;
	Elf_Scn *scn = NULL;
	Elf_Data *d;
	GElf_Shdr sh;
	size_t shstrndx, n = 0, cap = 0;
	const unsigned char *base, *end, *p, *last_cie = NULL;
	uint64_t seg;
	int32_t *ents = NULL;
	uint8_t enc = 0;
	bool cie_ok = false;

	if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
		return false;
	while ((scn = elf_nextscn(elf, scn))) {
		const char *name;

		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_PROGBITS &&
		    (sh.sh_flags & SHF_ALLOC) &&
		    (name = elf_strptr(elf, shstrndx, sh.sh_name)) &&
		    !strcmp(name, ".eh_frame"))
			break;
	}
	if (!scn || !(d = elf_getdata(scn, NULL)) || !d->d_buf)
		return false;
	base = d->d_buf;
	end = base + d->d_size;
	seg = sh.sh_addr + m->bias;
	for (p = base; end - p >= 8; ) {
		const unsigned char *body = p + 4, *next, *q, *cie;
		uint32_t len, id;
		uint64_t pc;
		int64_t rel;

		memcpy(&len, p, 4);
		if (len == 0xffffffff || len > (size_t)(end - body))
			break;
		next = body + len;
		if (len < 8)		/* terminator or runt */
			goto skip;
		memcpy(&id, body, 4);
		if (id == 0)		/* a CIE */
			goto skip;
		cie = body - id;
		if (cie < base || cie >= end)
			goto skip;
		if (cie != last_cie) {
			last_cie = cie;
			cie_ok = cie_encoding(cie, end, sh.sh_addr + (uint64_t)(cie - base),
					      &enc);
		}
		q = body + 4;
		if (!cie_ok ||
		    !read_encoded(&q, next, enc, sh.sh_addr + (uint64_t)(q - base), &pc))
			goto skip;
		rel = (int64_t)(pc + m->bias - seg);
		if (rel != (int32_t)rel || p - base > INT32_MAX)
			goto skip;
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
		ents[2 * n + 1] = (int32_t)(p - base);
		n++;
skip:
		p = next;
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

