/*
 * cfi_rows_test: the probe's rows (symbols/cfi_rows.c, its own one-pass
 * reading of .eh_frame) against libdw's reading of the same .eh_frame
 * (dwarf_cfi_addrframe at every row, the oracle), module by module, on
 * the libraries of this process (libc, ld.so, libdw, libelf, libz,
 * libunwind, capstone, ...) and a few more real ones dlopen'ed when
 * installed (libstdc++, libpython3, libsqlite3, libcrypto): every row
 * equal, same count. One "ok"/"FAIL" line per module.
 */
#include "symbols/cfi_rows.h"
#include "symbols/symbols.h"

#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16

struct rows {
	struct probe_row *v;
	size_t n, cap;
};

static void push(struct rows *b, uint64_t off, struct probe_row r)
{
	r.pc_off = (uint32_t)off;
	if (b->n) {
		struct probe_row *last = &b->v[b->n - 1];
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
		b->v = realloc(b->v, b->cap * sizeof(*b->v));
		if (!b->v)
			abort();
	}
	b->v[b->n++] = r;
}

/* A register saved at CFA + N in libdw's terms: 1 and *OFF; else 0 and
 * *KIND 1 (same value), 2 (undefined) or 0 (something else). */
static int saved_at_cfa(Dwarf_Frame *f, int reg, int64_t *off, int *kind)
{
	Dwarf_Op mem[3], *ops;
	size_t n;

	*kind = 0;
	if (dwarf_frame_register(f, reg, mem, &ops, &n) != 0)
		return 0;
	if (n == 0) {
		*kind = ops ? 2 : 1;
		return 0;
	}
	if (n == 2 && ops[0].atom == DW_OP_call_frame_cfa && ops[1].atom == DW_OP_plus_uconst) {
		*off = (int64_t)ops[1].number;
		return 1;
	}
	return 0;
}

static struct probe_row oracle_row(Dwarf_Frame *f)
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
	if (off != -8 || dwarf_frame_cfa(f, &ops, &n) != 0 || n != 1)
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
		return r;
	}
	r.cfa_reg = reg == REG_RSP ? ROW_RSP : ROW_RBP;
	r.cfa_off = (int32_t)cfa_off;
	r.rbp_off = rbp_off;
	return r;
}

/* libdw's rows of [START, END): one lookup per row, byte by byte where
 * no FDE covers the code. */
static void oracle_segment(Dwarf_CFI *eh, Dwarf_Addr bias, uint64_t start, uint64_t end,
			   struct rows *out)
{
	out->n = 0;
	for (uint64_t pc = start; pc < end;) {
		Dwarf_Frame *f;
		if (dwarf_cfi_addrframe(eh, pc - bias, &f) != 0) {
			push(out, pc - start, (struct probe_row){ .cfa_reg = ROW_NONE });
			pc++;
			continue;
		}
		Dwarf_Addr s, e;
		bool signalp;
		struct probe_row r = oracle_row(f);
		dwarf_frame_info(f, &s, &e, &signalp);
		free(f);
		push(out, pc - start, r);
		pc = e + bias > pc ? e + bias : pc + 1;
	}
}

struct ctx {
	struct symbols *s;
	int failed, checked;
	size_t rows;
};

struct find {
	uint64_t start;
	Dwfl_Module *mod;
};

static int pick(void *a, void *dm)
{
	struct find *x = a;
	Dwarf_Addr st;

	dwfl_module_info(dm, NULL, &st, NULL, NULL, NULL, NULL, NULL);
	if (st == x->start)
		x->mod = dm;
	return 0;
}

static void on_segment(void *arg, const struct cfi_module *m)
{
	struct ctx *c = arg;
	Dwfl_Module *mod = NULL;
	struct rows want = { 0 };
	Dwarf_Addr bias;

	/* The same module through libdwfl, for its .eh_frame CFI. */
	struct find fd = { m->module_start, NULL };
	symbols_foreach_dwfl(c->s, pick, &fd);
	mod = fd.mod;
	Dwarf_CFI *eh = mod ? dwfl_module_eh_cfi(mod, &bias) : NULL;
	c->checked++;
	if (!eh) {
		printf("FAIL cfi_rows %s: rows built, but libdw finds no .eh_frame\n", m->path);
		c->failed++;
		return;
	}
	oracle_segment(eh, bias, m->start, m->end, &want);
	size_t diff = 0, first = 0;
	for (size_t i = 0; i < want.n && i < m->n_rows; i++) {
		const struct probe_row *a = &want.v[i], *b = &m->rows[i];
		if (a->pc_off != b->pc_off || a->cfa_reg != b->cfa_reg ||
		    a->cfa_off != b->cfa_off || a->rbp_off != b->rbp_off) {
			if (!diff++)
				first = i;
		}
	}
	c->rows += m->n_rows;
	if (diff || want.n != m->n_rows) {
		c->failed++;
		printf("FAIL cfi_rows %s at %#" PRIx64 ": %zu rows, libdw %zu; %zu differ",
		       m->path, m->start, m->n_rows, want.n, diff);
		if (diff) {
			const struct probe_row *a = &want.v[first], *b = &m->rows[first];
			printf(", first at row %zu: +%#x reg %u off %d rbp %d, libdw +%#x reg %u off %d rbp %d",
			       first, b->pc_off, b->cfa_reg, b->cfa_off, b->rbp_off,
			       a->pc_off, a->cfa_reg, a->cfa_off, a->rbp_off);
		}
		printf("\n");
	} else {
		printf("ok cfi_rows %s at %#" PRIx64 ": %zu rows (%zu usable) as libdw's\n",
		       m->path, m->start, m->n_rows, m->n_usable);
	}
	free(want.v);
}

int main(void)
{
	const char *more[] = { "libstdc++.so.6", "libpython3.11.so.1.0", "libsqlite3.so.0",
			       "libcrypto.so.3" };
	struct ctx c = { 0 };

	alarm(120);
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
		dlopen(more[i], RTLD_NOW | RTLD_LOCAL);
	if (!(c.s = symbols_new(getpid()))) {
		printf("FAIL cfi_rows: symbols_new\n");
		return 1;
	}
	if (cfi_rows_build(c.s, NULL, 0, on_segment, &c) < 0) {
		printf("FAIL cfi_rows: %s\n", symbols_errmsg(c.s));
		return 1;
	}
	symbols_free(c.s);
	printf("%s cfi_rows: %d segments, %d differ, %zu rows\n", c.failed ? "FAIL" : "ok",
	       c.checked, c.failed, c.rows);
	return c.failed || c.checked < 5;
}
