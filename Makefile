# ptleak: plain Makefile. `make` builds build/ptleak, `make check` runs the
# test suite, `make check-asan` the same suite against the ASan/UBSan build
# of ptleak, `make bench` the benchmarks. Quiet unless V=1. Test options:
# TESTFLAGS="-k NAME -v -j N" (see tests/run.py).
#
# The build installs what it needs: `make deps` (run by every other target)
# checks for the libraries and tools with pkg-config / command -v and, when
# something is missing, runs apt-get as root or prints the exact command.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
# The default suppression file: ptleak looks for it at ../lib/ptleak/ from
# its own directory (and, in the build tree, next to itself).
SUPPDIR ?= $(PREFIX)/lib/ptleak
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=
BUILD ?= build

CC ?= cc
PKGS := libdw libelf libunwind-ptrace capstone zlib
WARN := -Wall -Wextra -Wmissing-prototypes -Wstrict-prototypes -Wvla \
	-Wformat=2 -Wwrite-strings -Wshadow -Wpointer-arith -Wcast-qual \
	-Wno-unused-parameter
ifdef CI
WARN += -Werror
endif
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -I. -D_GNU_SOURCE -DPTLEAK_SUPPDIR='"$(SUPPDIR)"' \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lunwind-x86_64 -lunwind -lstdc++

TRACER_SRC := $(wildcard tracer/*.c)
SYMBOLS_SRC := $(wildcard symbols/*.c)
SRC := $(TRACER_SRC) $(SYMBOLS_SRC)
# The HTML report's page, built in as data (tracer/page.S .incbin's it);
# the probe of fast mode, built in as a blob (below).
PAGE_OBJ := $(BUILD)/tracer/page.o
PROBE_BLOB := $(BUILD)/probe/probe_blob.o
OBJ := $(SRC:%.c=$(BUILD)/%.o) $(PAGE_OBJ) $(PROBE_BLOB)
ASAN_OBJ := $(SRC:%.c=$(BUILD)/asan/%.o) $(PAGE_OBJ) $(PROBE_BLOB)

ifeq ($(V),1)
Q :=
else
Q := @
endif

.PHONY: all deps test-deps check check-asan bench install uninstall clean example

all: deps $(BUILD)/ptleak $(BUILD)/default.supp

deps:
	$(Q)sh tests/deps.sh build

test-deps:
	$(Q)sh tests/deps.sh test $(BUILD)

$(BUILD)/ptleak: $(OBJ)
	@echo "  LINK    $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $(OBJ) $(LIBS)

$(BUILD)/%.o: %.c $(wildcard tracer/*.h symbols/*.h probe/*.h) | deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/default.supp: supp/default.supp
	@mkdir -p $(dir $@)
	$(Q)cp $< $@

$(PAGE_OBJ): tracer/page.S tracer/page.html | deps
	@mkdir -p $(dir $@)
	@echo "  AS      $<"
	$(Q)$(CC) -c -o $@ $<

# The probe ptleak writes into traced programs (fast mode): freestanding C,
# linked position-independent on its own, and refused if any relocation is
# left (it is copied into the tracee as flat bytes), then embedded in
# ptleak as _binary_probe_bin_start/_end.
PROBE_CFLAGS := -std=gnu11 -O2 -I. $(WARN) -ffreestanding -fno-builtin -nostdlib \
	-fpie -fvisibility=hidden -fno-stack-protector -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-jump-tables \
	-mgeneral-regs-only -fno-tree-loop-distribute-patterns
$(BUILD)/probe/probe.o: probe/probe.c probe/abi.h probe/walk.h | deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(PROBE_CFLAGS) -c -o $@ $<

$(BUILD)/probe/probe.bin: $(BUILD)/probe/probe.o probe/probe.lds
	@echo "  PROBE   $@"
	$(Q)ld -pie --no-dynamic-linker -z noexecstack --no-warn-rwx-segments \
		-T probe/probe.lds -o $(BUILD)/probe/probe.elf $<
	$(Q)if readelf -rW $(BUILD)/probe/probe.elf | grep -q R_X86_64; then \
		echo "probe: relocations left in $(BUILD)/probe/probe.elf:" >&2; \
		readelf -rW $(BUILD)/probe/probe.elf >&2; exit 1; fi
	$(Q)objcopy -O binary -j .probe $(BUILD)/probe/probe.elf $@

$(PROBE_BLOB): $(BUILD)/probe/probe.bin
	$(Q)cd $(BUILD)/probe && objcopy -I binary -O elf64-x86-64 -B i386:x86-64 \
		--rename-section .data=.rodata,alloc,load,readonly,data,contents \
		--add-section .note.GNU-stack=/dev/null probe.bin probe_blob.o

# The tracer checks itself: the same sources built with ASan and UBSan.
# (Never the fixtures: ASan replaces malloc, so no breakpoint would fire.)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
$(BUILD)/asan/%.o: %.c $(wildcard tracer/*.h symbols/*.h probe/*.h) | deps
	@mkdir -p $(dir $@)
	@echo "  CC/SAN  $<"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<

$(BUILD)/ptleak-asan: $(ASAN_OBJ)
	@echo "  LINK    $@"
	$(Q)$(CC) $(CFLAGS) $(SAN) -o $@ $(ASAN_OBJ) $(LIBS)

# Unit test of symbols/ and the unwinder against a stopped process; its
# fixture is built -O0 so that every frame is a real call.
$(BUILD)/unit/unwind_fixture.o: tests/unit/unwind_fixture.c | deps
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) -std=gnu11 -g -O0 -c -o $@ $<

$(BUILD)/unit/unwind_test: tests/unit/unwind_test.c $(BUILD)/unit/unwind_fixture.o \
		$(SYMBOLS_SRC:%.c=$(BUILD)/%.o)
	@echo "  LINK    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

# Every tests/unit/NAME_test.c is a unit test, BUILD/unit/NAME_test, which
# the suite runs as unit:NAME. Without a rule of its own (as above) it is
# linked with every object but main's.
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(wildcard tests/unit/*_test.c))
# (probe.c too: heap_test includes it, to run the probe's own code)
UNIT_H := $(wildcard tests/unit/*.h tracer/*.h symbols/*.h probe/*.h probe/*.c)
UNIT_SRC = $(filter-out probe/%,$(filter %.c %.o,$^))
$(BUILD)/unit/%_test: tests/unit/%_test.c $(filter-out $(BUILD)/tracer/main.o,$(OBJ)) $(UNIT_H)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(UNIT_SRC) $(LIBS)

# The same unit tests with ASan/UBSan, for check-asan (their fixture
# objects, like every fixture, are not sanitized).
ASAN_UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/asan/unit/%,$(wildcard tests/unit/*_test.c))
$(BUILD)/asan/unit/unwind_test: tests/unit/unwind_test.c $(BUILD)/unit/unwind_fixture.o \
		$(SYMBOLS_SRC:%.c=$(BUILD)/asan/%.o)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $^ $(LIBS)
$(BUILD)/asan/unit/%_test: tests/unit/%_test.c $(filter-out $(BUILD)/asan/tracer/main.o,$(ASAN_OBJ)) $(UNIT_H)
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $(UNIT_SRC) $(LIBS)

# Run ptleak on a leaky example from the seed documents.
example: all
	$(Q)mkdir -p $(BUILD)/fixtures
	$(Q)$(CC) -g -O0 -o $(BUILD)/fixtures/example fixtures/valgrind_kinds.c
	./$(BUILD)/ptleak ./$(BUILD)/fixtures/example

check: all test-deps $(UNIT_TESTS)
	$(Q)python3 tests/run.py --ptleak $(BUILD)/ptleak --unit $(BUILD)/unit \
		--build $(BUILD) $(TESTFLAGS)

# The whole suite again, ptleak and the unit tests being the sanitizer
# builds (the fixtures are the same, never sanitized): any ASan/UBSan
# report fails a test.
check-asan: all test-deps $(BUILD)/ptleak-asan $(ASAN_UNIT_TESTS)
	$(Q)python3 tests/run.py --ptleak $(BUILD)/ptleak-asan --sanitized \
		--unit $(BUILD)/asan/unit --build $(BUILD) $(TESTFLAGS)

bench: all test-deps
	$(Q)python3 tests/bench.py --ptleak $(BUILD)/ptleak --build $(BUILD) $(BENCHFLAGS)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(BUILD)/ptleak $(DESTDIR)$(BINDIR)/ptleak
	install -m 644 doc/ptleak.1 $(DESTDIR)$(MANDIR)/man1/ptleak.1
	install -d $(DESTDIR)$(SUPPDIR)
	install -m 644 supp/default.supp $(DESTDIR)$(SUPPDIR)/default.supp

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ptleak $(DESTDIR)$(MANDIR)/man1/ptleak.1
	rm -f $(DESTDIR)$(SUPPDIR)/default.supp

clean:
	rm -rf $(BUILD)
