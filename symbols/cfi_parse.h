#ifndef PTLEAK_CFI_PARSE_H
#define PTLEAK_CFI_PARSE_H
/*
 * cfi_parse: reading an ELF file's .eh_frame section in place: LEB128
 * numbers, DW_EH_PE-encoded pointers, CIEs and FDEs. Shared by the
 * unwinder's tables (ehframe.c) and the probe's rows (cfi_rows.c), which
 * both read the section straight from the mapped file, never through a
 * copy.
 *
 * Addresses are ELF addresses (sh_addr based): the caller adds the
 * module's load bias. Only what .eh_frame holds in practice is accepted
 * (32-bit lengths, CIE versions 1 and 3, absolute or pc-relative
 * pointers); an entry that does not parse is skipped, never guessed at.
 */
#include <gelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool cfi_uleb(const unsigned char **p, const unsigned char *end, uint64_t *v);
bool cfi_sleb(const unsigned char **p, const unsigned char *end, int64_t *v);
/* Size of a DW_EH_PE-encoded value of fixed size; 0 if not fixed. */
size_t cfi_encoded_size(uint8_t enc);
/* Decode a pointer of encoding ENC at *P, which lies at ELF address VADDR
 * (absolute or pc-relative, fixed size or LEB128), advancing *P. */
bool cfi_encoded(const unsigned char **p, const unsigned char *end, uint8_t enc,
		 uint64_t vaddr, uint64_t *out);

/* A CIE, parsed. */
struct cfi_cie {
	const unsigned char *at;	/* its length field: the cache key */
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;		/* the return address column */
	uint8_t fde_enc;		/* 'R': how FDEs encode their addresses */
	bool aug_z;			/* FDEs carry augmentation data */
	bool signal;			/* 'S': a signal frame */
	const unsigned char *insns, *end;	/* its initial instructions */
};

/* An FDE: the code [pc, pc_end) and its instructions. */
struct cfi_fde {
	uint64_t pc, pc_end;
	const unsigned char *at;	/* its length field */
	const unsigned char *insns, *end;
	const struct cfi_cie *cie;	/* valid until the next cfi_eh_next */
};

/* The .eh_frame section of one ELF file, iterated FDE by FDE. */
struct cfi_eh {
	const unsigned char *base, *end;	/* the section's bytes */
	uint64_t addr;				/* its ELF address */
	const unsigned char *p;			/* the next entry */
	struct cfi_cie cie;			/* the last CIE met */
	bool cie_ok;
};

/* Find ELF's .eh_frame: 0, or -1 when it has none (or it cannot be read). */
int cfi_eh_open(struct cfi_eh *eh, Elf *elf);
/* The next FDE that parses: 1 and *OUT, or 0 at the end of the section. */
int cfi_eh_next(struct cfi_eh *eh, struct cfi_fde *out);

#endif
