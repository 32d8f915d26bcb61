/*
 * fast: ptleak's side of the in-process probe (see fast.h, probe/abi.h
 * and doc/internals.md).
 *
 * Setting up, with every thread of the program stopped: the program
 * itself runs memfd_create (injected through our code page's syscall
 * gadget), ptleak opens that file through /proc/PID/fd, sizes it and
 * maps it; the program maps it too and closes its descriptor (the
 * mapping keeps the file alive: nothing on disk, no descriptor left to
 * the program). The probe's blob goes into a private mapping, made
 * read-only and executable, followed by its control page, which
 * MADV_WIPEONFORK zeroes in any forked child.
 */
#include "tracer/fast.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "probe/abi.h"
#include "symbols/cfi_rows.h"
#include "symbols/maps.h"
#include "symbols/symbols.h"
#include "symbols/unwind.h"
#include "tracer/allocdb.h"
#include "tracer/breakpoint.h"
#include "tracer/heap.h"
#include "tracer/hooks.h"
#include "tracer/proc.h"
#include "tracer/session.h"
#include "tracer/source.h"
#include "tracer/util.h"

/* The probe, built by the Makefile (objcopy -I binary). */
extern const uint8_t _binary_probe_bin_start[], _binary_probe_bin_end[];

#define N_CELLS 16384u	/* 3 MiB at 12 frames: the ring stays in the shared cache */
#define ROWS_CAP (64u << 20)
#define AT_HWCAP2 26
#define HWCAP2_FSGSBASE 2
#define OP_SERVED 0x100u	/* an unwind request answered ahead of order */
/* Consumed cells handed back to the producers at once: head's cache line
 * moves to the program once per batch. */
#define HEAD_BATCH 256u

/*
 * A vfork child runs on its parent's memory, and so on its probe and
 * ring, until it execs or exits, while the thread that called vfork (TID
 * in the ring: the tid the probe keeps for its thread pointer, which the
 * child shares; or the child's own, if the thread had no slot yet) is
 * blocked. So the events with sequence numbers in [FROM, TO) of either
 * tid are the child's, not the parent's: FROM is the ring's tail at the
 * vfork event (the child has not run yet, the thread can publish no
 * more), TO its tail at the vfork-done stop (the child is gone, the
 * thread has not run yet).
 */
#define VFORK_WINDOWS 16
struct vfork_window {
	uint32_t tid, child;
	uint64_t from, to;	/* to: UINT64_MAX while the child runs */
};

struct fast_module {
	uint64_t start;		/* of the rows' segment */
	uint64_t mod_start, mod_end;
	char *path;
	uint32_t index;		/* in sh->modules */
};

struct fast {
	int fd;			/* ptleak's descriptor of the memfd */
	struct probe_shared *sh;
	size_t size;
	uint64_t region;	/* blob + control page in the tracee */
	uint64_t shared;	/* the shared mapping in the tracee */
	struct fast_module *mods;
	size_t n_mods, cap_mods;
	uint64_t rows_used;	/* bytes after rows_off */
	uint32_t stack_next;	/* round robin when stacks[] is full */
	/* The last stack interned: a loop allocates from one place. */
	uint64_t last_pcs[PROBE_MAX_PCS];
	uint32_t last_n, last_id;
	uint64_t n_events, n_unwinds, n_rbrk;	/* for PTLEAK_DEBUG */
	/* An r_brk answered while the loop held the threads (a leak check,
	 * leaving): its asker, whose modules are hooked once they run. */
	pid_t rbrk_pending;
	size_t seen_threads;	/* threads at the last drain */
	/* vfork children running on this ring: see vfork_begin(). */
	struct vfork_window vfork[VFORK_WINDOWS];
	size_t n_vfork;
	uint64_t n_vfork_events;
};

extern const struct source_ops source_fast;	/* below */
extern const struct source_ops source_ptrace;	/* hooks.c: its int3 undone in restop() */

/* This source's state of process P (source.h). */
#define FAST(p) (*(struct fast **)source_state((p), &source_fast))

/* The ring a lone process's ptleak sleeps on, for the SIGCHLD handler. */
static struct probe_shared *volatile wake_sh;

static struct probe_cell *cell_at(struct probe_shared *sh, uint64_t seq)
{
	return (struct probe_cell *)((char *)sh + sh->cells_off +
				     (uint64_t)sh->cell_size * (seq & (sh->n_cells - 1)));
}

static long futex(uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, word, op, val, ts, NULL, 0);
}

static int inject(struct thread *t, long nr, uint64_t a0, uint64_t a1, uint64_t a2,
		  uint64_t a3, uint64_t a4, uint64_t a5, int64_t *ret)
{
	uint64_t args[6] = { a0, a1, a2, a3, a4, a5 };

	/* A forked child's code page is its copy of its parent's, at the
	 * same address, before the ptrace source has cloned its state. */
	struct process *p = t->proc;
	const struct bpset *bp = hooks_bpset(p) ? hooks_bpset(p) :
				 p->parent ? hooks_bpset(p->parent) : NULL;
	if (!bp) {
		errno = EINVAL;
		return -1;
	}
	if (thread_inject_syscall(t, bp_gadget(bp), nr, args, ret) < 0)
		return -1;
	if (*ret < 0 && *ret > -4096) {
		errno = (int)-*ret;
		return -1;
	}
	return 0;
}

static bool has_fsgsbase(pid_t pid)
{
	char path[64];
	uint64_t av[2];
	bool yes = false;

	snprintf(path, sizeof(path), "/proc/%d/auxv", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	while (fread(av, sizeof(av), 1, f) == 1 && av[0])
		if (av[0] == AT_HWCAP2)
			yes = (av[1] & HWCAP2_FSGSBASE) != 0;
	fclose(f);
	return yes;
}

static size_t cell_size(void)
{
	size_t words = hooks_num_callers > PR__N ? hooks_num_callers : PR__N;
	size_t n = sizeof(struct probe_cell) + 8u * words;

	return (n + 63) & ~(size_t)63;
}

/* The shared memory's layout: struct probe_shared, the cells, the rows. */
static size_t cells_off(void)
{
	return (sizeof(struct probe_shared) + 4095) & ~(size_t)4095;
}

static size_t rows_off(void)
{
	return (cells_off() + cell_size() * N_CELLS + 4095) & ~(size_t)4095;
}

static size_t ring_size(void)
{
	return rows_off() + ROWS_CAP;
}

/* A new ring in SH (zeros): every cell free for its first producer. */
static void ring_init(struct probe_shared *sh)
{
	sh->magic = PROBE_MAGIC;
	sh->cell_size = (uint32_t)cell_size();
	sh->n_cells = N_CELLS;
	sh->cells_off = cells_off();
	sh->rows_off = rows_off();
	sh->rows_cap = ROWS_CAP;
	sh->size = ring_size();
}

struct probe_shared *fast_setup_local(struct process *p)
{
	struct fast *f = xcalloc(1, sizeof(*f));

	f->fd = -1;
	f->size = ring_size();
	f->sh = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->sh == MAP_FAILED) {
		free(f);
		return NULL;
	}
	ring_init(f->sh);
	FAST(p) = f;
	return f->sh;
}

/* The memfd and both mappings of it; *SHARED gets the tracee's address. */
static struct fast *make_shared(struct thread *t)
{
	struct process *p = t->proc;
	struct user_regs_struct r;
	int64_t fd, addr;
	char name[16] = "ptleak-probe", saved[16], path[64];

	if (thread_getregs(t->tid, &r) < 0)
		return NULL;
	/* The name lives below the thread's stack pointer (and red zone)
	 * for the one syscall. */
	uint64_t at = (r.rsp - 1024) & ~15ull;
	if (proc_read(p, at, saved, sizeof(saved)) < 0 || proc_write(p, at, name, sizeof(name)) < 0)
		return NULL;
	int rc = inject(t, SYS_memfd_create, at, MFD_CLOEXEC, 0, 0, 0, 0, &fd);
	proc_write(p, at, saved, sizeof(saved));
	if (rc < 0)
		return NULL;

	struct fast *f = xcalloc(1, sizeof(*f));
	f->fd = -1;
	f->size = ring_size();
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", p->pid, (int)fd);
	f->fd = open(path, O_RDWR | O_CLOEXEC);
	if (f->fd < 0 || ftruncate(f->fd, (off_t)f->size) < 0)
		goto fail;
	f->sh = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (f->sh == MAP_FAILED) {
		f->sh = NULL;
		goto fail;
	}
	if (inject(t, SYS_mmap, 0, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, (uint64_t)fd, 0,
		   &addr) < 0)
		goto fail;
	f->shared = (uint64_t)addr;
	int64_t ignored;
	inject(t, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0, &ignored);
	ring_init(f->sh);
	return f;
fail:
	error("cannot share memory with process %d: %s", p->pid, strerror(errno));
	inject(t, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0, &ignored);
	if (f->sh)
		munmap(f->sh, f->size);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
	return NULL;
}

static int write_ctl(struct process *p, struct fast *f)
{
	struct probe_ctl c = {
		.armed = 1,
		.flags = has_fsgsbase(p->pid) ? PROBE_F_RDFSBASE : 0,
		.tracer_pid = getpid(),
		.num_callers = (uint32_t)hooks_num_callers,
		.shared = f->shared,
	};
	/* The header only: the slots and the cache are zero already. */
	return proc_write(p, f->region + PROBE_CTL_OFF, &c, offsetof(struct probe_ctl, thread_key));
}

static void on_sigchld(int sig)
{
	(void)sig;
	fast_sigchld();
}

/* A ptrace stop (SIGCHLD) wakes a loop asleep on a probe's ring. Once, in
 * ptleak: the program was forked before, with its own dispositions. */
static void catch_sigchld(void)
{
	static bool done;
	struct sigaction sa = { .sa_handler = on_sigchld, .sa_flags = SA_RESTART };

	if (done)
		return;
	done = true;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
}

int fast_setup(struct process *p, struct thread *t)
{
	size_t blob = (size_t)(_binary_probe_bin_end - _binary_probe_bin_start);
	int64_t addr, ignored;

	if (blob > PROBE_CODE_MAX) {
		error("internal error: the probe is larger than its room");
		return -1;
	}
	struct fast *f = make_shared(t);
	if (!f)
		return -1;
	if (inject(t, SYS_mmap, 0, PROBE_MAP_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0, &addr) < 0)
		goto fail;
	f->region = (uint64_t)addr;
	if (proc_write(p, f->region, _binary_probe_bin_start, blob) < 0 ||
	    inject(t, SYS_mprotect, f->region, PROBE_CODE_MAX, PROT_READ | PROT_EXEC, 0, 0, 0,
		   &ignored) < 0 ||
	    inject(t, SYS_madvise, f->region + PROBE_CTL_OFF, PROBE_CTL_SIZE, MADV_WIPEONFORK,
		   0, 0, 0, &ignored) < 0 ||
	    write_ctl(p, f) < 0)
		goto fail;
	FAST(p) = f;
	wake_sh = f->sh;
	catch_sigchld();
	debug("probe at 0x%" PRIx64 ", ring at 0x%" PRIx64, f->region, f->shared);
	return 0;
fail:
	error("cannot write the probe into process %d: %s", p->pid, strerror(errno));
	FAST(p) = f;
	fast_remove(p, t);
	fast_free(p);
	return -1;
}

int fast_setup_child(struct process *c, struct thread *t, struct process *parent)
{
	struct fast *pf = FAST(parent);
	int64_t ignored;

	if (!pf)
		return 0;
	struct fast *f = make_shared(t);
	if (!f)
		return -1;
	f->region = pf->region;
	/* The child's memory is a copy: the same modules at the same
	 * addresses, the same stacks. */
	struct probe_shared *sh = f->sh, *psh = pf->sh;
	memcpy(sh->modules, psh->modules, sizeof(sh->modules));
	memcpy(sh->stacks, psh->stacks, sizeof(sh->stacks));
	sh->n_stacks = psh->n_stacks;
	memcpy((char *)sh + sh->rows_off, (char *)psh + psh->rows_off, pf->rows_used);
	f->rows_used = pf->rows_used;
	sh->n_modules = psh->n_modules;
	f->cap_mods = f->n_mods = pf->n_mods;
	f->mods = xcalloc(f->cap_mods ? f->cap_mods : 1, sizeof(*f->mods));
	for (size_t i = 0; i < pf->n_mods; i++) {
		f->mods[i] = pf->mods[i];
		f->mods[i].path = xstrdup(pf->mods[i].path);
	}
	/* The parent's ring is mapped in the child too: not its business. */
	inject(t, SYS_munmap, pf->shared, pf->size, 0, 0, 0, 0, &ignored);
	FAST(c) = f;
	if (write_ctl(c, f) < 0) {
		error("cannot arm the probe in child %d: %s", c->pid, strerror(errno));
		return -1;
	}
	return 0;
}

void fast_free(struct process *p)
{
	struct fast *f = FAST(p);

	if (!f)
		return;
	debug("probe of process %d: %" PRIu64 " events, %" PRIu64 " stacks walked by ptleak, %"
	      PRIu64 " r_brk, %" PRIu64 " events of vfork children", p->pid, f->n_events,
	      f->n_unwinds, f->n_rbrk, f->n_vfork_events);
	if (wake_sh == f->sh)
		wake_sh = NULL;
	if (f->sh)
		munmap(f->sh, f->size);
	if (f->fd >= 0)
		close(f->fd);
	for (size_t i = 0; i < f->n_mods; i++)
		free(f->mods[i].path);
	free(f->mods);
	free(f);
	FAST(p) = NULL;
}

/* ---- sites ---------------------------------------------------------- */

struct rips {
	uint64_t *v;
	size_t n;
	bool all_stopped;
};

static void add_rip(struct thread *t, void *arg)
{
	struct rips *r = arg;
	struct user_regs_struct regs;

	if (!t->stopped || thread_getregs(t->tid, &regs) < 0) {
		r->all_stopped = false;
		return;
	}
	r->v[r->n++] = regs.rip;
}

static int hook(struct process *p, struct thread *t, uint64_t addr, uint64_t size,
		enum site_kind kind, int call, unsigned generation)
{
	struct fast *f = FAST(p);
	const char *why = NULL;

	/* Armed already (hooked at an earlier r_brk, by a jump or an int3):
	 * the caller's bp_add renews it, with no register read of every
	 * thread for it. */
	if (!f || bp_find(hooks_bpset(p), addr))
		return -1;
	struct rips r = { .v = xcalloc(p->n_threads + 1, sizeof(uint64_t)), .all_stopped = true };
	thread_foreach(p, add_rip, &r);
	int rc = -1;
	if (!r.all_stopped)
		why = "other threads are running";
	else
		rc = bp_add_jump(hooks_bpset(p), t, addr, size, f->region, kind, call,
				 generation, r.v, r.n, &why);
	free(r.v);
	if (rc < 0)
		debug("0x%" PRIx64 " keeps an int3: %s", addr, why);
	return rc;
}

int fast_hook(struct process *p, struct thread *t, uint64_t addr, uint64_t size, int call,
	      unsigned generation)
{
	return hook(p, t, addr, size, SITE_ALLOC, call, generation);
}

int fast_hook_rbrk(struct process *p, struct thread *t, uint64_t addr, uint64_t size)
{
	return hook(p, t, addr, size, SITE_RBRK, PROBE_CALL_RBRK, 0);
}

int fast_hook_exit(struct process *p, struct thread *t, uint64_t addr, uint64_t size,
		   unsigned generation)
{
	return hook(p, t, addr, size, SITE_EXIT, PROBE_CALL_EXIT, generation);
}


/* ---- unwind tables -------------------------------------------------- */

/*
 * Rows are made per module on first need, not when it is mapped: a
 * program that allocates from few places (or rarely) never pays for the
 * tables of every library it links. A module without rows yet is none
 * the probe knows, so its first walk through it is an unwind request;
 * serving it, ptleak makes the rows of every module on that stack
 * (serve_unwind), and later walks through them stay in the probe.
 */

#define NO_ROWS UINT32_MAX	/* fast_module.index: tried, nothing usable */

struct build_ctx {
	struct process *p;
	struct fast *f;
	const struct symbols_module *sm;
	bool added;
};

static void add_module(struct fast *f, uint64_t start, const struct symbols_module *sm,
		       uint32_t index)
{
	if (f->n_mods == f->cap_mods) {
		f->cap_mods = f->cap_mods ? 2 * f->cap_mods : 32;
		f->mods = xrealloc(f->mods, f->cap_mods * sizeof(*f->mods));
	}
	f->mods[f->n_mods++] = (struct fast_module){
		.start = start, .mod_start = sm->start, .mod_end = sm->end,
		.path = xstrdup(sm->path ? sm->path : ""), .index = index,
	};
}

static void on_module(void *arg, const struct cfi_module *m)
{
	struct build_ctx *b = arg;
	struct fast *f = b->f;
	struct probe_shared *sh = f->sh;
	size_t bytes = m->n_rows * sizeof(struct probe_row);

	if (m->n_usable == 0 || sh->n_modules >= PROBE_MODULES ||
	    f->rows_used + bytes > sh->rows_cap)
		return;	/* no rows: the probe asks ptleak for these frames */
	uint64_t off = sh->rows_off + f->rows_used;
	memcpy((char *)sh + off, m->rows, bytes);
	f->rows_used += (bytes + 15) & ~(size_t)15;
	uint32_t idx = sh->n_modules;
	sh->modules[idx] = (struct probe_module){
		.start = m->start, .end = m->end, .rows_off = off,
		.n_rows = (uint32_t)m->n_rows, .live = 1,
	};
	__atomic_store_n(&sh->n_modules, idx + 1, __ATOMIC_RELEASE);
	add_module(f, m->start, b->sm, idx);
	b->added = true;
	debug("unwind rows for %s at 0x%" PRIx64 ": %zu rows, %zu usable", m->path, m->start,
	      m->n_rows, m->n_usable);
}

/* The rows of the module holding PC, unless it has them (or has none to
 * give) already. */
static void rows_for(struct process *p, uint64_t pc)
{
	struct fast *f = FAST(p);
	struct symbols_module sm;

	for (size_t i = 0; i < f->n_mods; i++)
		if (pc >= f->mods[i].mod_start && pc < f->mods[i].mod_end)
			return;
	if (symbols_module_at(p->syms, pc, &sm) < 0)
		return;
	struct build_ctx b = { p, f, &sm, false };
	cfi_rows_module(&sm, on_module, &b);
	if (!b.added)
		add_module(f, sm.start, &sm, NO_ROWS);
}

void fast_modules_changed(struct process *p)
{
	struct fast *f = FAST(p);

	if (!f)
		return;
	/* Retire the modules that are gone, or replaced at their address;
	 * new ones get their rows when a stack first needs them. */
	size_t k = 0;
	for (size_t i = 0; i < f->n_mods; i++) {
		struct fast_module *m = &f->mods[i];
		struct symbols_module sm;
		if (symbols_module_at(p->syms, m->start, &sm) == 0 && sm.start == m->mod_start &&
		    sm.end == m->mod_end && !strcmp(sm.path ? sm.path : "", m->path)) {
			f->mods[k++] = *m;
			continue;
		}
		debug("unwind rows of %s retired", m->path);
		if (m->index != NO_ROWS)
			__atomic_store_n(&f->sh->modules[m->index].live, 0, __ATOMIC_RELEASE);
		free(m->path);
	}
	f->n_mods = k;
}

/* ---- stack ranges --------------------------------------------------- */

static void stacks_write_begin(struct probe_shared *sh)
{
	__atomic_add_fetch(&sh->stacks_gen, 1, __ATOMIC_SEQ_CST);
}

static void stacks_write_end(struct probe_shared *sh)
{
	__atomic_add_fetch(&sh->stacks_gen, 1, __ATOMIC_SEQ_CST);
}

/* Tell the probe the range of the stack holding RSP. */
static void learn_stack(struct process *p, uint64_t rsp)
{
	struct fast *f = FAST(p);
	struct probe_shared *sh = f->sh;
	struct maps_ranges maps = { 0 };

	if (maps_read_all(p->pid, &maps) < 0) {
		maps_ranges_free(&maps);
		return;
	}
	for (size_t i = 0; i < maps.n; i++) {
		if (rsp < maps.v[i].start || rsp >= maps.v[i].end)
			continue;
		stacks_write_begin(sh);
		uint32_t slot = sh->n_stacks;
		for (uint32_t k = 0; k < sh->n_stacks; k++)
			if (rsp >= sh->stacks[k].lo && rsp < sh->stacks[k].hi)
				slot = k;	/* the stack grew: replace */
		if (slot == PROBE_STACKS)
			slot = f->stack_next++ % PROBE_STACKS;
		sh->stacks[slot].lo = maps.v[i].start;
		sh->stacks[slot].hi = maps.v[i].end;
		if (slot == sh->n_stacks)
			sh->n_stacks++;
		stacks_write_end(sh);
		break;
	}
	maps_ranges_free(&maps);
}

void fast_on_clone(struct process *p)
{
	struct fast *f = FAST(p);
	struct maps_ranges maps = { 0 };

	if (!f || !f->sh->n_stacks)
		return;
	struct probe_shared *sh = f->sh;
	if (maps_read_all(p->pid, &maps) < 0) {
		maps_ranges_free(&maps);
		return;
	}
	stacks_write_begin(sh);
	uint32_t k = 0;
	for (uint32_t i = 0; i < sh->n_stacks; i++) {
		bool still = false;
		for (size_t j = 0; j < maps.n && !still; j++)
			still = maps.v[j].start == sh->stacks[i].lo && maps.v[j].end == sh->stacks[i].hi;
		if (still)
			sh->stacks[k++] = sh->stacks[i];
	}
	sh->n_stacks = k;
	stacks_write_end(sh);
	maps_ranges_free(&maps);
}

/* ---- draining ------------------------------------------------------- */

/* The registers a request handed over (the entry's callee-saved ones,
 * rsp, and the site as rip), the others zero. */
static void cell_regs(const struct probe_cell *cell, struct user_regs_struct *r)
{
	memset(r, 0, sizeof(*r));
	r->rip = probe_cell_regs(cell)[PR_RIP];
	r->rsp = probe_cell_regs(cell)[PR_RSP];
	r->rbp = probe_cell_regs(cell)[PR_RBP];
	r->rbx = probe_cell_regs(cell)[PR_RBX];
	r->r12 = probe_cell_regs(cell)[PR_R12];
	r->r13 = probe_cell_regs(cell)[PR_R13];
	r->r14 = probe_cell_regs(cell)[PR_R14];
	r->r15 = probe_cell_regs(cell)[PR_R15];
}

/* Answer the request in CELL (its reply slot in n_pcs) with the N frames
 * at PCS: the waiting thread goes on. */
static void answer(struct process *p, struct probe_cell *cell, const uint64_t *pcs, int n)
{
	struct probe_shared *sh = FAST(p)->sh;

	if (cell->n_pcs < PROBE_THREADS) {
		struct probe_reply *rep = &sh->replies[cell->n_pcs];
		if (n > 0)
			memcpy(rep->pcs, pcs, (size_t)n * sizeof(pcs[0]));
		rep->n = (uint32_t)(n > 0 ? n : 0);
		__atomic_store_n(&rep->done, 1, __ATOMIC_RELEASE);
		futex(&rep->done, FUTEX_WAKE, INT_MAX, NULL);
	}
	cell->op |= OP_SERVED;
}

static void serve_unwind(struct process *p, struct probe_cell *cell)
{
	struct user_regs_struct r;
	uint64_t pcs[PROBE_MAX_PCS];
	int max = hooks_num_callers < (int)PROBE_MAX_PCS ? hooks_num_callers : (int)PROBE_MAX_PCS;

	cell_regs(cell, &r);
	int n = p->unw ? unwinder_backtrace(p->unw, (pid_t)cell->tid, &r, pcs, max) : 0;
	if (n < 1) {
		pcs[0] = r.rip;
		n = 1;
	}
	learn_stack(p, r.rsp);
	for (int i = 1; i < n; i++)
		rows_for(p, pcs[i] - 1);
	FAST(p)->n_unwinds++;
	answer(p, cell, pcs, n);
}

/* The (untraced until now) stop of thread T we asked for with
 * PTRACE_INTERRUPT, within a second; a signal met on the way is kept for
 * its resumption. false if it did not stop. */
static bool interrupt_thread(struct thread *t)
{
	struct timespec ms = { 0, 1000000 };
	int status;

	if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0)
		return false;
	for (int i = 0; i < 1000; i++) {
		pid_t r = waitpid(t->tid, &status, __WALL | WNOHANG);
		if (r == t->tid && WIFSTOPPED(status)) {
			if ((status >> 16) == 0 && WSTOPSIG(status) != SIGTRAP)
				t->pending_sig = WSTOPSIG(status);
			t->stopped = true;
			return true;
		}
		if (r == t->tid || (r < 0 && errno != EINTR))
			return false;	/* gone: its exit was all there was */
		nanosleep(&ms, NULL);
	}
	return false;
}

/* The thread that asked in CELL, interrupted (it waits in the probe for
 * the answer), if the request is to be served with it stopped; else
 * NULL: the request is only answered. */
static struct thread *stop_asker(struct process *p, const struct probe_cell *cell,
				 unsigned flags)
{
	struct thread *t = thread_find((pid_t)cell->tid);

	if ((flags & DRAIN_NO_STOPS) || p->role != ROLE_TRACED || !t || t->proc != p ||
	    t->stopped || !interrupt_thread(t))
		return NULL;
	return t;
}

static void resume_asker(struct thread *t)
{
	t->stopped = false;
	if (thread_resume(t, 0) < 0 && errno != ESRCH)
		error("cannot resume thread %d: %s", t->tid, strerror(errno));
}

/* The modules changed; T (stopped) hooks them, with every other thread
 * stopped too where the change is complete. */
static void rbrk_hook(struct process *p, struct thread *t)
{
	/* A change half made (RT_ADD) needs nobody else stopped. */
	if (!(hooks_modules_settled(p) &&
	      modules_begin(tracer_current, t, hooks_modules_changed))) {
		hooks_modules_changed(t);
		resume_asker(t);
	}
}

/* A thread stopped at ld.so's r_brk through the probe: the modules
 * changed. It waits in the probe for the answer. While the loop holds
 * every thread (a leak check asked as the program starts: libc's own
 * r_brk) it is only answered and the hooking waits for the threads to
 * run again (pending_rbrk): done never, the program's calls went
 * unseen. */
static void serve_rbrk(struct process *p, struct probe_cell *cell, unsigned flags)
{
	struct thread *t = stop_asker(p, cell, flags);

	FAST(p)->n_rbrk++;
	answer(p, cell, NULL, 0);	/* read once it runs again */
	if (t)
		rbrk_hook(p, t);
	else if (p->role == ROLE_TRACED)
		FAST(p)->rbrk_pending = (pid_t)cell->tid;
}

struct pick {
	bool stopped;
	struct thread *t;
};

static void pick_thread(struct thread *u, void *arg)
{
	struct pick *k = arg;

	if (!k->t && u->stopped == k->stopped && !u->exiting)
		k->t = u;
}

/* An r_brk answered without hooking (the loop held the threads, or its
 * asker was in another stop): served now, while the program runs, by a
 * thread stopped for it; or, every thread being held (the loop is about
 * to resume them all), by one of them, which the caller resumes. */
static void pending_rbrk(struct process *p)
{
	struct fast *f = FAST(p);
	struct thread *asker = thread_find(f->rbrk_pending);
	struct pick run = { false, NULL }, held = { true, NULL };

	f->rbrk_pending = 0;
	if (asker && (asker->proc != p || asker->exiting))
		asker = NULL;
	thread_foreach(p, pick_thread, &run);
	if (run.t) {
		struct thread *t = asker && !asker->stopped ? asker : run.t;
		if (interrupt_thread(t))
			rbrk_hook(p, t);
		return;
	}
	thread_foreach(p, pick_thread, &held);
	struct thread *t = asker && asker->stopped ? asker : held.t;
	if (t)
		hooks_modules_changed(t);
}

/*
 * A thread entered _exit through the probe: the process ends. As at trap
 * mode's int3 there, it is held and the loop collects the other threads'
 * stops for the scan at exit (LOOP_EXITING), which resumes it; the answer
 * is given now, read once it runs. Leaving, attaching or checking (the
 * loop holds every thread already) it is only answered, as trap mode's
 * int3 is then only stepped over: the scan comes at its exit event.
 */
static void serve_exit(struct process *p, struct probe_cell *cell, unsigned flags)
{
	struct tracer *tr = tracer_current;
	struct thread *t = tr && tr->state == LOOP_TRACING ? stop_asker(p, cell, flags) : NULL;
	struct user_regs_struct now, r;

	if (t) {
		cell_regs(cell, &r);
		if (thread_getregs(t->tid, &now) == 0)
			r.fs_base = now.fs_base;
		hooks_at_exit(t, probe_cell_regs(cell)[PR_RIP], &r);
	}
	answer(p, cell, NULL, 0);
	if (t && !exit_begin(tr, t)) {
		t->at_exit = false;
		resume_asker(t);
	}
}

static int read_keys(struct process *p, uint64_t *keys);

/* The stack of an allocation in CELL, interned (a loop allocates from
 * one place: the last one is kept). */
static uint32_t intern_cell(struct process *p, const struct probe_cell *cell)
{
	struct fast *f = FAST(p);
	uint32_t n = cell->n_pcs < PROBE_MAX_PCS ? cell->n_pcs : PROBE_MAX_PCS;

	if (n && n == f->last_n && !memcmp(cell->pcs, f->last_pcs, n * sizeof(uint64_t)))
		return f->last_id;
	f->last_id = allocdb_intern(p->db, cell->pcs, n);
	memcpy(f->last_pcs, cell->pcs, n * sizeof(uint64_t));
	f->last_n = n;
	return f->last_id;
}

/* --track-mmap's calls, as the ptrace source sees them (probe/abi.h says
 * where the probe puts their arguments). */
static void consume_mmap(struct process *p, const struct probe_cell *cell)
{
	uint64_t args[3] = { cell->ptr, cell->size, 0 };	/* munmap(addr, len) */
	uint32_t stack_id = 0;

	if (cell->call == CALL_MMAP) {
		args[0] = 0;	/* mmap(addr, len, ...) */
		stack_id = intern_cell(p, cell);
	} else if (cell->call == CALL_MREMAP) {
		args[0] = cell->old_ptr;	/* mremap(old, old_len, new_len, ...) */
		args[1] = cell->n_pcs ? cell->pcs[0] : 0;
		args[2] = cell->size;
	}
	hooks_mmap_event(p, (enum alloc_call)cell->call, args, cell->ptr, stack_id);
}

/* The slot index of the thread whose thread pointer is FS_BASE in P's
 * probe, its tid in *TID; -1 if it has none. */
static int slot_of(struct process *p, uint64_t fs_base, uint32_t *tid)
{
	static uint64_t keys[PROBE_THREADS];
	uint64_t ctl = FAST(p)->region + PROBE_CTL_OFF;

	if (!fs_base || read_keys(p, keys) < 0)
		return -1;
	for (uint32_t i = 0; i < PROBE_THREADS; i++)
		if ((keys[i] & ~PROBE_BUSY) == fs_base)
			return proc_read(p, ctl + offsetof(struct probe_ctl, thread_tid) + 4u * i,
					 tid, sizeof(*tid)) < 0 ? -1 : (int)i;
	return -1;
}

static uint64_t fs_base_of(struct thread *t)
{
	struct user_regs_struct r;

	return thread_getregs(t->tid, &r) == 0 ? r.fs_base : t->fs_base;
}

/* Thread T of P called vfork, its child CHILD not run yet. */
static void vfork_begin(struct process *p, struct thread *t, pid_t child)
{
	struct fast *f = FAST(p);
	uint32_t tid = (uint32_t)t->tid;

	if (!f || !f->region)
		return;
	if (f->n_vfork == VFORK_WINDOWS) {
		error("process %d: more than %d vfork children at once: the events of "
		      "child %d may count as its parent's", p->pid, VFORK_WINDOWS, child);
		return;
	}
	slot_of(p, fs_base_of(t), &tid);
	f->vfork[f->n_vfork++] = (struct vfork_window){
		.tid = tid, .child = (uint32_t)child,
		.from = __atomic_load_n(&f->sh->tail, __ATOMIC_ACQUIRE), .to = UINT64_MAX,
	};
}

/* T's vfork child is gone (vfork-done stop): T's events are its own
 * again, and its slot's tid is T's (the child may have taken the slot
 * with its own tid). */
static void fast_source_vfork_done(struct thread *t)
{
	struct process *p = t->proc;
	struct fast *f = FAST(p);
	uint32_t tid = 0;

	if (!f || !f->region || p->role != ROLE_TRACED)
		return;
	int idx = slot_of(p, fs_base_of(t), &tid);
	uint64_t tail = __atomic_load_n(&f->sh->tail, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < f->n_vfork; i++)
		if (f->vfork[i].to == UINT64_MAX && (f->vfork[i].tid == (uint32_t)t->tid ||
						       (idx >= 0 && f->vfork[i].tid == tid)))
			f->vfork[i].to = tail;
	uint32_t own = (uint32_t)t->tid;
	if (idx >= 0 && tid != own)
		proc_write(p, f->region + PROBE_CTL_OFF + offsetof(struct probe_ctl, thread_tid) +
			   4u * (uint32_t)idx, &own, sizeof(own));
}

/* Whether CELL (published, not consumed yet) is a vfork child's. */
static bool vfork_child_event(const struct fast *f, const struct probe_cell *cell)
{
	const struct probe_shared *sh = f->sh;
	uint64_t index = (uint64_t)((const char *)cell - (const char *)sh - sh->cells_off) /
			 sh->cell_size;
	uint64_t seq = cell->seq - 1 + index;	/* its lap's base + its index */

	for (size_t i = 0; i < f->n_vfork; i++) {
		const struct vfork_window *w = &f->vfork[i];
		if (seq >= w->from && seq < w->to && (cell->tid == w->tid || cell->tid == w->child))
			return true;
	}
	return false;
}

/* Windows consumed up to HEAD (in order: none left ahead) are done. */
static void vfork_forget(struct fast *f, uint64_t head)
{
	size_t k = 0;

	for (size_t i = 0; i < f->n_vfork; i++)
		if (f->vfork[i].to > head)
			f->vfork[k++] = f->vfork[i];
	f->n_vfork = k;
}

static void consume(struct process *p, struct probe_cell *cell, uint64_t now, unsigned flags)
{
	struct alloc_event ev = {
		.call = (enum alloc_call)cell->call, .tid = (pid_t)cell->tid,
		.ptr = cell->ptr, .old_ptr = cell->old_ptr, .size = cell->size,
		.time_ns = now,
	};

	switch (cell->op) {
	case PROBE_OP_ALLOC:
		ev.op = OP_ALLOC;
		break;
	case PROBE_OP_FREE:
		ev.op = OP_FREE;
		break;
	case PROBE_OP_REALLOC_ENTER:
		ev.op = OP_REALLOC_ENTER;
		break;
	case PROBE_OP_REALLOC_EXIT:
		ev.op = OP_REALLOC_EXIT;
		break;
	case PROBE_OP_UNWIND:
		serve_unwind(p, cell);
		return;
	case PROBE_OP_RBRK:
		serve_rbrk(p, cell, flags);
		return;
	case PROBE_OP_EXIT:
		serve_exit(p, cell, flags);
		return;
	case PROBE_OP_REGION:
		break;	/* below: not a block */
	default:
		return;	/* served ahead of order already */
	}
	if (vfork_child_event(FAST(p), cell)) {
		FAST(p)->n_vfork_events++;
		return;	/* a vfork child's, in its parent's memory */
	}
	FAST(p)->n_events++;
	if (p->role != ROLE_TRACED || !p->db)
		return;
	if (cell->op == PROBE_OP_REGION) {
		/* mmap(addr, len), sbrk(increment), mremap(old, old len, new len) */
		uint64_t args[3] = { 0, cell->size, 0 };
		if (cell->call == CALL_SBRK)
			args[0] = cell->size;
		else if (cell->call == CALL_MREMAP)
			args[0] = cell->old_ptr, args[1] = cell->n_pcs ? cell->pcs[0] : 0,
			args[2] = cell->size;
		hooks_region_event(p, (enum alloc_call)cell->call, args, cell->ptr);
		return;
	}
	if (ev.call == CALL_MMAP || ev.call == CALL_MREMAP || ev.call == CALL_MUNMAP) {
		consume_mmap(p, cell);
		return;
	}
	if (ev.op == OP_ALLOC || ev.op == OP_REALLOC_EXIT)
		ev.stack_id = intern_cell(p, cell);
	allocdb_record(p->db, &ev);
}

/*
 * Requests published behind a cell not finished yet (a writer preempted,
 * or interrupted by a signal whose handler asks for an unwind): they do
 * not touch the table, so they need not wait for their turn.
 *
 * DRAIN_AHEAD (every thread of P stopped, for a scan): the events too.
 * The unfinished cell's writer is stopped between taking its number and
 * publishing: a free not done yet (the probe records it first), or an
 * allocation whose pointer has not reached the program yet; nothing
 * published after it can depend on it. Left in the ring, the frees after
 * it would keep freed blocks in the table, lost to the scan. Each is
 * marked served, and skipped when its turn comes.
 */
static void serve_ahead(struct process *p, uint64_t head, uint64_t tail, uint64_t now,
			unsigned flags)
{
	struct probe_shared *sh = FAST(p)->sh;
	uint64_t end = tail < head + sh->n_cells ? tail : head + sh->n_cells;

	for (uint64_t s = head + 1; s < end; s++) {
		struct probe_cell *cell = cell_at(sh, s);
		if (__atomic_load_n(&cell->seq, __ATOMIC_ACQUIRE) !=
		    probe_cell_published(s, sh->n_cells))
			continue;
		if (cell->op == PROBE_OP_UNWIND)
			serve_unwind(p, cell);
		else if (cell->op == PROBE_OP_RBRK)
			serve_rbrk(p, cell, flags);
		else if (cell->op == PROBE_OP_EXIT)
			serve_exit(p, cell, flags);
		else if ((flags & DRAIN_AHEAD) && !(cell->op & OP_SERVED)) {
			consume(p, cell, now, flags);
			cell->op |= OP_SERVED;
		}
	}
}

/* Producers asleep on a full ring: there is room now. */
static void wake_producers(struct probe_shared *sh)
{
	__atomic_add_fetch(&sh->space, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&sh->waiters, __ATOMIC_SEQ_CST))
		futex(&sh->space, FUTEX_WAKE, INT_MAX, NULL);
}

size_t fast_drain(struct process *p, unsigned flags)
{
	bool final = flags & DRAIN_FINAL;
	struct fast *f = FAST(p);
	size_t n = 0;
	uint64_t now = now_ns(), waited_since = 0;

	if (!f)
		return 0;
	struct probe_shared *sh = f->sh;
	uint64_t head = sh->head;
	/* While the program runs, up to what was reserved when the drain
	 * began: that covers every event that happened before it (a thread's
	 * events before its stop among them), and a drain that chased
	 * threads allocating as fast as it consumes never ended, so the loop
	 * never got back to a leak check asked meanwhile (seen: the
	 * sanitizer build, 3 threads at full speed, a check waited > 20 s). */
	uint64_t until = final ? UINT64_MAX : __atomic_load_n(&sh->tail, __ATOMIC_ACQUIRE);
	/* The producers' tail is read only at a cell not published yet, and
	 * head written back in batches: both cache lines bounce otherwise. */
	while (head < until) {
		struct probe_cell *cell = cell_at(sh, head);
		if (__atomic_load_n(&cell->seq, __ATOMIC_ACQUIRE) !=
		    probe_cell_published(head, sh->n_cells)) {
			uint64_t tail = __atomic_load_n(&sh->tail, __ATOMIC_ACQUIRE);
			if (head == tail)
				break;
			serve_ahead(p, head, tail, now, flags);
			if (!final)
				break;
			/* Exiting: give a running writer 2 ms, then skip what a
			 * killed thread left unfinished. */
			if (!waited_since)
				waited_since = now_ns();
			if (now_ns() - waited_since < 2000000) {
				sched_yield();
				continue;
			}
		} else {
			consume(p, cell, now, flags);
		}
		waited_since = 0;
		/* The cell is free for the next lap once head has passed it
		 * (the probe's claim); head is written back every HEAD_BATCH. */
		head++;
		if (++n % HEAD_BATCH == 0) {
			__atomic_store_n(&sh->head, head, __ATOMIC_RELEASE);
			wake_producers(sh);
		}
	}
	__atomic_store_n(&sh->head, head, __ATOMIC_RELEASE);
	wake_producers(sh);
	vfork_forget(f, head);
	return n;
}

void fast_wait(struct process *const *procs, size_t n, long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	struct probe_shared *sh = NULL;

	for (size_t i = 0; i < n; i++) {
		if (!FAST(procs[i]))
			continue;
		if (sh) {	/* several rings: no single word to sleep on */
			ts.tv_nsec = ts.tv_nsec > 200000 ? 200000 : ts.tv_nsec;
			ts.tv_sec = 0;
			nanosleep(&ts, NULL);
			return;
		}
		sh = FAST(procs[i])->sh;
	}
	if (!sh) {
		nanosleep(&ts, NULL);
		return;
	}
	wake_sh = sh;
	uint32_t v = __atomic_load_n(&sh->doorbell, __ATOMIC_ACQUIRE);
	__atomic_store_n(&sh->sleeping, 1, __ATOMIC_SEQ_CST);
	uint64_t head = sh->head;
	if (__atomic_load_n(&cell_at(sh, head)->seq, __ATOMIC_SEQ_CST) !=
	    probe_cell_published(head, sh->n_cells))
		futex(&sh->doorbell, FUTEX_WAIT, v, &ts);
	__atomic_store_n(&sh->sleeping, 0, __ATOMIC_RELEASE);
}

void fast_sigchld(void)
{
	struct probe_shared *sh = wake_sh;

	if (!sh)
		return;
	__atomic_add_fetch(&sh->doorbell, 1, __ATOMIC_SEQ_CST);
	futex(&sh->doorbell, FUTEX_WAKE, INT_MAX, NULL);
}

/* ---- leaving -------------------------------------------------------- */

void fast_disarm(struct process *p)
{
	struct fast *f = FAST(p);
	uint32_t zero = 0;

	if (f && proc_write(p, f->region + PROBE_CTL_OFF + offsetof(struct probe_ctl, armed),
			    &zero, sizeof(zero)) < 0)
		error("cannot disarm the probe in process %d: %s", p->pid, strerror(errno));
}

/* The probe's per-thread keys (fs_base | PROBE_BUSY), read from P. */
static int read_keys(struct process *p, uint64_t *keys)
{
	return proc_read(p, FAST(p)->region + PROBE_CTL_OFF + offsetof(struct probe_ctl, thread_key),
			 keys, PROBE_THREADS * sizeof(*keys));
}

size_t fast_thread_pointers(struct process *p, uint64_t *out, size_t max)
{
	static uint64_t keys[PROBE_THREADS];
	size_t n = 0;

	if (!FAST(p) || read_keys(p, keys) < 0)
		return 0;
	for (size_t i = 0; i < PROBE_THREADS && n < max; i++)
		if (keys[i] & ~PROBE_BUSY)
			out[n++] = keys[i] & ~PROBE_BUSY;
	return n;
}

bool fast_busy(struct process *p, const uint64_t *rips, size_t n)
{
	struct fast *f = FAST(p);
	static uint64_t keys[PROBE_THREADS];

	if (!f)
		return false;
	for (size_t i = 0; i < n; i++)
		if (rips[i] - f->region < PROBE_CODE_MAX)
			return true;
	if (read_keys(p, keys) < 0)
		return true;
	for (size_t i = 0; i < PROBE_THREADS; i++)
		if (keys[i] & PROBE_BUSY)
			return true;
	return false;
}

void fast_set_allocator(struct process *p, bool foreign, const struct symbols_range *mods,
			size_t n)
{
	struct fast *f = FAST(p);
	uint64_t ctl = f ? f->region + PROBE_CTL_OFF : 0;
	uint32_t flags, count = 0;
	struct { uint64_t lo, hi; } ranges[PROBE_ALLOC_RANGES];

	if (!f || proc_read(p, ctl + offsetof(struct probe_ctl, flags), &flags, sizeof(flags)) < 0)
		return;
	for (size_t i = 0; foreign && i < n && count < PROBE_ALLOC_RANGES; i++) {
		ranges[count].lo = mods[i].start;
		ranges[count++].hi = mods[i].end;
	}
	/* The ranges before the flag that makes the probe read them. */
	if ((count && proc_write(p, ctl + offsetof(struct probe_ctl, alloc_ranges), ranges,
				 count * sizeof(ranges[0])) < 0) ||
	    proc_write(p, ctl + offsetof(struct probe_ctl, n_alloc_ranges), &count,
		       sizeof(count)) < 0)
		error("cannot hand the allocator's ranges to the probe in process %d: %s", p->pid,
		      strerror(errno));
	const uint32_t bits = PROBE_F_CLEAR_LINK | PROBE_F_ALLOC_REGIONS;
	flags = foreign ? flags | bits : flags & ~bits;
	if (proc_write(p, ctl + offsetof(struct probe_ctl, flags), &flags, sizeof(flags)) < 0)
		error("cannot set the probe's flags in process %d: %s", p->pid, strerror(errno));
}

bool fast_thread_busy(struct process *p, uint64_t fs_base)
{
	static uint64_t keys[PROBE_THREADS];

	if (!FAST(p) || !fs_base || read_keys(p, keys) < 0)
		return false;
	for (size_t i = 0; i < PROBE_THREADS; i++)
		if (keys[i] == (fs_base | PROBE_BUSY))
			return true;
	return false;
}

int fast_remove(struct process *p, struct thread *t)
{
	struct fast *f = FAST(p);
	int64_t ret;
	int rc = 0;

	if (!f)
		return 0;
	if (f->region && inject(t, SYS_munmap, f->region, PROBE_MAP_SIZE, 0, 0, 0, 0, &ret) < 0)
		rc = -1;
	if (f->shared && inject(t, SYS_munmap, f->shared, f->size, 0, 0, 0, 0, &ret) < 0)
		rc = -1;
	if (rc < 0)
		error("cannot unmap the probe from process %d: %s", p->pid, strerror(errno));
	else
		f->region = f->shared = 0;
	return rc;
}

bool fast_owns(struct process *p, uint64_t addr)
{
	const struct fast *f = FAST(p);

	return f && ((f->region && addr - f->region < PROBE_MAP_SIZE) ||
		     (f->shared && addr - f->shared < f->size));
}

void fast_emergency(struct process *p)
{
	struct fast *f = FAST(p);
	uint32_t zero = 0;

	if (!f)
		return;
	__atomic_store_n(&f->sh->dead, 1, __ATOMIC_SEQ_CST);
	if (p->memfd >= 0)
		pwrite(p->memfd, &zero, sizeof(zero),
		       (off_t)(f->region + PROBE_CTL_OFF + offsetof(struct probe_ctl, armed)));
}

bool fast_active(struct process *p)
{
	return FAST(p) != NULL;
}

/* ---- the source ----------------------------------------------------- */

static void note_running(struct thread *t, void *arg)
{
	if (!t->stopped && !t->exiting)
		*(bool *)arg = true;
}

/* Leaving, attaching, checking or exiting, the loop holds every thread
 * in its stop: the probe's requests must not stop (and resume) one of
 * them; once all of P's are stopped, for the scan, events are consumed
 * ahead of an unfinished cell (serve_ahead). */
static unsigned drain_flags(struct process *p)
{
	bool running = false;

	if (!tracer_current || tracer_current->state == LOOP_TRACING)
		return 0;
	thread_foreach(p, note_running, &running);
	return DRAIN_NO_STOPS | (running ? 0 : DRAIN_AHEAD);
}

static int fast_source_drain(struct process *p)
{
	struct fast *f = FAST(p);

	if (!f)
		return 0;
	/* A new thread, before it runs: the stacks handed over still hold? */
	if (p->n_threads > f->seen_threads)
		fast_on_clone(p);
	f->seen_threads = p->n_threads;
	unsigned flags = drain_flags(p);
	fast_drain(p, flags);
	if (f->rbrk_pending && !flags)
		pending_rbrk(p);
	return 0;
}

static int fast_source_drain_final(struct process *p)
{
	fast_drain(p, DRAIN_FINAL | DRAIN_NO_STOPS);
	return 0;
}

static bool fast_source_polling(struct process *p)
{
	return FAST(p) != NULL;
}

static void fast_source_wait(struct process *const *procs, size_t n, long us)
{
	fast_wait(procs, n, us);
}

/*
 * A vfork child: its events in the ring are not its parent's (vfork_begin).
 * A forked child: without -f, nothing to do (its control page reads as
 * zeros: its probe passes every call through; the ptrace source puts its
 * prologues back). With -f, its own ring, made while it is stopped,
 * before it runs: its first stop may not have been reported yet, then it
 * is waited for here and the child resumed once its probe is armed.
 */
static void fast_source_fork_child(struct process *parent, struct process *c,
				   struct thread *t, bool follow)
{
	struct thread *ct = thread_find(c->pid);
	bool ours = false;

	if (c->role == ROLE_VFORK_CHILD) {
		vfork_begin(parent, t, c->pid);
		return;
	}
	if (!follow || !FAST(parent) || !ct)
		return;
	/* Its first stop already taken by the loop (it will resume it)? */
	bool reported = false;
	for (size_t i = 0; tracer_current && i < tracer_current->n_early; i++)
		reported = reported || tracer_current->early[i] == c->pid;
	if (!reported) {
		/* Not reported yet: wait for that stop here (auto-attached
		 * children stop at once), and resume the child ourselves
		 * (the loop will never see that stop). */
		struct timespec ms = { 0, 1000000 };
		int status;
		for (int i = 0; i < 1000 && !ours; i++) {
			pid_t w = waitpid(ct->tid, &status, __WALL | WNOHANG);
			if (w == ct->tid && WIFSTOPPED(status))
				ours = true;
			else if (w == ct->tid || (w < 0 && errno != EINTR))
				break;
			else
				nanosleep(&ms, NULL);
		}
		if (!ours) {
			error("child %d: its allocations are not recorded (it did not stop)", c->pid);
			return;
		}
	}
	if (fast_setup_child(c, ct, parent) < 0)
		error("child %d: its allocations are not recorded", c->pid);
	if (ours && ptrace(PTRACE_CONT, ct->tid, 0, 0) < 0 && errno != ESRCH)
		error("cannot resume child %d: %s", c->pid, strerror(errno));
}

/* Stop T again after it ran: its interrupt stop (a signal met on the way
 * is kept for its detach; our trampoline's int3 is undone as the ptrace
 * source's emergency path does). false if it is gone. */
static bool restop(struct thread *t)
{
	struct timespec ms = { 0, 1000000 };
	int status;

	ptrace(PTRACE_INTERRUPT, t->tid, 0, 0);
	for (int i = 0; i < 1000; i++) {
		pid_t w = waitpid(t->tid, &status, __WALL | WNOHANG);
		if (w == t->tid && WIFSTOPPED(status)) {
			int sig = WSTOPSIG(status);
			if ((status >> 16) == 0 && sig != SIGTRAP) {
				t->pending_sig = sig;
			} else if ((status >> 16) == 0) {
				source_ptrace.emergency_thread(t);	/* our int3 */
				continue;	/* the interrupt is still to come */
			}
			return true;
		}
		if (w == t->tid || (w < 0 && errno != EINTR))
			return false;
		nanosleep(&ms, NULL);
	}
	return false;
}

/*
 * Leaving P, every thread stopped: see doc/internals.md ("Leaving"). No
 * thread may enter the probe again (disarmed, prologues restored); those
 * inside it run out of it, 2 ms at a time, all of them (one may wait for
 * a lock another holds), then everything is unmapped.
 */
static int fast_source_leave(struct process *p, struct thread *const *threads, size_t n)
{
	struct fast *f = FAST(p);
	uint64_t *rips = xcalloc(n + 1, sizeof(*rips));
	bool *ran = xcalloc(n + 1, sizeof(*ran));
	bool settled = false;

	if (!f || p->role != ROLE_TRACED || !n) {
		free(rips);
		free(ran);
		return 0;
	}
	fast_drain(p, DRAIN_NO_STOPS);
	fast_disarm(p);
	bp_restore_in(hooks_bpset(p), p);
	for (int tries = 0; tries < 200 && !settled; tries++) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			struct user_regs_struct r;
			if (!threads[i]->exiting && thread_getregs(threads[i]->tid, &r) == 0)
				rips[k++] = r.rip;
		}
		if (!fast_busy(p, rips, k)) {
			settled = true;
			break;
		}
		struct timespec ms = { 0, 2000000 };
		for (size_t i = 0; i < n; i++)
			ran[i] = !threads[i]->exiting && !threads[i]->group_stop &&
				 ptrace(PTRACE_CONT, threads[i]->tid, 0, 0) == 0;
		nanosleep(&ms, NULL);
		for (size_t i = 0; i < n; i++)
			if (ran[i] && !restop(threads[i]))
				threads[i]->exiting = true;	/* gone meanwhile */
		fast_drain(p, DRAIN_NO_STOPS);
	}
	free(rips);
	free(ran);
	if (!settled) {
		error("process %d: a thread stays inside ptleak's probe; its pages stay, inert",
		      p->pid);
		return 0;
	}
	struct thread *runner = NULL;
	for (size_t i = 0; i < n && !runner; i++)
		if (!threads[i]->exiting)
			runner = threads[i];
	return runner ? fast_remove(p, runner) : 0;
}

static void fast_source_emergency(struct process *p)
{
	fast_emergency(p);
}

/* The crash path's view of the threads (no allocation in a signal
 * handler): their rips, and whether one is in ptleak's code. */
#define EMERGENCY_THREADS 1024
struct emergency_scan {
	struct process *p;
	uint64_t rips[EMERGENCY_THREADS];
	size_t n;
	bool in_pages, lost;
};

static void emergency_rip(struct thread *t, void *arg)
{
	struct emergency_scan *es = arg;
	struct user_regs_struct r;

	if (t->exiting)
		return;
	if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0 || es->n == EMERGENCY_THREADS) {
		es->lost = true;
		return;
	}
	es->rips[es->n++] = r.rip;
	if (bp_in_pages(hooks_bpset(es->p), r.rip))
		es->in_pages = true;
}

static void emergency_run(struct thread *t, void *arg)
{
	(void)arg;
	t->ran = !t->exiting && !t->group_stop && ptrace(PTRACE_CONT, t->tid, 0, 0) == 0;
}

static void emergency_restop(struct thread *t, void *arg)
{
	(void)arg;
	if (t->ran && !restop(t))
		t->exiting = true;	/* gone meanwhile */
	t->ran = false;
}

/*
 * ptleak dies, every thread of P stopped, the probe dead and the
 * prologues restored (fast_emergency, the ptrace source's emergency): a
 * thread inside the probe or in a recorded call still goes through the
 * code pages (the site's descriptor, its slot) and the probe, so nothing
 * may be unmapped under it. As fast_source_leave does, the threads run
 * out of it, 2 ms at a time (a dead probe waits for nothing), then the
 * probe and the ring go; the ptrace source unmaps the code pages after
 * this (it keeps them while the probe stays: fast_mapped). Syscalls and
 * our own memory only.
 */
static void fast_source_emergency_unmap(struct process *p, struct thread *runner)
{
	static struct emergency_scan es;
	struct fast *f = FAST(p);

	if (!f || !f->region || p->role != ROLE_TRACED || p->memfd < 0)
		return;
	for (int tries = 0; tries < 100; tries++) {
		es = (struct emergency_scan){ .p = p };
		thread_foreach(p, emergency_rip, &es);
		if (es.lost)
			return;
		if (!es.in_pages && !fast_busy(p, es.rips, es.n))
			break;
		if (tries == 99)
			return;	/* a thread stays inside: everything stays, inert */
		struct timespec ms = { 0, 2000000 };
		thread_foreach(p, emergency_run, NULL);
		nanosleep(&ms, NULL);
		thread_foreach(p, emergency_restop, NULL);
	}
	if (runner->exiting)
		return;
	int64_t ret;
	if (inject(runner, SYS_munmap, f->region, PROBE_MAP_SIZE, 0, 0, 0, 0, &ret) == 0)
		f->region = 0;
	if (f->shared && inject(runner, SYS_munmap, f->shared, f->size, 0, 0, 0, 0, &ret) == 0)
		f->shared = 0;
}

bool fast_mapped(struct process *p)
{
	const struct fast *f = FAST(p);

	return f && f->region;
}

static void fast_source_release(struct process *p)
{
	fast_free(p);
}

const struct source_ops source_fast = {
	.name = "fast",
	.drain = fast_source_drain,
	.drain_final = fast_source_drain_final,
	.polling = fast_source_polling,
	.wait = fast_source_wait,
	.fork_child = fast_source_fork_child,
	.vfork_done = fast_source_vfork_done,
	.leave = fast_source_leave,
	.emergency = fast_source_emergency,
	.emergency_unmap = fast_source_emergency_unmap,
	.release = fast_source_release,
};
