/*
 * breakpoint: sites, code pages and instruction relocation (see the
 * header for the design).
 *
 * Page layout:  +0 `syscall; int3` gadget, +8 `int3` return trampoline,
 * +16.. slots of SLOT_SIZE bytes: relocated instruction (<= 15 bytes) then
 * `jmp qword [rip+0]` and the 8-byte address to continue at.
 */
#include "tracer/breakpoint.h"

#include <capstone/capstone.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "probe/abi.h"
#include "symbols/maps.h"
#include "tracer/proc.h"
#include "tracer/relocate.h"
#include "tracer/util.h"

#define PAGE 4096u
#define GADGET_OFF 0u
#define TRAMPOLINE_OFF 8u
#define FIRST_SLOT_OFF 16u
#define SLOT_SIZE RELOC_SLOT_SIZE
#define MAX_PAGES 64
#define REL32_REACH 0x7fff0000ll	/* a little under 2 GiB */
#define JMP_LEN 5u
#define JUMP_SITE_SIZE 112u	/* slot (<= 64), stub (21) at +64, desc at +88 */
#define STUB_OFF 64u
#define DESC_OFF 88u

struct code_page {
	uint64_t base;
	uint32_t used;
};

struct bpset {
	struct code_page pages[MAX_PAGES];
	size_t n_pages;
	struct site *sites;
	size_t n_sites, cap_sites;
	csh cs;
	bool cs_open;
};

static const uint8_t page_header[FIRST_SLOT_OFF] = {
	0x0f, 0x05, 0xcc, 0x90, 0x90, 0x90, 0x90, 0x90,	/* syscall; int3 */
	0xcc, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,	/* trampoline */
};

struct bpset *bp_new(void)
{
	struct bpset *b = xcalloc(1, sizeof(*b));

	if (cs_open(CS_ARCH_X86, CS_MODE_64, &b->cs) == CS_ERR_OK) {
		cs_option(b->cs, CS_OPT_DETAIL, CS_OPT_ON);
		b->cs_open = true;
	}
	return b;
}

void bp_free(struct bpset *b)
{
	if (!b)
		return;
	if (b->cs_open)
		cs_close(&b->cs);
	free(b->sites);
	free(b);
}

uint64_t bp_gadget(const struct bpset *b)
{
	return b->n_pages ? b->pages[0].base + GADGET_OFF : 0;
}

uint64_t bp_trampoline(const struct bpset *b)
{
	return b->n_pages ? b->pages[0].base + TRAMPOLINE_OFF : 0;
}

static int add_page(struct bpset *b, struct process *p, uint64_t base)
{
	if (proc_write(p, base, page_header, sizeof(page_header)) < 0) {
		error("cannot write code page at 0x%" PRIx64 " in process %d: %s",
		      base, p->pid, strerror(errno));
		return -1;
	}
	b->pages[b->n_pages++] = (struct code_page){ .base = base, .used = FIRST_SLOT_OFF };
	return 0;
}

/*
 * Run syscall NR with ARGS in thread T by writing `mov eax, NR; syscall;
 * int3` over the code at its rip: only when no other thread of the process
 * can run. The thread may be inside execve (its return value would
 * overwrite a rax set by SETREGS, hence the mov) or interrupted in a
 * syscall (orig_rax = -1 keeps restart logic away from our code; restoring
 * the saved registers restarts the program's syscall later).
 */
static int inject_at_rip(struct thread *t, long nr, const uint64_t args[6], int64_t *ret)
{
	struct process *p = t->proc;
	struct user_regs_struct saved, r;
	uint8_t orig[8], code[8] = { 0xb8, (uint8_t)nr, 0, 0, 0, 0x0f, 0x05, 0xcc };

	if (thread_getregs(t->tid, &saved) < 0 ||
	    proc_read(p, saved.rip, orig, sizeof(orig)) < 0 ||
	    proc_write(p, saved.rip, code, sizeof(code)) < 0)
		return -1;
	r = saved;
	regs_set_syscall_args(&r, args);
	int rc = -1;
	if (thread_setregs(t->tid, &r) == 0 &&
	    thread_run_to_trap(t, saved.rip + sizeof(code), &r) == 0) {
		*ret = (int64_t)r.rax;
		rc = 0;
	}
	int err = errno;
	if (proc_write(p, saved.rip, orig, sizeof(orig)) < 0 ||
	    thread_setregs(t->tid, &saved) < 0)
		rc = -1;
	errno = err;
	return rc;
}

int bp_init(struct bpset *b, struct thread *t)
{
	struct process *p = t->proc;
	uint64_t args[6] = { 0, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
			     (uint64_t)-1, 0 };
	int64_t ret;

	if (!b->cs_open) {
		error("cannot start the capstone x86 decoder");
		return -1;
	}
	if (inject_at_rip(t, SYS_mmap, args, &ret) < 0) {
		error("cannot map a code page in process %d: %s", p->pid, strerror(errno));
		return -1;
	}
	if (ret < 0) {
		error("cannot map a code page in process %d: mmap: %s", p->pid, strerror((int)-ret));
		return -1;
	}
	return add_page(b, p, (uint64_t)ret);
}

struct bpset *bp_clone(const struct bpset *b)
{
	struct bpset *c = bp_new();

	memcpy(c->pages, b->pages, sizeof(b->pages));
	c->n_pages = b->n_pages;
	c->cap_sites = b->n_sites ? b->n_sites : 1;
	c->sites = xmalloc(c->cap_sites * sizeof(*c->sites));
	memcpy(c->sites, b->sites, b->n_sites * sizeof(*b->sites));
	c->n_sites = b->n_sites;
	return c;
}

uint64_t bp_move_out(const struct bpset *b, uint64_t rip)
{
	for (size_t i = 0; i < b->n_sites; i++) {
		const struct site *s = &b->sites[i];
		if (s->jump) {
			if (rip >= s->stub && rip < s->stub + DESC_OFF - STUB_OFF)
				return s->addr;
			for (unsigned k = 0; k < s->n_ins; k++)
				if (rip == s->slot + s->ins_off[k])
					return s->addr + s->ins_off[k];
			if (rip == s->slot + s->len)
				return s->addr + s->len;
			continue;
		}
		if (rip == s->slot)
			return s->addr;
		if (!s->in_slot_jmp && rip == s->slot + s->len)
			return s->addr + s->len;
	}
	return rip;
}

bool bp_in_pages(const struct bpset *b, uint64_t addr)
{
	for (size_t i = 0; i < b->n_pages; i++)
		if (addr - b->pages[i].base < PAGE)
			return true;
	return false;
}

int bp_remove_all(struct bpset *b, struct thread *t)
{
	int rc = bp_restore_in(b, t->proc);

	for (size_t i = 0; i < b->n_pages; i++) {
		uint64_t args[6] = { b->pages[i].base, PAGE, 0, 0, 0, 0 };
		int64_t ret;
		if (inject_at_rip(t, SYS_munmap, args, &ret) < 0 || ret < 0) {
			error("cannot unmap ptleak's code page at 0x%" PRIx64 " in process %d",
			      b->pages[i].base, t->proc->pid);
			rc = -1;
		}
	}
	b->n_pages = 0;
	b->n_sites = 0;
	return rc;
}

/* The free page in the tracee's address space closest to NEAR, from
 * /proc/PID/maps; 0 if none within reach. */
static uint64_t find_gap(pid_t pid, uint64_t near)
{
	struct maps_ranges maps = { 0 };
	uint64_t prev_end = 0x10000, best = 0, best_dist = UINT64_MAX;

	if (maps_read_all(pid, &maps) < 0) {
		maps_ranges_free(&maps);
		return 0;
	}
	for (size_t i = 0; i <= maps.n; i++) {
		/* After the last mapping: the hole up to the top of user space. */
		uint64_t start = i < maps.n ? maps.v[i].start : 0x7ffffffff000ull;
		uint64_t end = i < maps.n ? maps.v[i].end : start;
		if (start >= prev_end + PAGE) {
			/* gap [prev_end, start): candidates at both ends */
			uint64_t cand[2] = { prev_end, start - PAGE };
			for (int k = 0; k < 2; k++) {
				uint64_t d = cand[k] > near ? cand[k] - near : near - cand[k];
				if (d < best_dist) {
					best_dist = d;
					best = cand[k];
				}
			}
		}
		if (end > prev_end)
			prev_end = end;
	}
	maps_ranges_free(&maps);
	return best_dist < (uint64_t)REL32_REACH - PAGE ? best : 0;
}

static struct code_page *map_page_near(struct bpset *b, struct thread *t, uint64_t near)
{
	int64_t ret;
	uint64_t gap;

	if (b->n_pages == 0 || b->n_pages == MAX_PAGES)
		return NULL;
	gap = find_gap(t->proc->pid, near);
	if (!gap)
		return NULL;
	uint64_t args[6] = { gap, PAGE, PROT_READ | PROT_EXEC,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			     (uint64_t)-1, 0 };
	if (thread_inject_syscall(t, bp_gadget(b), SYS_mmap,
				  args, &ret) < 0 || ret < 0 || (uint64_t)ret != gap)
		return NULL;
	if (add_page(b, t->proc, gap) < 0)
		return NULL;
	return &b->pages[b->n_pages - 1];
}

static bool within_rel32(uint64_t a, uint64_t b)
{
	int64_t d = (int64_t)(a - b);

	return d > -REL32_REACH && d < REL32_REACH;
}

static struct code_page *page_for(struct bpset *b, struct thread *t, uint64_t addr,
				  bool needs_near)
{
	for (size_t i = 0; i < b->n_pages; i++) {
		struct code_page *pg = &b->pages[i];
		if (pg->used + SLOT_SIZE > PAGE)
			continue;
		if (!needs_near || within_rel32(pg->base, addr))
			return pg;
	}
	return map_page_near(b, t, addr);
}

/* Whether some direct branch in [addr, addr + fsize) lands strictly
 * inside the first LEN bytes (then they cannot be replaced). */
static bool branch_into(struct bpset *b, const uint8_t *fn, uint64_t fsize, uint64_t addr,
			unsigned len)
{
	const uint8_t *code = fn;
	size_t size = fsize;
	uint64_t pc = addr;
	cs_insn *insn = cs_malloc(b->cs);
	bool hit = false;

	while (!hit && cs_disasm_iter(b->cs, &code, &size, &pc, insn)) {
		const cs_x86 *x = &insn->detail->x86;
		if (x->op_count == 1 && x->operands[0].type == X86_OP_IMM &&
		    (cs_insn_group(b->cs, insn, CS_GRP_JUMP) ||
		     cs_insn_group(b->cs, insn, CS_GRP_CALL) ||
		     cs_insn_group(b->cs, insn, CS_GRP_BRANCH_RELATIVE))) {
			uint64_t t = (uint64_t)x->operands[0].imm;
			hit = t > addr && t < addr + len;
		}
		if (size == 0)
			break;
		if (!insn->size) {
			/* undecodable byte (data in text): skip it */
			code++, size--, pc++;
		}
	}
	cs_free(insn, 1);
	return hit;
}

int bp_add_jump(struct bpset *b, struct thread *t, uint64_t addr, uint64_t fsize,
		uint64_t entry, enum site_kind kind, int call, unsigned generation,
		const uint64_t *rips, size_t n_rips, const char **why)
{
	struct process *p = t->proc;
	uint8_t code[32], out[JUMP_SITE_SIZE];
	uint8_t ins_off[8], n_ins = 0;
	unsigned len = 0;
	bool is_jmp = false;
	struct relocation rel = { .needs_near = true };

	if (bp_find(b, addr)) {
		*why = "armed already";
		return -1;
	}
	if (fsize == 0 || fsize > (1u << 20)) {
		*why = "function size unknown";
		return -1;
	}
	if (proc_read(p, addr, code, sizeof(code)) < 0) {
		*why = "cannot read its code";
		return -1;
	}
	/* A jmp over a tiny function and its padding already: the probe's,
	 * left by a ptleak killed before us. It moves whole, as any jmp. */
	if (fsize < JMP_LEN && code[0] == 0xe9)
		fsize = JMP_LEN;
	if (fsize < JMP_LEN) {
		/* A tiny function (ld.so's _dl_debug_state is one `ret`): the
		 * jmp may cover the nop padding after it, never executed. */
		uint64_t padded = fsize;
		cs_insn *insn;
		size_t n = cs_disasm(b->cs, code + fsize, sizeof(code) - fsize, addr + fsize, 0, &insn);
		for (size_t i = 0; i < n && padded < JMP_LEN && insn[i].id == X86_INS_NOP; i++)
			padded += insn[i].size;
		if (n)
			cs_free(insn, n);
		if (padded < JMP_LEN || ((addr + fsize + 15) & ~15ull) < addr + JMP_LEN) {
			*why = "the function is shorter than a jmp";
			return -1;
		}
		fsize = padded;
	}
	struct code_page *pg = page_for(b, t, addr, true);
	if (!pg || pg->used + JUMP_SITE_SIZE > PAGE) {
		if (pg && pg->used + JUMP_SITE_SIZE > PAGE)
			pg = map_page_near(b, t, addr);
		if (!pg) {
			*why = "no code page within reach";
			return -1;
		}
	}
	uint64_t base = pg->base + pg->used, slot = base, stub = base + STUB_OFF;
	memset(out, 0xcc, sizeof(out));
	unsigned k = 0;	/* bytes written to the slot */
	while (len < JMP_LEN) {
		uint8_t l;
		if (n_ins == sizeof(ins_off) || is_jmp) {
			*why = "a jump among the first instructions";
			return -1;
		}
		int w = relocate_insn(b->cs, code + len, sizeof(code) - len, addr + len,
				      slot + k, out + k, &rel);
		l = rel.len;
		is_jmp = rel.jmp_first;
		if (w < 0) {
			*why = rel.why;
			return -1;
		}
		ins_off[n_ins++] = (uint8_t)len;
		len += l;
		k += (unsigned)w;
		if (k + 14 > STUB_OFF) {
			*why = "the first instructions do not fit a slot";
			return -1;
		}
	}
	if (len > fsize) {
		*why = "the function is shorter than a jmp";
		return -1;
	}
	if (!is_jmp)
		k += (unsigned)relocate_jump(out + k, addr + len);
	for (size_t i = 0; i < n_rips; i++) {
		if (rips[i] > addr && rips[i] < addr + len) {
			*why = "a thread is inside its first instructions";
			return -1;
		}
	}
	uint8_t *fn = xmalloc(fsize);
	bool into = proc_read(p, addr, fn, fsize) < 0 || branch_into(b, fn, fsize, addr, len);
	free(fn);
	if (into) {
		*why = "a branch lands inside its first instructions";
		return -1;
	}
	/* stub: lea desc(%rip), %r11; jmp *0(%rip); .quad entry */
	static const uint8_t lea_r11[3] = { 0x4c, 0x8d, 0x1d };
	uint8_t *st = out + STUB_OFF;
	int32_t lea_disp = (int32_t)(DESC_OFF - (STUB_OFF + 7));
	memcpy(st, lea_r11, 3);
	memcpy(st + 3, &lea_disp, 4);
	relocate_jump(st + 7, entry);
	struct probe_site desc = { .addr = addr, .slot = slot, .call = (uint32_t)call };
	memcpy(out + DESC_OFF, &desc, sizeof(desc));
	int64_t d = (int64_t)stub - (int64_t)(addr + JMP_LEN);
	if (d != (int32_t)d) {
		*why = "the stub is out of reach";
		return -1;
	}
	uint8_t jmp[JMP_LEN] = { 0xe9 };
	int32_t d32 = (int32_t)d;
	memcpy(jmp + 1, &d32, 4);
	if (proc_write(p, base, out, sizeof(out)) < 0 || proc_write(p, addr, jmp, JMP_LEN) < 0) {
		*why = "cannot write the tracee's code";
		return -1;
	}
	pg->used += JUMP_SITE_SIZE;
	if (b->n_sites == b->cap_sites) {
		b->cap_sites = b->cap_sites ? 2 * b->cap_sites : 32;
		b->sites = xrealloc(b->sites, b->cap_sites * sizeof(*b->sites));
	}
	struct site s = {
		.addr = addr, .slot = slot, .orig = code[0], .len = (uint8_t)len,
		.in_slot_jmp = false, .kind = kind, .call = call,
		.generation = generation, .jump = true, .n_ins = n_ins, .stub = stub,
	};
	memcpy(s.ins_off, ins_off, sizeof(ins_off));
	memcpy(s.orig_bytes, code, sizeof(s.orig_bytes));
	b->sites[b->n_sites++] = s;
	debug("jump site 0x%" PRIx64 " (%u bytes) call %d stub 0x%" PRIx64, addr, len, call, stub);
	return 0;
}

int bp_add(struct bpset *b, struct thread *t, uint64_t addr,
	   enum site_kind kind, int call, unsigned generation)
{
	struct process *p = t->proc;
	struct site *s = bp_find(b, addr);
	uint8_t code[16], slot_code[SLOT_SIZE], int3 = 0xcc;
	const char *why = NULL;

	if (s) {
		s->generation = generation;
		return 0;
	}
	if (proc_read(p, addr, code, sizeof(code)) < 0) {
		error("cannot read code at 0x%" PRIx64 ": %s", addr, strerror(errno));
		return -1;
	}
	/* Decode once to learn whether the slot must be near. */
	struct relocation rel;
	if (relocate(b->cs, code, addr, addr, slot_code, &rel) < 0 && !rel.needs_near) {
		why = rel.why;
		goto unsupported;
	}
	struct code_page *pg = page_for(b, t, addr, rel.needs_near);
	if (!pg) {
		why = "no code page could be mapped within reach";
		goto unsupported;
	}
	uint64_t slot = pg->base + pg->used;
	if (relocate(b->cs, code, addr, slot, slot_code, &rel) < 0) {
		why = rel.why;
		goto unsupported;
	}
	if (proc_write(p, slot, slot_code, sizeof(slot_code)) < 0 ||
	    proc_write(p, addr, &int3, 1) < 0) {
		error("cannot write breakpoint at 0x%" PRIx64 ": %s", addr, strerror(errno));
		return -1;
	}
	pg->used += SLOT_SIZE;
	if (b->n_sites == b->cap_sites) {
		b->cap_sites = b->cap_sites ? 2 * b->cap_sites : 32;
		b->sites = xrealloc(b->sites, b->cap_sites * sizeof(*b->sites));
	}
	b->sites[b->n_sites++] = (struct site){
		.addr = addr, .slot = slot, .orig = code[0], .len = rel.len,
		.in_slot_jmp = rel.jmp_first, .kind = kind,
		.call = call, .generation = generation,
	};
	debug("site 0x%" PRIx64 " kind %d call %d slot 0x%" PRIx64, addr, kind, call, slot);
	return 0;
unsupported:
	error("cannot hook 0x%" PRIx64 ": %s", addr, why);
	return -1;
}

void bp_prune(struct bpset *b, unsigned generation)
{
	size_t k = 0;

	for (size_t i = 0; i < b->n_sites; i++)
		if (b->sites[i].generation >= generation || b->sites[i].kind == SITE_RBRK)
			b->sites[k++] = b->sites[i];
	b->n_sites = k;
}

struct site *bp_find(struct bpset *b, uint64_t addr)
{
	/* A handful of sites: a linear scan beats any table here. */
	for (size_t i = 0; i < b->n_sites; i++)
		if (b->sites[i].addr == addr)
			return &b->sites[i];
	return NULL;
}

int bp_restore_in(struct bpset *b, struct process *p)
{
	int rc = 0;

	for (size_t i = 0; i < b->n_sites; i++) {
		const struct site *s = &b->sites[i];
		if (proc_write(p, s->addr, s->jump ? s->orig_bytes : &s->orig,
			       s->jump ? s->len : 1) < 0)
			rc = -1;
	}
	return rc;
}
