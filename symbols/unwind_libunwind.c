/*
 * unwind_libunwind: the unwinder on libunwind's remote API, with our own
 * accessors instead of libunwind-ptrace's.
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
#include "symbols/symbols.h"

#include <dwarf.h>
#include <errno.h>
#include <gelf.h>
#include <inttypes.h>
#include <libunwind-ptrace.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* Exported by libunwind-x86_64.so.8, not declared by its headers. */
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as,
					      unw_word_t ip,
					      unw_dyn_info_t *di,
					      unw_proc_info_t *pi,
					      int need_unwind_info, void *arg);

#define UW_PAGE_SIZE 4096u
#define UW_PAGE_MASK (~(uint64_t)(UW_PAGE_SIZE - 1))
#define N_STACK_PAGES 32	/* volatile pages per backtrace */
#define MAX_RO_PAGES 4096	/* 16 MiB of cached code and tables */
#define RO_GEN 0		/* generation of pages valid until flush */
#define SYNTH_BASE 0x4000000000000000ULL	/* synthetic tables */

struct page {
	uint64_t addr;
	uint64_t gen;		/* RO_GEN, or the backtrace that read it */
	unsigned char data[UW_PAGE_SIZE];
};

struct range {
	uint64_t start, end;
};

/*
 * The unwind table of one module; usable is false when it has none. A
 * module without .eh_frame_hdr (static glibc binaries: gcc passes
 * --eh-frame-hdr to dynamic links only) gets a table built here from its
 * .eh_frame, served to libunwind at SYNTH_BASE + ..., an address no user
 * mapping can have (non-canonical on x86-64).
 */
struct table {
	uint64_t start, end;
	bool usable;
	unw_dyn_info_t di;
	int32_t *synth;		/* (initial pc, FDE) pairs relative to segbase */
	size_t synth_bytes;
	uint64_t synth_addr;
};

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
	uint64_t gen;			/* current backtrace, never RO_GEN */

	struct page *last;		/* last page served */

	struct range *ro;		/* read-only file-backed, sorted */
	size_t n_ro;
	struct range *exec;		/* executable mappings, sorted */
	size_t n_exec;
	bool exec_known;		/* the maps file was read */
	uint64_t synth_next;		/* next free synthetic address */

	struct page **ro_pages;		/* hash by address, power of two */
	size_t n_ro_pages, cap_ro_pages;

	struct page *stack;		/* N_STACK_PAGES volatile pages */
	size_t n_stack;			/* used in this generation */

	struct table *tables;
	size_t n_tables, cap_tables, last_table;

	struct fde_rows **fdes;		/* sorted by start */
	size_t n_fdes, cap_fdes;

	struct step_entry *steps;	/* hash, power of two */
	size_t n_steps, cap_steps;
};

/* ---- /proc/PID/maps: which pages may be cached across backtraces ---- */

static int add_range(struct range **v, size_t *n, size_t *cap, uint64_t start,
		     uint64_t end)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct range *t = realloc(*v, c * sizeof(*t));

		if (!t)
			return -1;
		*v = t;
		*cap = c;
	}
	(*v)[*n].start = start;
	(*v)[*n].end = end;
	(*n)++;
	return 0;
}

/* Which mappings hold code, and which pages may be cached until flush. */
static int load_ro_ranges(struct unwinder *u)
{
	char path[64], *line = NULL;
	size_t cap = 0, n_cap = 0, x_cap = 0;
	FILE *f;

	u->n_ro = 0;
	u->n_exec = 0;
	u->exec_known = false;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)u->pid);
	if (!(f = fopen(path, "re")))
		return -1;
	while (getline(&line, &cap, f) > 0) {
		uint64_t start, end, inode;
		char perms[8];
		int name_at = 0;
		const char *name;

		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*x %*x:%*x %" SCNu64 " %n",
			   &start, &end, perms, &inode, &name_at) < 4)
			continue;
		name = line + name_at;
		if (perms[2] == 'x' && add_range(&u->exec, &u->n_exec, &x_cap,
						 start, end) < 0)
			goto oom;
		/* Never written after mapping: file-backed without 'w', and the
		 * vDSO's code (but not [vvar], the clock data). */
		if (perms[0] != 'r' || perms[1] == 'w')
			continue;
		if (!(inode != 0 && name[0] == '/') && strncmp(name, "[vdso]", 6))
			continue;
		if (add_range(&u->ro, &u->n_ro, &n_cap, start, end) < 0)
			goto oom;
	}
	free(line);
	fclose(f);
	u->exec_known = true;
	return 0;
oom:
	free(line);
	fclose(f);
	u->n_ro = u->n_exec = 0;
	errno = ENOMEM;
	return -1;
}

static bool in_ranges(const struct range *r, size_t n, uint64_t addr)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < r[mid].start)
			hi = mid;
		else if (addr >= r[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static bool is_ro(const struct unwinder *u, uint64_t addr)
{
	return in_ranges(u->ro, u->n_ro, addr);
}

/* A return address outside all code means the unwind went astray. */
static bool is_code(const struct unwinder *u, uint64_t addr)
{
	return !u->exec_known || in_ranges(u->exec, u->n_exec, addr);
}

/* ---- the page cache ---- */

static void drop_ro_pages(struct unwinder *u)
{
	for (size_t i = 0; i < u->cap_ro_pages; i++)
		free(u->ro_pages[i]);
	memset(u->ro_pages, 0, u->cap_ro_pages * sizeof(*u->ro_pages));
	u->n_ro_pages = 0;
	u->last = NULL;
}

static size_t ro_slot(const struct unwinder *u, uint64_t addr)
{
	size_t mask = u->cap_ro_pages - 1;
	size_t i = (size_t)((addr >> 12) * 0x9e3779b97f4a7c15ULL >> 20) & mask;

	while (u->ro_pages[i] && u->ro_pages[i]->addr != addr)
		i = (i + 1) & mask;
	return i;
}

static bool read_page(const struct unwinder *u, uint64_t addr, void *buf)
{
	struct iovec local = { buf, UW_PAGE_SIZE };
	struct iovec remote = { (void *)(uintptr_t)addr, UW_PAGE_SIZE };

	return process_vm_readv(u->pid, &local, 1, &remote, 1, 0) ==
	       (ssize_t)UW_PAGE_SIZE;
}

/*
 * A stack or data page, read with the page above it in the same call:
 * unwinding walks the stack upwards, and a backtrace that crosses a page
 * boundary would otherwise pay a second process_vm_readv. A missing page
 * above only shortens the read.
 */
static const unsigned char *get_volatile_page(struct unwinder *u,
					      uint64_t addr)
{
	struct page *p, *q;
	struct iovec local[2], remote;
	ssize_t got;

	/* Deeper than N_STACK_PAGES pages: start over, keeps it correct. */
	if (u->n_stack + 2 > N_STACK_PAGES)
		u->n_stack = 0;
	p = &u->stack[u->n_stack];
	q = p + 1;
	/* A failed read may leave them half written: no longer pages. */
	p->addr = q->addr = 1;
	if (u->last == p || u->last == q)
		u->last = NULL;
	local[0].iov_base = p->data;
	local[0].iov_len = UW_PAGE_SIZE;
	local[1].iov_base = q->data;
	local[1].iov_len = UW_PAGE_SIZE;
	remote.iov_base = (void *)(uintptr_t)addr;
	remote.iov_len = 2 * UW_PAGE_SIZE;
	got = process_vm_readv(u->pid, local, 2, &remote, 1, 0);
	if (got < (ssize_t)UW_PAGE_SIZE)
		return NULL;
	p->addr = addr;
	p->gen = u->gen;
	u->n_stack++;
	if (got == 2 * (ssize_t)UW_PAGE_SIZE) {
		q->addr = addr + UW_PAGE_SIZE;
		q->gen = u->gen;
		u->n_stack++;
	}
	u->last = p;
	return p->data;
}

/* The page at page-aligned ADDR, or NULL if the tracee has none there. */
static const unsigned char *get_page(struct unwinder *u, uint64_t addr)
{
	struct page *p = u->last;
	size_t i;

	if (p && p->addr == addr && (p->gen == RO_GEN || p->gen == u->gen))
		return p->data;
	for (i = 0; i < u->n_stack; i++)
		if (u->stack[i].addr == addr) {
			u->last = &u->stack[i];
			return u->stack[i].data;
		}
	if (is_ro(u, addr)) {
		i = ro_slot(u, addr);
		if (u->ro_pages[i]) {
			u->last = u->ro_pages[i];
			return u->last->data;
		}
		if (u->n_ro_pages >= MAX_RO_PAGES) {
			drop_ro_pages(u);
			i = ro_slot(u, addr);
		}
		if (!(p = malloc(sizeof(*p))))
			return NULL;
		if (!read_page(u, addr, p->data)) {
			free(p);
			return NULL;
		}
		p->addr = addr;
		p->gen = RO_GEN;
		u->ro_pages[i] = p;
		u->n_ro_pages++;
		u->last = p;
		return p->data;
	}
	return get_volatile_page(u, addr);
}

/* Copy LEN bytes of tracee memory at ADDR (may cross pages). */
static int read_mem(struct unwinder *u, uint64_t addr, void *buf, size_t len)
{
	unsigned char *out = buf;

	while (len > 0) {
		uint64_t page = addr & UW_PAGE_MASK;
		size_t off = addr - page;
		size_t n = UW_PAGE_SIZE - off < len ? UW_PAGE_SIZE - off : len;
		const unsigned char *data = get_page(u, page);

		if (!data)
			return -1;
		memcpy(out, data + off, n);
		out += n;
		addr += n;
		len -= n;
	}
	return 0;
}

/* ---- .eh_frame_hdr ---- */

/* Size of a DW_EH_PE-encoded value of fixed size; 0 if not fixed. */
static size_t encoded_size(uint8_t enc)
{
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		return 8;
	case DW_EH_PE_udata2:
	case DW_EH_PE_sdata2:
		return 2;
	case DW_EH_PE_udata4:
	case DW_EH_PE_sdata4:
		return 4;
	default:
		return 0;
	}
}

/*
 * Fill T from the module's .eh_frame_hdr: version 1, the encodings of
 * eh_frame_ptr, fde_count and the table, then eh_frame_ptr, fde_count
 * and a sorted table of (initial location, FDE address) pairs, both
 * datarel sdata4 relative to the header: the only layout libunwind's
 * remote table search reads. False for anything else.
 */
static bool hdr_table(struct unwinder *u, const struct symbols_module *m,
		      struct table *t)
{
	uint8_t hdr[4];
	uint64_t p = m->eh_frame_hdr, fde_count = 0;
	size_t sz;

	if (!m->eh_frame_hdr || read_mem(u, p, hdr, sizeof(hdr)) < 0)
		return false;
	if (hdr[0] != 1 || hdr[2] == DW_EH_PE_omit ||
	    hdr[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
		return false;
	p += 4;
	if (hdr[1] != DW_EH_PE_omit) {
		if (!(sz = encoded_size(hdr[1])))
			return false;
		p += sz;
	}
	if ((hdr[2] & 0x70) != 0 || !(sz = encoded_size(hdr[2])))
		return false;
	switch (sz) {
	case 2: {
		uint16_t v;

		if (read_mem(u, p, &v, 2) < 0)
			return false;
		fde_count = v;
		break;
	}
	case 4: {
		uint32_t v;

		if (read_mem(u, p, &v, 4) < 0)
			return false;
		fde_count = v;
		break;
	}
	default:
		if (read_mem(u, p, &fde_count, 8) < 0)
			return false;
		break;
	}
	p += sz;
	if (fde_count == 0 ||
	    (m->eh_frame_hdr_size &&
	     p + fde_count * 8 > m->eh_frame_hdr + m->eh_frame_hdr_size))
		return false;
	memset(&t->di, 0, sizeof(t->di));
	t->di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
	t->di.start_ip = m->start;
	t->di.end_ip = m->end;
	t->di.u.rti.segbase = m->eh_frame_hdr;
	t->di.u.rti.table_data = p;
	/* In words, whatever the entry size: 8-byte entries, 8-byte words. */
	t->di.u.rti.table_len = fde_count * 8 / sizeof(unw_word_t);
	return true;
}

/* ---- .eh_frame without a header: the table built here ---- */

static bool read_uleb(const unsigned char **p, const unsigned char *end,
		      uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (*p < end && shift < 64) {
		unsigned char b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/*
 * Decode a pointer of encoding ENC at *P, which lies at ELF address VADDR.
 * Only what .eh_frame uses in practice: absolute or pc-relative, fixed
 * size or LEB128.
 */
static bool read_encoded(const unsigned char **p, const unsigned char *end,
			 uint8_t enc, uint64_t vaddr, uint64_t *out)
{
	const unsigned char *q = *p;
	size_t sz = encoded_size(enc);
	uint64_t v = 0;

	if (enc & DW_EH_PE_indirect)
		return false;
	if (sz) {
		if ((size_t)(end - q) < sz)
			return false;
		if (sz == 2) {
			uint16_t x;

			memcpy(&x, q, 2);
			v = (enc & 0x0f) == DW_EH_PE_sdata2 ? (uint64_t)(int16_t)x : x;
		} else if (sz == 4) {
			uint32_t x;

			memcpy(&x, q, 4);
			v = (enc & 0x0f) == DW_EH_PE_sdata4 ? (uint64_t)(int32_t)x : x;
		} else {
			memcpy(&v, q, 8);
		}
		q += sz;
	} else if ((enc & 0x0f) == DW_EH_PE_uleb128) {
		if (!read_uleb(&q, end, &v))
			return false;
	} else if ((enc & 0x0f) == DW_EH_PE_sleb128) {
		unsigned shift = 0;
		unsigned char b;

		do {
			if (q >= end || shift >= 64)
				return false;
			b = *q++;
			v |= (uint64_t)(b & 0x7f) << shift;
			shift += 7;
		} while (b & 0x80);
		if (shift < 64 && (b & 0x40))
			v |= ~(uint64_t)0 << shift;
	} else {
		return false;
	}
	switch (enc & 0x70) {
	case DW_EH_PE_absptr:
		break;
	case DW_EH_PE_pcrel:
		v += vaddr;
		break;
	default:
		return false;
	}
	*p = q;
	*out = v;
	return true;
}

/* The FDE pointer encoding of the CIE at CIE (its length field), which
 * lies at ELF address VADDR; false if it cannot be read. */
static bool cie_encoding(const unsigned char *cie, const unsigned char *end,
			 uint64_t vaddr, uint8_t *enc)
{
	const unsigned char *p = cie, *cend;
	const char *aug;
	uint32_t len, id;
	uint64_t skip;
	uint8_t version;

	if (end - p < 9)
		return false;
	memcpy(&len, p, 4);
	memcpy(&id, p + 4, 4);
	if (len == 0xffffffff || len > (size_t)(end - p - 4) || id != 0)
		return false;
	cend = p + 4 + len;
	p += 8;
	version = *p++;
	aug = (const char *)p;
	p = memchr(p, 0, cend - p);
	if (!p || (version != 1 && version != 3) || strstr(aug, "eh"))
		return false;
	p++;
	if (!read_uleb(&p, cend, &skip))	/* code alignment */
		return false;
	if (!read_uleb(&p, cend, &skip))	/* data alignment (sleb) */
		return false;
	if (version == 1)
		p++;			/* return address column */
	else if (!read_uleb(&p, cend, &skip))
		return false;
	*enc = DW_EH_PE_absptr;
	if (aug[0] != 'z')
		return aug[0] == '\0';
	if (!read_uleb(&p, cend, &skip))	/* augmentation data length */
		return false;
	for (const char *a = aug + 1; *a; a++) {
		uint64_t ignored;
		uint8_t penc;

		if (p >= cend)
			return false;
		switch (*a) {
		case 'R':
			*enc = *p++;
			return true;
		case 'L':
			p++;
			break;
		case 'P':
			penc = *p++;
			if (!read_encoded(&p, cend, penc,
					  vaddr + (uint64_t)(p - cie), &ignored))
				return false;
			break;
		case 'S':
		case 'B':
		case 'G':
			break;
		default:
			return false;
		}
	}
	return true;
}

static int cmp_entry(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

/*
 * Build the binary search table .eh_frame_hdr would hold from the
 * module's .eh_frame section (read from its ELF file, which is what is
 * mapped): sorted (initial pc, FDE) pairs relative to .eh_frame.
 */
static bool synth_table(struct unwinder *u, const struct symbols_module *m,
			struct table *t)
{
	Elf *elf = m->elf;
	Elf_Scn *scn = NULL;
	Elf_Data *d;
	GElf_Shdr sh;
	size_t shstrndx, n = 0, cap = 0;
	const unsigned char *base, *end, *p, *last_cie = NULL;
	uint64_t seg;
	int32_t *ents = NULL;
	uint8_t enc = 0;
	bool cie_ok = false;

	if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
		return false;
	while ((scn = elf_nextscn(elf, scn))) {
		const char *name;

		if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_PROGBITS &&
		    (sh.sh_flags & SHF_ALLOC) &&
		    (name = elf_strptr(elf, shstrndx, sh.sh_name)) &&
		    !strcmp(name, ".eh_frame"))
			break;
	}
	if (!scn || !(d = elf_getdata(scn, NULL)) || !d->d_buf)
		return false;
	base = d->d_buf;
	end = base + d->d_size;
	seg = sh.sh_addr + m->bias;
	for (p = base; end - p >= 8; ) {
		const unsigned char *body = p + 4, *next, *q, *cie;
		uint32_t len, id;
		uint64_t pc;
		int64_t rel;

		memcpy(&len, p, 4);
		if (len == 0xffffffff || len > (size_t)(end - body))
			break;
		next = body + len;
		if (len < 8)		/* terminator or runt */
			goto skip;
		memcpy(&id, body, 4);
		if (id == 0)		/* a CIE */
			goto skip;
		cie = body - id;
		if (cie < base || cie >= end)
			goto skip;
		if (cie != last_cie) {
			last_cie = cie;
			cie_ok = cie_encoding(cie, end, sh.sh_addr + (uint64_t)(cie - base),
					      &enc);
		}
		q = body + 4;
		if (!cie_ok ||
		    !read_encoded(&q, next, enc, sh.sh_addr + (uint64_t)(q - base), &pc))
			goto skip;
		rel = (int64_t)(pc + m->bias - seg);
		if (rel != (int32_t)rel || p - base > INT32_MAX)
			goto skip;
		if (n == cap) {
			int32_t *e;

			cap = cap ? cap * 2 : 256;
			if (!(e = realloc(ents, cap * 2 * sizeof(*e)))) {
				free(ents);
				return false;
			}
			ents = e;
		}
		ents[2 * n] = (int32_t)rel;
		ents[2 * n + 1] = (int32_t)(p - base);
		n++;
skip:
		p = next;
	}
	if (!n) {
		free(ents);
		return false;
	}
	qsort(ents, n, 2 * sizeof(*ents), cmp_entry);
	t->synth = ents;
	t->synth_bytes = n * 2 * sizeof(*ents);
	t->synth_addr = u->synth_next;
	u->synth_next += (t->synth_bytes + 2 * UW_PAGE_SIZE) & UW_PAGE_MASK;
	memset(&t->di, 0, sizeof(t->di));
	t->di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
	t->di.start_ip = m->start;
	t->di.end_ip = m->end;
	t->di.u.rti.segbase = seg;
	t->di.u.rti.table_data = t->synth_addr;
	t->di.u.rti.table_len = t->synth_bytes / sizeof(unw_word_t);
	return true;
}

/* Serve a word of a synthetic table to libunwind. */
static int synth_read(const struct unwinder *u, uint64_t addr, unw_word_t *valp)
{
	for (size_t i = 0; i < u->n_tables; i++) {
		const struct table *t = &u->tables[i];
		uint64_t off = addr - t->synth_addr;

		if (t->synth && addr >= t->synth_addr && off < t->synth_bytes) {
			size_t n = t->synth_bytes - off < sizeof(*valp)
				? t->synth_bytes - off : sizeof(*valp);

			*valp = 0;
			memcpy(valp, (const unsigned char *)t->synth + off, n);
			return 0;
		}
	}
	return -UNW_EINVAL;
}

static void drop_tables(struct unwinder *u)
{
	for (size_t i = 0; i < u->n_tables; i++)
		free(u->tables[i].synth);
	u->n_tables = 0;
	u->last_table = 0;
	u->synth_next = SYNTH_BASE;
}

/* The cached table of the module under IP, made on first use. */
static struct table *table_at(struct unwinder *u, uint64_t ip)
{
	struct symbols_module m;
	struct table *t;

	if (u->n_tables) {
		t = &u->tables[u->last_table];
		if (ip >= t->start && ip < t->end)
			return t;
		for (size_t i = 0; i < u->n_tables; i++) {
			t = &u->tables[i];
			if (ip >= t->start && ip < t->end) {
				u->last_table = i;
				return t;
			}
		}
	}
	if (symbols_module_at(u->syms, ip, &m) < 0)
		return NULL;
	if (u->n_tables == u->cap_tables) {
		size_t cap = u->cap_tables ? u->cap_tables * 2 : 16;

		if (!(t = realloc(u->tables, cap * sizeof(*t))))
			return NULL;
		u->tables = t;
		u->cap_tables = cap;
	}
	t = &u->tables[u->n_tables];
	memset(t, 0, sizeof(*t));
	t->start = m.start;
	t->end = m.end;
	t->usable = hdr_table(u, &m, t) || synth_table(u, &m, t);
	u->last_table = u->n_tables++;
	return t;
}

/* ---- libunwind accessors ---- */

static int find_proc_info(unw_addr_space_t as, unw_word_t ip,
			  unw_proc_info_t *pi, int need_unwind_info, void *arg)
{
	struct frame_ctx *ctx = arg;
	struct table *t = table_at(ctx->u, ip);
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
	uint64_t page = addr & UW_PAGE_MASK;
	size_t off = addr - page;
	const unsigned char *data;

	if (write)
		return -UNW_EINVAL;
	if (addr >= SYNTH_BASE)
		return synth_read(u, addr, valp);
	/* The common case inline: an aligned word in the last page. */
	if (off <= UW_PAGE_SIZE - sizeof(*valp)) {
		if (!(data = get_page(u, page)))
			return -UNW_EINVAL;
		memcpy(valp, data + off, sizeof(*valp));
		return 0;
	}
	return read_mem(u, addr, valp, sizeof(*valp)) < 0 ? -UNW_EINVAL : 0;
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

	return read_mem(u, ip, buf, sizeof(buf)) == 0 &&
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
	    read_mem(u, ra - sizeof(b), b, sizeof(b)) < 0)
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
	if (read_mem(u, regs->rsp, &ra, sizeof(ra)) < 0 || !follows_call(u, ra))
		return false;
	regs->rip = ra;
	regs->rsp += 8;
	return true;
}

/* ---- interface ---- */

struct unwinder *unwinder_new(pid_t pid, struct symbols *syms)
{
	struct unwinder *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->pid = pid;
	u->syms = syms;
	u->ctx.u = u;
	u->gen = RO_GEN + 1;
	u->synth_next = SYNTH_BASE;
	u->cap_ro_pages = 2 * MAX_RO_PAGES;
	if (!(u->ro_pages = calloc(u->cap_ro_pages, sizeof(*u->ro_pages))) ||
	    !(u->stack = calloc(N_STACK_PAGES, sizeof(*u->stack))))
		goto fail;
	if (load_ro_ranges(u) < 0)
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

		unwinder_free(u);
		errno = e;
	}
	return NULL;
}

void unwinder_free(struct unwinder *u)
{
	if (!u)
		return;
	if (u->as)
		unw_destroy_addr_space(u->as);
	if (u->ro_pages)
		drop_ro_pages(u);
	drop_rows(u);
	drop_tables(u);
	free(u->fdes);
	free(u->ro_pages);
	free(u->stack);
	free(u->ro);
	free(u->exec);
	free(u->tables);
	free(u);
}

void unwinder_flush(struct unwinder *u)
{
	drop_ro_pages(u);
	drop_rows(u);
	u->n_stack = 0;
	u->gen++;
	drop_tables(u);
	/* Failing to re-read the maps leaves no page cacheable: still correct. */
	if (load_ro_ranges(u) < 0)
		u->n_ro = 0;
	unw_flush_cache(u->as, 0, 0);
}

int unwinder_read(struct unwinder *u, uint64_t addr, void *buf, size_t len)
{
	return read_mem(u, addr, buf, len);
}

int unwinder_backtrace(struct unwinder *u, pid_t tid,
		       const struct user_regs_struct *regs, uint64_t *pcs,
		       int max)
{
	unw_cursor_t cursor;
	bool exact = true;	/* the innermost pc is no return address */
	int n = 0;

	if (max <= 0)
		return 0;
	pcs[n++] = regs->rip;
	u->ctx.regs = *regs;
	u->gen++;		/* stack and data pages read before are stale */
	u->n_stack = 0;
	if (n < max && step_from_entry(u, &u->ctx.regs)) {
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
		pcs[n++] = ip;
	}
	return n;
}
