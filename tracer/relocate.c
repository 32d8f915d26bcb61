/*
 * relocate: one instruction out of line (see relocate.h).
 */
#include "tracer/relocate.h"

#include <string.h>

/* jmp qword [rip+0] followed by the 8-byte target. */
static size_t put_abs_jump(uint8_t *out, uint64_t target)
{
	static const uint8_t jmp_rip0[6] = { 0xff, 0x25, 0, 0, 0, 0 };

	memcpy(out, jmp_rip0, sizeof(jmp_rip0));
	memcpy(out + 6, &target, 8);
	return 14;
}

int relocate(csh cs, const uint8_t code[16], uint64_t addr, uint64_t slot,
	     uint8_t out[RELOC_SLOT_SIZE], struct relocation *rel)
{
	cs_insn *insn;
	size_t n = cs_disasm(cs, code, 16, addr, 1, &insn);
	int rc = -1;

	*rel = (struct relocation){ 0 };
	if (n != 1) {
		rel->why = "cannot decode the first instruction";
		return -1;
	}
	const cs_x86 *x = &insn->detail->x86;
	bool rip_rel = false, rel_branch = false;
	for (int i = 0; i < x->op_count; i++)
		if (x->operands[i].type == X86_OP_MEM && x->operands[i].mem.base == X86_REG_RIP)
			rip_rel = true;
	if (cs_insn_group(cs, insn, CS_GRP_BRANCH_RELATIVE) ||
	    ((cs_insn_group(cs, insn, CS_GRP_JUMP) || cs_insn_group(cs, insn, CS_GRP_CALL)) &&
	     x->op_count == 1 && x->operands[0].type == X86_OP_IMM))
		rel_branch = true;
	rel->needs_near = rip_rel;
	rel->len = (uint8_t)insn->size;
	rel->jmp_first = rel_branch;
	memset(out, 0xcc, RELOC_SLOT_SIZE);
	if (code[0] == 0xcc) {
		rel->why = "an int3 is there already (another debugger?)";
	} else if (rel_branch) {
		if (insn->id != X86_INS_JMP) {
			rel->why = "the first instruction is a relative call or conditional jump";
		} else {
			put_abs_jump(out, (uint64_t)x->operands[0].imm);
			rc = 0;
		}
	} else {
		memcpy(out, code, insn->size);
		if (rip_rel) {
			int32_t disp;
			uint8_t off = x->encoding.disp_offset;
			memcpy(&disp, code + off, 4);
			int64_t nd = (int64_t)disp + (int64_t)(addr - slot);
			if (off == 0 || x->encoding.disp_size != 4 ||
			    nd != (int32_t)nd) {
				rel->why = "RIP-relative operand out of reach";
				goto out;
			}
			disp = (int32_t)nd;
			memcpy(out + off, &disp, 4);
		}
		put_abs_jump(out + insn->size, addr + insn->size);
		rc = 0;
	}
out:
	cs_free(insn, n);
	return rc;
}
