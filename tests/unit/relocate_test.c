/*
 * relocate_test: the instruction relocation of tracer/relocate.h, checked
 * by running it. Each case writes a short function at a "site" in an
 * executable page, relocates its first instruction into a slot in another
 * page, and calls both the site and the slot: a slot must return what the
 * site returns (it runs the moved instruction, then jumps back to the
 * site's second one). A conditional jump runs both ways. The refusals
 * (relative call, int3, undecodable bytes, out of reach) are checked by
 * their reason.
 * Prints "ok ..." / "FAIL ..." lines; exits 1 on any failure.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tests/unit/check.h"
#include "tracer/relocate.h"


#define PAGE 4096
static uint8_t *mem;		/* 3 pages: code, slots, data */
static csh cs;

typedef uint64_t (*fn_t)(void);

/* Relocate the function CODE (LEN bytes, its first instruction moved)
 * placed at SITE_OFF in the code page into the slot at SLOT_OFF in the
 * slot page, run both, compare. */
static void runs_the_same(const char *what, const uint8_t *code, size_t len,
			  size_t site_off, uint8_t want_len, bool want_near, bool want_jmp)
{
	uint8_t *site = mem + site_off, *slot = mem + PAGE + 64;
	uint8_t out[RELOC_SLOT_SIZE], window[16] = { 0 };
	struct relocation rel;

	memcpy(site, code, len);
	memcpy(window, code, len < 16 ? len : 16);
	int rc = relocate(cs, window, (uint64_t)(uintptr_t)site, (uint64_t)(uintptr_t)slot,
			  out, &rel);
	check(rc == 0, "%s: relocated%s%s", what, rc ? ": " : "", rc ? rel.why : "");
	if (rc)
		return;
	check(rel.len == want_len && rel.needs_near == want_near && rel.jmp_first == want_jmp,
	      "%s: length %u, near %d, jump first %d", what, rel.len, rel.needs_near,
	      rel.jmp_first);
	memcpy(slot, out, sizeof(out));
	__builtin___clear_cache((char *)mem, (char *)mem + 2 * PAGE);
	uint64_t at_site = ((fn_t)(uintptr_t)site)();
	uint64_t at_slot = ((fn_t)(uintptr_t)slot)();
	check(at_site == at_slot, "%s: the slot returns what the site returns (0x%" PRIx64
	      ", 0x%" PRIx64 ")", what, at_slot, at_site);
}

/* A thunk in the code page: test edi, edi; jmp rsi: calls RSI with ZF
 * set when its first argument is 0. */
typedef uint64_t (*thunk_t)(uint64_t, void *);

static void jcc_both(const char *what, const uint8_t *code, size_t len, size_t site_off,
		     uint8_t want_len)
{
	static const uint8_t thunk_code[] = { 0x85, 0xff, 0xff, 0xe6 };
	uint8_t *site = mem + site_off, *slot = mem + PAGE + 128, *thunk = mem + 0xf00;
	uint8_t out[RELOC_SLOT_SIZE], window[16] = { 0 };
	struct relocation rel;

	memcpy(thunk, thunk_code, sizeof(thunk_code));
	memcpy(site, code, len);
	memcpy(window, code, len < 16 ? len : 16);
	int rc = relocate(cs, window, (uint64_t)(uintptr_t)site, (uint64_t)(uintptr_t)slot,
			  out, &rel);
	check(rc == 0 && rel.len == want_len && rel.jmp_first, "%s: relocated, length %u%s%s",
	      what, rel.len, rc ? ": " : "", rc ? rel.why : "");
	if (rc)
		return;
	memcpy(slot, out, sizeof(out));
	__builtin___clear_cache((char *)mem, (char *)mem + 2 * PAGE);
	thunk_t t = (thunk_t)(uintptr_t)thunk;
	for (uint64_t zf_clear = 0; zf_clear < 2; zf_clear++) {
		uint64_t a = t(zf_clear, site), b = t(zf_clear, slot);
		check(a == b && (a == 7 || a == 9), "%s, ZF %s: the slot returns what the site "
		      "returns (%" PRIu64 ", %" PRIu64 ")", what, zf_clear ? "clear" : "set", b, a);
	}
}

static void refused(const char *what, const uint8_t *code, size_t len, uint64_t slot_delta,
		    const char *want_why)
{
	uint8_t out[RELOC_SLOT_SIZE], window[16] = { 0 };
	struct relocation rel;
	uint64_t addr = (uint64_t)(uintptr_t)mem;

	memcpy(window, code, len);
	int rc = relocate(cs, window, addr, addr + slot_delta, out, &rel);
	check(rc < 0 && rel.why && strstr(rel.why, want_why), "%s: refused (%s)", what,
	      rel.why ? rel.why : "no reason");
}

int main(void)
{
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) {
		printf("FAIL cannot open capstone\n");
		return 1;
	}
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON);
	mem = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		printf("FAIL cannot map an executable page\n");
		return 1;
	}
	uint64_t data = 0x1122334455667788ull;
	memcpy(mem + 2 * PAGE, &data, 8);

	/* push rbp; mov eax, 7; pop rbp; ret */
	static const uint8_t push[] = { 0x55, 0xb8, 7, 0, 0, 0, 0x5d, 0xc3 };
	runs_the_same("push rbp", push, sizeof(push), 0, 1, false, false);

	/* endbr64; mov eax, 9; ret */
	static const uint8_t endbr[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0xb8, 9, 0, 0, 0, 0xc3 };
	runs_the_same("endbr64", endbr, sizeof(endbr), 0x100, 4, false, false);

	/* lea rax, [rip + d]; ret: the address itself must survive. */
	uint8_t lea[8] = { 0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xc3 };
	int32_t d = (int32_t)(2 * PAGE - (0x200 + 7));
	memcpy(lea + 3, &d, 4);
	runs_the_same("lea rax, [rip+disp32]", lea, sizeof(lea), 0x200, 7, true, false);

	/* mov rax, [rip + d]; ret: the data at that address. */
	uint8_t mov[8] = { 0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3 };
	d = (int32_t)(2 * PAGE - (0x300 + 7));
	memcpy(mov + 3, &d, 4);
	runs_the_same("mov rax, [rip+disp32]", mov, sizeof(mov), 0x300, 7, true, false);

	/* glibc 2.36's memalign: cmpb $0, d(%rip); then sete al; movzx eax, al; ret.
	 * The immediate after the displacement must stay where it is. */
	uint8_t cmpb[14] = { 0x80, 0x3d, 0, 0, 0, 0, 0x88, 0x0f, 0x94, 0xc0, 0x0f, 0xb6, 0xc0, 0xc3 };
	d = (int32_t)(2 * PAGE - (0x400 + 7));
	memcpy(cmpb + 2, &d, 4);
	runs_the_same("cmpb $imm8, [rip+disp32]", cmpb, sizeof(cmpb), 0x400, 7, true, false);

	/* jmp rel32 to a stub (mov eax, 42; ret): becomes an absolute jump. */
	uint8_t jmp32[0x40] = { 0xe9, 0, 0, 0, 0 };
	int32_t rel = 0x30 - 5;
	memcpy(jmp32 + 1, &rel, 4);
	static const uint8_t stub[] = { 0xb8, 42, 0, 0, 0, 0xc3 };
	memcpy(jmp32 + 0x30, stub, sizeof(stub));
	runs_the_same("jmp rel32", jmp32, sizeof(jmp32), 0x500, 5, false, true);

	/* jmp rel8 */
	uint8_t jmp8[0x20] = { 0xeb, 0x10 - 2 };
	memcpy(jmp8 + 0x10, stub, sizeof(stub));
	runs_the_same("jmp rel8", jmp8, sizeof(jmp8), 0x600, 2, false, true);

	/* A conditional jump first (glibc's free: test rdi, rdi; je): 7
	 * when taken, 9 when not, both ways at the site and in the slot. */
	static const uint8_t stub7[] = { 0xb8, 7, 0, 0, 0, 0xc3 };	/* mov eax, 7; ret */
	uint8_t je8[0x20] = { 0x74, 0x10 - 2, 0xb8, 9, 0, 0, 0, 0xc3 };	/* je; mov eax, 9; ret */
	memcpy(je8 + 0x10, stub7, sizeof(stub7));
	jcc_both("je rel8", je8, sizeof(je8), 0x700, 2);
	uint8_t jne32[0x30] = { 0x0f, 0x85, 0x20 - 6, 0, 0, 0, 0xb8, 9, 0, 0, 0, 0xc3 };
	memcpy(jne32 + 0x20, stub7, sizeof(stub7));
	jcc_both("jne rel32", jne32, sizeof(jne32), 0x800, 6);

	static const uint8_t call[] = { 0xe8, 0, 0, 0, 0 };
	refused("call rel32", call, sizeof(call), 64, "relative call");
	static const uint8_t int3[] = { 0xcc };
	refused("int3", int3, sizeof(int3), 64, "int3 is there already");
	static const uint8_t bad[] = { 0x06 };	/* push es: not in 64-bit mode */
	refused("undecodable", bad, sizeof(bad), 64, "cannot decode");
	/* A RIP-relative operand with the slot 3 GiB away. */
	refused("rip-relative, slot out of reach", mov, sizeof(mov), 3ull << 30, "out of reach");
	struct relocation r;
	uint8_t out[RELOC_SLOT_SIZE], w[16] = { 0 };
	memcpy(w, mov, sizeof(mov));
	relocate(cs, w, 0x10000000, 0x10000000 + (3ull << 30), out, &r);
	check(r.needs_near, "out of reach: the caller learns a nearer slot would do");

	cs_close(&cs);
	return failures ? 1 : 0;
}
