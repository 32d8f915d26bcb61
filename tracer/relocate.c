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

int relocate_insn(csh cs, const uint8_t *code, size_t avail, uint64_t addr, uint64_t at,
		  uint8_t out[RELOC_INSN_MAX], struct relocation *rel)
{
	cs_insn *insn;
	size_t n = cs_disasm(cs, code, avail, addr, 1, &insn);
	int rc = -1;

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
	rel->needs_near = rel->needs_near || rip_rel;
	rel->len = (uint8_t)insn->size;
	rel->jmp_first = rel_branch;
	if (code[0] == 0xcc) {
		rel->why = "an int3 is there already (another debugger?)";
	} else if (rel_branch) {
		int cc = -1;
		if (code[0] >= 0x70 && code[0] <= 0x7f)
			cc = code[0] & 0xf;
		else if (code[0] == 0x0f && code[1] >= 0x80 && code[1] <= 0x8f)
			cc = code[1] & 0xf;
		if (insn->id == X86_INS_JMP) {
			rc = (int)put_abs_jump(out, (uint64_t)x->operands[0].imm);
		} else if (cc >= 0) {
			/* jcc taken; jmp abs to the next; taken: jmp abs target */
			out[0] = (uint8_t)(0x70 | cc);
			out[1] = 14;
			put_abs_jump(out + 2, addr + insn->size);
			put_abs_jump(out + 16, (uint64_t)x->operands[0].imm);
			rc = 30;
		} else {
			rel->why = "the first instruction is a relative call or loop";
		}
	} else {
		memcpy(out, code, insn->size);
		rc = insn->size;
		if (rip_rel) {
			int32_t disp;
			uint8_t off = x->encoding.disp_offset;
			memcpy(&disp, code + off, 4);
			int64_t nd = (int64_t)disp + (int64_t)(addr - at);
			if (off == 0 || x->encoding.disp_size != 4 || nd != (int32_t)nd) {
				rel->why = "RIP-relative operand out of reach";
				rc = -1;
			} else {
				disp = (int32_t)nd;
				memcpy(out + off, &disp, 4);
			}
		}
	}
	cs_free(insn, n);
	return rc;
}

size_t relocate_jump(uint8_t out[14], uint64_t target)
{
	return put_abs_jump(out, target);
}

int relocate(csh cs, const uint8_t code[16], uint64_t addr, uint64_t slot,
	     uint8_t out[RELOC_SLOT_SIZE], struct relocation *rel)
{
	*rel = (struct relocation){ 0 };
	memset(out, 0xcc, RELOC_SLOT_SIZE);
	int k = relocate_insn(cs, code, 16, addr, slot, out, rel);
	if (k < 0)
		return -1;
	if (!rel->jmp_first)
		put_abs_jump(out + k, addr + rel->len);
	return 0;
}
