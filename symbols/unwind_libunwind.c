/*
 * unwind_libunwind: the unwinder backend on libunwind's remote API
 * (unwind_backend, see unwind.h), with our own accessors instead of
 * libunwind-ptrace's. Its pieces: the maps reader (maps.c), the remote
 * memory page cache (pagecache.c), the unwind tables (ehframe.c), and
 * here the accessors, the register-state row cache and the backtrace.
 *
 * The stock _UPT_* accessors read one word per PTRACE_PEEKDATA (~1.3 us
 * each) and re-read /proc/PID/maps and the ELF files whenever a frame
 * crosses into another object. A backtrace runs on every traced
 * allocation, so here:
 *
 *  - Memory is read a whole 4 KiB page at a time with process_vm_readv
 *    and served from a page cache. Pages of read-only file-backed
 *    mappings (code, .eh_frame_hdr, .eh_frame; the list comes from
 *    /proc/PID/maps, read at creation and at each unwinder_flush) stay
 *    cached until unwinder_flush. Every other page (stack, writable data)
 *    is valid for one unwinder_backtrace only: each backtrace starts a
 *    new generation and older volatile pages are ignored.
 *
 *  - Registers come from the user_regs_struct the tracer already has.
 *
 *  - Unwind tables are found without touching the files: the module
 *    under the IP comes from symbols_module_at (libdwfl already knows
 *    where everything is mapped), its PT_GNU_EH_FRAME segment is parsed
 *    once from (cached) tracee memory into a UNW_INFO_FORMAT_REMOTE_TABLE
 *    unw_dyn_info_t, and libunwind's own binary search over that table
 *    (dwarf_search_unwind_table) does the rest.
 *
 *  - Frames are stepped without unw_step where possible. libunwind's
 *    register-state cache takes a lock that blocks all signals, two
 *    rt_sigprocmask calls per unw_step (Debian builds it with
 *    --enable-block-signals), which made a 9-frame backtrace cost 20 us
 *    here. Instead the rows of each FDE are taken once with
 *    unw_reg_states_iterate on a scratch cursor and kept in our own
 *    cache by lookup address; a frame then costs one hash probe and
 *    unw_apply_reg_state, which is the second half of libunwind's own
 *    dwarf_step. The lookup address is the IP for the innermost frame
 *    and the frame after a signal frame, IP-1 (the call) otherwise.
 *    Frames without an FDE, and signal trampolines, still go through
 *    unw_step, with libunwind's own cache off (UNW_CACHE_NONE): it caches
 *    nothing for frames without FDE but still locks, 2 us per frame of Go
 *    code here; a signal frame costs a parse, which is rare enough.
 *
 * An IP with no .eh_frame entry (Go code, JIT code, PLT stubs) gets
 * -UNW_ENOINFO, after which libunwind's x86-64 step falls back to its
 * frame-pointer heuristic. unwinder_flush forgets pages, tables, rows and
 * libunwind's cache, all of which are keyed by address.
 */
#include "symbols/unwind.h"

#include <errno.h>
#include <libunwind-ptrace.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "symbols/ehframe.h"
#include "symbols/maps.h"
#include "symbols/pagecache.h"
#include "symbols/symbols.h"

/* Exported by libunwind-x86_64.so.8, not declared by its headers. */
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as,
					      unw_word_t ip,
					      unw_dyn_info_t *di,
					      unw_proc_info_t *pi,
					      int need_unwind_info, void *arg);

/* The register-state rows of one FDE, from unw_reg_states_iterate. */
struct fde_rows {
	uint64_t start, end;
	size_t n;
	uint64_t *row_start;	/* row i covers [row_start[i], row_start[i+1]) */
	unsigned char *states;	/* n opaque states of state_size bytes */
	size_t state_size;
};

/* A frame's lookup: key = lookup address << 1 | exact. */
struct step_entry {
	uint64_t key;
	const void *state;	/* NULL: no FDE, let unw_step decide */
	bool used;
	bool signal;		/* the frame is a signal trampoline */
};

/* The "arg" of every accessor: whose registers, which unwinder. */
struct frame_ctx {
	struct unwinder *u;
	struct user_regs_struct regs;	/* writes land here, not in the tracee */
};

struct unwinder {
	pid_t pid;
	struct symbols *syms;
	unw_addr_space_t as;

	struct frame_ctx ctx;		/* of the backtrace under way */

	struct maps_ranges ro;		/* read-only file-backed: cacheable pages */
	struct maps_ranges exec;	/* executable mappings */
	bool exec_known;		/* the maps file was read */
	struct pagecache *pc;
	struct eh_tables tables;

	struct fde_rows **fdes;		/* sorted by start */
	size_t n_fdes, cap_fdes;

	struct step_entry *steps;	/* hash, power of two */
	size_t n_steps, cap_steps;
};

/* Which mappings hold code, and which pages may be cached until flush.
 * Failing leaves no page cacheable and every address code: still correct. */
static int load_ranges(struct unwinder *u)
{
	u->exec_known = maps_read_code(u->pid, &u->exec, &u->ro) == 0;
	return u->exec_known ? 0 : -1;
}

/* A return address outside all code means the unwind went astray. */
static bool is_code(const struct unwinder *u, uint64_t addr)
{
	return !u->exec_known || maps_contains(&u->exec, addr);
}

/* ---- libunwind accessors ---- */

static int find_proc_info(unw_addr_space_t as, unw_word_t ip,
			  unw_proc_info_t *pi, int need_unwind_info, void *arg)
{
	struct frame_ctx *ctx = arg;
	struct eh_table *t = eh_tables_at(&ctx->u->tables, ip);
	int ret;

	if (!t || !t->usable)
		return -UNW_ENOINFO;
	/*
	 * When IP falls between FDEs, dwarf_search_unwind_table returns
	 * -UNW_ENOINFO after allocating pi->unwind_info from a pool of its
	 * own that nobody returns it to. So check the range without unwind
	 * info first: on a hit libunwind caches the result per IP anyway.
	 */
	ret = _Ux86_64_dwarf_search_unwind_table(as, ip, &t->di, pi, 0, arg);
	if (ret < 0 || !need_unwind_info)
		return ret;
	return _Ux86_64_dwarf_search_unwind_table(as, ip, &t->di, pi, 1, arg);
}

/*
 * pi->unwind_info from dwarf_search_unwind_table (format
 * UNW_INFO_FORMAT_TABLE) comes from libunwind's internal memory pool and
 * libunwind returns it there itself; this accessor is only reached for
 * dynamic (_U_dyn_register) info, which get_dyn_info_list_addr never
 * offers. Calling free() here, as _UPT_put_unwind_info does, would free
 * pool memory.
 */
static void put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
}

static int get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr,
				  void *arg)
{
	return -UNW_ENOINFO;
}

static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *valp,
		      int write, void *arg)
{
	struct unwinder *u = ((struct frame_ctx *)arg)->u;
	uint64_t page = addr & PAGECACHE_PAGE_MASK;
	size_t off = addr - page;
	const unsigned char *data;

	if (write)
		return -UNW_EINVAL;
	if (addr >= EH_SYNTH_BASE)
		return eh_tables_synth_read(&u->tables, addr, valp);
	/* The common case inline: an aligned word in the last page. */
	if (off <= PAGECACHE_PAGE_SIZE - sizeof(*valp)) {
		if (!(data = pagecache_page(u->pc, page)))
			return -UNW_EINVAL;
		memcpy(valp, data + off, sizeof(*valp));
		return 0;
	}
	return pagecache_read(u->pc, addr, valp, sizeof(*valp)) < 0 ? -UNW_EINVAL : 0;
}

static unsigned long long *reg_field(struct user_regs_struct *r,
				     unw_regnum_t reg)
{
	switch (reg) {
	case UNW_X86_64_RAX: return &r->rax;
	case UNW_X86_64_RDX: return &r->rdx;
	case UNW_X86_64_RCX: return &r->rcx;
	case UNW_X86_64_RBX: return &r->rbx;
	case UNW_X86_64_RSI: return &r->rsi;
	case UNW_X86_64_RDI: return &r->rdi;
	case UNW_X86_64_RBP: return &r->rbp;
	case UNW_X86_64_RSP: return &r->rsp;
	case UNW_X86_64_R8:  return &r->r8;
	case UNW_X86_64_R9:  return &r->r9;
	case UNW_X86_64_R10: return &r->r10;
	case UNW_X86_64_R11: return &r->r11;
	case UNW_X86_64_R12: return &r->r12;
	case UNW_X86_64_R13: return &r->r13;
	case UNW_X86_64_R14: return &r->r14;
	case UNW_X86_64_R15: return &r->r15;
	case UNW_X86_64_RIP: return &r->rip;
	default: return NULL;
	}
}

/* Writes land in our copy: they never reach the tracee. */
static int access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *valp,
		      int write, void *arg)
{
	struct frame_ctx *ctx = arg;
	unsigned long long *f = reg_field(&ctx->regs, reg);

	if (!f)
		return -UNW_EBADREG;
	if (write)
		*f = *valp;
	else
		*valp = *f;
	return 0;
}

static int access_fpreg(unw_addr_space_t as, unw_regnum_t reg,
			unw_fpreg_t *val, int write, void *arg)
{
	return -UNW_EBADREG;
}

static int resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
	return -UNW_EINVAL;
}

static int get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf,
			 size_t len, unw_word_t *off, void *arg)
{
	return -UNW_ENOINFO;
}

static unw_accessors_t accessors = {
	.find_proc_info = find_proc_info,
	.put_unwind_info = put_unwind_info,
	.get_dyn_info_list_addr = get_dyn_info_list_addr,
	.access_mem = access_mem,
	.access_reg = access_reg,
	.access_fpreg = access_fpreg,
	.resume = resume,
	.get_proc_name = get_proc_name,
};

/* ---- register-state rows, our cache in front of unw_step ---- */

static void free_fde(struct fde_rows *f)
{
	if (!f)
		return;
	free(f->row_start);
	free(f->states);
	free(f);
}

static void drop_rows(struct unwinder *u)
{
	for (size_t i = 0; i < u->n_fdes; i++)
		free_fde(u->fdes[i]);
	u->n_fdes = 0;
	free(u->steps);
	u->steps = NULL;
	u->n_steps = u->cap_steps = 0;
}

/* Index of the first FDE whose start is above ADDR. */
static size_t fde_upper(const struct unwinder *u, uint64_t addr)
{
	size_t lo = 0, hi = u->n_fdes;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (u->fdes[mid]->start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct fde_rows *fde_containing(const struct unwinder *u, uint64_t addr)
{
	size_t i = fde_upper(u, addr);

	if (i > 0 && addr < u->fdes[i - 1]->end)
		return u->fdes[i - 1];
	return NULL;
}

static int add_row(void *token, void *state, size_t size, unw_word_t start,
		   unw_word_t end)
{
	struct fde_rows *f = token;
	uint64_t *rs;
	unsigned char *st;

	if (f->n && (size != f->state_size || start < f->end))
		return -UNW_EINVAL;	/* not the sorted rows we expect */
	if (!(rs = realloc(f->row_start, (f->n + 1) * sizeof(*rs))))
		return -UNW_ENOMEM;
	f->row_start = rs;
	if (!(st = realloc(f->states, (f->n + 1) * size)))
		return -UNW_ENOMEM;
	f->states = st;
	if (!f->n)
		f->start = start;
	f->state_size = size;
	rs[f->n] = start;
	memcpy(st + f->n * size, state, size);
	f->end = end;
	f->n++;
	return 0;
}

/*
 * Read the rows of the FDE covering ADDR with a scratch cursor whose IP
 * is ADDR (a fresh cursor looks its IP up as is) and file them. NULL if
 * ADDR has no FDE.
 */
static struct fde_rows *load_fde(struct unwinder *u, uint64_t addr)
{
	struct frame_ctx scratch = { u, u->ctx.regs };
	struct fde_rows *f;
	unw_cursor_t c;
	size_t i;

	scratch.regs.rip = addr;
	if (unw_init_remote(&c, u->as, &scratch) < 0)
		return NULL;
	if (!(f = calloc(1, sizeof(*f))))
		return NULL;
	if (unw_reg_states_iterate(&c, add_row, f) < 0 || !f->n ||
	    addr < f->start || addr >= f->end)
		goto fail;
	if (u->n_fdes == u->cap_fdes) {
		size_t cap = u->cap_fdes ? u->cap_fdes * 2 : 64;
		struct fde_rows **t = realloc(u->fdes, cap * sizeof(*t));

		if (!t)
			goto fail;
		u->fdes = t;
		u->cap_fdes = cap;
	}
	i = fde_upper(u, f->start);
	memmove(u->fdes + i + 1, u->fdes + i, (u->n_fdes - i) * sizeof(*u->fdes));
	u->fdes[i] = f;
	u->n_fdes++;
	return f;
fail:
	free_fde(f);
	return NULL;
}

static const void *row_state(const struct fde_rows *f, uint64_t addr)
{
	size_t lo = 0, hi = f->n;

	/* The last row starting at or below ADDR (ADDR is inside F). */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->row_start[mid] <= addr)
			lo = mid;
		else
			hi = mid;
	}
	return f->states + lo * f->state_size;
}

/* rt_sigreturn trampoline: mov $15,%rax; syscall (as libunwind checks). */
static bool is_sigreturn(struct unwinder *u, uint64_t ip)
{
	static const unsigned char code[9] = { 0x48, 0xc7, 0xc0, 0x0f, 0x00,
					       0x00, 0x00, 0x0f, 0x05 };
	unsigned char buf[sizeof(code)];

	return pagecache_read(u->pc, ip, buf, sizeof(buf)) == 0 &&
	       !memcmp(buf, code, sizeof(code));
}

static size_t step_slot(const struct unwinder *u, uint64_t key)
{
	size_t mask = u->cap_steps - 1;
	size_t i = (size_t)(key * 0x9e3779b97f4a7c15ULL >> 17) & mask;

	while (u->steps[i].used && u->steps[i].key != key)
		i = (i + 1) & mask;
	return i;
}

static int steps_grow(struct unwinder *u)
{
	struct step_entry *old = u->steps;
	size_t old_cap = u->cap_steps;
	size_t cap = old_cap ? old_cap * 2 : 1024;

	if (!(u->steps = calloc(cap, sizeof(*u->steps)))) {
		u->steps = old;
		return -1;
	}
	u->cap_steps = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].used)
			u->steps[step_slot(u, old[i].key)] = old[i];
	free(old);
	return 0;
}

/*
 * How to step from the frame at IP: the register state to apply, or NULL
 * (no FDE, out of memory) to leave it to unw_step; *SIGNAL when the frame
 * is a signal trampoline, which unw_step handles too.
 */
static const void *step_for(struct unwinder *u, uint64_t ip, bool exact,
			    bool *signal)
{
	uint64_t addr = exact ? ip : ip - 1;
	uint64_t key = addr << 1 | exact;
	struct step_entry e = { key, NULL, true, false };
	struct fde_rows *f;
	size_t i;

	if (u->cap_steps) {
		i = step_slot(u, key);
		if (u->steps[i].used) {
			*signal = u->steps[i].signal;
			return u->steps[i].state;
		}
	}
	if ((f = fde_containing(u, addr)) || (f = load_fde(u, addr)))
		e.state = row_state(f, addr);
	e.signal = is_sigreturn(u, ip);
	*signal = e.signal;
	if ((u->n_steps + 1) * 2 > u->cap_steps && steps_grow(u) < 0)
		return e.state;
	u->steps[step_slot(u, key)] = e;
	u->n_steps++;
	return e.state;
}

/*
 * One frame up. The fast way is unw_apply_reg_state with our cached row,
 * followed by the checks unw_step makes after its dwarf_step: a caller
 * whose RBP is undefined ends the chain. Returns what unw_step would:
 * > 0 stepped, 0 end of chain, < 0 error. *EXACT: whether the new frame
 * must be looked up at its IP (it was interrupted by a signal).
 */
static int step(struct unwinder *u, unw_cursor_t *c, bool *exact)
{
	unw_save_loc_t loc;
	unw_word_t ip;
	const void *state;
	bool signal = false;
	int ret;

	if (unw_get_reg(c, UNW_REG_IP, &ip) < 0)
		return -UNW_EBADREG;
	state = step_for(u, ip, *exact, &signal);
	if (!state || signal) {
		*exact = signal;
		return unw_step(c);
	}
	*exact = false;
	/* apply_reg_state gets no write access to the state: the cast
	 * only drops const from a copy libunwind reads. */
	if ((ret = unw_apply_reg_state(c, (void *)(uintptr_t)state)) < 0)
		return ret;
	if (unw_get_save_loc(c, UNW_X86_64_RBP, &loc) == 0 &&
	    loc.type == UNW_SLT_NONE)
		return 0;
	return 1;
}

/*
 * Whether RA is a return address: code that follows a call instruction
 * (e8 rel32, or ff /2 in its register, memory and rip-relative forms).
 */
static bool follows_call(struct unwinder *u, uint64_t ra)
{
	unsigned char b[8];

	if (!is_code(u, ra) || ra < sizeof(b) ||
	    pagecache_read(u->pc, ra - sizeof(b), b, sizeof(b)) < 0)
		return false;
	if (b[3] == 0xe8)			/* call rel32 */
		return true;
	/* ff /2 (with REX, SIB, displacement) ending 2..7 bytes before RA. */
	for (int len = 2; len <= 7; len++) {
		unsigned char op = b[8 - len], modrm = b[9 - len];

		if (op == 0xff && (modrm & 0x38) == 0x10)
			return true;
	}
	return false;
}

/*
 * The innermost frame without unwind info (musl builds libc with
 * -fno-asynchronous-unwind-tables): the tracer stops threads at an
 * allocator's first instruction, where the caller's frame is simply
 * RA = [rsp], rsp + 8, other registers unchanged. Taken only when [rsp]
 * really looks like a return address; libunwind's own fallback for such
 * frames follows rbp, which code without frame pointers leaves useless.
 * On success the caller's registers replace REGS.
 */
static bool step_from_entry(struct unwinder *u, struct user_regs_struct *regs)
{
	uint64_t ra;
	bool signal;

	if (step_for(u, regs->rip, true, &signal) || signal)
		return false;
	if (pagecache_read(u->pc, regs->rsp, &ra, sizeof(ra)) < 0 || !follows_call(u, ra))
		return false;
	regs->rip = ra;
	regs->rsp += 8;
	return true;
}

/* ---- the backend ---- */

static void lu_free(struct unwinder *u);

static struct unwinder *lu_new(pid_t pid, struct symbols *syms)
{
	struct unwinder *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->pid = pid;
	u->syms = syms;
	u->ctx.u = u;
	if (!(u->pc = pagecache_new(pid, &u->ro)))
		goto fail;
	eh_tables_init(&u->tables, syms, u->pc);
	if (load_ranges(u) < 0)
		goto fail;
	if (!(u->as = unw_create_addr_space(&accessors, 0))) {
		errno = ENOMEM;
		goto fail;
	}
	/* Our row cache does the caching. libunwind's own would only serve
	 * the unw_step fallback, mostly frames without FDE, which it never
	 * caches, yet it takes its signal-blocking lock on every step. */
	unw_set_caching_policy(u->as, UNW_CACHE_NONE);
	return u;
fail:
	{
		int e = errno;

		lu_free(u);
		errno = e;
	}
	return NULL;
}

static void lu_free(struct unwinder *u)
{
	if (!u)
		return;
	if (u->as)
		unw_destroy_addr_space(u->as);
	drop_rows(u);
	eh_tables_free(&u->tables);
	pagecache_free(u->pc);
	free(u->fdes);
	maps_ranges_free(&u->ro);
	maps_ranges_free(&u->exec);
	free(u);
}

static void lu_flush(struct unwinder *u)
{
	pagecache_flush(u->pc);
	drop_rows(u);
	eh_tables_drop(&u->tables);
	load_ranges(u);
	unw_flush_cache(u->as, 0, 0);
}

static int lu_read(struct unwinder *u, uint64_t addr, void *buf, size_t len)
{
	return pagecache_read(u->pc, addr, buf, len);
}

/* The registers of the frame under CURSOR that survive a call (the
 * callee-saved ones, rsp, rip); the others are unknown there: zero. */
static void frame_regs(unw_cursor_t *c, const struct user_regs_struct *inner,
		       struct user_regs_struct *out)
{
	static const struct {
		int reg;
		size_t off;
	} saved[] = {
		{ UNW_X86_64_RBX, offsetof(struct user_regs_struct, rbx) },
		{ UNW_X86_64_RBP, offsetof(struct user_regs_struct, rbp) },
		{ UNW_X86_64_R12, offsetof(struct user_regs_struct, r12) },
		{ UNW_X86_64_R13, offsetof(struct user_regs_struct, r13) },
		{ UNW_X86_64_R14, offsetof(struct user_regs_struct, r14) },
		{ UNW_X86_64_R15, offsetof(struct user_regs_struct, r15) },
		{ UNW_REG_SP, offsetof(struct user_regs_struct, rsp) },
		{ UNW_REG_IP, offsetof(struct user_regs_struct, rip) },
	};

	memset(out, 0, sizeof(*out));
	out->fs_base = inner->fs_base;
	out->gs_base = inner->gs_base;
	for (size_t i = 0; i < sizeof(saved) / sizeof(saved[0]); i++) {
		unw_word_t v;
		if (unw_get_reg(c, saved[i].reg, &v) == 0)
			memcpy((char *)out + saved[i].off, &v, sizeof(v));
	}
}

static int lu_backtrace_regs(struct unwinder *u, pid_t tid, const struct user_regs_struct *regs,
			     uint64_t *pcs, struct user_regs_struct *frames, int max)
{
	unw_cursor_t cursor;
	bool exact = true;	/* the innermost pc is no return address */
	int n = 0;

	if (max <= 0)
		return 0;
	if (frames)
		frames[n] = *regs;
	pcs[n++] = regs->rip;
	u->ctx.regs = *regs;
	/* Stack and data pages read before are stale; read through the
	 * thread being unwound, which is alive. */
	pagecache_new_generation(u->pc, tid);
	if (n < max && step_from_entry(u, &u->ctx.regs)) {
		if (frames)
			frames[n] = u->ctx.regs;	/* only rip and rsp moved */
		pcs[n++] = u->ctx.regs.rip;
		exact = false;
	}
	if (unw_init_remote(&cursor, u->as, &u->ctx) < 0)
		return n;
	while (n < max) {
		unw_word_t ip;

		if (step(u, &cursor, &exact) <= 0)
			break;
		if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0 ||
		    !is_code(u, ip))
			break;
		if (frames)
			frame_regs(&cursor, regs, &frames[n]);
		pcs[n++] = ip;
	}
	return n;
}

static int lu_backtrace(struct unwinder *u, pid_t tid, const struct user_regs_struct *regs,
			uint64_t *pcs, int max)
{
	return lu_backtrace_regs(u, tid, regs, pcs, NULL, max);
}

const struct unwind_backend unwind_backend = {
	.name = "libunwind",
	.create = lu_new,
	.destroy = lu_free,
	.flush = lu_flush,
	.backtrace = lu_backtrace,
	.backtrace_regs = lu_backtrace_regs,
	.read = lu_read,
};
