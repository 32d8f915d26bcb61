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
	if (thread_inject_syscall(t, b->pages[0].base + GADGET_OFF, SYS_mmap,
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

	for (size_t i = 0; i < b->n_sites; i++)
		if (proc_write(p, b->sites[i].addr, &b->sites[i].orig, 1) < 0)
			rc = -1;
	return rc;
}
