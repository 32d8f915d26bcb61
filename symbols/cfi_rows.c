/*
 * cfi_rows: .eh_frame to compact rows (see cfi_rows.h).
 *
 * Each FDE's instructions are run once, start to end, after its CIE's:
 * every advance closes a row, so a module costs one pass over its
 * .eh_frame, read in place from the mapped file. Only the rules the rows
 * can say are kept (the CFA, the return address, rbp); any other
 * register's rule is read past.
 */
#include "symbols/cfi_rows.h"

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>

#include "symbols/cfi_parse.h"
#include "symbols/symbols.h"

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16
#define STATE_DEPTH 16		/* DW_CFA_remember_state nesting */

enum rule_kind { RULE_UNSPEC, RULE_SAME, RULE_UNDEF, RULE_OFFSET, RULE_OTHER };

struct rule {
	enum rule_kind kind;
	int64_t off;		/* RULE_OFFSET: saved at CFA + off */
};

/* The rules in force at one location. */
struct state {
	int cfa_reg;		/* -1: a DWARF expression */
	int64_t cfa_off;
	struct rule ra, rbp;
};

struct build {
	struct probe_row *rows;
	size_t n, cap;
	uint64_t seg_lo, seg_hi;	/* ELF addresses of the segment */
	uint64_t hw;			/* rows cover up to here */
	size_t n_usable;
};

static bool same_row(const struct probe_row *a, const struct probe_row *b)
{
	return a->cfa_reg == b->cfa_reg && a->cfa_off == b->cfa_off && a->rbp_off == b->rbp_off;
}

/* Row R from OFF on (relative to the segment), merged with its
 * neighbours when they say the same. */
static void push(struct build *b, uint64_t off, struct probe_row r)
{
	r.pc_off = (uint32_t)off;
	if (b->n) {
		struct probe_row *last = &b->rows[b->n - 1];
		if (last->pc_off == r.pc_off) {
			*last = r;	/* a gap of nothing: replaced */
			if (b->n > 1 && same_row(&b->rows[b->n - 2], last))
				b->n--;
			return;
		}
		if (same_row(last, &r))
			return;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 4096;
		b->rows = realloc(b->rows, b->cap * sizeof(*b->rows));
		if (!b->rows)
			abort();
	}
	b->rows[b->n++] = r;
}

static struct probe_row row_of(const struct cfi_cie *cie, const struct state *st)
{
	struct probe_row r = { .cfa_reg = ROW_NONE };

	if (cie->ra_reg != REG_RA || cie->signal)
		return r;
	if (st->ra.kind == RULE_UNDEF) {
		r.cfa_reg = ROW_END;
		return r;
	}
	if (st->ra.kind != RULE_OFFSET || st->ra.off != -8)
		return r;
	if ((st->cfa_reg != REG_RSP && st->cfa_reg != REG_RBP) ||
	    st->cfa_off != (int32_t)st->cfa_off)
		return r;
	int16_t rbp_off = 0;
	if (st->rbp.kind == RULE_OFFSET) {
		if (st->rbp.off == 0 || st->rbp.off != (int16_t)st->rbp.off)
			return r;
		rbp_off = (int16_t)st->rbp.off;
	} else if (st->rbp.kind != RULE_SAME && st->rbp.kind != RULE_UNSPEC) {
		return r;	/* rbp undefined or somewhere else */
	}
	r.cfa_reg = st->cfa_reg == REG_RSP ? ROW_RSP : ROW_RBP;
	r.cfa_off = (int32_t)st->cfa_off;
	r.rbp_off = rbp_off;
	return r;
}

/* The rows of [FROM, TO) (ELF addresses), clipped to the segment and to
 * what earlier FDEs covered. */
static void emit(struct build *b, uint64_t from, uint64_t to, struct probe_row r)
{
	if (from < b->hw)
		from = b->hw;
	if (to > b->seg_hi)
		to = b->seg_hi;
	if (from >= to)
		return;
	push(b, from - b->seg_lo, r);
	if (r.cfa_reg != ROW_NONE)
		b->n_usable++;
	b->hw = to;
}

static void set_rule(const struct cfi_cie *cie, struct state *st, uint64_t reg,
		     enum rule_kind kind, int64_t off)
{
	struct rule *r = reg == REG_RBP ? &st->rbp : reg == cie->ra_reg ? &st->ra : NULL;

	if (r)
		*r = (struct rule){ kind, off };
}

static void restore_rule(const struct cfi_cie *cie, struct state *st,
			 const struct state *init, uint64_t reg)
{
	if (reg == REG_RBP)
		st->rbp = init ? init->rbp : (struct rule){ RULE_UNSPEC, 0 };
	else if (reg == cie->ra_reg)
		st->ra = init ? init->ra : (struct rule){ RULE_UNSPEC, 0 };
}

/*
 * Run the CFA instructions [P, END) from *ST. INIT is the state after the
 * CIE's instructions (NULL while running those); B, when not NULL,
 * receives a row at every advance, LOC being the current location (ELF
 * address) and EH the section (for DW_CFA_set_loc). false on an
 * instruction that cannot be read or is not understood.
 */
static bool run(const struct cfi_cie *cie, const struct cfi_eh *eh, const unsigned char *p,
		const unsigned char *end, struct state *st, const struct state *init,
		struct build *b, uint64_t *loc)
{
	struct state stack[STATE_DEPTH];
	unsigned depth = 0;

	while (p < end) {
		uint8_t op = *p++;
		uint64_t reg, u, adv = 0;
		int64_t s;
		bool advance = false;

		switch (op & 0xc0) {
		case DW_CFA_advance_loc:
			adv = (op & 0x3f) * cie->code_align;
			advance = true;
			break;
		case DW_CFA_offset:
			if (!cfi_uleb(&p, end, &u))
				return false;
			set_rule(cie, st, op & 0x3f, RULE_OFFSET, (int64_t)u * cie->data_align);
			continue;
		case DW_CFA_restore:
			restore_rule(cie, st, init, op & 0x3f);
			continue;
		default:
			break;
		}
		if (!advance) {
			switch (op) {
			case DW_CFA_nop:
				continue;
			case DW_CFA_set_loc: {
				uint64_t to;
				if (!b || !cfi_encoded(&p, end, cie->fde_enc,
						       eh->addr + (uint64_t)(p - eh->base), &to) ||
				    to < *loc)
					return false;
				adv = to - *loc;
				break;
			}
			case DW_CFA_advance_loc1:
				if (end - p < 1)
					return false;
				adv = p[0] * cie->code_align;
				p += 1;
				break;
			case DW_CFA_advance_loc2: {
				uint16_t v;
				if (end - p < 2)
					return false;
				memcpy(&v, p, 2);
				p += 2;
				adv = v * cie->code_align;
				break;
			}
			case DW_CFA_advance_loc4: {
				uint32_t v;
				if (end - p < 4)
					return false;
				memcpy(&v, p, 4);
				p += 4;
				adv = v * cie->code_align;
				break;
			}
			case DW_CFA_offset_extended:
				if (!cfi_uleb(&p, end, &reg) || !cfi_uleb(&p, end, &u))
					return false;
				set_rule(cie, st, reg, RULE_OFFSET, (int64_t)u * cie->data_align);
				continue;
			case DW_CFA_offset_extended_sf:
				if (!cfi_uleb(&p, end, &reg) || !cfi_sleb(&p, end, &s))
					return false;
				set_rule(cie, st, reg, RULE_OFFSET, s * cie->data_align);
				continue;
			case DW_CFA_GNU_negative_offset_extended:
				if (!cfi_uleb(&p, end, &reg) || !cfi_uleb(&p, end, &u))
					return false;
				set_rule(cie, st, reg, RULE_OFFSET, -(int64_t)u * cie->data_align);
				continue;
			case DW_CFA_restore_extended:
				if (!cfi_uleb(&p, end, &reg))
					return false;
				restore_rule(cie, st, init, reg);
				continue;
			case DW_CFA_undefined:
			case DW_CFA_same_value:
				if (!cfi_uleb(&p, end, &reg))
					return false;
				set_rule(cie, st, reg, op == DW_CFA_undefined ? RULE_UNDEF : RULE_SAME, 0);
				continue;
			case DW_CFA_register:
				if (!cfi_uleb(&p, end, &reg) || !cfi_uleb(&p, end, &u))
					return false;
				set_rule(cie, st, reg, RULE_OTHER, 0);
				continue;
			case DW_CFA_val_offset:
				if (!cfi_uleb(&p, end, &reg) || !cfi_uleb(&p, end, &u))
					return false;
				set_rule(cie, st, reg, RULE_OTHER, 0);
				continue;
			case DW_CFA_val_offset_sf:
				if (!cfi_uleb(&p, end, &reg) || !cfi_sleb(&p, end, &s))
					return false;
				set_rule(cie, st, reg, RULE_OTHER, 0);
				continue;
			case DW_CFA_expression:
			case DW_CFA_val_expression:
				if (!cfi_uleb(&p, end, &reg) || !cfi_uleb(&p, end, &u) ||
				    u > (uint64_t)(end - p))
					return false;
				p += u;
				set_rule(cie, st, reg, RULE_OTHER, 0);
				continue;
			case DW_CFA_remember_state:
				if (depth == STATE_DEPTH)
					return false;
				stack[depth++] = *st;
				continue;
			case DW_CFA_restore_state:
				if (depth == 0)
					return false;
				*st = stack[--depth];
				continue;
			case DW_CFA_def_cfa:
				if (!cfi_uleb(&p, end, &reg) || !cfi_uleb(&p, end, &u))
					return false;
				st->cfa_reg = reg > 255 ? 255 : (int)reg;
				st->cfa_off = (int64_t)u;
				continue;
			case DW_CFA_def_cfa_sf:
				if (!cfi_uleb(&p, end, &reg) || !cfi_sleb(&p, end, &s))
					return false;
				st->cfa_reg = reg > 255 ? 255 : (int)reg;
				st->cfa_off = s * cie->data_align;
				continue;
			case DW_CFA_def_cfa_register:
				if (!cfi_uleb(&p, end, &reg) || st->cfa_reg < 0)
					return false;
				st->cfa_reg = reg > 255 ? 255 : (int)reg;
				continue;
			case DW_CFA_def_cfa_offset:
				if (!cfi_uleb(&p, end, &u) || st->cfa_reg < 0)
					return false;
				st->cfa_off = (int64_t)u;
				continue;
			case DW_CFA_def_cfa_offset_sf:
				if (!cfi_sleb(&p, end, &s) || st->cfa_reg < 0)
					return false;
				st->cfa_off = s * cie->data_align;
				continue;
			case DW_CFA_def_cfa_expression:
				if (!cfi_uleb(&p, end, &u) || u > (uint64_t)(end - p))
					return false;
				p += u;
				st->cfa_reg = -1;
				continue;
			case DW_CFA_GNU_args_size:
				if (!cfi_uleb(&p, end, &u))
					return false;
				continue;
			default:
				return false;
			}
		}
		if (!b)
			return false;	/* an advance among a CIE's instructions */
		if (adv) {
			emit(b, *loc, *loc + adv, row_of(cie, st));
			*loc += adv;
		}
	}
	return true;
}

/* The rows of one FDE, then a gap of no row after it. */
static void fde_rows(struct build *b, const struct cfi_eh *eh, const struct cfi_fde *fde)
{
	const struct cfi_cie *cie = fde->cie;
	struct state init = { .cfa_reg = REG_RSP }, st;
	uint64_t loc = fde->pc;

	if (!run(cie, eh, cie->insns, cie->end, &init, NULL, NULL, &loc)) {
		emit(b, fde->pc, fde->pc_end, (struct probe_row){ .cfa_reg = ROW_NONE });
	} else {
		st = init;
		bool ok = run(cie, eh, fde->insns, fde->end, &st, &init, b, &loc);
		if (loc < fde->pc_end)
			emit(b, loc, fde->pc_end, ok ? row_of(cie, &st)
						  : (struct probe_row){ .cfa_reg = ROW_NONE });
	}
	if (fde->pc_end < b->seg_hi && fde->pc_end >= b->hw)
		push(b, fde->pc_end - b->seg_lo, (struct probe_row){ .cfa_reg = ROW_NONE });
}

static int by_pc(const void *pa, const void *pb)
{
	const struct cfi_fde *a = pa, *b = pb;

	return (a->pc > b->pc) - (a->pc < b->pc);
}

/* Every FDE of the section, sorted by pc (CIEs copied: the iterator
 * keeps only the last one). */
struct fde_list {
	struct cfi_fde *v;
	struct cfi_cie *cies;
	size_t n;
};

static int collect(struct cfi_eh *eh, struct fde_list *l)
{
	struct cfi_fde fde;
	size_t cap = 0, n_cies = 0, cap_cies = 0;

	*l = (struct fde_list){ 0 };
	while (cfi_eh_next(eh, &fde)) {
		if (fde.pc_end <= fde.pc)
			continue;
		if (!n_cies || l->cies[n_cies - 1].at != fde.cie->at) {
			if (n_cies == cap_cies) {
				cap_cies = cap_cies ? 2 * cap_cies : 16;
				l->cies = realloc(l->cies, cap_cies * sizeof(*l->cies));
				if (!l->cies)
					abort();
			}
			l->cies[n_cies++] = *fde.cie;
		}
		if (l->n == cap) {
			cap = cap ? 2 * cap : 1024;
			l->v = realloc(l->v, cap * sizeof(*l->v));
			if (!l->v)
				abort();
		}
		/* An index for now: cies[] moves as it grows. */
		fde.cie = (const struct cfi_cie *)(uintptr_t)(n_cies - 1);
		l->v[l->n++] = fde;
	}
	for (size_t i = 0; i < l->n; i++)
		l->v[i].cie = &l->cies[(uintptr_t)l->v[i].cie];
	qsort(l->v, l->n, sizeof(*l->v), by_pc);
	return 0;
}

int cfi_rows_module(const struct symbols_module *m, cfi_module_cb cb, void *arg)
{
	Elf *elf = m->elf;
	struct cfi_eh eh;
	struct fde_list l;
	struct build b = { 0 };
	size_t phnum, first = 0;

	if (!elf || elf_getphdrnum(elf, &phnum) != 0 || cfi_eh_open(&eh, elf) < 0)
		return -1;	/* no .eh_frame: the probe asks ptleak for these frames */
	collect(&eh, &l);
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || !(ph.p_flags & PF_X))
			continue;
		b.n = b.n_usable = 0;
		b.seg_lo = b.hw = ph.p_vaddr;
		b.seg_hi = ph.p_vaddr + ph.p_memsz;
		push(&b, 0, (struct probe_row){ .cfa_reg = ROW_NONE });
		while (first < l.n && l.v[first].pc_end <= b.seg_lo)
			first++;
		for (size_t k = first; k < l.n && l.v[k].pc < b.seg_hi; k++)
			if (l.v[k].pc_end > b.seg_lo)
				fde_rows(&b, &eh, &l.v[k]);
		struct cfi_module cm = {
			.start = b.seg_lo + m->bias, .end = b.seg_hi + m->bias,
			.module_start = m->start, .path = m->path,
			.rows = b.rows, .n_rows = b.n, .n_usable = b.n_usable,
		};
		cb(arg, &cm);
	}
	free(l.v);
	free(l.cies);
	free(b.rows);
	return 0;
}

struct all_ctx {
	struct symbols *s;
	const uint64_t *skip;
	size_t n_skip;
	cfi_module_cb cb;
	void *arg;
};

static int one_module(void *arg, void *dm)
{
	struct all_ctx *c = arg;
	Dwarf_Addr start;
	struct symbols_module sm;

	dwfl_module_info(dm, NULL, &start, NULL, NULL, NULL, NULL, NULL);
	for (size_t i = 0; i < c->n_skip; i++)
		if (c->skip[i] == start)
			return 0;
	if (symbols_module_at(c->s, start, &sm) == 0)
		cfi_rows_module(&sm, c->cb, c->arg);
	return 0;
}

int cfi_rows_build(struct symbols *s, const uint64_t *skip, size_t n_skip,
		   cfi_module_cb cb, void *arg)
{
	struct all_ctx c = { s, skip, n_skip, cb, arg };

	return symbols_foreach_dwfl(s, one_module, &c);
}
