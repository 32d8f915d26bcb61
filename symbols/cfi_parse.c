/*
 * cfi_parse: .eh_frame read in place (see cfi_parse.h).
 */
#include "symbols/cfi_parse.h"

#include <dwarf.h>
#include <string.h>

bool cfi_uleb(const unsigned char **p, const unsigned char *end, uint64_t *v)
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

bool cfi_sleb(const unsigned char **p, const unsigned char *end, int64_t *v)
{
	unsigned shift = 0;
	uint64_t x = 0;
	unsigned char b;

	do {
		if (*p >= end || shift >= 64)
			return false;
		b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	if (shift < 64 && (b & 0x40))
		x |= ~(uint64_t)0 << shift;
	*v = (int64_t)x;
	return true;
}

size_t cfi_encoded_size(uint8_t enc)
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

bool cfi_encoded(const unsigned char **p, const unsigned char *end, uint8_t enc,
		 uint64_t vaddr, uint64_t *out)
{
	const unsigned char *q = *p;
	size_t sz = cfi_encoded_size(enc);
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
		if (!cfi_uleb(&q, end, &v))
			return false;
	} else if ((enc & 0x0f) == DW_EH_PE_sleb128) {
		int64_t s;

		if (!cfi_sleb(&q, end, &s))
			return false;
		v = (uint64_t)s;
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

/* The CIE at CIE (its length field), at ELF address VADDR. */
static bool cie_parse(const unsigned char *cie, const unsigned char *end, uint64_t vaddr,
		      struct cfi_cie *c)
{
	const unsigned char *p = cie, *cend;
	const char *aug;
	uint32_t len, id;
	uint64_t aug_len;
	uint8_t version;
	bool have_r = false;

	memset(c, 0, sizeof(*c));
	c->at = cie;
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
	p = memchr(p, 0, (size_t)(cend - p));
	if (!p || (version != 1 && version != 3) || strstr(aug, "eh"))
		return false;
	p++;
	if (!cfi_uleb(&p, cend, &c->code_align) || !cfi_sleb(&p, cend, &c->data_align))
		return false;
	if (version == 1) {
		if (p >= cend)
			return false;
		c->ra_reg = *p++;
	} else if (!cfi_uleb(&p, cend, &c->ra_reg)) {
		return false;
	}
	c->fde_enc = DW_EH_PE_absptr;
	c->end = cend;
	if (aug[0] != 'z') {
		c->insns = p;
		return aug[0] == '\0';
	}
	c->aug_z = true;
	if (!cfi_uleb(&p, cend, &aug_len) || aug_len > (uint64_t)(cend - p))
		return false;
	c->insns = p + aug_len;
	for (const char *a = aug + 1; *a; a++) {
		uint64_t ignored;
		uint8_t penc;

		if (p >= c->insns)
			return false;
		switch (*a) {
		case 'R':
			c->fde_enc = *p++;
			have_r = true;
			break;
		case 'L':
			p++;
			break;
		case 'P':
			/* The personality routine: read past, indirect or not. */
			penc = *p++ & (uint8_t)~DW_EH_PE_indirect;
			if (!cfi_encoded(&p, c->insns, penc, vaddr + (uint64_t)(p - cie), &ignored))
				return false;
			break;
		case 'S':
			c->signal = true;
			break;
		case 'B':
		case 'G':
			break;
		default:
			/* The length skips what we cannot read; its FDE
			 * encoding must have been read by then. */
			return have_r;
		}
	}
	return true;
}

int cfi_eh_open(struct cfi_eh *eh, Elf *elf)
{
	Elf_Scn *scn = NULL;
	Elf_Data *d;
	GElf_Shdr sh;
	size_t shstrndx;

	memset(eh, 0, sizeof(*eh));
	if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
		return -1;
	while ((scn = elf_nextscn(elf, scn))) {
		const char *name;

		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_PROGBITS &&
		    (sh.sh_flags & SHF_ALLOC) &&
		    (name = elf_strptr(elf, shstrndx, sh.sh_name)) &&
		    !strcmp(name, ".eh_frame"))
			break;
	}
	if (!scn || !(d = elf_getdata(scn, NULL)) || !d->d_buf)
		return -1;
	eh->base = eh->p = d->d_buf;
	eh->end = eh->base + d->d_size;
	eh->addr = sh.sh_addr;
	return 0;
}

int cfi_eh_next(struct cfi_eh *eh, struct cfi_fde *out)
{
	while (eh->end - eh->p >= 8) {
		const unsigned char *at = eh->p, *body = at + 4, *next, *q, *cie;
		uint32_t len, id;
		uint64_t range;

		memcpy(&len, at, 4);
		if (len == 0xffffffff || len > (size_t)(eh->end - body))
			break;
		next = eh->p = body + len;
		if (len < 8)		/* terminator or runt */
			continue;
		memcpy(&id, body, 4);
		if (id == 0)		/* a CIE */
			continue;
		cie = body - id;
		if (cie < eh->base || cie >= eh->end)
			continue;
		if (cie != eh->cie.at)
			eh->cie_ok = cie_parse(cie, eh->end, eh->addr + (uint64_t)(cie - eh->base),
					       &eh->cie);
		if (!eh->cie_ok)
			continue;
		q = body + 4;
		if (!cfi_encoded(&q, next, eh->cie.fde_enc, eh->addr + (uint64_t)(q - eh->base),
				 &out->pc) ||
		    !cfi_encoded(&q, next, eh->cie.fde_enc & 0x0f, 0, &range))
			continue;
		if (eh->cie.aug_z) {
			uint64_t alen;
			if (!cfi_uleb(&q, next, &alen) || alen > (uint64_t)(next - q))
				continue;
			q += alen;
		}
		out->pc_end = out->pc + range;
		out->at = at;
		out->insns = q;
		out->end = next;
		out->cie = &eh->cie;
		return 1;
	}
	return 0;
}
