#ifndef PTLEAK_RELOCATE_H
#define PTLEAK_RELOCATE_H
/*
 * relocate: an x86-64 instruction moved out of line, into a breakpoint's
 * slot (breakpoint.h): the slot runs the instruction and jumps back to the
 * one after it, as if the instruction had run in place.
 *
 * RIP-relative operands get their displacement re-encoded for the slot's
 * address (so the slot must lie within +-2 GiB of the original); a
 * relative jmp becomes an absolute jump to its target; a relative call or
 * conditional jump is refused (none of the allocators seen starts with
 * one), as is an int3 (another debugger's). Decoding is capstone's.
 */
#include <capstone/capstone.h>
#include <stdbool.h>
#include <stdint.h>

/* Bytes of one slot: the instruction (<= 15) and a 14-byte absolute jump. */
#define RELOC_SLOT_SIZE 32u

struct relocation {
	uint8_t len;		/* length of the original instruction */
	bool needs_near;	/* RIP-relative: the slot must be within rel32 */
	bool jmp_first;		/* the slot starts with the jump (a relative jmp) */
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

#endif
