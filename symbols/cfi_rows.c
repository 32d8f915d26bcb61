/*
 * cfi_rows: .eh_frame / .debug_frame to compact rows (see cfi_rows.h).
 *
 * libdw interprets the CFI: dwarf_cfi_addrframe gives the rules at a pc
 * and dwarf_frame_info the range they hold for, so one lookup per row
 * walks each executable segment; where no FDE covers a pc the sweep goes
 * on byte by byte (gaps are a few percent of code at most).
 */
#include "symbols/cfi_rows.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>

#include "symbols/symbols.h"

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16

struct build {
	const uint64_t *skip;
	size_t n_skip;
	cfi_module_cb cb;
	void *arg;
	struct probe_row *rows;
	size_t n, cap;
};

/* A register saved at CFA + N: DW_OP_call_frame_cfa, DW_OP_plus_uconst N
 * (libdw's form for DW_CFA_offset). 1 and *OFF, or 0. */
static int saved_at_cfa(Dwarf_Frame *f, int reg, int64_t *off, int *kind)
{
	Dwarf_Op mem[3], *ops;
	size_t n;

	*kind = 0;
	if (dwarf_frame_register(f, reg, mem, &ops, &n) != 0)
		return 0;
	if (n == 0) {
		*kind = ops ? 2 : 1;	/* 2: undefined, 1: same value */
		return 0;
	}
	if (n == 2 && ops[0].atom == DW_OP_call_frame_cfa && ops[1].atom == DW_OP_plus_uconst) {
		*off = (int64_t)ops[1].number;
		return 1;
	}
	return 0;
}

static struct probe_row row_of(Dwarf_Frame *f)
{
	struct probe_row r = { .cfa_reg = ROW_NONE };
	Dwarf_Addr s, e;
	bool signalp = false;
	Dwarf_Op *ops;
	size_t n;
	int64_t off;
	int kind;

	if (dwarf_frame_info(f, &s, &e, &signalp) != REG_RA || signalp)
		return r;
	if (!saved_at_cfa(f, REG_RA, &off, &kind)) {
		if (kind == 2)
			r.cfa_reg = ROW_END;
		return r;
	}
	if (off != -8)
		return r;
	if (dwarf_frame_cfa(f, &ops, &n) != 0 || n != 1)
		return r;
	int reg;
	int64_t cfa_off;
	if (ops[0].atom == DW_OP_bregx) {
		reg = (int)ops[0].number;
		cfa_off = (int64_t)ops[0].number2;
	} else if (ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) {
		reg = ops[0].atom - DW_OP_breg0;
		cfa_off = (int64_t)ops[0].number;
	} else {
		return r;
	}
	if ((reg != REG_RSP && reg != REG_RBP) || cfa_off != (int32_t)cfa_off)
		return r;
	int16_t rbp_off = 0;
	if (saved_at_cfa(f, REG_RBP, &off, &kind)) {
		if (off == 0 || off != (int16_t)off)
			return r;
		rbp_off = (int16_t)off;
	} else if (kind != 1) {
		return r;	/* rbp undefined or somewhere else */
	}
	r.cfa_reg = reg == REG_RSP ? ROW_RSP : ROW_RBP;
	r.cfa_off = (int32_t)cfa_off;
	r.rbp_off = rbp_off;
	return r;
}

static void push(struct build *b, uint64_t off, struct probe_row r)
{
	r.pc_off = (uint32_t)off;
	if (b->n) {
		struct probe_row *last = &b->rows[b->n - 1];
		if (last->cfa_reg == r.cfa_reg && last->cfa_off == r.cfa_off &&
		    last->rbp_off == r.rbp_off)
			return;
		if (last->pc_off == r.pc_off) {
			*last = r;
			return;
		}
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 4096;
		b->rows = realloc(b->rows, b->cap * sizeof(*b->rows));
		if (!b->rows)
			abort();
	}
	b->rows[b->n++] = r;
}

struct cfi_src {
	Dwfl_Module *mod;
	Dwarf_CFI *eh, *dbg;
	Dwarf_Addr eh_bias, dbg_bias;
	bool dbg_tried;
};

/* .eh_frame first; .debug_frame (which may mean reading and
 * decompressing a separate debug file) only where .eh_frame has no FDE. */
static int frame_at(struct cfi_src *c, uint64_t pc, Dwarf_Frame **f, Dwarf_Addr *bias)
{
	if (c->eh && dwarf_cfi_addrframe(c->eh, pc - c->eh_bias, f) == 0) {
		*bias = c->eh_bias;
		return 0;
	}
	if (!c->dbg_tried) {
		c->dbg_tried = true;
		c->dbg = dwfl_module_dwarf_cfi(c->mod, &c->dbg_bias);
	}
	Dwarf_CFI *dbg = c->dbg;
	Dwarf_Addr dbg_bias = c->dbg_bias;
	if (dbg && dwarf_cfi_addrframe(dbg, pc - dbg_bias, f) == 0) {
		*bias = dbg_bias;
		return 0;
	}
	return -1;
}

static void segment(struct build *b, Dwfl_Module *mod, const char *path, uint64_t mod_start,
		    uint64_t start, uint64_t end)
{
	struct cfi_src c = { .mod = mod };
	c.eh = dwfl_module_eh_cfi(mod, &c.eh_bias);
	struct cfi_module m = { .start = start, .end = end, .module_start = mod_start, .path = path };

	b->n = 0;
	for (uint64_t pc = start; pc < end;) {
		Dwarf_Frame *f;
		Dwarf_Addr bias;
		if (frame_at(&c, pc, &f, &bias) < 0) {
			push(b, pc - start, (struct probe_row){ .cfa_reg = ROW_NONE });
			if (!c.eh && !c.dbg)
				break;
			pc++;
			continue;
		}
		Dwarf_Addr s, e;
		bool signalp;
		struct probe_row r = row_of(f);
		dwarf_frame_info(f, &s, &e, &signalp);
		free(f);
		push(b, pc - start, r);
		if (r.cfa_reg != ROW_NONE)
			m.n_usable++;
		pc = e + bias > pc ? e + bias : pc + 1;
	}
	m.rows = b->rows;
	m.n_rows = b->n;
	b->cb(b->arg, &m);
}

static int one_module(void *arg, void *dm)
{
	struct build *b = arg;
	Dwfl_Module *mod = dm;
	Dwarf_Addr start, bias;
	const char *name = dwfl_module_info(mod, NULL, &start, NULL, NULL, NULL, NULL, NULL);
	size_t phnum;

	for (size_t i = 0; i < b->n_skip; i++)
		if (b->skip[i] == start)
			return 0;
	Elf *elf = dwfl_module_getelf(mod, &bias);
	if (!elf || elf_getphdrnum(elf, &phnum) != 0)
		return 0;	/* no file: the probe asks ptleak for its frames */
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
			segment(b, mod, name, start, ph.p_vaddr + bias, ph.p_vaddr + ph.p_memsz + bias);
	}
	return 0;
}

int cfi_rows_build(struct symbols *s, const uint64_t *skip, size_t n_skip,
		   cfi_module_cb cb, void *arg)
{
	struct build b = { .skip = skip, .n_skip = n_skip, .cb = cb, .arg = arg };
	int rc = symbols_foreach_dwfl(s, one_module, &b);

	free(b.rows);
	return rc;
}
