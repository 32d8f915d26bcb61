/*
 * probe: the code ptleak writes into the traced program (fast mode).
 *
 * Every hooked allocator entry starts with a jmp to a per-site stub in a
 * page ptleak mapped near it; the stub loads the site's descriptor into
 * r11 and jumps to probe_entry below. probe_entry saves the registers in
 * a frame on the program's stack and asks probe_enter whether to record
 * this call:
 *
 *  - no (ptleak not listening, a forked child, a nested call such as
 *    musl's calloc calling malloc, free, or a call ptleak cannot see):
 *    the registers are restored and the thread jumps to the site's slot
 *    (the displaced instructions, relocated, then a jump back): the
 *    allocator runs as if nothing were there;
 *  - yes: the stack was walked at the entry; the real function is called
 *    from here and probe_exit records its result; then we return to the
 *    caller.
 *
 * Freestanding: no libc, no relocations (the build checks), no writable
 * data in the blob; its state lives in struct probe_ctl, which the linker
 * script places at PROBE_CTL_OFF from the code, reached RIP-relatively.
 * Nothing here may fault or block forever: stack reads are bounded by the
 * thread's stack range ptleak handed over, waits for ptleak time out and
 * check that it lives, and a dead ptleak makes the probe quiet.
 */
#include "probe/abi.h"
#include "probe/walk.h"

#define HIDDEN __attribute__((visibility("hidden")))

HIDDEN struct probe_ctl probe_ctl __attribute__((section(".ctl")));

/* Layout of what probe_entry pushes; the asm below depends on it. */
struct probe_frame {
	uint64_t pad[2];
	uint64_t pcs[PROBE_MAX_PCS];
	int32_t n_pcs;
	uint32_t slot;
	uint64_t r11, r9, r8, rcx, rdx, rsi, rdi, rax, r15, r14, r13, r12, rbx, rbp;
	uint64_t ret;		/* the caller's return address: entry rsp */
};
_Static_assert(sizeof(struct probe_frame) == 536 + 14 * 8 + 8, "frame layout");
_Static_assert(sizeof(struct probe_ctl) <= PROBE_CTL_SIZE, "ctl size");

HIDDEN int probe_enter(struct probe_frame *f);
HIDDEN void probe_exit(struct probe_frame *f, uint64_t rax);

__asm__(
	".section .text.entry,\"ax\",@progbits\n"
	".globl probe_entry\n"
	".hidden probe_entry\n"
	"probe_entry:\n"
	"	push %rbp\n	push %rbx\n	push %r12\n	push %r13\n"
	"	push %r14\n	push %r15\n	push %rax\n	push %rdi\n"
	"	push %rsi\n	push %rdx\n	push %rcx\n	push %r8\n"
	"	push %r9\n	push %r11\n"
	"	sub $536, %rsp\n"
	"	mov %rsp, %rdi\n"
	"	cld\n"
	"	call probe_enter\n"
	"	test %eax, %eax\n"
	"	jnz 1f\n"
	"	add $536, %rsp\n"
	"	pop %r11\n	pop %r9\n	pop %r8\n	pop %rcx\n"
	"	pop %rdx\n	pop %rsi\n	pop %rdi\n	pop %rax\n"
	"	pop %r15\n	pop %r14\n	pop %r13\n	pop %r12\n"
	"	pop %rbx\n	pop %rbp\n"
	"	jmp *8(%r11)\n"		/* struct probe_site.slot */
	"1:\n"
	"	mov 544(%rsp), %r9\n	mov 552(%rsp), %r8\n"
	"	mov 560(%rsp), %rcx\n	mov 568(%rsp), %rdx\n"
	"	mov 576(%rsp), %rsi\n	mov 584(%rsp), %rdi\n"
	"	mov 592(%rsp), %rax\n	mov 536(%rsp), %r11\n"
	"	call *8(%r11)\n"
	/* The program must find every register as the allocator left it
	 * (a stale pointer in one would keep a lost block reachable). */
	"	sub $8, %rsp\n"
	"	push %rax\n	push %rcx\n	push %rdx\n	push %rsi\n"
	"	push %rdi\n	push %r8\n	push %r9\n	push %r10\n"
	"	push %r11\n"
	"	lea 80(%rsp), %rdi\n"
	"	mov %rax, %rsi\n"
	"	call probe_exit\n"
	"	pop %r11\n	pop %r10\n	pop %r9\n	pop %r8\n"
	"	pop %rdi\n	pop %rsi\n	pop %rdx\n	pop %rcx\n"
	"	pop %rax\n"
	"	movq $0, -8(%rsp)\n"	/* no copy of the result left below rsp */
	"	add $8 + 600, %rsp\n"	/* pad, frame, r11 r9 r8 rcx rdx rsi rdi rax */
	"	pop %r15\n	pop %r14\n	pop %r13\n	pop %r12\n"
	"	pop %rbx\n	pop %rbp\n"
	"	ret\n"
	".text\n");

/* ---- system calls ---------------------------------------------------- */

static long sys6(long nr, long a, long b, long c, long d, long e, long g)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = g;

	__asm__ volatile("syscall" : "=a"(ret)
			 : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define NR_FUTEX 202
#define NR_KILL 62
#define NR_GETTID 186
#define NR_ARCH_PRCTL 158
#define NR_READ 0
#define NR_OPEN 2
#define NR_CLOSE 3
#define O_RDONLY_CLOEXEC 02000000
#define ARCH_GET_FS 0x1003
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define ESRCH 3

struct ts { long sec, nsec; };

/* Sleep until *WORD != VAL, a wake-up, or US microseconds. The futex is
 * shared (not FUTEX_PRIVATE): ptleak wakes it from its own mapping. */
static void wait_on(uint32_t *word, uint32_t val, long us)
{
	struct ts t = { us / 1000000, (us % 1000000) * 1000 };

	sys6(NR_FUTEX, (long)word, FUTEX_WAIT, val, (long)&t, 0, 0);
}

static void wake(uint32_t *word)
{
	sys6(NR_FUTEX, (long)word, FUTEX_WAKE, 1, 0, 0, 0);
}

/* ---- small helpers (no libc) ------------------------------------------ */

#define load(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static uint64_t fs_base(const struct probe_ctl *c)
{
	uint64_t v = 0;

	if (c->flags & PROBE_F_RDFSBASE)
		__asm__ volatile("rdfsbase %0" : "=r"(v));
	else
		sys6(NR_ARCH_PRCTL, ARCH_GET_FS, (long)&v, 0, 0, 0, 0);
	return v;
}

/* ptleak is gone: kill(pid, 0) says so, or (a dead ptleak not yet
 * reaped by its parent) this thread is no longer traced. Slow: only for
 * threads that have been waiting for a while. */
static int tracer_gone(const struct probe_ctl *c)
{
	static const char path[] = "/proc/thread-self/status", key[] = "TracerPid:";
	char buf[2048];

	if (sys6(NR_KILL, c->tracer_pid, 0, 0, 0, 0, 0) == -ESRCH)
		return 1;
	long fd = sys6(NR_OPEN, (long)path, O_RDONLY_CLOEXEC, 0, 0, 0, 0);
	if (fd < 0)
		return 0;
	long n = sys6(NR_READ, fd, (long)buf, sizeof(buf) - 1, 0, 0, 0);
	sys6(NR_CLOSE, fd, 0, 0, 0, 0, 0);
	for (long i = 0; i + (long)sizeof(key) < n; i++) {
		long k = 0;
		while (key[k] && buf[i + k] == key[k])
			k++;
		if (key[k])
			continue;
		i += k;
		while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		return i < n && buf[i] == '0';
	}
	return 0;
}

/* How long a thread waits for ptleak, without any progress, before it
 * declares it dead: long enough for a scan of a large heap. */
#define GIVE_UP_US (60 * 1000000L)

static void declare_dead(struct probe_shared *sh)
{
	store(&sh->dead, 1);
}

/* ---- per-thread slots --------------------------------------------------- */

static uint32_t hash_key(uint64_t key)
{
	return (uint32_t)(((key >> 4) * 0x9e3779b97f4a7c15ull) >> 40) % PROBE_THREADS;
}

/* The slot of this thread (KEY) if it holds one: its index, *BUSY set if
 * it is inside a recorded call. -1 if none. */
static int own_slot(struct probe_ctl *c, uint64_t key, int *busy)
{
	uint32_t h = hash_key(key);

	for (uint32_t i = 0; i < 16; i++) {
		uint32_t idx = (h + i) % PROBE_THREADS;
		uint64_t v = load(&c->thread_key[idx]);
		if ((v & ~PROBE_BUSY) == key) {
			*busy = (v & PROBE_BUSY) != 0;
			return (int)idx;
		}
		if (v == 0)
			break;
	}
	return -1;
}

/* Mark this thread busy in a slot: its own, or the first idle one (a
 * thread that exited left it). -1: nested (already busy) or no slot. */
static int enter_slot(struct probe_ctl *c, uint64_t key)
{
	int busy = 0, idx = own_slot(c, key, &busy);

	if (busy)
		return -1;
	if (idx >= 0) {
		uint64_t v = key;
		if (__atomic_compare_exchange_n(&c->thread_key[idx], &v, key | PROBE_BUSY, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return idx;
	}
	uint32_t h = hash_key(key);
	for (uint32_t i = 0; i < PROBE_THREADS; i++) {
		uint32_t k = (h + i) % PROBE_THREADS;
		uint64_t v = load(&c->thread_key[k]);
		if (v & PROBE_BUSY)
			continue;
		if (__atomic_compare_exchange_n(&c->thread_key[k], &v, key | PROBE_BUSY, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			if ((v & ~PROBE_BUSY) != key || c->thread_tid[k] == 0)
				c->thread_tid[k] = (uint32_t)sys6(NR_GETTID, 0, 0, 0, 0, 0, 0);
			return (int)k;
		}
	}
	return -1;
}

static void leave_slot(struct probe_ctl *c, uint32_t idx)
{
	uint64_t v = load(&c->thread_key[idx]);

	store(&c->thread_key[idx], v & ~PROBE_BUSY);
}

/* ---- the thread's stack --------------------------------------------- */

/* Upper end of the stack RSP lies in, from the ranges ptleak handed over
 * (a seqlock: ptleak may be rewriting them); 0 if unknown. */
static uint64_t stack_top(const struct probe_shared *sh, uint64_t rsp)
{
	for (;;) {
		uint32_t g = load(&sh->stacks_gen);
		if (g & 1) {
			cpu_relax();
			continue;
		}
		uint64_t hi = 0;
		uint32_t n = load(&sh->n_stacks);
		for (uint32_t i = 0; i < n && i < PROBE_STACKS; i++)
			if (rsp >= sh->stacks[i].lo && rsp < sh->stacks[i].hi)
				hi = sh->stacks[i].hi;
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (load(&sh->stacks_gen) == g)
			return hi;
	}
}

struct walk_ctx {
	struct probe_ctl *c;
	const struct probe_shared *sh;
};

static uint64_t pack_row(const struct probe_row *r)
{
	return (uint64_t)(uint32_t)r->cfa_off | (uint64_t)(uint16_t)r->rbp_off << 32 |
	       (uint64_t)r->cfa_reg << 48 | 1ull << 56;
}

static int cached_row(void *arg, uint64_t pc, struct probe_row *out)
{
	struct walk_ctx *w = arg;
	uint32_t i = (uint32_t)((pc * 0x9e3779b97f4a7c15ull) >> 52) % PROBE_ROW_CACHE;
	uint64_t val = __atomic_load_n(&w->c->row_cache[i].val, __ATOMIC_RELAXED);
	uint64_t key = __atomic_load_n(&w->c->row_cache[i].key, __ATOMIC_RELAXED);

	if (val && (key ^ val) == pc) {
		out->cfa_off = (int32_t)(uint32_t)val;
		out->rbp_off = (int16_t)(uint16_t)(val >> 32);
		out->cfa_reg = (uint8_t)(val >> 48);
		return 1;
	}
	if (!walk_find_row(w->sh, pc, out))
		return 0;
	val = pack_row(out);
	__atomic_store_n(&w->c->row_cache[i].val, val, __ATOMIC_RELAXED);
	__atomic_store_n(&w->c->row_cache[i].key, val ^ pc, __ATOMIC_RELAXED);
	return 1;
}

static uint64_t read_own(void *arg, uint64_t addr)
{
	(void)arg;
	return *(const volatile uint64_t *)addr;
}

/* ---- the ring ------------------------------------------------------- */

static struct probe_cell *cell_at(struct probe_shared *sh, uint64_t seq)
{
	return (struct probe_cell *)((char *)sh + sh->cells_off +
				     (uint64_t)sh->cell_size * (seq & (sh->n_cells - 1)));
}

static void ring_doorbell(struct probe_shared *sh)
{
	__atomic_add_fetch(&sh->doorbell, 1, __ATOMIC_SEQ_CST);
	wake(&sh->doorbell);
}

/* Take the next sequence number and wait for its cell to be free: a full
 * ring makes the thread wait for ptleak, it never drops an event. NULL:
 * ptleak is gone, record nothing. */
static struct probe_cell *claim(struct probe_ctl *c, struct probe_shared *sh, uint64_t *seq)
{
	uint64_t s = __atomic_fetch_add(&sh->tail, 1, __ATOMIC_ACQ_REL);
	struct probe_cell *cell = cell_at(sh, s);
	long waited = 0;
	uint64_t head0 = 0;

	/* The cell is free once ptleak has consumed the event a lap before
	 * (it writes head back in batches; the cell itself it only reads, so
	 * that its cache lines move one way, from the program to ptleak). */
	for (int spin = 0; s - load(&sh->head) >= sh->n_cells; spin++) {
		if (spin == 0)
			head0 = load(&sh->head);
		if (load(&sh->dead))
			return 0;
		if (spin < 64) {
			cpu_relax();
			continue;
		}
		/* Full: wake ptleak, sleep until it frees cells (spinning
		 * or yielding would take the CPU from ptleak). */
		uint32_t space = load(&sh->space);
		__atomic_add_fetch(&sh->waiters, 1, __ATOMIC_SEQ_CST);
		if (s - load(&sh->head) >= sh->n_cells) {
			if (__atomic_exchange_n(&sh->sleeping, 0, __ATOMIC_SEQ_CST))
				ring_doorbell(sh);
			wait_on(&sh->space, space, 1000);
		}
		__atomic_sub_fetch(&sh->waiters, 1, __ATOMIC_SEQ_CST);
		waited += 1000;
		if (waited % 100000 == 0 && tracer_gone(c)) {
			declare_dead(sh);
			return 0;
		}
		if (load(&sh->head) != head0) {
			head0 = load(&sh->head);
			waited = 0;
		} else if (waited > GIVE_UP_US) {
			declare_dead(sh);
			return 0;
		}
	}
	*seq = s;
	return cell;
}

static void publish(struct probe_shared *sh, struct probe_cell *cell, uint64_t seq, int urgent)
{
	store(&cell->seq, probe_cell_published(seq, sh->n_cells));
	/* The fence pairs with ptleak's before it sleeps: a request must
	 * not miss it. Plain events need none: ptleak wakes every 2 ms. */
	if (urgent)
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* Only the first to see ptleak asleep wakes it: a futex wake on
	 * shared memory costs more than the event. */
	if (load(&sh->sleeping) &&
	    (urgent || seq - load(&sh->head) > sh->n_cells / 2) &&
	    __atomic_exchange_n(&sh->sleeping, 0, __ATOMIC_SEQ_CST))
		ring_doorbell(sh);
}

static void emit(struct probe_ctl *c, struct probe_shared *sh, uint32_t op, uint32_t call,
		 uint32_t tid, uint64_t ptr, uint64_t old_ptr, uint64_t size,
		 const uint64_t *pcs, int n)
{
	uint64_t seq;
	struct probe_cell *cell = claim(c, sh, &seq);

	if (!cell)
		return;
	cell->op = op;
	cell->call = call;
	cell->tid = tid;
	cell->ptr = ptr;
	cell->old_ptr = old_ptr;
	cell->size = size;
	uint32_t max = (sh->cell_size - (uint32_t)sizeof(*cell)) / 8;
	uint32_t k = 0;
	for (; pcs && k < (uint32_t)n && k < max; k++)
		cell->pcs[k] = pcs[k];
	cell->n_pcs = k;
	publish(sh, cell, seq, 0);
}

/* Wait for ptleak's answer in R. -1: ptleak is gone. */
static int wait_reply(struct probe_ctl *c, struct probe_shared *sh, struct probe_reply *r)
{
	long waited = 0;

	while (!load(&r->done)) {
		if (load(&sh->dead))
			return -1;
		wait_on(&r->done, 0, 10000);
		waited += 10000;
		if ((waited % 100000 == 0 && tracer_gone(c)) || waited > GIVE_UP_US) {
			declare_dead(sh);
			return -1;
		}
	}
	return 0;
}

/* The entry registers a request hands ptleak: enough to unwind from the
 * allocator's entry (the callee-saved ones, rsp and the site). */
static void put_regs(struct probe_cell *cell, const struct probe_frame *f,
		     const struct probe_site *site)
{
	probe_cell_regs(cell)[PR_RIP] = site->addr;
	probe_cell_regs(cell)[PR_RSP] = (uint64_t)&f->ret;
	probe_cell_regs(cell)[PR_RBP] = f->rbp;
	probe_cell_regs(cell)[PR_RBX] = f->rbx;
	probe_cell_regs(cell)[PR_R12] = f->r12;
	probe_cell_regs(cell)[PR_R13] = f->r13;
	probe_cell_regs(cell)[PR_R14] = f->r14;
	probe_cell_regs(cell)[PR_R15] = f->r15;
}

/*
 * No row for some frame, or an unknown stack: hand ptleak the entry
 * registers and wait while it walks this (unchanging) stack with its own
 * unwinder; it also tells us this stack's range for next time. Returns
 * the frames copied into F, or -1 if ptleak is gone.
 */
static int ask_ptleak(struct probe_ctl *c, struct probe_shared *sh,
		      struct probe_frame *f, const struct probe_site *site)
{
	struct probe_reply *r = &sh->replies[f->slot];
	uint64_t seq;

	store(&r->done, 0);
	struct probe_cell *cell = claim(c, sh, &seq);
	if (!cell)
		return -1;
	cell->op = PROBE_OP_UNWIND;
	cell->call = site->call;
	cell->tid = c->thread_tid[f->slot];
	cell->n_pcs = f->slot;
	put_regs(cell, f, site);
	publish(sh, cell, seq, 1);
	if (wait_reply(c, sh, r) < 0)
		return -1;
	uint32_t n = r->n < PROBE_MAX_PCS ? r->n : PROBE_MAX_PCS;
	for (uint32_t k = 0; k < n; k++)
		f->pcs[k] = r->pcs[k];
	return (int)n;
}

/*
 * Work ptleak must do with this thread stopped, before it goes on: at
 * ld.so's r_brk (PROBE_OP_RBRK) the module list changed, and what is new
 * must be hooked; at _exit (PROBE_OP_EXIT) the process ends, and the leak
 * scan wants every thread still there. The thread asks and waits; ptleak
 * interrupts it (a ptrace stop without a signal, so a ptleak killed
 * meanwhile leaves nothing to deliver), does the work, answers, resumes
 * it. These are rare and a stop costs far more than making sure first
 * that ptleak lives: after a kill -9 of ptleak the program does not wait.
 * The tid is the kernel's, not the slot's: a vfork child shares its
 * parent's thread pointer, and so its slot.
 */
static void ask_stop(struct probe_ctl *c, struct probe_shared *sh, struct probe_frame *f,
		     const struct probe_site *site, uint64_t key, uint32_t op)
{
	uint64_t seq;

	if (tracer_gone(c)) {
		declare_dead(sh);
		return;
	}
	int idx = enter_slot(c, key);
	if (idx < 0)
		return;
	f->slot = (uint32_t)idx;
	struct probe_reply *r = &sh->replies[idx];
	store(&r->done, 0);
	struct probe_cell *cell = claim(c, sh, &seq);
	if (cell) {
		cell->op = op;
		cell->call = site->call;
		cell->tid = (uint32_t)sys6(NR_GETTID, 0, 0, 0, 0, 0, 0);
		cell->n_pcs = (uint32_t)idx;
		put_regs(cell, f, site);
		publish(sh, cell, seq, 1);
		wait_reply(c, sh, r);
	}
	leave_slot(c, (uint32_t)idx);
}

/* ---- entry and exit ----------------------------------------------------- */

enum {	/* enum alloc_call in tracer/heap.h */
	C_MALLOC, C_CALLOC, C_REALLOC, C_REALLOCARRAY, C_FREE, C_POSIX_MEMALIGN,
	C_ALIGNED_ALLOC, C_MEMALIGN, C_VALLOC, C_PVALLOC,
	C_NEW_FIRST,				/* CALL_NEW: 8 forms of operator new */
	C_NEW_LAST = C_NEW_FIRST + 7,		/* CALL_NEW_ARRAY_ALIGNED_NOTHROW */
	C_DELETE_FIRST,				/* CALL_DELETE: 12 forms of delete */
	C_DELETE_LAST = C_DELETE_FIRST + 11,	/* CALL_DELETE_ARRAY_ALIGNED_NOTHROW */
	C_MMAP, C_MREMAP, C_MUNMAP,		/* --track-mmap */
	/* CALL_API_SIZE0 ... CALL_API_FREE: an allocator's own API, by the
	 * shape of its arguments (heap.h) */
	C_API_SIZE0, C_API_SIZE1, C_API_PAGES0, C_API_COUNT01, C_API_COUNT12,
	C_API_POSIX_MEMALIGN, C_API_STRDUP, C_API_REALLOC01, C_API_REALLOC12,
	C_API_REALLOCN012, C_API_XALLOCX, C_API_FREE,
	C_SBRK,					/* a foreign allocator's (hooks.h) */
};

#define MAP_ANONYMOUS_ 0x20
#define MMAP_FAILED(r) ((r) >= (uint64_t)-4096)

/* probe_frame.pad[0] of a foreign allocator's own mmap, mremap or sbrk
 * being wrapped: made inside a recorded call (its slot stays busy) or
 * not (the slot was entered for it). */
#define REGION_NESTED 0x5245474e45535445ull
#define REGION_OWN 0x524547494f4e4f57ull

static int in_alloc_ranges(const struct probe_ctl *c, uint64_t pc)
{
	uint32_t n = load(&c->n_alloc_ranges);

	for (uint32_t i = 0; i < n && i < PROBE_ALLOC_RANGES; i++)
		if (pc >= c->alloc_ranges[i].lo && pc < c->alloc_ranges[i].hi)
			return 1;
	return 0;
}

/*
 * A foreign allocator's mmap, mremap or sbrk (PROBE_F_ALLOC_REGIONS): the
 * allocator's own when made inside a recorded call or returning into
 * the allocator's code (hooks.h says why). Then it is wrapped (1),
 * whatever the thread's slot says, and probe_exit reports the region.
 * 0: the program's own call (--track-mmap's business, or nothing).
 */
static int region_enter(struct probe_ctl *c, struct probe_frame *f, uint64_t key)
{
	const struct probe_site *site = (const struct probe_site *)f->r11;
	int busy = 0, idx = own_slot(c, key, &busy);

	if ((site->call == C_MMAP && !(f->rcx & MAP_ANONYMOUS_)) ||
	    (site->call == C_SBRK && (int64_t)f->rdi <= 0))
		return 0;
	if (!busy && !in_alloc_ranges(c, f->ret))
		return 0;
	if (busy) {
		f->pad[0] = REGION_NESTED;
		f->slot = (uint32_t)idx;
		return 1;
	}
	idx = enter_slot(c, key);
	if (idx < 0)
		return 0;
	f->pad[0] = REGION_OWN;
	f->slot = (uint32_t)idx;
	return 1;
}

static void region_exit(struct probe_ctl *c, struct probe_shared *sh, struct probe_frame *f,
			uint64_t rax)
{
	const struct probe_site *site = (const struct probe_site *)f->r11;
	uint64_t size = site->call == C_MMAP ? f->rsi : site->call == C_SBRK ? f->rdi : f->rdx;
	uint64_t old_len = f->rsi;

	if (!MMAP_FAILED(rax) && load(&c->armed) && sh && !load(&sh->dead))
		emit(c, sh, PROBE_OP_REGION, site->call, c->thread_tid[f->slot], rax,
		     site->call == C_MREMAP ? f->rdi : 0, size, &old_len,
		     site->call == C_MREMAP);
	if (f->pad[0] == REGION_OWN)
		leave_slot(c, f->slot);
}

/* The length of the string at S, in the program's own memory (a
 * strdup's result, so it ends). */
static uint64_t own_strlen(const volatile char *s)
{
	uint64_t n = 0;

	while (s[n])
		n++;
	return n;
}

int probe_enter(struct probe_frame *f)
{
	struct probe_ctl *c = &probe_ctl;

	if (!load(&c->armed))
		return 0;
	struct probe_shared *sh = (struct probe_shared *)c->shared;
	if (!sh || load(&sh->dead))
		return 0;
	const struct probe_site *site = (const struct probe_site *)f->r11;
	uint64_t key = fs_base(c);
	f->pad[0] = 0;
	if (site->call == PROBE_CALL_RBRK || site->call == PROBE_CALL_EXIT) {
		ask_stop(c, sh, f, site, key,
			 site->call == PROBE_CALL_RBRK ? PROBE_OP_RBRK : PROBE_OP_EXIT);
		return 0;
	}

	uint32_t regions = load(&c->flags) & PROBE_F_ALLOC_REGIONS;
	if (regions && (site->call == C_MMAP || site->call == C_MREMAP || site->call == C_SBRK) &&
	    region_enter(c, f, key))
		return 1;
	if (site->call == C_SBRK)
		return 0;
	/* free, delete, an API's free, munmap: recorded at the entry, before
	 * the memory can be someone else's (munmap's length in size; with a
	 * foreign allocator also inside a recorded call, which may give back
	 * a region of the allocator's own). */
	if (site->call == C_FREE || site->call == C_API_FREE || site->call == C_MUNMAP ||
	    (site->call >= C_DELETE_FIRST && site->call <= C_DELETE_LAST)) {
		int busy = 0, idx = own_slot(c, key, &busy);
		if (!busy || (regions && site->call == C_MUNMAP))
			emit(c, sh, PROBE_OP_FREE, site->call, idx >= 0 ? c->thread_tid[idx] : 0,
			     f->rdi, 0, site->call == C_MUNMAP ? f->rsi : 0, 0, 0);
		return 0;
	}
	/* mmap of a file is no allocation (flags: the fourth argument). */
	if (site->call == C_MMAP && !(f->rcx & MAP_ANONYMOUS_))
		return 0;
	int idx = enter_slot(c, key);
	if (idx < 0)
		return 0;
	f->slot = (uint32_t)idx;

	uint32_t max = c->num_callers < PROBE_MAX_PCS ? c->num_callers : PROBE_MAX_PCS;
	uint64_t rsp = (uint64_t)&f->ret, hi = stack_top(sh, rsp);
	int n = -1;
	if (site->call == C_MREMAP)
		n = 0;	/* the region keeps the stack of its mmap */
	else if (hi) {
		struct walk_ctx w = { c, sh };
		n = walk_stack(cached_row, read_own, &w, site->addr, rsp, f->rbp, hi, f->pcs, (int)max);
	}
	if (n < 0)
		n = ask_ptleak(c, sh, f, site);
	if (n < 0) {
		leave_slot(c, (uint32_t)idx);
		return 0;
	}
	f->n_pcs = n;
	if (site->call == C_REALLOC || site->call == C_REALLOCARRAY ||
	    site->call == C_API_REALLOC01 || site->call == C_API_REALLOCN012 ||
	    site->call == C_API_XALLOCX)
		emit(c, sh, PROBE_OP_REALLOC_ENTER, site->call, c->thread_tid[idx], 0, f->rdi, 0, 0, 0);
	else if (site->call == C_API_REALLOC12)	/* (heap, ptr, size) */
		emit(c, sh, PROBE_OP_REALLOC_ENTER, site->call, c->thread_tid[idx], 0, f->rsi, 0, 0, 0);
	return 1;
}

static uint64_t mul_or_zero(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_mul_overflow(a, b, &r) ? 0 : r;
}

void probe_exit(struct probe_frame *f, uint64_t rax)
{
	struct probe_ctl *c = &probe_ctl;
	struct probe_shared *sh = (struct probe_shared *)c->shared;
	const struct probe_site *site = (const struct probe_site *)f->r11;
	uint32_t op = PROBE_OP_ALLOC, call = site->call;
	uint64_t ptr = rax, old = 0, size = 0;

	if (f->pad[0] == REGION_NESTED || f->pad[0] == REGION_OWN) {
		region_exit(c, sh, f, rax);
		return;
	}

	switch (call) {
	case C_MALLOC:
	case C_VALLOC:
	case C_API_SIZE0:
		size = f->rdi;
		break;
	case C_PVALLOC:
	case C_API_PAGES0:
		size = (f->rdi + 4095) & ~4095ull;
		break;
	case C_CALLOC:
	case C_API_COUNT01:
		size = mul_or_zero(f->rdi, f->rsi);
		break;
	case C_API_COUNT12:
		size = mul_or_zero(f->rsi, f->rdx);
		break;
	case C_ALIGNED_ALLOC:
	case C_MEMALIGN:
	case C_API_SIZE1:
		size = f->rsi;
		break;
	case C_POSIX_MEMALIGN:
	case C_API_POSIX_MEMALIGN:
		size = f->rdx;
		ptr = (uint32_t)rax == 0 ? *(const volatile uint64_t *)f->rdi : 0;
		break;
	case C_API_STRDUP:
		size = ptr ? own_strlen((const volatile char *)ptr) + 1 : 0;
		break;
	case C_REALLOC:
	case C_API_REALLOC01:
		op = PROBE_OP_REALLOC_EXIT;
		old = f->rdi;
		size = f->rsi;
		break;
	case C_API_REALLOC12:
		op = PROBE_OP_REALLOC_EXIT;
		old = f->rsi;
		size = f->rdx;
		break;
	case C_REALLOCARRAY:
	case C_API_REALLOCN012:
		op = PROBE_OP_REALLOC_EXIT;
		old = f->rdi;
		size = mul_or_zero(f->rsi, f->rdx);
		break;
	case C_MMAP:	/* mmap(addr, len, ...) */
		size = f->rsi;
		ptr = MMAP_FAILED(rax) ? 0 : rax;
		break;
	case C_MREMAP:	/* mremap(old, old_len, new_len, ...) */
		old = f->rdi;
		size = f->rdx;
		ptr = MMAP_FAILED(rax) ? 0 : rax;
		break;
	case C_API_XALLOCX:
		/* xallocx(ptr, size, extra, flags): the real size back, as
		 * hooks_return_event reads it */
		op = PROBE_OP_REALLOC_EXIT;
		old = f->rdi;
		if (rax >= f->rsi) {
			ptr = f->rdi;
			size = f->rdx < rax - f->rsi ? f->rsi + f->rdx : rax;
		} else {
			ptr = 0;
			size = 1;
		}
		break;
	default:
		if (call >= C_NEW_FIRST && call <= C_NEW_LAST)
			size = f->rdi;	/* operator new(size, ...) */
		break;
	}
	/* A foreign allocator leaves its free list's link in the first word
	 * of the block it hands out: not the program's pointer (hooks.h). */
	if ((op == PROBE_OP_ALLOC || (op == PROBE_OP_REALLOC_EXIT && !old)) &&
	    (call < C_MMAP || (call >= C_API_SIZE0 && call != C_API_STRDUP)) && ptr && size >= 8 &&
	    (load(&c->flags) & PROBE_F_CLEAR_LINK))
		*(volatile uint64_t *)ptr = 0;
	if (load(&c->armed) && sh && !load(&sh->dead) &&
	    (ptr || op == PROBE_OP_REALLOC_EXIT)) {
		/* mremap's old length rides in the first pc (it has no stack). */
		if (call == C_MREMAP) {
			f->pcs[0] = f->rsi;
			f->n_pcs = 1;
		}
		emit(c, sh, op, call, c->thread_tid[f->slot], ptr, old, size, f->pcs, f->n_pcs);
	}
	leave_slot(c, f->slot);
}
