#ifndef PTLEAK_RELOCATE_H
#define PTLEAK_RELOCATE_H
/*
 * relocate: an x86-64 instruction moved out of line, into a breakpoint's
 * slot (breakpoint.h): the slot runs the instruction and jumps back to the
 * one after it, as if the instruction had run in place.
 *
 * RIP-relative operands get their displacement re-encoded for the slot's
 * address (so the slot must lie within +-2 GiB of the original); a
 * relative jmp becomes an absolute jump to its target, a conditional jump
 * a jcc over two absolute jumps (glibc's free starts test; je); a relative
 * call is refused, as is an int3 (another debugger's). Decoding is
 * capstone's.
 */
#include <capstone/capstone.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of one slot: the instruction (<= 15, or a jcc: 30) and a 14-byte
 * absolute jump. */
#define RELOC_SLOT_SIZE 48u
/* The most one relocated instruction takes (a jcc and its two jumps). */
#define RELOC_INSN_MAX 30u

struct relocation {
	uint8_t len;		/* length of the original instruction */
	bool needs_near;	/* RIP-relative: the slot must be within rel32 */
	bool jmp_first;		/* a branch: it jumps itself, nothing may follow */
	const char *why;	/* on failure, in words */
};

/*
 * Slot contents for the instruction CODE[0..16) found at ADDR, to run at
 * SLOT, into OUT (RELOC_SLOT_SIZE bytes, padded with int3). CS is a
 * capstone x86-64 handle with details on. 0, or -1 with REL->why set
 * (REL->needs_near tells whether a nearer slot could do).
 */
int relocate(csh cs, const uint8_t code[16], uint64_t addr, uint64_t slot,
	     uint8_t out[RELOC_SLOT_SIZE], struct relocation *rel);

/*
 * One instruction, CODE[0..AVAIL) found at ADDR, copied into OUT to run
 * at AT, without the jump back (the building block of a multi-instruction
 * slot). Returns the bytes written, or -1 with REL->why set; REL->len is
 * the original's length, REL->needs_near is or-ed, REL->jmp_first set for
 * a branch.
 */
int relocate_insn(csh cs, const uint8_t *code, size_t avail, uint64_t addr, uint64_t at,
		  uint8_t out[RELOC_INSN_MAX], struct relocation *rel);

/* jmp qword [rip+0] to TARGET into OUT; its length (14). */
size_t relocate_jump(uint8_t out[14], uint64_t target);

#endif
