/*
 * hooks: the ptrace event source, allocator entry/return handling (see
 * hooks.h and source.h).
 */
#include "tracer/hooks.h"

#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include "symbols/symbols.h"
#include "symbols/unwind.h"
#include "tracer/allocdb.h"
#include "tracer/breakpoint.h"
#include "tracer/fast.h"
#include "tracer/frames.h"
#include "tracer/mmaps.h"
#include "tracer/proc.h"
#include "tracer/source.h"
#include "tracer/util.h"

int hooks_num_callers = 12;
bool hooks_track_mmap;

/* This source's state for one program image (source_state()). */
#define MAX_ALLOC_MODULES 8

struct ptrace_state {
	struct bpset *bp;	/* sites, pages, trampoline */
	uint64_t r_debug;	/* ld.so's _r_debug, 0 if unknown */
	unsigned generation;	/* of the module list the sites were armed for */
	bool dynamic;		/* has a dynamic linker */
	/* An allocator that is not the C library's (hooks_alloc_modules):
	 * the shared objects defining it, and whether there is one at all
	 * (also linked into the program itself). */
	struct symbols_range alloc_mods[MAX_ALLOC_MODULES];
	size_t n_alloc_mods;
	bool foreign;
};

static struct ptrace_state *state_of(struct process *p)
{
	return *source_state(p, &source_ptrace);
}
bool hooks_fast;

/* The sites and pages of P, for the probe's jump sites (fast.c). */
struct bpset *hooks_bpset(struct process *p)
{
	struct ptrace_state *st = *source_state(p, &source_ptrace);

	return st ? st->bp : NULL;
}

/* Names looked up, first name wins when several share an address
 * (glibc: malloc and __libc_malloc; aligned_alloc and memalign). Sites
 * are allocator entry points unless said otherwise. */
static const struct {
	const char *name;
	enum alloc_call call;
	enum site_kind site;
} entry_points[] = {
	{ "malloc", CALL_MALLOC, SITE_ALLOC },
	{ "free", CALL_FREE, SITE_ALLOC },
	{ "calloc", CALL_CALLOC, SITE_ALLOC },
	{ "realloc", CALL_REALLOC, SITE_ALLOC },
	{ "reallocarray", CALL_REALLOCARRAY, SITE_ALLOC },
	{ "posix_memalign", CALL_POSIX_MEMALIGN, SITE_ALLOC },
	{ "aligned_alloc", CALL_ALIGNED_ALLOC, SITE_ALLOC },
	{ "memalign", CALL_MEMALIGN, SITE_ALLOC },
	{ "valloc", CALL_VALLOC, SITE_ALLOC },
	{ "pvalloc", CALL_PVALLOC, SITE_ALLOC },
	/* Internal names: glibc aliases, musl's entry points that internal
	 * libc code calls without going through malloc. */
	{ "__libc_malloc", CALL_MALLOC, SITE_ALLOC },
	{ "__libc_free", CALL_FREE, SITE_ALLOC },
	{ "__libc_calloc", CALL_CALLOC, SITE_ALLOC },
	{ "__libc_realloc", CALL_REALLOC, SITE_ALLOC },
	{ "__libc_memalign", CALL_MEMALIGN, SITE_ALLOC },
	{ "__libc_valloc", CALL_VALLOC, SITE_ALLOC },
	{ "__libc_pvalloc", CALL_PVALLOC, SITE_ALLOC },
	{ "__posix_memalign", CALL_POSIX_MEMALIGN, SITE_ALLOC },
	{ "__libc_malloc_impl", CALL_MALLOC, SITE_ALLOC },
	{ "__libc_realloc_impl", CALL_REALLOC, SITE_ALLOC },
	{ "__libc_free_impl", CALL_FREE, SITE_ALLOC },
	/* C++'s operators, hooked wherever they are defined (libstdc++, or
	 * the allocator itself: libtcmalloc, libjemalloc, libmimalloc): a
	 * block made by new shows operator new as its frame 0, not the
	 * malloc it calls (nested calls are not recorded). */
	{ "_Znwm", CALL_NEW, SITE_ALLOC },
	{ "_Znam", CALL_NEW_ARRAY, SITE_ALLOC },
	{ "_ZnwmRKSt9nothrow_t", CALL_NEW_NOTHROW, SITE_ALLOC },
	{ "_ZnamRKSt9nothrow_t", CALL_NEW_ARRAY_NOTHROW, SITE_ALLOC },
	{ "_ZnwmSt11align_val_t", CALL_NEW_ALIGNED, SITE_ALLOC },
	{ "_ZnamSt11align_val_t", CALL_NEW_ARRAY_ALIGNED, SITE_ALLOC },
	{ "_ZnwmSt11align_val_tRKSt9nothrow_t", CALL_NEW_ALIGNED_NOTHROW, SITE_ALLOC },
	{ "_ZnamSt11align_val_tRKSt9nothrow_t", CALL_NEW_ARRAY_ALIGNED_NOTHROW, SITE_ALLOC },
	{ "_ZdlPv", CALL_DELETE, SITE_ALLOC },
	{ "_ZdaPv", CALL_DELETE_ARRAY, SITE_ALLOC },
	{ "_ZdlPvm", CALL_DELETE_SIZED, SITE_ALLOC },
	{ "_ZdaPvm", CALL_DELETE_ARRAY_SIZED, SITE_ALLOC },
	{ "_ZdlPvRKSt9nothrow_t", CALL_DELETE_NOTHROW, SITE_ALLOC },
	{ "_ZdaPvRKSt9nothrow_t", CALL_DELETE_ARRAY_NOTHROW, SITE_ALLOC },
	{ "_ZdlPvSt11align_val_t", CALL_DELETE_ALIGNED, SITE_ALLOC },
	{ "_ZdaPvSt11align_val_t", CALL_DELETE_ARRAY_ALIGNED, SITE_ALLOC },
	{ "_ZdlPvmSt11align_val_t", CALL_DELETE_SIZED_ALIGNED, SITE_ALLOC },
	{ "_ZdaPvmSt11align_val_t", CALL_DELETE_ARRAY_SIZED_ALIGNED, SITE_ALLOC },
	{ "_ZdlPvSt11align_val_tRKSt9nothrow_t", CALL_DELETE_ALIGNED_NOTHROW, SITE_ALLOC },
	{ "_ZdaPvSt11align_val_tRKSt9nothrow_t", CALL_DELETE_ARRAY_ALIGNED_NOTHROW, SITE_ALLOC },
	{ "cfree", CALL_FREE, SITE_ALLOC },
	/*
	 * The allocators' own APIs, which programs call directly. Where
	 * one is an alias of a standard name above (tcmalloc's tc_malloc
	 * is malloc, mimalloc's mi_malloc too), the standard name wins;
	 * otherwise the kind says how to read its arguments and frame 0
	 * shows the function's own name. jemalloc (unprefixed, as Debian
	 * builds it, and je_ prefixed, as redis bundles it):
	 */
	{ "mallocx", CALL_API_SIZE0, SITE_ALLOC },
	{ "rallocx", CALL_API_REALLOC01, SITE_ALLOC },
	{ "xallocx", CALL_API_XALLOCX, SITE_ALLOC },
	{ "dallocx", CALL_API_FREE, SITE_ALLOC },
	{ "sdallocx", CALL_API_FREE, SITE_ALLOC },
	{ "je_malloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "je_calloc", CALL_API_COUNT01, SITE_ALLOC },
	{ "je_realloc", CALL_API_REALLOC01, SITE_ALLOC },
	{ "je_free", CALL_API_FREE, SITE_ALLOC },
	{ "je_posix_memalign", CALL_API_POSIX_MEMALIGN, SITE_ALLOC },
	{ "je_aligned_alloc", CALL_API_SIZE1, SITE_ALLOC },
	{ "je_memalign", CALL_API_SIZE1, SITE_ALLOC },
	{ "je_valloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "je_mallocx", CALL_API_SIZE0, SITE_ALLOC },
	{ "je_rallocx", CALL_API_REALLOC01, SITE_ALLOC },
	{ "je_xallocx", CALL_API_XALLOCX, SITE_ALLOC },
	{ "je_dallocx", CALL_API_FREE, SITE_ALLOC },
	{ "je_sdallocx", CALL_API_FREE, SITE_ALLOC },
	/* Rust's tikv-jemallocator links jemalloc with the _rjem_ prefix */
	{ "_rjem_malloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "_rjem_calloc", CALL_API_COUNT01, SITE_ALLOC },
	{ "_rjem_realloc", CALL_API_REALLOC01, SITE_ALLOC },
	{ "_rjem_free", CALL_API_FREE, SITE_ALLOC },
	{ "_rjem_posix_memalign", CALL_API_POSIX_MEMALIGN, SITE_ALLOC },
	{ "_rjem_aligned_alloc", CALL_API_SIZE1, SITE_ALLOC },
	{ "_rjem_mallocx", CALL_API_SIZE0, SITE_ALLOC },
	{ "_rjem_rallocx", CALL_API_REALLOC01, SITE_ALLOC },
	{ "_rjem_xallocx", CALL_API_XALLOCX, SITE_ALLOC },
	{ "_rjem_dallocx", CALL_API_FREE, SITE_ALLOC },
	{ "_rjem_sdallocx", CALL_API_FREE, SITE_ALLOC },
	/* tcmalloc (gperftools): aliases in Debian's build, but not in
	 * every one. */
	{ "tc_malloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "tc_malloc_skip_new_handler", CALL_API_SIZE0, SITE_ALLOC },
	{ "tc_calloc", CALL_API_COUNT01, SITE_ALLOC },
	{ "tc_realloc", CALL_API_REALLOC01, SITE_ALLOC },
	{ "tc_memalign", CALL_API_SIZE1, SITE_ALLOC },
	{ "tc_posix_memalign", CALL_API_POSIX_MEMALIGN, SITE_ALLOC },
	{ "tc_valloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "tc_pvalloc", CALL_API_PAGES0, SITE_ALLOC },
	{ "tc_new", CALL_API_SIZE0, SITE_ALLOC },
	{ "tc_newarray", CALL_API_SIZE0, SITE_ALLOC },
	{ "tc_new_nothrow", CALL_API_SIZE0, SITE_ALLOC },
	{ "tc_newarray_nothrow", CALL_API_SIZE0, SITE_ALLOC },
	{ "tc_free", CALL_API_FREE, SITE_ALLOC },
	{ "tc_free_sized", CALL_API_FREE, SITE_ALLOC },
	{ "tc_cfree", CALL_API_FREE, SITE_ALLOC },
	{ "tc_delete", CALL_API_FREE, SITE_ALLOC },
	{ "tc_deletearray", CALL_API_FREE, SITE_ALLOC },
	{ "tc_delete_sized", CALL_API_FREE, SITE_ALLOC },
	{ "tc_deletearray_sized", CALL_API_FREE, SITE_ALLOC },
	{ "tc_delete_nothrow", CALL_API_FREE, SITE_ALLOC },
	{ "tc_deletearray_nothrow", CALL_API_FREE, SITE_ALLOC },
	/* mimalloc */
	{ "mi_malloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_malloc_small", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_zalloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_zalloc_small", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_malloc_aligned", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_malloc_aligned_at", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_zalloc_aligned", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_zalloc_aligned_at", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_new", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_new_nothrow", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_new_aligned", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_new_aligned_nothrow", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_valloc", CALL_API_SIZE0, SITE_ALLOC },
	{ "mi_pvalloc", CALL_API_PAGES0, SITE_ALLOC },
	{ "mi_memalign", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_aligned_alloc", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_malloc", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_malloc_small", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_zalloc", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_malloc_aligned", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_malloc_aligned_at", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_zalloc_aligned", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_zalloc_aligned_at", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_heap_alloc_new", CALL_API_SIZE1, SITE_ALLOC },
	{ "mi_calloc", CALL_API_COUNT01, SITE_ALLOC },
	{ "mi_mallocn", CALL_API_COUNT01, SITE_ALLOC },
	{ "mi_calloc_aligned", CALL_API_COUNT01, SITE_ALLOC },
	{ "mi_calloc_aligned_at", CALL_API_COUNT01, SITE_ALLOC },
	{ "mi_new_n", CALL_API_COUNT01, SITE_ALLOC },
	{ "mi_heap_calloc", CALL_API_COUNT12, SITE_ALLOC },
	{ "mi_heap_mallocn", CALL_API_COUNT12, SITE_ALLOC },
	{ "mi_heap_calloc_aligned", CALL_API_COUNT12, SITE_ALLOC },
	{ "mi_heap_calloc_aligned_at", CALL_API_COUNT12, SITE_ALLOC },
	{ "mi_heap_alloc_new_n", CALL_API_COUNT12, SITE_ALLOC },
	{ "mi_posix_memalign", CALL_API_POSIX_MEMALIGN, SITE_ALLOC },
	{ "mi_strdup", CALL_API_STRDUP, SITE_ALLOC },
	{ "mi_strndup", CALL_API_STRDUP, SITE_ALLOC },
	{ "mi_heap_strdup", CALL_API_STRDUP, SITE_ALLOC },
	{ "mi_heap_strndup", CALL_API_STRDUP, SITE_ALLOC },
	{ "mi_realloc", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_reallocf", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_rezalloc", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_realloc_aligned", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_realloc_aligned_at", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_rezalloc_aligned", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_rezalloc_aligned_at", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_new_realloc", CALL_API_REALLOC01, SITE_ALLOC },
	{ "mi_heap_realloc", CALL_API_REALLOC12, SITE_ALLOC },
	{ "mi_heap_reallocf", CALL_API_REALLOC12, SITE_ALLOC },
	{ "mi_heap_rezalloc", CALL_API_REALLOC12, SITE_ALLOC },
	{ "mi_heap_realloc_aligned", CALL_API_REALLOC12, SITE_ALLOC },
	{ "mi_heap_realloc_aligned_at", CALL_API_REALLOC12, SITE_ALLOC },
	{ "mi_heap_rezalloc_aligned", CALL_API_REALLOC12, SITE_ALLOC },
	{ "mi_heap_rezalloc_aligned_at", CALL_API_REALLOC12, SITE_ALLOC },
	{ "mi_reallocn", CALL_API_REALLOCN012, SITE_ALLOC },
	{ "mi_recalloc", CALL_API_REALLOCN012, SITE_ALLOC },
	{ "mi_reallocarray", CALL_API_REALLOCN012, SITE_ALLOC },
	{ "mi_new_reallocn", CALL_API_REALLOCN012, SITE_ALLOC },
	{ "mi_recalloc_aligned", CALL_API_REALLOCN012, SITE_ALLOC },
	{ "mi_recalloc_aligned_at", CALL_API_REALLOCN012, SITE_ALLOC },
	{ "mi_free", CALL_API_FREE, SITE_ALLOC },
	{ "mi_cfree", CALL_API_FREE, SITE_ALLOC },
	{ "mi_free_size", CALL_API_FREE, SITE_ALLOC },
	{ "mi_free_aligned", CALL_API_FREE, SITE_ALLOC },
	{ "mi_free_size_aligned", CALL_API_FREE, SITE_ALLOC },
	/* --track-mmap, and the allocator's own memory when the allocator
	 * is not the C library's (hooks_alloc_regions): */
	{ "mmap", CALL_MMAP, SITE_ALLOC },
	{ "mmap64", CALL_MMAP, SITE_ALLOC },
	{ "mremap", CALL_MREMAP, SITE_ALLOC },
	{ "munmap", CALL_MUNMAP, SITE_ALLOC },
	{ "sbrk", CALL_SBRK, SITE_ALLOC },
	{ "__sbrk", CALL_SBRK, SITE_ALLOC },
	/* The end of the process, with every thread still alive: where the
	 * leak scan sees what valgrind and LSan see (glibc: _exit and _Exit
	 * are one function; musl's _exit calls _Exit). */
	{ "_exit", 0, SITE_EXIT },
	{ "_Exit", 0, SITE_EXIT },
};

/* exit's own machinery, glibc and musl: while the process ends, frames
 * of these are the exit path, not the program's (exit's atexit, TLS
 * destructor and stdio calls have returned by the time _exit runs). */
static const char *const exit_path[] = {
	"_exit", "_Exit", "exit", "quick_exit", "__run_exit_handlers",
	"__libc_exit_fini", "__funcs_on_exit", "__stdio_exit",
};

static bool is_mmap_call(enum alloc_call call)
{
	return call == CALL_MMAP || call == CALL_MREMAP || call == CALL_MUNMAP ||
	       call == CALL_SBRK;
}

/* The in-process probe mirrors these ranges (probe/probe.c, C_NEW_FIRST...). */
_Static_assert(CALL_NEW == 10 && CALL_NEW_ARRAY_ALIGNED_NOTHROW == 17 && CALL_DELETE == 18 &&
	       CALL_DELETE_ARRAY_ALIGNED_NOTHROW == 29 && CALL_MMAP == 30 && CALL_MREMAP == 31 &&
	       CALL_MUNMAP == 32 && CALL_API_SIZE0 == 33 && CALL_API_FREE == 44 &&
	       CALL_SBRK == 45, "probe/probe.c's C_ ranges");

/* free, every operator delete, an API's free: the pointer in the first
 * argument. */
static bool is_free_call(enum alloc_call call)
{
	return call == CALL_FREE || call == CALL_API_FREE ||
	       (call >= CALL_DELETE && call <= CALL_DELETE_ARRAY_ALIGNED_NOTHROW);
}

/* An mmap-family site found, armed once the whole module list was seen
 * (whether they are needed depends on every module: hooks_arm). */
struct later_site {
	size_t i;		/* in entry_points[] */
	uint64_t addr, size;
};

struct arm_ctx {
	struct thread *t;
	unsigned generation;
	int armed, failed;
	struct later_site *later;
	size_t n_later, cap_later;
};

/* Fast mode: entry point I at ADDR (SIZE bytes) through the probe. 0, or
 * -1: it gets an int3. _exit too: the probe asks for the scan at exit
 * only while ptleak lives, an int3 would kill a program that outlived a
 * kill -9 of ptleak. */
static int hook_in_probe(struct arm_ctx *c, size_t i, uint64_t addr, uint64_t size)
{
	struct process *p = c->t->proc;

	if (!fast_active(p))
		return -1;
	if (entry_points[i].site == SITE_EXIT)
		return fast_hook_exit(p, c->t, addr, size, c->generation);
	return fast_hook(p, c->t, addr, size, entry_points[i].call, c->generation);
}

/* The C library and the dynamic linker (glibc, musl): their malloc is
 * the one whose structures the scan knows (glibc_heap.h), not a foreign
 * allocator; nor is libstdc++, which defines only operator new. */
static bool is_libc(const char *module)
{
	const char *base = module ? strrchr(module, '/') : NULL;

	base = base ? base + 1 : module;
	return !base || !strncmp(base, "libc.so", 7) || !strncmp(base, "libc-", 5) ||
	       !strncmp(base, "ld-linux", 8) || !strncmp(base, "ld-musl", 7) ||
	       !strncmp(base, "libc.musl", 9);
}

/*
 * NAME, an allocation entry point defined in MODULE at ADDR: is it an
 * allocator other than the C library's? A shared object defining malloc
 * or an allocator's own API (libjemalloc, libtcmalloc, libmimalloc, a
 * program's own libmyalloc.so) is one, and its range is noted; the
 * program itself is one when it defines an allocator's API (jemalloc or
 * mimalloc linked statically), not when it defines only malloc (a static
 * glibc or musl binary).
 */
static void note_allocator(struct process *p, const char *name, enum alloc_call call,
			   uint64_t addr, const char *module)
{
	struct ptrace_state *st = state_of(p);
	bool api = alloc_call_is_api(call);
	const char *exe = symbols_exe(p->syms);

	if ((!api && strcmp(name, "malloc")) || is_libc(module))
		return;
	if (exe && module && !strcmp(exe, module)) {
		st->foreign |= api;
		return;
	}
	struct symbols_module m;
	if (symbols_module_at(p->syms, addr, &m) < 0)
		return;
	st->foreign = true;
	for (size_t i = 0; i < st->n_alloc_mods; i++)
		if (st->alloc_mods[i].start == m.start)
			return;
	if (st->n_alloc_mods < MAX_ALLOC_MODULES) {
		debug("allocator module %s at 0x%" PRIx64 "-0x%" PRIx64, module, m.start, m.end);
		st->alloc_mods[st->n_alloc_mods++] = (struct symbols_range){ m.start, m.end };
	}
}

/* Entry point I at ADDR (SIZE bytes): through the probe where that is
 * safe, else an int3. */
static void arm_site(struct arm_ctx *c, size_t i, uint64_t addr, uint64_t size)
{
	struct process *p = c->t->proc;
	enum alloc_call call = entry_points[i].call;
	bool mmap_site = entry_points[i].site == SITE_ALLOC && is_mmap_call(call);
	bool counts = entry_points[i].site == SITE_ALLOC && !mmap_site;

	if (hook_in_probe(c, i, addr, size) == 0)
		c->armed += counts;
	else if (bp_add(state_of(p)->bp, c->t, addr, entry_points[i].site, call,
			c->generation) == 0)
		c->armed += counts;
	else
		c->failed++;
}

static void arm_one(void *arg, const char *name, uint64_t addr, uint64_t size,
		    const char *module)
{
	struct arm_ctx *c = arg;

	for (size_t i = 0; i < ARRAY_SIZE(entry_points); i++) {
		if (strcmp(entry_points[i].name, name))
			continue;
		enum alloc_call call = entry_points[i].call;
		debug("hook %s at 0x%" PRIx64 " in %s", name, addr, module);
		if (entry_points[i].site == SITE_ALLOC && is_mmap_call(call)) {
			if (c->n_later == c->cap_later) {
				c->cap_later = c->cap_later ? 2 * c->cap_later : 16;
				c->later = xrealloc(c->later, c->cap_later * sizeof(*c->later));
			}
			c->later[c->n_later++] = (struct later_site){ i, addr, size };
			return;
		}
		if (entry_points[i].site == SITE_ALLOC)
			note_allocator(c->t->proc, name, call, addr, module);
		arm_site(c, i, addr, size);
		return;
	}
}

static int hooks_arm(struct process *p, struct thread *t, unsigned generation)
{
	const char *names[ARRAY_SIZE(entry_points)];
	struct arm_ctx c = { .t = t, .generation = generation };
	struct ptrace_state *st = state_of(p);

	for (size_t i = 0; i < ARRAY_SIZE(entry_points); i++)
		names[i] = entry_points[i].name;
	st->n_alloc_mods = 0;
	st->foreign = false;
	if (symbols_find_functions(p->syms, names, ARRAY_SIZE(names), arm_one, &c) < 0) {
		error("cannot read the symbols of process %d: %s", p->pid,
		      symbols_errmsg(p->syms));
		free(c.later);
		return -1;
	}
	/* mmap and its family: for --track-mmap, and to know the memory a
	 * foreign allocator maps for itself (hooks.h). */
	if (st->foreign && !p->db->alloc_regions)
		p->db->alloc_regions = mmaps_new();
	fast_set_allocator(p, st->foreign, st->alloc_mods, st->n_alloc_mods);
	for (size_t i = 0; i < c.n_later; i++)
		if ((hooks_track_mmap && entry_points[c.later[i].i].call != CALL_SBRK) || st->foreign)
			arm_site(&c, c.later[i].i, c.later[i].addr, c.later[i].size);
	free(c.later);
	bp_prune(state_of(p)->bp, generation);
	fast_modules_changed(p);
	return c.armed;
}

size_t hooks_alloc_modules(struct process *p, struct symbols_range *out, size_t max)
{
	struct ptrace_state *st = state_of(p->role == ROLE_VFORK_CHILD && p->parent ? p->parent : p);
	size_t n = 0;

	for (size_t i = 0; st && i < st->n_alloc_mods && n < max; i++)
		out[n++] = st->alloc_mods[i];
	return n;
}

bool hooks_modules_settled(struct process *p)
{
	struct ptrace_state *st = state_of(p);
	int32_t state = -1;

	return !st || !st->r_debug ||
	       proc_read(p, st->r_debug + offsetof(struct r_debug, r_state), &state,
			 sizeof(state)) < 0 || state == RT_CONSISTENT;
}

int hooks_modules_changed(struct thread *t)
{
	struct process *p = t->proc;
	struct ptrace_state *st = state_of(p);

	if (!hooks_modules_settled(p))
		return 0;
	if (symbols_refresh(p->syms) < 0) {
		error("cannot refresh the modules of process %d: %s", p->pid,
		      symbols_errmsg(p->syms));
		return -1;
	}
	frames_freeze_unmapped(p->frames, p->syms, p->db->stacks);
	unwinder_flush(p->unw);
	return hooks_arm(p, t, ++st->generation) < 0 ? -1 : 0;
}

static void record(struct process *p, struct alloc_event *ev)
{
	allocdb_record(p->db, ev);
}

static bool is_exit_path(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(exit_path); i++)
		if (!strcmp(name, exit_path[i]))
			return true;
	return false;
}

/*
 * T stopped at _exit (at ADDR, REGS as at the entry): the process ends.
 * *OUT gets the registers of the frame that called exit() (or returned
 * from main, or called _exit), as that frame holds them: rsp, rip and
 * the callee-saved registers (the rest belong to the exit path). 0, or -1
 * if no such frame was found: then *OUT is REGS at the entry of _exit.
 */
static int exit_frame(struct thread *t, uint64_t addr, const struct user_regs_struct *regs,
		      struct user_regs_struct *out)
{
	struct process *p = t->proc;
	uint64_t pcs[64];
	struct user_regs_struct frames[64];
	int outer = -1;

	*out = *regs;
	out->rip = addr;
	int n = unwinder_backtrace_regs(p->unw, t->tid, out, pcs, frames, 64);
	for (int i = 0; i < n; i++) {
		/* Names only: no DWARF read at every exit. */
		const char *fn = symbols_function(p->syms, pcs[i], i > 0);
		if (fn && is_exit_path(fn))
			outer = i;
	}
	if (outer < 0 || outer + 1 >= n)
		return -1;	/* no caller found: the whole stack counts */
	*out = frames[outer + 1];
	return 0;
}

void hooks_at_exit(struct thread *t, uint64_t addr, const struct user_regs_struct *regs)
{
	if (t->proc->role != ROLE_TRACED)
		return;	/* a vfork child: its parent's memory stays */
	exit_frame(t, addr, regs, &t->exit_frame);
	t->exit_frame.fs_base = regs->fs_base;
	t->at_exit = true;
}

/* Catch the return of T's call at REGS (the entry): the return address
 * at [rsp] becomes the trampoline, the call goes on the shadow stack
 * first (an emergency detach in between must find it). RET: the real
 * return address. 0, or -1 (message printed: the call goes unseen). */
static int catch_return(struct thread *t, const struct user_regs_struct *regs, uint64_t ret,
			const struct shadow *call)
{
	struct process *p = t->proc;
	uint64_t tramp = bp_trampoline(state_of(p)->bp);
	struct shadow *sh = thread_push_shadow(t);

	*sh = *call;
	sh->rsp = regs->rsp;
	sh->ret = ret;
	if (proc_write(p, regs->rsp, &tramp, sizeof(tramp)) < 0) {
		error("cannot redirect the return of %s in thread %d: %s",
		      alloc_call_name(call->call), t->tid, strerror(errno));
		t->n_shadow--;
		return -1;
	}
	return 0;
}

static bool in_alloc_module(const struct ptrace_state *st, uint64_t pc)
{
	for (size_t i = 0; i < st->n_alloc_mods; i++)
		if (pc >= st->alloc_mods[i].start && pc < st->alloc_mods[i].end)
			return true;
	return false;
}

/*
 * T entered mmap, mremap, munmap or sbrk (CALL, registers REGS) in a
 * program whose allocator is not the C library's: is it the allocator
 * mapping memory for itself? Yes when the call is made inside a recorded
 * allocator call (jemalloc's malloc mapping an extent), or from the code
 * of an allocator's own shared object (its constructor, a background
 * thread, a free that maps metadata); an mremap of such a region moves
 * it. Then its return is caught and the region noted
 * (allocdb.alloc_regions); true. munmap takes any of it away and goes
 * on to --track-mmap's handling (false), as does everything else.
 */
static bool allocator_map_entry(struct thread *t, enum alloc_call call,
				const struct user_regs_struct *regs)
{
	struct process *p = t->proc;
	struct mmaps *ar = p->db->alloc_regions;
	uint64_t ret;

	if (!ar)
		return false;
	if (call == CALL_MUNMAP) {
		mmaps_unmap(ar, regs->rdi, regs->rsi);
		return false;
	}
	if ((call == CALL_MMAP && !(regs->rcx & MAP_ANONYMOUS)) ||
	    (call == CALL_MREMAP && !mmaps_contains(ar, regs->rdi)) ||
	    (call == CALL_SBRK && (int64_t)regs->rdi <= 0))
		return false;
	if (proc_read_u64(p, regs->rsp, &ret) < 0)
		return false;
	bool nested = t->n_shadow > 0 || fast_thread_busy(p, regs->fs_base);
	if (call != CALL_MREMAP && !nested && !in_alloc_module(state_of(p), ret))
		return false;
	const struct shadow sh = {
		.call = call, .args = { regs->rdi, regs->rsi, regs->rdx }, .region = true,
	};
	return catch_return(t, regs, ret, &sh) == 0;
}

void hooks_region_event(struct process *p, enum alloc_call call, const uint64_t args[3],
			uint64_t rax)
{
	struct mmaps *ar = p->db ? p->db->alloc_regions : NULL;

	/* MAP_FAILED and sbrk's failure are -1, a raw error -errno */
	if (!ar || p->role != ROLE_TRACED || rax >= (uint64_t)-4096)
		return;
	if (call == CALL_MREMAP) {
		if (mmaps_contains(ar, args[0]))
			mmaps_remap(ar, args[0], args[1], rax, args[2]);
		else
			mmaps_map(ar, rax, args[2], 0, 0);
	} else {	/* mmap(addr, len, ...) or sbrk(increment): the old break */
		mmaps_map(ar, rax, call == CALL_SBRK ? args[0] : args[1], 0, 0);
	}
	debug("allocator region 0x%" PRIx64 " (%s)", rax, alloc_call_name(call));
}

/* Stopped at site S (rip rewound to it): handle it, set REGS->rip where
 * the thread continues. -1 if the module list changed and re-arming
 * failed (a message was printed). */
static int hooks_on_site(struct thread *t, struct site *s, struct user_regs_struct *regs)
{
	struct process *p = t->proc;
	uint64_t pcs[64];

	regs->rip = s->slot;
	if (s->kind == SITE_RBRK)
		return p->role == ROLE_TRACED ? hooks_modules_changed(t) : 0;
	if (s->kind == SITE_EXIT) {
		/* The loop scans before the thread goes on (exit_begin). */
		hooks_at_exit(t, s->addr, regs);
		return 0;
	}
	enum alloc_call call = (enum alloc_call)s->call;
	if (is_mmap_call(call) && p->role == ROLE_TRACED && allocator_map_entry(t, call, regs))
		return 0;
	if (p->role != ROLE_TRACED || t->n_shadow > 0 || call == CALL_SBRK)
		return 0;	/* a vfork child, or a nested call */

	const uint64_t args[3] = { regs->rdi, regs->rsi, regs->rdx };
	struct alloc_event ev;
	if (is_mmap_call(call)) {
		/* Only what the return needs: anonymous mmaps, mremaps of a
		 * tracked region; munmap is done at its entry, as free. */
		struct mmaps *mm = p->db->mmaps;
		if (!mm)
			return 0;
		if (call == CALL_MUNMAP) {
			hooks_mmap_event(p, call, args, 0, 0);
			return 0;
		}
		if (call == CALL_MMAP && !(regs->rcx & MAP_ANONYMOUS))
			return 0;
		if (call == CALL_MREMAP && !mmaps_contains(mm, regs->rdi))
			return 0;
	}
	if (is_free_call(call)) {
		hooks_entry_event(call, t->tid, args, &ev);
		record(p, &ev);
		return 0;
	}

	/* Unwind from the entry, before the return address is swapped. */
	struct user_regs_struct at_entry = *regs;
	at_entry.rip = s->addr;
	int n = unwinder_backtrace(p->unw, t->tid, &at_entry, pcs,
				   hooks_num_callers < 64 ? hooks_num_callers : 64);
	uint32_t stack_id = allocdb_intern(p->db, pcs, n > 0 ? (size_t)n : 0);

	/* The return address, from the stack pages the unwinder just read. */
	uint64_t ret;
	if (unwinder_read(p->unw, regs->rsp, &ret, sizeof(ret)) < 0) {
		error("cannot read the return address of %s in thread %d: %s",
		      alloc_call_name(call), t->tid, strerror(errno));
		return 0;	/* this call goes unrecorded; the program is fine */
	}
	const struct shadow sh = {
		.call = call, .args = { args[0], args[1], args[2] }, .stack_id = stack_id,
	};
	if (catch_return(t, regs, ret, &sh) < 0)
		return 0;
	if (hooks_entry_event(call, t->tid, args, &ev))
		record(p, &ev);	/* realloc: the old block stops being the program's */
	return 0;
}

void hooks_mmap_event(struct process *p, enum alloc_call call, const uint64_t args[3],
		      uint64_t rax, uint32_t stack_id)
{
	struct mmaps *mm = p->db ? p->db->mmaps : NULL;

	if (call == CALL_MUNMAP && p->db && p->db->alloc_regions && p->role == ROLE_TRACED)
		mmaps_unmap(p->db->alloc_regions, args[0], args[1]);
	if (!mm || p->role != ROLE_TRACED)
		return;
	if (call == CALL_MUNMAP) {
		mmaps_unmap(mm, args[0], args[1]);
		return;
	}
	if (rax >= (uint64_t)-4096)
		return;	/* MAP_FAILED is -1, an error -errno */
	if (call == CALL_MMAP)
		mmaps_map(mm, rax, args[1], stack_id, now_ns());
	else if (call == CALL_MREMAP && mmaps_contains(mm, args[0]))
		mmaps_remap(mm, args[0], args[1], rax, args[2]);
}

static uint64_t mul_or_zero(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_mul_overflow(a, b, &r) ? 0 : r;
}

bool hooks_entry_event(enum alloc_call call, pid_t tid, const uint64_t args[3],
		       struct alloc_event *ev)
{
	*ev = (struct alloc_event){ .call = call, .tid = tid };
	if (is_free_call(call)) {
		ev->op = OP_FREE;
		ev->ptr = args[0];
		return true;
	}
	switch (call) {
	case CALL_REALLOC:
	case CALL_REALLOCARRAY:
	case CALL_API_REALLOC01:
	case CALL_API_REALLOCN012:
	case CALL_API_XALLOCX:
		ev->op = OP_REALLOC_ENTER;
		ev->old_ptr = args[0];
		return true;
	case CALL_API_REALLOC12:
		ev->op = OP_REALLOC_ENTER;
		ev->old_ptr = args[1];
		return true;
	default:
		return false;
	}
}

bool hooks_return_event(enum alloc_call call, pid_t tid, const uint64_t args[3],
			uint64_t rax, uint32_t stack_id, struct alloc_event *ev)
{
	*ev = (struct alloc_event){
		.op = OP_ALLOC, .call = call, .tid = tid, .ptr = rax,
		.stack_id = stack_id, .time_ns = now_ns(),
	};
	if (is_free_call(call))
		return false;
	if (call >= CALL_NEW && call <= CALL_NEW_ARRAY_ALIGNED_NOTHROW) {
		ev->size = args[0];	/* (size, ...) */
		return true;
	}
	switch (call) {
	case CALL_MALLOC:
	case CALL_VALLOC:
	case CALL_API_SIZE0:
		ev->size = args[0];
		break;
	case CALL_PVALLOC:
	case CALL_API_PAGES0: {
		uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
		ev->size = (args[0] + pg - 1) & ~(pg - 1);
		break;
	}
	case CALL_CALLOC:
	case CALL_API_COUNT01:
		ev->size = mul_or_zero(args[0], args[1]);
		break;
	case CALL_API_COUNT12:
		ev->size = mul_or_zero(args[1], args[2]);
		break;
	case CALL_ALIGNED_ALLOC:
	case CALL_MEMALIGN:
	case CALL_API_SIZE1:
		ev->size = args[1];
		break;
	case CALL_POSIX_MEMALIGN:
	case CALL_API_POSIX_MEMALIGN:
		/* The result is in *memptr (args[0]), when rax (an int) is 0:
		 * the caller reads it into ev->ptr. */
		ev->size = args[2];
		ev->ptr = 0;
		break;
	case CALL_API_STRDUP:
		/* The string's length: the caller reads it into ev->size. */
		ev->size = 0;
		break;
	case CALL_REALLOC:
	case CALL_API_REALLOC01:
		ev->op = OP_REALLOC_EXIT;
		ev->old_ptr = args[0];
		ev->size = args[1];
		break;
	case CALL_API_REALLOC12:
		ev->op = OP_REALLOC_EXIT;
		ev->old_ptr = args[1];
		ev->size = args[2];
		break;
	case CALL_REALLOCARRAY:
	case CALL_API_REALLOCN012:
		ev->op = OP_REALLOC_EXIT;
		ev->old_ptr = args[0];
		ev->size = mul_or_zero(args[1], args[2]);
		break;
	case CALL_API_XALLOCX:
		/* xallocx(ptr, size, extra, flags) returns the block's real
		 * size: at least SIZE if it grew or shrank in place, else the
		 * old one (then the old block stays, as after a failed
		 * realloc: ptr 0). The block is then SIZE bytes and as many
		 * of EXTRA as fit. */
		ev->op = OP_REALLOC_EXIT;
		ev->old_ptr = args[0];
		if (rax >= args[1]) {
			ev->ptr = args[0];
			ev->size = args[2] < rax - args[1] ? args[1] + args[2] : rax;
		} else {
			ev->ptr = 0;
			ev->size = 1;	/* "failed", not "freed" */
		}
		break;
	default:
		return false;
	}
	return true;
}

/* The length of the string at ADDR in P (a strdup's result). */
static uint64_t remote_strlen(struct process *p, uint64_t addr)
{
	char buf[256];
	uint64_t n = 0;

	for (;;) {
		/* Up to the end of the page: the next one may not be mapped. */
		size_t len = 4096 - ((addr + n) & 4095);
		if (len > sizeof(buf))
			len = sizeof(buf);
		if (proc_read(p, addr + n, buf, len) < 0)
			return n;
		const char *z = memchr(buf, '\0', len);
		if (z)
			return n + (uint64_t)(z - buf);
		n += len;
	}
}

/*
 * A foreign allocator (hooks.h) hands out a block with the link of its
 * free list still in the first word: mimalloc and tcmalloc pop a block
 * off a list threaded through the free blocks and leave the pointer to
 * the next one there (glibc's tcache link is mangled, jemalloc keeps
 * none). The program has not seen the block yet and cannot rely on its
 * contents (indeterminate), so that word is zeroed, as mimalloc's secure
 * build does itself; left, it is a pointer the program never wrote, to a
 * block the allocator handed out next, which then looked reachable (or
 * indirectly lost) where valgrind, which scans only defined words, says
 * definitely lost. Not for realloc of a block (the first word is the
 * program's data, copied) nor strdup.
 */
static void clear_link(struct process *p, uint64_t ptr)
{
	const uint64_t zero = 0;

	if (proc_write(p, ptr, &zero, sizeof(zero)) < 0)
		debug("cannot clear the first word of block 0x%" PRIx64 ": %s", ptr, strerror(errno));
}

/* T hit the return trampoline: record the result, set REGS->rip to the
 * real return address. -1 if T has no call in flight (a ptleak bug). */
static int hooks_on_return(struct thread *t, struct user_regs_struct *regs)
{
	struct process *p = t->proc;
	size_t i = t->n_shadow;

	/* The call returning is the one whose return address sat just below
	 * the current rsp; frames above it were abandoned (longjmp). */
	while (i > 0 && t->shadow[i - 1].rsp + 8 != regs->rsp)
		i--;
	if (i == 0) {
		error("thread %d returned through the trampoline with no call in flight", t->tid);
		return -1;
	}
	struct shadow sh = t->shadow[i - 1];
	t->n_shadow = i - 1;
	regs->rip = sh.ret;

	struct alloc_event ev;
	if (sh.region) {
		hooks_region_event(p, sh.call, sh.args, regs->rax);
		return 0;
	}
	if (is_mmap_call(sh.call)) {
		hooks_mmap_event(p, sh.call, sh.args, regs->rax, sh.stack_id);
		return 0;
	}
	if (!hooks_return_event(sh.call, t->tid, sh.args, regs->rax, sh.stack_id, &ev))
		return 0;
	if ((sh.call == CALL_POSIX_MEMALIGN || sh.call == CALL_API_POSIX_MEMALIGN) &&
	    (uint32_t)regs->rax == 0 && proc_read_u64(p, sh.args[0], &ev.ptr) < 0)
		ev.ptr = 0;
	if (sh.call == CALL_API_STRDUP && ev.ptr)
		ev.size = remote_strlen(p, ev.ptr) + 1;
	else if ((ev.op == OP_ALLOC || (ev.op == OP_REALLOC_EXIT && !ev.old_ptr)) && ev.ptr &&
		 ev.size >= 8 && state_of(p)->foreign)
		clear_link(p, ev.ptr);	/* a new block (realloc(NULL, n) too) */
	if (p->role == ROLE_TRACED)
		record(p, &ev);
	return 0;
}


/* ---- the source's operations (source.h) ----------------------------- */

/*
 * A code page, then the dynamic linker's r_brk (dynamic programs) and the
 * allocator. At an exec the allocator is not mapped yet and is hooked at
 * r_brk (LOADED false); after attaching it is there already.
 */
static int ptrace_arm(struct process *p, struct thread *t, bool loaded)
{
	struct ptrace_state *st = xcalloc(1, sizeof(*st));

	*source_state(p, &source_ptrace) = st;
	st->bp = bp_new();
	if (bp_init(st->bp, t) < 0)
		return -1;
	/* Fast mode: the probe takes the sites it can; without it, int3s. */
	if (hooks_fast && fast_setup(p, t) < 0)
		error("process %d: the probe could not be set up; using breakpoints", p->pid);
	uint64_t rbrk_size = 0;
	uint64_t rbrk = symbols_lookup_sized(p->syms, "ld-linux", "_dl_debug_state", &rbrk_size);
	st->dynamic = rbrk != 0;
	if (st->dynamic) {
		st->r_debug = symbols_lookup_name(p->syms, "ld-linux", "_r_debug");
		/* Through the probe, a dlopen after a kill -9 of ptleak meets
		 * no int3 of ours. */
		if ((!fast_active(p) || fast_hook_rbrk(p, t, rbrk, rbrk_size) < 0) &&
		    bp_add(st->bp, t, rbrk, SITE_RBRK, 0, 0) < 0)
			return -1;
		if (!loaded)
			return 0;
	}
	int n = hooks_arm(p, t, ++st->generation);
	if (n == 0)
		error("no allocator entry point (malloc, free, ...) found in '%s': "
		      "a static binary needs its symbol table (is it stripped?)",
		      p->argv && p->argv[0] ? p->argv[0] : "?");
	return n > 0 ? 0 : -1;
}

/* A vfork child runs on its parent's memory, so on its breakpoints. */
static struct bpset *bp_of(struct process *p)
{
	struct ptrace_state *st = state_of(p->role == ROLE_VFORK_CHILD && p->parent ? p->parent : p);

	return st ? st->bp : NULL;
}

/*
 * Our int3 or the program's own SIGTRAP? Past a site whose instruction is
 * longer than one byte, or past the trampoline, nothing but our int3 can
 * have left the thread: that needs no PTRACE_GETSIGINFO, one syscall less
 * per allocator call. Elsewhere, the kernel's siginfo decides.
 */
static bool our_trap(struct thread *t, const struct site *s)
{
	siginfo_t si;

	if (s->len > 1)
		return true;
	return ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) == 0 && si.si_code == SI_KERNEL;
}

/* The registers a trap handler is about to give a thread: decided, not
 * yet set (for an emergency detach in between). */
static struct {
	volatile pid_t tid;
	struct user_regs_struct regs;
} pending_regs;

static enum trap_verdict ptrace_on_trap(struct thread *t, struct user_regs_struct *regs,
					bool leaving)
{
	struct bpset *bp = bp_of(t->proc);

	if (!bp)
		return TRAP_NOT_OURS;
	struct site *s = bp_find(bp, regs->rip - 1);
	bool tramp = regs->rip - 1 == bp_trampoline(bp);
	if (!tramp && (!s || !our_trap(t, s)))
		return TRAP_NOT_OURS;
	if (s && leaving) {
		regs->rip = s->addr;	/* leaving: it runs the real code later */
	} else if (s) {
		hooks_on_site(t, s, regs);
	} else {
		/* hooks_on_return pops the shadow frame: from here until the
		 * registers are set, only pending_regs knows where it goes. */
		pending_regs.regs = *regs;
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		pending_regs.tid = t->tid;
		if (hooks_on_return(t, &pending_regs.regs) < 0)
			return TRAP_FAILED;
		*regs = pending_regs.regs;
	}
	if (thread_setregs(t->tid, regs) < 0 && errno != ESRCH)
		error("cannot set registers of thread %d: %s", t->tid, strerror(errno));
	pending_regs.tid = 0;
	return TRAP_HANDLED;
}

/* Just past one of our int3s: its SIGTRAP is still queued (the traps of
 * PTRACE_INTERRUPT are reported first). */
static bool ptrace_trap_queued(struct thread *t)
{
	struct bpset *bp = bp_of(t->proc);
	struct user_regs_struct r;

	if (!bp || thread_getregs(t->tid, &r) < 0)
		return false;
	return bp_find(bp, r.rip - 1) || r.rip - 1 == bp_trampoline(bp);
}

static void ptrace_fork_child(struct process *parent, struct process *c,
			      struct thread *t, bool follow)
{
	struct ptrace_state *ps = state_of(parent);

	if (!ps || c->role == ROLE_VFORK_CHILD)
		return;
	if (follow) {
		/* Its memory holds the same sites and pages, and the forking
		 * thread's redirected return addresses. */
		struct ptrace_state *cs = xmalloc(sizeof(*cs));
		*cs = *ps;
		cs->bp = bp_clone(ps->bp);
		*source_state(c, &source_ptrace) = cs;
		struct thread *ct = thread_find(c->pid);
		for (size_t i = 0; ct && i < t->n_shadow; i++)
			*thread_push_shadow(ct) = t->shadow[i];
		return;
	}
	/* The child has a copy of our int3s and redirected return
	 * addresses: put the program's bytes back before it runs. */
	if (bp_restore_in(ps->bp, c) < 0) {
		error("cannot clean forked child %d: %s", c->pid, strerror(errno));
		return;
	}
	for (size_t i = 0; i < t->n_shadow; i++)
		proc_write(c, t->shadow[i].rsp, &t->shadow[i].ret, 8);
}

static int ptrace_leave(struct process *p, struct thread *const *threads, size_t n)
{
	struct bpset *bp = state_of(p) ? state_of(p)->bp : NULL;

	if (!bp || p->role != ROLE_TRACED || !n)
		return 0;
	uint64_t tramp = bp_trampoline(bp);
	for (size_t i = 0; i < n; i++) {
		struct thread *t = threads[i];
		struct user_regs_struct r;
		for (size_t k = t->n_shadow; k-- > 0;) {
			uint64_t v;
			if (proc_read_u64(p, t->shadow[k].rsp, &v) == 0 && v == tramp)
				proc_write(p, t->shadow[k].rsp, &t->shadow[k].ret, 8);
		}
		t->n_shadow = 0;
		if (thread_getregs(t->tid, &r) == 0) {
			uint64_t rip = bp_move_out(bp, r.rip);
			if (rip != r.rip) {
				r.rip = rip;
				thread_setregs(t->tid, &r);
			}
		}
	}
	/* Our pages are unmapped by code run in a thread that can still
	 * run code: not one stopped on its way out. */
	struct thread *runner = NULL;
	for (size_t i = 0; i < n && !runner; i++)
		if (!threads[i]->exiting)
			runner = threads[i];
	if (!runner)
		return bp_restore_in(bp, p);	/* it is exiting: the bytes suffice */
	if (bp_remove_all(bp, runner) < 0) {
		error("process %d: some of ptleak's code could not be removed", p->pid);
		return -1;
	}
	return 0;
}

/* Signal-handler safe from here to ptrace_emergency_unmap: syscalls and
 * our own memory only. */
static void ptrace_emergency(struct process *p)
{
	struct ptrace_state *st = state_of(p);

	if (p->role == ROLE_TRACED && st && st->bp && p->memfd >= 0)
		bp_restore_in(st->bp, p);
}

/* T is stopped: write back the return addresses it would come back
 * through and put rip where it would be without ptleak. */
static void ptrace_emergency_thread(struct thread *t)
{
	struct process *p = t->proc;
	struct bpset *bp = state_of(p) ? state_of(p)->bp : NULL;
	struct user_regs_struct r;
	uint64_t v;

	if (p->role != ROLE_TRACED || !bp || p->memfd < 0)
		return;
	uint64_t tramp = bp_trampoline(bp);
	for (size_t i = 0; i < t->n_shadow; i++)
		if (pread(p->memfd, &v, 8, (off_t)t->shadow[i].rsp) == 8 && v == tramp)
			pwrite(p->memfd, &t->shadow[i].ret, 8, (off_t)t->shadow[i].rsp);
	if (pending_regs.tid == t->tid) {
		/* Caught between deciding its registers and setting them. */
		ptrace(PTRACE_SETREGS, t->tid, 0, &pending_regs.regs);
		pending_regs.tid = 0;
	}
	if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0)
		return;
	struct site *s = bp_find(bp, r.rip - 1);
	uint64_t rip = s ? s->addr : bp_move_out(bp, r.rip);
	if (r.rip - 1 == tramp) {
		for (size_t i = t->n_shadow; i-- > 0;)
			if (t->shadow[i].rsp + 8 == r.rsp) {
				rip = t->shadow[i].ret;
				break;
			}
	}
	if (rip != r.rip) {
		r.rip = rip;
		ptrace(PTRACE_SETREGS, t->tid, 0, &r);
	}
}

struct in_pages {
	struct bpset *bp;
	bool inside;
};

static void check_in_pages(struct thread *t, void *arg)
{
	struct in_pages *ip = arg;
	struct user_regs_struct r;

	if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0 || bp_in_pages(ip->bp, r.rip))
		ip->inside = true;
}

/* Our code pages go too, by munmap run at RUNNER's rip, unless a thread
 * could not be moved out of them. */
static void ptrace_emergency_unmap(struct process *p, struct thread *runner)
{
	struct in_pages ip = { .bp = state_of(p) ? state_of(p)->bp : NULL };

	if (p->role != ROLE_TRACED || !ip.bp || p->memfd < 0)
		return;
	thread_foreach(p, check_in_pages, &ip);
	/* The probe left in place still leads through the pages. */
	if (!ip.inside && !fast_mapped(p))
		bp_remove_all(ip.bp, runner);
	else
		debug("emergency: a thread is inside our code or the probe, our pages stay");
}

static void ptrace_release(struct process *p)
{
	struct ptrace_state *st = state_of(p);

	if (st)
		bp_free(st->bp);
	free(st);
	*source_state(p, &source_ptrace) = NULL;
}

const struct source_ops source_ptrace = {
	.name = "ptrace",
	.arm = ptrace_arm,
	.on_trap = ptrace_on_trap,
	.trap_queued = ptrace_trap_queued,
	.fork_child = ptrace_fork_child,
	.leave = ptrace_leave,
	.emergency = ptrace_emergency,
	.emergency_thread = ptrace_emergency_thread,
	.emergency_unmap = ptrace_emergency_unmap,
	.release = ptrace_release,
};
