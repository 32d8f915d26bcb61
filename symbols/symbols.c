/*
 * symbols: the tracee's modules and their symbols, through libdwfl.
 *
 * One "live" Dwfl mirrors /proc/PID/maps: dwfl_linux_proc_report fills it
 * and computes every load bias, symbols_refresh re-reports it (modules
 * that did not change keep their loaded ELF and DWARF, so a refresh after
 * dlopen costs one read of the maps file).
 *
 * The report is written long after the allocations it describes, and the
 * library that allocated may have been dlclose'd since. So every module
 * the live Dwfl ever held is remembered as (path, start, end, bias) in
 * s->known, and an address that no live module covers is looked up in
 * the remembered modules: the one last seen at that address gets a Dwfl
 * of its own (dwfl_report_elf of the same file at the same bias), made on
 * first use. One Dwfl per dead module, not one shared, because two
 * libraries unmapped at different times may have used the same addresses.
 *
 * Answers are cached by (pc, is_return_address) in an open-addressing
 * hash, and every string handed out is interned in s, so a symbol_info
 * stays valid until symbols_free whatever is refreshed or unmapped.
 */
#include "symbols/symbols.h"

#include <dwarf.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* From libstdc++ (the program links -lstdc++); no C header declares it. */
char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

struct match {
	uint64_t addr;
	uint64_t size;
	size_t name_idx;
};

struct known_module {
	const char *path;	/* interned */
	uint64_t start, end;
	uint64_t bias;
	bool bias_known;	/* bias read from the live ELF, else from start */
	uint64_t last_seen;	/* s->generation of the last report holding it */
	Dwfl *dead;		/* this module alone, once it is unmapped */
	bool dead_failed;	/* dwfl_report_elf failed: do not retry */
	const char *build_id;	/* interned hex, once read */
	bool build_id_read;
	/* symbols_find_functions' answer here, for the names it was asked
	 * (every dlopen asks again about every module). */
	const char **found_names;
	size_t found_n_names;
	struct match *found;
	size_t n_found;
	bool prepared;		/* symbols_prepare did its work here */
};

struct desc_entry {
	uint64_t pc;
	bool used;
	bool is_ret;
	struct symbol_info info;
	/* The functions inlined at pc, innermost first, then info with the
	 * outermost call site's file:line; n_chain 0: none inlined. Owned
	 * by s->chains (a forgotten entry's chain stays there). */
	struct symbol_info *chain;
	size_t n_chain;
};

struct symbols {
	pid_t pid;
	Dwfl *dwfl;
	uint64_t generation;	/* bumped by every report */

	struct known_module *known;
	size_t n_known, cap_known;

	struct desc_entry *desc;	/* capacity a power of two */
	size_t n_desc, cap_desc;

	struct symbol_info **chains;	/* every desc_entry.chain made */
	size_t n_chains, cap_chains;

	char **strs;		/* interned strings, capacity a power of two */
	size_t n_strs, cap_strs;

	const char *exe;	/* /proc/PID/exe when made, interned; NULL unknown */

	char err[512];		/* as big as new_error */
};

/* ---- separate debug files ---- */

/* Does the debug file open on FD belong to MOD: the same build ID, or
 * for a module without one, the CRC its .gnu_debuglink names? */
static bool debug_file_matches(Dwfl_Module *mod, int fd, GElf_Word crc)
{
	const unsigned char *want;
	GElf_Addr vaddr;
	int n = dwfl_module_build_id(mod, &want, &vaddr);

	if (n > 0) {
		Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
		const void *have;
		bool same = elf && dwelf_elf_gnu_build_id(elf, &have) == n &&
			    !memcmp(have, want, (size_t)n);
		elf_end(elf);
		return same;
	}
	unsigned char buf[65536];
	uLong sum = crc32(0, Z_NULL, 0);
	for (off_t at = 0;;) {
		ssize_t got = pread(fd, buf, sizeof(buf), at);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return got == 0 && sum == crc;
		sum = crc32(sum, buf, (uInt)got);
		at += got;
	}
}

/*
 * The debug file named by FILE_NAME's .gnu_debuglink (LINK), where
 * debuggers look: beside the file, in its .debug directory, and under
 * /usr/lib/debug at the file's own directory. An fd, its path in *PATH;
 * -1 if none matches.
 */
static int find_by_debuglink(Dwfl_Module *mod, const char *file_name, const char *link,
			     GElf_Word crc, char **path)
{
	const char *slash = file_name ? strrchr(file_name, '/') : NULL;
	char cand[PATH_MAX];

	if (!link || !*link || !slash || strchr(link, '/'))
		return -1;
	int dir_len = (int)(slash - file_name);
	for (int i = 0; i < 3; i++) {
		int n = i == 0 ? snprintf(cand, sizeof(cand), "%.*s/%s", dir_len, file_name, link) :
			i == 1 ? snprintf(cand, sizeof(cand), "%.*s/.debug/%s", dir_len,
					  file_name, link) :
			snprintf(cand, sizeof(cand), "/usr/lib/debug%.*s/%s", dir_len, file_name, link);
		if (n < 0 || n >= (int)sizeof(cand) || !strcmp(cand, file_name))
			continue;
		int fd = open(cand, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (debug_file_matches(mod, fd, crc) && (*path = strdup(cand)))
			return fd;
		close(fd);
	}
	return -1;
}

/*
 * libdwfl's find_debuginfo: by build ID under /usr/lib/debug, then by
 * .gnu_debuglink. libdwfl's standard search would then ask debuginfod,
 * and the first time it does, it loads libdebuginfod with curl and some
 * thirty libraries (10 ms at every start of ptleak, since most programs
 * have some module without a debug file) even when no server is set. So
 * that search is used only when the user set DEBUGINFOD_URLS.
 */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
			  GElf_Addr base, const char *file_name, const char *debuglink_file,
			  GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	const char *urls = getenv("DEBUGINFOD_URLS");

	if (urls && *urls)
		return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name,
						    debuglink_file, debuglink_crc,
						    debuginfo_file_name);
	int fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name,
					      debuglink_file, debuglink_crc, debuginfo_file_name);
	if (fd >= 0)
		return fd;
	return find_by_debuglink(mod, file_name, debuglink_file, debuglink_crc,
				 debuginfo_file_name);
}

static const Dwfl_Callbacks proc_callbacks = {
	.find_elf = dwfl_linux_proc_find_elf,
	.find_debuginfo = find_debuginfo,
};

static const Dwfl_Callbacks dead_callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = find_debuginfo,
	.section_address = dwfl_offline_section_address,
};

/* Why the last symbols_new failed, for symbols_errmsg(NULL). */
static char new_error[512];

__attribute__((format(printf, 2, 3)))
static void set_error(struct symbols *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s ? s->err : new_error, sizeof(new_error), fmt, ap);
	va_end(ap);
}

const char *symbols_errmsg(const struct symbols *s)
{
	if (!s)
		return new_error[0] ? new_error : "no error";
	return s->err[0] ? s->err : "no error";
}

/* ---- interned strings ---- */

static uint64_t hash_str(const char *p)
{
	uint64_t h = 0xcbf29ce484222325ULL;	/* FNV-1a */

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	return h;
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static int strs_grow(struct symbols *s)
{
	size_t cap = s->cap_strs ? s->cap_strs * 2 : 256;
	char **t = calloc(cap, sizeof(*t));

	if (!t)
		return -1;
	for (size_t i = 0; i < s->cap_strs; i++) {
		char *p = s->strs[i];
		size_t j;

		if (!p)
			continue;
		for (j = hash_str(p) & (cap - 1); t[j]; j = (j + 1) & (cap - 1))
			;
		t[j] = p;
	}
	free(s->strs);
	s->strs = t;
	s->cap_strs = cap;
	return 0;
}

/* The one copy of STR owned by S; NULL for NULL or when out of memory. */
static const char *intern(struct symbols *s, const char *str)
{
	size_t i;

	if (!str)
		return NULL;
	if ((s->n_strs + 1) * 2 > s->cap_strs && strs_grow(s) < 0)
		return NULL;
	for (i = hash_str(str) & (s->cap_strs - 1); s->strs[i];
	     i = (i + 1) & (s->cap_strs - 1))
		if (!strcmp(s->strs[i], str))
			return s->strs[i];
	if (!(s->strs[i] = strdup(str)))
		return NULL;
	s->n_strs++;
	return s->strs[i];
}

/* ---- remembered modules ---- */

static void desc_forget_range(struct symbols *s, uint64_t start, uint64_t end);

static struct known_module *known_of(struct symbols *s, Dwfl_Module *mod)
{
	void **userdata;

	dwfl_module_info(mod, &userdata, NULL, NULL, NULL, NULL, NULL, NULL);
	if (!*userdata)
		return NULL;
	return &s->known[(uintptr_t)*userdata - 1];
}

static int remember_module(Dwfl_Module *mod, void **userdata, const char *name,
			   Dwarf_Addr start, void *arg)
{
	struct symbols *s = arg;
	struct known_module *km;
	Dwarf_Addr end;
	size_t i;

	/* A module kept across a re-report keeps its userdata. */
	if (*userdata) {
		s->known[(uintptr_t)*userdata - 1].last_seen = s->generation;
		return DWARF_CB_OK;
	}
	dwfl_module_info(mod, NULL, NULL, &end, NULL, NULL, NULL, NULL);
	/* Newly mapped: answers cached for its addresses were about whatever
	 * was mapped there before. */
	desc_forget_range(s, start, end);
	for (i = 0; i < s->n_known; i++) {
		km = &s->known[i];
		if (km->start == start && km->end == end &&
		    !strcmp(km->path, name))
			goto found;
	}
	if (s->n_known == s->cap_known) {
		size_t cap = s->cap_known ? s->cap_known * 2 : 32;
		struct known_module *t = realloc(s->known, cap * sizeof(*t));

		if (!t)
			return DWARF_CB_ABORT;
		s->known = t;
		s->cap_known = cap;
	}
	km = &s->known[s->n_known];
	memset(km, 0, sizeof(*km));
	if (!(km->path = intern(s, name)))
		return DWARF_CB_ABORT;
	km->start = start;
	km->end = end;
	s->n_known++;
found:
	km->last_seen = s->generation;
	*userdata = (void *)(uintptr_t)(i + 1);
	return DWARF_CB_OK;
}

/* Bias of MOD, loading its ELF; remembered for the day it is unmapped. */
static bool module_bias(struct symbols *s, Dwfl_Module *mod, uint64_t *bias)
{
	struct known_module *km = known_of(s, mod);
	Dwarf_Addr b;

	if (!dwfl_module_getelf(mod, &b))
		return false;
	if (km) {
		km->bias = b;
		km->bias_known = true;
	}
	*bias = b;
	return true;
}

/* The module last seen at ADDR among those no longer mapped, with its
 * private Dwfl made on first use; NULL if none. */
static Dwfl_Module *dead_module_at(struct symbols *s, uint64_t addr,
				   struct known_module **kmp)
{
	struct known_module *best = NULL;
	Dwfl_Module *mod;

	for (size_t i = 0; i < s->n_known; i++) {
		struct known_module *km = &s->known[i];

		if (addr >= km->start && addr < km->end &&
		    (!best || km->last_seen > best->last_seen))
			best = km;
	}
	*kmp = best;
	if (!best || best->dead_failed)
		return NULL;
	if (!best->dead) {
		if (!(best->dead = dwfl_begin(&dead_callbacks)))
			goto fail;
		dwfl_report_begin(best->dead);
		/* Same bias as when it was mapped: from its ELF if that was
		 * loaded then, else from the start of its first mapping. */
		mod = best->bias_known
			? dwfl_report_elf(best->dead, best->path, best->path, -1,
					  best->bias, true)
			: dwfl_report_elf(best->dead, best->path, best->path, -1,
					  best->start, false);
		if (dwfl_report_end(best->dead, NULL, NULL) != 0 || !mod)
			goto fail;
	}
	return dwfl_addrmodule(best->dead, addr);
fail:
	if (best->dead)
		dwfl_end(best->dead);
	best->dead = NULL;
	best->dead_failed = true;
	return NULL;
}

/* ---- reporting ---- */

static int report(struct symbols *s)
{
	int r;

	dwfl_report_begin(s->dwfl);
	r = dwfl_linux_proc_report(s->dwfl, s->pid);
	/* Reporting must be ended even when it failed half way. */
	if (dwfl_report_end(s->dwfl, NULL, NULL) != 0 && r == 0)
		r = -1;
	if (r > 0) {
		set_error(s, "cannot read modules of process %d: %s", (int)s->pid,
			  strerror(r));
		errno = r;
		return -1;
	}
	if (r < 0) {
		set_error(s, "cannot read modules of process %d: %s", (int)s->pid,
			  dwfl_errmsg(-1));
		errno = EINVAL;
		return -1;
	}
	s->generation++;
	if (dwfl_getmodules(s->dwfl, remember_module, s, 0) != 0) {
		set_error(s, "cannot remember modules of process %d: out of memory",
			  (int)s->pid);
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

struct symbols *symbols_new(pid_t pid)
{
	struct symbols *s = calloc(1, sizeof(*s));

	if (!s) {
		set_error(NULL, "cannot allocate symbols: %s", strerror(errno));
		return NULL;
	}
	s->pid = pid;
	if (!(s->dwfl = dwfl_begin(&proc_callbacks))) {
		set_error(NULL, "cannot start libdwfl: %s", dwfl_errmsg(-1));
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	if (report(s) < 0) {
		int e = errno;

		memcpy(new_error, s->err, sizeof(new_error));
		symbols_free(s);
		errno = e;
		return NULL;
	}
	char link[64], path[4096];
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n > 0) {
		path[n] = '\0';
		s->exe = intern(s, path);
	}
	return s;
}

const char *symbols_exe(const struct symbols *s)
{
	return s->exe;
}

int symbols_refresh(struct symbols *s)
{
	return report(s);
}

size_t symbols_unmapped(struct symbols *s, struct symbols_range *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n_known && n < max; i++)
		if (s->known[i].last_seen + 1 == s->generation)
			out[n++] = (struct symbols_range){ s->known[i].start, s->known[i].end };
	return n;
}

void symbols_free(struct symbols *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_known; i++) {
		if (s->known[i].dead)
			dwfl_end(s->known[i].dead);
		free(s->known[i].found_names);
		free(s->known[i].found);
	}
	if (s->dwfl)
		dwfl_end(s->dwfl);
	for (size_t i = 0; i < s->cap_strs; i++)
		free(s->strs[i]);
	free(s->strs);
	for (size_t i = 0; i < s->n_chains; i++)
		free(s->chains[i]);
	free(s->chains);
	free(s->known);
	free(s->desc);
	free(s);
}

/* ---- symbol search ---- */

/* NAME without a "@VERSION" or "@@VERSION" suffix: its length. */
static size_t unversioned_len(const char *name)
{
	return strcspn(name, "@");
}

static bool name_is(const char *symname, const char *want)
{
	size_t n = unversioned_len(symname);

	return strlen(want) == n && !memcmp(symname, want, n);
}


static int match_cmp(const void *pa, const void *pb)
{
	const struct match *a = pa, *b = pb;

	if (a->addr != b->addr)
		return a->addr < b->addr ? -1 : 1;
	return a->name_idx < b->name_idx ? -1 : a->name_idx > b->name_idx;
}

struct find_ctx {
	struct symbols *s;
	const char *const *names;
	size_t n_names;
	const size_t *order;	/* indexes of names[], sorted by name */
	symbols_func_cb cb;
	void *arg;
	int calls;
	bool oom;
};

/* One call per address of M (sorted by match_cmp), with the name first
 * in the caller's order. */
static void report_matches(struct find_ctx *f, const struct known_module *km,
			   const char *name, const struct match *m, size_t n_m)
{
	for (size_t i = 0; i < n_m; i++) {
		if (i > 0 && m[i].addr == m[i - 1].addr)
			continue;
		f->cb(f->arg, f->names[m[i].name_idx], m[i].addr, m[i].size,
		      km ? km->path : name);
		f->calls++;
	}
}

static int find_in_module(Dwfl_Module *mod, void **userdata, const char *name,
			  Dwarf_Addr start, void *arg)
{
	struct find_ctx *f = arg;
	struct known_module *km = known_of(f->s, mod);
	struct match *m = NULL;
	size_t n_m = 0, cap_m = 0;

	if (km && km->found_names && km->found_n_names == f->n_names &&
	    !memcmp(km->found_names, f->names, f->n_names * sizeof(*f->names))) {
		report_matches(f, km, name, km->found, km->n_found);
		return DWARF_CB_OK;
	}
	int nsyms = dwfl_module_getsymtab(mod);
	for (int i = 1; i < nsyms; i++) {
		GElf_Sym sym;
		GElf_Addr addr;
		GElf_Word shndx;
		const char *sname = dwfl_module_getsym_info(mod, i, &sym, &addr,
							    &shndx, NULL, NULL);

		if (!sname || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
		    sym.st_shndx == SHN_UNDEF)
			continue;
		/* The names sorted: a binary search per symbol, not a
		 * comparison with each of a hundred names. */
		size_t len = unversioned_len(sname), lo = 0, hi = f->n_names;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const char *want = f->names[f->order[mid]];
			int c = strncmp(sname, want, len);
			if (!c && want[len])
				c = -1;	/* a prefix of WANT sorts first */
			if (c < 0)
				hi = mid;
			else if (c > 0)
				lo = mid + 1;
			else
				lo = hi = mid;
		}
		if (lo < f->n_names && name_is(sname, f->names[f->order[lo]])) {
			size_t j = f->order[lo];
			if (n_m == cap_m) {
				struct match *t;

				cap_m = cap_m ? cap_m * 2 : 8;
				if (!(t = realloc(m, cap_m * sizeof(*t)))) {
					free(m);
					f->oom = true;
					return DWARF_CB_ABORT;
				}
				m = t;
			}
			m[n_m].addr = addr;
			m[n_m].size = sym.st_size;
			m[n_m].name_idx = j;
			n_m++;
		}
	}
	if (n_m > 1)
		qsort(m, n_m, sizeof(*m), match_cmp);
	report_matches(f, km, name, m, n_m);
	/* Kept for the next search with the same names (a module that
	 * cannot keep it is searched again then). */
	if (km) {
		const char **names = malloc((f->n_names ? f->n_names : 1) * sizeof(*names));
		if (names) {
			memcpy(names, f->names, f->n_names * sizeof(*names));
			free(km->found_names);
			free(km->found);
			km->found_names = names;
			km->found_n_names = f->n_names;
			km->found = m;
			km->n_found = n_m;
			return DWARF_CB_OK;
		}
	}
	free(m);
	return DWARF_CB_OK;
}

static int by_name(const void *a, const void *b, void *ctx)
{
	const char *const *n = ((struct find_ctx *)ctx)->names;

	return strcmp(n[*(const size_t *)a], n[*(const size_t *)b]);
}

int symbols_find_functions(struct symbols *s, const char *const *names,
			   size_t n_names, symbols_func_cb cb, void *arg)
{
	size_t *order = malloc((n_names + 1) * sizeof(*order));
	struct find_ctx f = { s, names, n_names, order, cb, arg, 0, false };

	if (!order) {
		set_error(s, "cannot search symbols: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n_names; i++)
		order[i] = i;
	qsort_r(order, n_names, sizeof(*order), by_name, &f);
	int rc = dwfl_getmodules(s->dwfl, find_in_module, &f, 0);
	free(order);
	if (rc != 0) {
		if (f.oom)
			set_error(s, "cannot search symbols: out of memory");
		else
			set_error(s, "cannot search symbols: %s", dwfl_errmsg(-1));
		return -1;
	}
	return f.calls;
}

struct lookup_ctx {
	const char *prefix, *name;
	uint64_t addr, size;
};

static int lookup_in_module(Dwfl_Module *mod, void **userdata,
			    const char *mname, Dwarf_Addr start, void *arg)
{
	struct lookup_ctx *l = arg;
	const char *base = strrchr(mname, '/');
	int nsyms;

	base = base ? base + 1 : mname;
	if (strncmp(base, l->prefix, strlen(l->prefix)))
		return DWARF_CB_OK;
	nsyms = dwfl_module_getsymtab(mod);
	for (int i = 1; i < nsyms; i++) {
		GElf_Sym sym;
		GElf_Addr addr;
		const char *sname = dwfl_module_getsym_info(mod, i, &sym, &addr,
							    NULL, NULL, NULL);

		if (sname && sym.st_shndx != SHN_UNDEF && name_is(sname, l->name)) {
			l->addr = addr;
			l->size = sym.st_size;
			return DWARF_CB_ABORT;
		}
	}
	return DWARF_CB_OK;
}

uint64_t symbols_lookup_sized(struct symbols *s, const char *module_prefix,
			      const char *name, uint64_t *size)
{
	struct lookup_ctx l = { module_prefix, name, 0, 0 };

	dwfl_getmodules(s->dwfl, lookup_in_module, &l, 0);
	if (!l.addr)
		set_error(s, "no symbol '%s' in a module named '%s*'", name,
			  module_prefix);
	if (size)
		*size = l.size;
	return l.addr;
}

uint64_t symbols_lookup_name(struct symbols *s, const char *module_prefix,
			     const char *name)
{
	return symbols_lookup_sized(s, module_prefix, name, NULL);
}

/* ---- describing addresses ---- */

static struct desc_entry *desc_slot(struct symbols *s, uint64_t pc, bool is_ret)
{
	size_t mask = s->cap_desc - 1;
	size_t i = hash_u64(pc * 2 + is_ret) & mask;

	for (; s->desc[i].used; i = (i + 1) & mask)
		if (s->desc[i].pc == pc && s->desc[i].is_ret == is_ret)
			break;
	return &s->desc[i];
}

static int desc_grow(struct symbols *s)
{
	struct desc_entry *old = s->desc;
	size_t old_cap = s->cap_desc;
	size_t cap = old_cap ? old_cap * 2 : 1024;

	if (!(s->desc = calloc(cap, sizeof(*s->desc)))) {
		s->desc = old;
		return -1;
	}
	s->cap_desc = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].used)
			*desc_slot(s, old[i].pc, old[i].is_ret) = old[i];
	free(old);
	return 0;
}

/* Drop the cached answers for addresses in [START, END). */
static void desc_forget_range(struct symbols *s, uint64_t start, uint64_t end)
{
	struct desc_entry *old = s->desc;
	size_t cap = s->cap_desc;
	bool hit = false;

	for (size_t i = 0; i < cap && !hit; i++)
		hit = old[i].used && old[i].pc >= start && old[i].pc < end;
	if (!hit)
		return;
	/* Rebuild without them: open addressing has no simple delete. */
	struct desc_entry *fresh = calloc(cap, sizeof(*fresh));
	if (!fresh) {
		memset(old, 0, cap * sizeof(*old));	/* forget all: still correct */
		s->n_desc = 0;
		return;
	}
	s->desc = fresh;
	s->n_desc = 0;
	for (size_t i = 0; i < cap; i++) {
		if (!old[i].used || (old[i].pc >= start && old[i].pc < end))
			continue;
		*desc_slot(s, old[i].pc, old[i].is_ret) = old[i];
		s->n_desc++;
	}
	free(old);
}

/* RAW demangled, without a version suffix ("__libc_start_main@@GLIBC_2.34"
 * comes from .symtab that way), interned; *LINKAGE gets it undemangled
 * (what valgrind's suppressions name). */
static const char *function_name(struct symbols *s, const char *raw,
				 const char **linkage)
{
	size_t len = unversioned_len(raw);
	char *plain = strndup(raw, len), *demangled = NULL;
	const char *name;
	int status;

	if (!plain)
		return NULL;
	if (plain[0] == '_' && plain[1] == 'Z')
		demangled = __cxa_demangle(plain, NULL, NULL, &status);
	name = intern(s, demangled && status == 0 ? demangled : plain);
	*linkage = intern(s, plain);
	free(demangled);
	free(plain);
	return name;
}

/*
 * FILE as the line table names it, made absolute with the directory the
 * unit was compiled in (DW_AT_comp_dir) when it is relative, "./" and
 * "dir/../" parts folded, interned. A tool linking a frame to the code
 * needs the whole path; the line table often gives "./malloc/malloc.c"
 * or "fixtures/x.c", relative to the compilation directory.
 */
static const char *source_path(struct symbols *s, Dwarf_Die *cu, const char *file)
{
	Dwarf_Attribute attr;
	const char *dir = NULL, *out;
	char *full, *w;

	if (file[0] != '/' && cu)
		dir = dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &attr));
	if (!dir || dir[0] != '/')
		dir = NULL;
	if (asprintf(&full, "%s%s%s", dir ? dir : "", dir ? "/" : "", file) < 0)
		return intern(s, file);
	if (full[0] != '/') {
		out = intern(s, full);
		free(full);
		return out;
	}
	/* Fold components in place: w is the end of the output so far. */
	w = full;
	for (const char *r = full; *r;) {
		const char *e = strchrnul(r + 1, '/');
		size_t n = (size_t)(e - r);	/* "/name" */
		if (n == 1 || (n == 2 && r[1] == '.')) {
			/* "//" or "/." */
		} else if (n == 3 && r[1] == '.' && r[2] == '.') {
			while (w > full && *--w != '/')
				;
		} else {
			memmove(w, r, n);
			w += n;
		}
		r = e;
	}
	if (w == full)
		*w++ = '/';
	*w = '\0';
	out = intern(s, full);
	free(full);
	return out;
}

/*
 * At a function's first byte (the allocator frame of every stack) glibc
 * has several names: malloc and __libc_malloc. libdwfl returns whichever
 * its table lists first; prefer the one a user calls, without a leading
 * underscore. A scan of the symbol table, but only for such addresses.
 */
static const char *public_alias(Dwfl_Module *mod, uint64_t addr,
				const char *name)
{
	int n = dwfl_module_getsymtab(mod);

	for (int i = 1; i < n; i++) {
		GElf_Sym sym;
		GElf_Addr a;
		const char *alias = dwfl_module_getsym_info(mod, i, &sym, &a,
							    NULL, NULL, NULL);

		if (alias && a == addr && alias[0] != '_' &&
		    GELF_ST_TYPE(sym.st_info) == STT_FUNC &&
		    GELF_ST_BIND(sym.st_info) != STB_LOCAL)
			return alias;
	}
	return name;
}

/*
 * File and line of ADDR in MOD; false if unknown. libdwfl finds the CU by
 * .debug_aranges, which has two gaps: an address after a CU's last range
 * (_start from crt1.o, no DWARF) gets that CU and its last line, so the
 * CU's own ranges are checked; and Go binaries have no .debug_aranges at
 * all, so then the CUs are searched one by one (answers are cached by pc).
 */
static bool source_of(struct symbols *s, Dwfl_Module *mod, uint64_t addr,
		      const char **file, int *line)
{
	Dwarf_Addr bias;
	Dwarf_Die *cu = dwfl_module_addrdie(mod, addr, &bias);
	Dwarf_Aranges *aranges;
	size_t n_aranges;
	Dwarf_Line *dl;
	Dwarf *dw;

	if (cu) {
		Dwfl_Line *l;

		if (dwarf_haspc(cu, addr - bias) <= 0 &&
		    (dwarf_hasattr(cu, DW_AT_ranges) ||
		     dwarf_hasattr(cu, DW_AT_high_pc)))
			return false;
		if (!(l = dwfl_module_getsrc(mod, addr)))
			return false;
		*file = dwfl_lineinfo(l, NULL, line, NULL, NULL, NULL);
		if (*file)
			*file = source_path(s, cu, *file);
		return *file != NULL;
	}
	if (!(dw = dwfl_module_getdwarf(mod, &bias)) ||
	    (dwarf_getaranges(dw, &aranges, &n_aranges) == 0 && n_aranges > 0))
		return false;	/* no DWARF, or aranges that do not cover ADDR */
	while ((cu = dwfl_module_nextcu(mod, cu, &bias)))
		if (dwarf_haspc(cu, addr - bias) > 0)
			break;
	if (!cu || !(dl = dwarf_getsrc_die(cu, addr - bias)))
		return false;
	*file = dwarf_linesrc(dl, NULL, NULL);
	if (*file)
		*file = source_path(s, cu, *file);
	return *file && dwarf_lineno(dl, line) == 0;
}

/* KM's build ID as hex, read once from MOD (live or dead), interned. */
static const char *build_id_of(struct symbols *s, struct known_module *km, Dwfl_Module *mod)
{
	const unsigned char *bits;
	GElf_Addr vaddr;
	char hex[2 * 64 + 1];
	int n;

	if (km->build_id_read || !mod)
		return km->build_id;
	km->build_id_read = true;
	n = dwfl_module_build_id(mod, &bits, &vaddr);
	if (n <= 0 || n > 64)
		return NULL;
	for (int i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", bits[i]);
	km->build_id = intern(s, hex);
	return km->build_id;
}

/*
 * The inline chain at ADDR of MOD (see symbols_describe_inlined) into a
 * new array kept in S, *N entries; none (*N 0) when ADDR is in no
 * inlined function. The DIEs holding ADDR, innermost first, are lexical
 * blocks, inlined subroutines and, last, the out-of-line function: each
 * inlined one is a frame, placed where its inner neighbour says it was
 * called (DW_AT_call_file/line; the innermost at ADDR's own line).
 */
static struct symbol_info *inline_chain(struct symbols *s, Dwfl_Module *mod,
					uint64_t addr, const struct symbol_info *base,
					size_t *n)
{
	Dwarf_Addr bias;
	Dwarf_Die *cu = dwfl_module_addrdie(mod, addr, &bias);
	Dwarf_Die *scopes = NULL;
	Dwarf_Files *files = NULL;
	size_t n_files = 0, k = 0;
	struct symbol_info *chain = NULL;
	const char *file = base->file;
	int line = base->line, n_scopes;

	*n = 0;
	if (!cu || (n_scopes = dwarf_getscopes(cu, addr - bias, &scopes)) <= 0)
		return NULL;
	/* Past an inlined subroutine dwarf_getscopes goes on with the
	 * scopes of its abstract definition; the DIEs that physically hold
	 * the innermost scope are the chain of calls. */
	Dwarf_Die inner = scopes[0];
	free(scopes);
	scopes = NULL;
	if ((n_scopes = dwarf_getscopes_die(&inner, &scopes)) <= 0)
		return NULL;
	if (dwarf_getsrcfiles(cu, &files, &n_files) != 0)
		files = NULL;
	for (int i = 0; i < n_scopes; i++) {
		Dwarf_Die *sc = &scopes[i];
		Dwarf_Attribute a;
		Dwarf_Word w;
		const char *raw;

		if (dwarf_tag(sc) == DW_TAG_subprogram)
			break;
		if (dwarf_tag(sc) != DW_TAG_inlined_subroutine)
			continue;
		struct symbol_info *t = realloc(chain, (k + 2) * sizeof(*t));
		if (!t) {
			free(chain);
			free(scopes);
			return NULL;
		}
		chain = t;
		chain[k] = *base;
		/* Named from the abstract origin by DW_AT_name as valgrind
		 * names inlined frames ("push_back", not the demangled
		 * linkage name), so that its suppressions match; the linkage
		 * name only when there is no DW_AT_name. */
		raw = dwarf_diename(sc);
		if (!raw)
			raw = dwarf_formstring(dwarf_attr_integrate(sc, DW_AT_linkage_name, &a));
		chain[k].function = raw ? function_name(s, raw, &chain[k].linkage_name) : NULL;
		if (!chain[k].function)
			chain[k].linkage_name = NULL;
		chain[k].file = file;
		chain[k].line = line;
		k++;
		file = NULL;
		line = 0;
		if (files && dwarf_formudata(dwarf_attr(sc, DW_AT_call_file, &a), &w) == 0 &&
		    w < n_files) {
			const char *cf = dwarf_filesrc(files, w, NULL, NULL);
			if (cf)
				file = source_path(s, cu, cf);
		}
		if (dwarf_formudata(dwarf_attr(sc, DW_AT_call_line, &a), &w) == 0)
			line = (int)w;
	}
	free(scopes);
	if (!k)
		return NULL;
	chain[k] = *base;
	chain[k].file = file;
	chain[k].line = file ? line : 0;
	if (s->n_chains == s->cap_chains) {
		size_t cap = s->cap_chains ? s->cap_chains * 2 : 64;
		struct symbol_info **t = realloc(s->chains, cap * sizeof(*t));
		if (!t) {
			free(chain);
			return NULL;
		}
		s->chains = t;
		s->cap_chains = cap;
	}
	s->chains[s->n_chains++] = chain;
	*n = k + 1;
	return chain;
}

/* The function at PC (ADDR: PC, or PC-1 for a return address) from the
 * symbol table: demangled, its raw name in *LINKAGE; NULL if none. */
static const char *function_at(struct symbols *s, Dwfl_Module *mod, uint64_t pc, bool is_ret,
			       const char **linkage)
{
	uint64_t addr = is_ret ? pc - 1 : pc;
	GElf_Off off;
	GElf_Sym sym;
	const char *name = dwfl_module_addrinfo(mod, addr, &off, &sym, NULL, NULL, NULL);

	*linkage = NULL;
	/* The return address of a signal frame starts its function (glibc's
	 * __restore_rt), so PC-1 may be in no function at all. */
	if (!name && is_ret)
		name = dwfl_module_addrinfo(mod, pc, &off, &sym, NULL, NULL, NULL);
	else if (name && off == 0 && name[0] == '_' && name[1] != 'Z')
		name = public_alias(mod, addr, name);
	return name ? function_name(s, name, linkage) : NULL;
}

static void describe_uncached(struct symbols *s, uint64_t pc, bool is_ret,
			      struct symbol_info *out, struct symbol_info **chain,
			      size_t *n_chain)
{
	/* A return address may be the first byte after a call to a noreturn
	 * function, i.e. the next function: look at the call itself. */
	uint64_t addr = is_ret ? pc - 1 : pc;
	struct known_module *km = NULL;
	Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, addr);
	Dwarf_Addr bias;
	const char *file;
	int lineno = 0;

	memset(out, 0, sizeof(*out));
	*chain = NULL;
	*n_chain = 0;
	if (mod) {
		km = known_of(s, mod);
		if (module_bias(s, mod, &bias))
			out->module_offset = pc - bias;
		else if (km)
			out->module_offset = pc - km->start;
	} else if ((mod = dead_module_at(s, addr, &km))) {
		if (dwfl_module_getelf(mod, &bias))
			out->module_offset = pc - bias;
		else
			out->module_offset = pc - km->start;
	} else if (km) {
		/* Unmapped and its file cannot be opened: the path is known. */
		out->module_offset = pc - km->start;
	}
	if (km) {
		out->module = km->path;
		out->module_start = km->start;
		out->module_end = km->end;
		out->build_id = build_id_of(s, km, mod);
	}
	if (!mod)
		return;
	out->function = function_at(s, mod, pc, is_ret, &out->linkage_name);
	if (source_of(s, mod, addr, &file, &lineno)) {
		out->file = file;
		out->line = lineno;
	}
	*chain = inline_chain(s, mod, addr, out, n_chain);
}

/* The cached answer for (PC, IS_RET), made now if there is none; NULL
 * when it could not be cached (out of memory), then *OUT and *CHAIN,
 * *N_CHAIN are the answer. */
static const struct desc_entry *describe(struct symbols *s, uint64_t pc, bool is_ret,
					 struct symbol_info *out,
					 struct symbol_info **chain, size_t *n_chain)
{
	struct desc_entry *e;

	if (s->cap_desc) {
		e = desc_slot(s, pc, is_ret);
		if (e->used)
			return e;
	}
	describe_uncached(s, pc, is_ret, out, chain, n_chain);
	/* Caching is an optimisation: out of memory just skips it. */
	if ((s->n_desc + 1) * 10 > s->cap_desc * 7 && desc_grow(s) < 0)
		return NULL;
	e = desc_slot(s, pc, is_ret);
	e->used = true;
	e->pc = pc;
	e->is_ret = is_ret;
	e->info = *out;
	e->chain = *chain;
	e->n_chain = *n_chain;
	s->n_desc++;
	return e;
}

bool symbols_prepare(struct symbols *s, uint64_t pc)
{
	Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, pc);
	struct known_module *km = mod ? known_of(s, mod) : NULL;
	Dwarf_Addr bias;
	GElf_Off off;
	GElf_Sym sym;

	if (!km || km->prepared)
		return false;
	km->prepared = true;
	/* What the first describe of a pc here reads whole: the symbol
	 * table (of the debug file, when the module is stripped), then its
	 * DWARF (libdw inflates every compressed section as it opens it)
	 * and the address ranges of its CUs. */
	dwfl_module_addrinfo(mod, pc, &off, &sym, NULL, NULL, NULL);
	if (dwfl_module_getdwarf(mod, &bias))
		dwfl_module_addrdie(mod, pc, &bias);
	return true;
}

const char *symbols_function(struct symbols *s, uint64_t pc, bool is_return_address)
{
	Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, is_return_address ? pc - 1 : pc);
	const char *linkage;

	return mod ? function_at(s, mod, pc, is_return_address, &linkage) : NULL;
}

void symbols_describe(struct symbols *s, uint64_t pc, bool is_return_address,
		      struct symbol_info *out)
{
	struct symbol_info *chain;
	size_t n_chain;
	const struct desc_entry *e = describe(s, pc, is_return_address, out,
					      &chain, &n_chain);

	if (e)
		*out = e->info;
}

size_t symbols_describe_inlined(struct symbols *s, uint64_t pc,
				bool is_return_address, struct symbol_info *out,
				size_t max)
{
	struct symbol_info info, *chain;
	size_t n_chain;
	const struct desc_entry *e = describe(s, pc, is_return_address, &info,
					      &chain, &n_chain);

	if (e) {
		info = e->info;
		chain = e->chain;
		n_chain = e->n_chain;
	}
	if (!max)
		return 0;
	if (!n_chain) {
		out[0] = info;
		return 1;
	}
	if (n_chain > max)
		n_chain = max;
	memcpy(out, chain, n_chain * sizeof(*out));
	return n_chain;
}

/* ---- for the unwinder ---- */

int symbols_module_at(struct symbols *s, uint64_t pc, struct symbols_module *out)
{
	Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, pc);
	struct known_module *km;
	Dwarf_Addr start, end, bias;
	const char *name;
	size_t phnum;
	Elf *elf;

	if (!mod) {
		set_error(s, "no module at address 0x%" PRIx64, pc);
		return -1;
	}
	name = dwfl_module_info(mod, NULL, &start, &end, NULL, NULL, NULL, NULL);
	if (!(elf = dwfl_module_getelf(mod, &bias))) {
		set_error(s, "cannot read ELF file of '%s': %s", name,
			  dwfl_errmsg(-1));
		return -1;
	}
	if ((km = known_of(s, mod))) {
		km->bias = bias;
		km->bias_known = true;
	}
	memset(out, 0, sizeof(*out));
	out->start = start;
	out->end = end;
	out->bias = bias;
	out->path = km ? km->path : name;
	out->elf = elf;
	if (elf_getphdrnum(elf, &phnum) != 0) {
		set_error(s, "cannot read program headers of '%s': %s", name,
			  elf_errmsg(-1));
		return -1;
	}
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;

		if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_GNU_EH_FRAME) {
			out->eh_frame_hdr = ph.p_vaddr + bias;
			out->eh_frame_hdr_size = ph.p_memsz;
			break;
		}
	}
	return 0;
}

struct foreach_ctx {
	symbols_dwfl_cb cb;
	void *arg;
	int rc;
};

static int foreach_one(Dwfl_Module *mod, void **userdata, const char *name,
		       Dwarf_Addr start, void *arg)
{
	struct foreach_ctx *c = arg;

	if (c->cb(c->arg, mod) < 0) {
		c->rc = -1;
		return DWARF_CB_ABORT;
	}
	return DWARF_CB_OK;
}

int symbols_foreach_dwfl(struct symbols *s, symbols_dwfl_cb cb, void *arg)
{
	struct foreach_ctx c = { cb, arg, 0 };

	if (dwfl_getmodules(s->dwfl, foreach_one, &c, 0) != 0 && c.rc == 0) {
		set_error(s, "cannot list modules: %s", dwfl_errmsg(-1));
		return -1;
	}
	return c.rc;
}
