#ifndef PTLEAK_BREAKPOINT_H
#define PTLEAK_BREAKPOINT_H
/*
 * breakpoint: int3 sites that are never removed while the program runs,
 * stepped over out of line.
 *
 * For each site, a slot in a code page ptleak maps into the tracee holds
 * the site's first instruction, relocated (RIP-relative displacements
 * re-encoded, relative jumps made absolute), followed by an absolute jump
 * back to the next instruction. A thread that hits the int3 is handled
 * and then resumed at the slot: one stop, no single-step, and the int3
 * stays armed for every other thread. Instructions are decoded with
 * capstone.
 *
 * Each code page starts with a `syscall; int3` gadget, used to run mmap
 * inside the tracee later, and an int3 trampoline: allocator calls return
 * there (their return address is redirected) and ptleak takes the result.
 *
 * The slot of a RIP-relative instruction must lie within +-2 GiB of the
 * site: pages are mapped near the code that needs them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct process;
struct thread;

enum site_kind {
	SITE_ALLOC,		/* an allocator entry point; ->call says which */
	SITE_RBRK,		/* the dynamic linker's r_brk (module list changed) */
	SITE_EXIT,		/* _exit: the process ends, every thread still there */
};

struct site {
	uint64_t addr;
	uint64_t slot;		/* where the thread resumes */
	uint8_t orig;		/* the byte the int3 replaced */
	uint8_t len;		/* length of the displaced instruction */
	bool in_slot_jmp;	/* the slot starts with the jump (relative jmp) */
	enum site_kind kind;
	int call;		/* enum alloc_call for SITE_ALLOC */
	unsigned generation;	/* last refresh that still found it */
	/* Fast mode: a jmp to a stub replaces the first LEN bytes (several
	 * instructions, starting at offsets INS_OFF[0..N_INS)); no int3. */
	bool jump;
	uint8_t n_ins;
	uint8_t ins_off[8];
	uint8_t orig_bytes[16];
	uint64_t stub;
};

struct bpset;

struct bpset *bp_new(void);
void bp_free(struct bpset *b);

/*
 * Map the first code page while thread T is stopped and no other thread of
 * its process runs (an exec stop, or every thread interrupted after
 * attaching): `mov eax, NR; syscall; int3` is written over the code at
 * rip, run, and the bytes and registers put back. A thread interrupted in
 * a syscall restarts it afterwards. 0 or -1 (message printed).
 */
int bp_init(struct bpset *b, struct thread *t);

/* A copy for a forked child, whose memory holds the same sites and pages. */
struct bpset *bp_clone(const struct bpset *b);

/*
 * Leave no trace in process P (every thread stopped, T one of them): the
 * original bytes back at every site, and the code pages unmapped. Threads
 * must have been moved out of slots (bp_move_out) and return addresses
 * restored first. 0 or -1.
 */
int bp_remove_all(struct bpset *b, struct thread *t);

/* If RIP is inside a slot, where the thread would be without ptleak:
 * the site (instruction not run yet) or the instruction after it. Else
 * RIP itself. */
uint64_t bp_move_out(const struct bpset *b, uint64_t rip);

/* Whether ADDR lies in one of our code pages. */
bool bp_in_pages(const struct bpset *b, uint64_t addr);

/* The `syscall; int3` gadget of the first code page, for injecting. */
uint64_t bp_gadget(const struct bpset *b);

/* The return trampoline's address (an int3), and rip after hitting it. */
uint64_t bp_trampoline(const struct bpset *b);

/*
 * Arm a site at ADDR. T is a stopped thread of the process, used to map a
 * new code page near ADDR if needed. Arming an address that is armed
 * already only refreshes its generation. 0, or -1 with a message printed
 * (the site is left unarmed: an instruction that cannot be relocated).
 */
int bp_add(struct bpset *b, struct thread *t, uint64_t addr,
	   enum site_kind kind, int call, unsigned generation);

/*
 * Fast mode: redirect the allocator entry at ADDR (a function of FSIZE
 * bytes) to ENTRY, the probe, through a stub in a code page near it: a
 * 5-byte jmp replaces the first instructions, which are relocated into
 * the site's slot. The stub is followed by a struct probe_site. Every
 * thread of the process must be stopped; RIPS[0..N_RIPS) are their
 * instruction pointers, none of which may lie inside the bytes replaced.
 * Refused (-1 with *WHY set, nothing written) when that is not safe: a
 * branch in the function into those bytes, an instruction that cannot
 * move, no page within reach. Then the caller arms an int3 instead.
 */
int bp_add_jump(struct bpset *b, struct thread *t, uint64_t addr, uint64_t fsize,
		uint64_t entry, enum site_kind kind, int call, unsigned generation,
		const uint64_t *rips, size_t n_rips, const char **why);

/* Forget sites whose generation is older than GENERATION (their module
 * was unmapped); their bytes are gone with it. */
void bp_prune(struct bpset *b, unsigned generation);

/* The site whose int3 is at ADDR, or NULL. */
struct site *bp_find(struct bpset *b, uint64_t addr);

/*
 * Write the original bytes back at every site in process P's memory
 * (a forked child's copy). 0 or -1.
 */
int bp_restore_in(struct bpset *b, struct process *p);

#endif
