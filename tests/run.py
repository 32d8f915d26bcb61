#!/usr/bin/env python3
"""ptleak's test suite: real programs run under ptleak, exact numbers compared.

    python3 tests/run.py --ptleak build/ptleak --asan build/ptleak-asan \
        --build build [-k SUBSTRING]... [-v]

How it works
  * Every fixture in fixtures/ is built on demand into BUILD/fixtures
    (gcc/g++ -g -O0 -fno-omit-frame-pointer, never with sanitizers; static
    ones with -static, -static-pie and musl-gcc -static; Go with go build).
  * LEAKS below is the table of expectations: per test, the command, the
    LEAK SUMMARY per kind (bytes, blocks; None = not checked because it is
    libc's, libstdc++'s, Python's or the Go runtime's business), the heap
    totals where they are exact, and the loss records of the checked kinds,
    largest first, each with its stack as function names (optionally
    @file basename), innermost first. A stack matches when frame 0 is the
    first name and the other names follow in order, frames in between
    allowed (libstdc++'s operator new, libffi, ...). Addresses are never
    compared. "main" as the last name must also be the last frame (frames
    below main are dropped by default).
  * Each LEAKS test runs PROGRAM alone first (its stdout, masked 0x...
    pointers, and exit status are the reference), then under ptleak with
    --json, and compares: exit status, stdout, JSON summary/heap/records,
    the text report's LEAK SUMMARY lines (with thousands separators) and its
    "in loss record K of N" lines against the JSON records.
  * valgrind:NAME tests run the same command under valgrind --leak-check=full
    (the oracle): its definitely/indirectly lost bytes and blocks must equal
    the table, and the ptleak test then also compares itself with them.
  * The other tests (CLI, exit statuses, bad input, options, static builds
    alike, the ASan build) are small functions at the end of the file.
  * attach_* (-k attach): ptleak -p on processes the suite starts itself
    (a TCP server it talks to, an allocator hammer, ...): exact reports,
    the target unharmed after ptleak leaves, error messages. proc_* (-k
    proc): fork/-f, posix_spawn/vfork, exec, signals sent from outside, a
    terminal's Ctrl-C (in a pseudo-terminal), odd exits and odd binaries;
    the program's stdout and status must equal a run without ptleak.
    Background processes are waited for with deadlines and killed with
    their session at the end of each test.
  * Every run has a hard time limit; on expiry the whole process group is
    killed. After each run no process of its session may be left.

Output: one line per test, "ok NAME", "FAIL NAME: reason" (+ indented
details) or "skip NAME: reason", then exactly "N passed, N failed".
Exit status 1 if anything failed.

Adding a test: add a fixture that states what it leaks in its header
comment, a BUILDS entry if it is not a plain C file, and a LEAKS entry.
Run one test: python3 tests/run.py --ptleak build/ptleak --build build -k NAME
"""
import argparse
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")

CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer"]
DEFAULT_TIMEOUT = 60

# --------------------------------------------------------------------------
# Builds: name -> how. kind: c, cxx, so (shared library), go. Output file is
# BUILD/fixtures/NAME (lib*.so for the libraries). link: shared libraries
# of this table to link against (DT_NEEDED, found through an $ORIGIN rpath).
# --------------------------------------------------------------------------
BUILDS = {
    "valgrind_kinds": {"kind": "c", "src": ["valgrind_kinds.c"]},
    "list_no_head": {"kind": "c", "src": ["list_no_head.c"]},
    "possibly_lost": {"kind": "c", "src": ["possibly_lost.c"]},
    "leak_1000": {"kind": "c", "src": ["leak_1000.c"]},
    "inherit_dump": {"kind": "c", "src": ["inherit_dump.c"]},
    "good_1000": {"kind": "c", "src": ["good_1000.c"]},
    "hello": {"kind": "c", "src": ["hello.c"]},
    "leak_100": {"kind": "c", "src": ["leak_100.c"]},
    "jemalloc_demo": {"kind": "c", "src": ["jemalloc_demo.c"]},
    "student": {"kind": "c", "src": ["student.c"]},
    "student_cpp": {"kind": "cxx", "src": ["student.cpp"]},
    "producer_consumer": {"kind": "cxx", "src": ["producer_consumer.cpp"]},
    "alloc_entry_points": {"kind": "c", "src": ["alloc_entry_points.c"]},
    "deep_chain": {"kind": "c",
                   "src": ["deep_main.c", "deep_a.c", "deep_b.c"]},
    "leak_static_dynamic": {"kind": "c", "src": ["leak_static.c"]},
    "leak_static_glibc": {"kind": "c", "src": ["leak_static.c"],
                          "flags": ["-static"]},
    "leak_static_pie": {"kind": "c", "src": ["leak_static.c"],
                        "flags": ["-static-pie"]},
    "leak_static_musl": {"kind": "c", "src": ["leak_static.c"],
                         "cc": "musl-gcc", "flags": ["-static"]},
    "threads_stress": {"kind": "c", "src": ["threads_stress.c"],
                       "flags": ["-pthread"]},
    "liballoc_only.so": {"kind": "so", "src": ["alloc_only.c"]},
    "liballoc_free.so": {"kind": "so", "src": ["alloc_free.c"]},
    "cgo_leak": {"kind": "go", "src": ["cgo_leak.go"]},
    "cgo_good": {"kind": "go", "src": ["cgo_good.go"]},
    "cgo_noop": {"kind": "go", "src": ["cgo_noop.go"]},
    "go_preempt": {"kind": "go", "src": ["go_preempt.go"]},
    "exit_code": {"kind": "c", "src": ["exit_code.c"]},
    "kill_self": {"kind": "c", "src": ["kill_self.c"]},
    "echo_stdin": {"kind": "c", "src": ["echo_stdin.c"]},
    # Attach mode (tests attach_*) and processes (tests proc_*).
    "leak_server": {"kind": "c", "src": ["leak_server.c"],
                    "flags": ["-pthread"]},
    "hammer": {"kind": "c", "src": ["hammer.c"], "flags": ["-pthread"]},
    "trigger_leaks": {"kind": "c", "src": ["trigger_leaks.c"]},
    "fork_leaks": {"kind": "c", "src": ["fork_leaks.c"]},
    "spawn_leaks": {"kind": "c", "src": ["spawn_leaks.c"]},
    "exec_thread": {"kind": "c", "src": ["exec_thread.c"],
                    "flags": ["-pthread"]},
    "sig_external": {"kind": "c", "src": ["sig_external.c"]},
    "sig_trap": {"kind": "c", "src": ["sig_trap.c"]},
    "sig_alarm": {"kind": "c", "src": ["sig_alarm.c"]},
    "abort_leak": {"kind": "c", "src": ["abort_leak.c"]},
    "thread_exit": {"kind": "c", "src": ["thread_exit.c"],
                    "flags": ["-pthread"]},
    "ctrl_c": {"kind": "c", "src": ["ctrl_c.c"]},
    "ctrl_z": {"kind": "c", "src": ["ctrl_z.c"]},
    # Libraries three ways: linked in (link: built fixtures the program is
    # linked against, found at run time through an $ORIGIN rpath), and
    # plugins given on the command line.
    "libctor.so": {"kind": "so", "src": ["libctor.c"]},
    "libplug.so": {"kind": "so", "src": ["libplug.c"]},
    "libgone.so": {"kind": "so", "src": ["libgone.c"]},
    "libreuse.so": {"kind": "so", "src": ["libreuse.c"]},
    "dlopen_main": {"kind": "c", "src": ["dlopen_main.c"],
                    "link": ["libctor.so"]},
    # strip --strip-all after the build: no .symtab, no debug info.
    "leak_stripped_dynamic": {"kind": "c", "src": ["leak_static.c"],
                              "strip": True},
    "leak_stripped_static": {"kind": "c", "src": ["leak_static.c"],
                             "flags": ["-static"], "strip": True},
}

KINDS = ["definitely_lost", "indirectly_lost", "possibly_lost",
         "still_reachable"]
KIND_TEXT = {"definitely_lost": "definitely lost",
             "indirectly_lost": "indirectly lost",
             "possibly_lost": "possibly lost",
             "still_reachable": "still reachable"}


def S(d=None, i=None, p=None, r=None):
    """A LEAK SUMMARY expectation: (bytes, blocks) per kind, None = any."""
    return {"definitely_lost": d, "indirectly_lost": i, "possibly_lost": p,
            "still_reachable": r}


def R(kind, nbytes, blocks, stack):
    """One loss record: kind, bytes, blocks, stack names innermost first."""
    return {"kind": kind, "bytes": nbytes, "blocks": blocks, "stack": stack}


D, I, P, RE = ("definitely_lost", "indirectly_lost", "possibly_lost",
               "still_reachable")
Z = (0, 0)
# glibc 2.36: aligned_alloc and memalign are one function at one address;
# frame 0 is named by whichever name the symbol table gives first.
MEMALIGN = "memalign|aligned_alloc"
ECHO_INPUT = b"".join(b"line %05d of the standard input test\n" % n
                      for n in range(3000))

# --------------------------------------------------------------------------
# The table. cmd: "@NAME" = built fixture NAME, "@python" = the Python
# interpreter, "%F" = fixtures/ (sources). "N" in a summary or record means
# (N * per_block bytes, N blocks) with N read from the program's stdout by
# the "count" regex. heap: exact totals (subset of allocations, frees,
# bytes_allocated, peak_bytes). valgrind: run the oracle on this command.
# check_command: False = the JSON "command" is not compared (after exec).
# --------------------------------------------------------------------------
LEAKS = [
    {"name": "valgrind_kinds", "cmd": ["@valgrind_kinds"],
     "summary": S(d=(60, 2), i=Z, p=Z, r=(100, 1)),
     "heap": {"allocations": 3, "frees": 0, "bytes_allocated": 160,
              "peak_bytes": 160},
     "records": [R(RE, 100, 1, ["malloc", "main@valgrind_kinds.c"]),
                 R(D, 50, 1, ["malloc", "main@valgrind_kinds.c"]),
                 R(D, 10, 1, ["malloc", "main@valgrind_kinds.c"])],
     "valgrind": True},
    {"name": "list_no_head", "cmd": ["@list_no_head"],
     "summary": S(d=(16, 1), i=(144, 9), p=Z, r=Z),
     "heap": {"allocations": 10, "frees": 0, "bytes_allocated": 160,
              "peak_bytes": 160},
     # Largest first as valgrind orders them: the definite record counts
     # with the 144 indirect bytes it holds ("160 (16 direct, 144 indirect)").
     "records": [R(D, 16, 1, ["malloc", "case_ll_with_no_head", "main"]),
                 R(I, 144, 9, ["malloc", "case_ll_with_no_head", "main"])],
     "valgrind": True},
    {"name": "possibly_lost", "cmd": ["@possibly_lost"],
     "summary": S(d=Z, i=Z, p=(160, 1)),
     "records": [R(P, 160, 1, ["malloc", "case_ll_array@possibly_lost.c",
                               "main"])],
     "valgrind": True},
    {"name": "leak_1000", "cmd": ["@leak_1000"],
     "summary": S(d=(1000, 1), i=Z, p=Z),
     "heap": {"allocations": 2, "bytes_allocated": 5096},
     "records": [R(D, 1000, 1, ["malloc", "do_leak@leak_1000.c", "main"])],
     "valgrind": True},
    {"name": "good_1000", "cmd": ["@good_1000"],
     "summary": S(d=Z, i=Z, p=Z),
     "heap": {"allocations": 2, "bytes_allocated": 5096},
     "records": [], "valgrind": True},
    # stdout is a pipe here, so glibc's stdout buffer is 4096 bytes.
    {"name": "hello", "cmd": ["@hello"],
     "summary": S(d=Z, i=Z, p=Z, r=(4096, 1)),
     "heap": {"allocations": 1, "bytes_allocated": 4096},
     "records": [R(RE, 4096, 1, ["malloc", "main@hello.c"])],
     "valgrind": True},
    {"name": "leak_100", "cmd": ["@leak_100"],
     "summary": S(d=(25600, 100), i=Z, p=Z),
     "heap": {"allocations": 101, "bytes_allocated": 29696},
     "records": [R(D, 25600, 100, ["malloc", "leak_one@leak_100.c", "main"])],
     "text": ["25,600 bytes in 100 blocks are definitely lost in loss "
              "record 1 of "],
     "valgrind": True},
    {"name": "jemalloc_demo", "cmd": ["@jemalloc_demo"],
     "summary": S(d=(6430720, 120), i=Z, p=Z, r=Z),
     "heap": {"allocations": 120, "frees": 0, "bytes_allocated": 6430720,
              "peak_bytes": 6430720},
     "records": [R(D, 3235840, 80, ["malloc", "do_something", "main"]),
                 R(D, 3194880, 40, ["malloc", "do_something_else", "main"])],
     "text": ["3,235,840 bytes in 80 blocks are definitely lost in loss "
              "record 1 of 2",
              "3,194,880 bytes in 40 blocks are definitely lost in loss "
              "record 2 of 2",
              "definitely lost: 6,430,720 bytes in 120 blocks"],
     "valgrind": True},
    {"name": "student_c", "cmd": ["@student"],
     "summary": S(d=(148, 1), i=Z, p=Z),
     "heap": {"allocations": 3, "bytes_allocated": 4392},
     "records": [R(D, 148, 1, ["malloc", "student_create@student.c", "lab",
                               "main"])],
     "valgrind": True},
    # 72,704 = libstdc++'s emergency exception pool, allocated by a library
    # constructor before main: ptleak hooks malloc before constructors run.
    {"name": "student_cpp", "cmd": ["@student_cpp"],
     "summary": S(d=(72, 1), i=Z, p=Z),
     "heap": {"allocations": 4, "bytes_allocated": 76944},
     "records": [R(D, 72, 1, ["malloc", "operator new",
                              "enroll@student.cpp", "lab", "main"])],
     "valgrind": True},
    {"name": "producer_consumer", "cmd": ["@producer_consumer"],
     "count": r"leaked (\d+) items", "per_block": 8,
     "summary": S(d="N", i=Z, p=Z),
     "records": [R(D, "N", "N", ["malloc", "operator new",
                                 "Producer::produce", "run", "main"])],
     "valgrind": True},
    {"name": "alloc_entry_points", "cmd": ["@alloc_entry_points"],
     "summary": S(d=(14864, 10), i=Z, p=Z, r=Z),
     "heap": {"allocations": 24, "frees": 14, "bytes_allocated": 21328,
              "peak_bytes": 14864},
     "records": [
         R(D, 8192, 1, ["pvalloc", "leak_pvalloc", "main"]),
         R(D, 3001, 1, ["realloc", "leak_realloc_grow", "main"]),
         R(D, 806, 1, ["valloc", "leak_valloc", "main"]),
         R(D, 705, 1, [MEMALIGN, "leak_memalign", "main"]),
         R(D, 640, 1, [MEMALIGN, "leak_aligned_alloc", "main"]),
         R(D, 503, 1, ["posix_memalign", "leak_posix_memalign", "main"]),
         R(D, 413, 1, ["reallocarray", "leak_reallocarray", "main"]),
         R(D, 302, 1, ["realloc", "leak_realloc_null", "main"]),
         R(D, 201, 1, ["calloc", "leak_calloc", "main"]),
         R(D, 101, 1, ["malloc", "leak_malloc", "main"])]},
    # The same without pvalloc, which valgrind 3.19 cannot run.
    {"name": "alloc_entry_points_no_pvalloc",
     "cmd": ["@alloc_entry_points", "no-pvalloc"],
     "summary": S(d=(6672, 9), i=Z, p=Z, r=Z),
     "heap": {"allocations": 22, "frees": 13, "bytes_allocated": 9040,
              "peak_bytes": 6672},
     "records": [
         R(D, 3001, 1, ["realloc", "leak_realloc_grow", "main"]),
         R(D, 806, 1, ["valloc", "leak_valloc", "main"]),
         R(D, 705, 1, [MEMALIGN, "leak_memalign", "main"]),
         R(D, 640, 1, [MEMALIGN, "leak_aligned_alloc", "main"]),
         R(D, 503, 1, ["posix_memalign", "leak_posix_memalign", "main"]),
         R(D, 413, 1, ["reallocarray", "leak_reallocarray", "main"]),
         R(D, 302, 1, ["realloc", "leak_realloc_null", "main"]),
         R(D, 201, 1, ["calloc", "leak_calloc", "main"]),
         R(D, 101, 1, ["malloc", "leak_malloc", "main"])],
     "valgrind": True},
    {"name": "deep_chain", "cmd": ["@deep_chain"],
     "summary": S(d=(333, 1), i=Z, p=Z, r=Z),
     "heap": {"allocations": 1, "frees": 0, "bytes_allocated": 333,
              "peak_bytes": 333},
     "records": [R(D, 333, 1, ["malloc", "f3@deep_b.c", "f2@deep_a.c",
                               "f1@deep_main.c", "main@deep_main.c"])],
     "valgrind": True},
    # leak_static.c, dynamically linked: valgrind checks the numbers that
    # the three static builds below must give too.
    {"name": "leak_static_dynamic", "cmd": ["@leak_static_dynamic"],
     "summary": S(d=(4203, 3), i=Z, p=Z, r=Z),
     "heap": {"allocations": 3, "frees": 0, "bytes_allocated": 4203,
              "peak_bytes": 4203},
     "records": [R(D, 4096, 1, ["malloc", "leak_three@leak_static.c",
                                "main"]),
                 R(D, 100, 1, ["malloc", "leak_three", "main"]),
                 R(D, 7, 1, ["malloc", "leak_three", "main"])],
     "valgrind": True},
    # Static: glibc's static startup mallocs 5 blocks of its own (still
    # reachable; two of them only from RELRO memory, read-only by exit),
    # musl's none.
    {"name": "leak_static_glibc", "cmd": ["@leak_static_glibc"],
     "summary": S(d=(4203, 3), i=Z, p=Z),
     "records": [R(D, 4096, 1, ["malloc", "leak_three@leak_static.c",
                                "main"]),
                 R(D, 100, 1, ["malloc", "leak_three", "main"]),
                 R(D, 7, 1, ["malloc", "leak_three", "main"])]},
    {"name": "leak_static_pie", "cmd": ["@leak_static_pie"],
     "summary": S(d=(4203, 3), i=Z, p=Z),
     "records": [R(D, 4096, 1, ["malloc", "leak_three@leak_static.c",
                                "main"]),
                 R(D, 100, 1, ["malloc", "leak_three", "main"]),
                 R(D, 7, 1, ["malloc", "leak_three", "main"])]},
    {"name": "leak_static_musl", "cmd": ["@leak_static_musl"],
     "summary": S(d=(4203, 3), i=Z, p=Z, r=Z),
     "heap": {"allocations": 3, "frees": 0, "bytes_allocated": 4203,
              "peak_bytes": 4203},
     "records": [R(D, 4096, 1, ["malloc", "leak_three@leak_static.c",
                                "main"]),
                 R(D, 100, 1, ["malloc", "leak_three", "main"]),
                 R(D, 7, 1, ["malloc", "leak_three", "main"])]},
    # possibly lost 0: glibc's cached thread stacks keep their DTVs
    # (calloc'ed by pthread_create) through dtv+1, and ptleak's DTV
    # heuristic counts that pointer from a TCB as a start pointer (valgrind
    # calls them possibly lost, or frees them at exit).
    {"name": "threads_stress", "cmd": ["@threads_stress"], "timeout": 180,
     "summary": S(d=(10020, 10), i=Z, p=Z),
     "records": [R(D, 10020, 10, ["malloc", "leak_blocks@threads_stress.c",
                                  "worker"])],
     "valgrind": True},
    {"name": "py_alloc_only",
     "cmd": ["@python", "%F/py_alloc_only.py", "@liballoc_only.so"],
     "count": r"^(\d+)$", "per_block": 8, "timeout": 120,
     "summary": S(d="N"),
     "records": [R(D, "N", "N", ["malloc", "do_alloc@alloc_only.c"])],
     "valgrind": True},
    {"name": "py_alloc_free",
     "cmd": ["@python", "%F/py_alloc_free.py", "@liballoc_free.so"],
     "count": r"^(\d+)$", "per_block": 32, "timeout": 120,
     "summary": S(d="N"),
     "records": [R(D, "N", "N", ["malloc", "do_alloc@alloc_free.c"])],
     "valgrind": True},
    # Go: valgrind is no oracle (seed 000). The runtime's own C-side blocks
    # (pthread DTVs, ...) are possibly lost / still reachable: not checked.
    {"name": "cgo_leak", "cmd": ["@cgo_leak"], "timeout": 120,
     "summary": S(d=(1000, 1), i=Z, p=Z),
     "records": [R(D, 1000, 1, ["malloc", "hello"])]},
    # possibly lost 0: the Go runtime's threads' DTVs, which seed 000's
    # valgrind called possibly lost, are reached from their TCBs.
    {"name": "cgo_good", "cmd": ["@cgo_good"], "timeout": 120,
     "summary": S(d=Z, i=Z, p=Z), "records": []},
    {"name": "cgo_noop", "cmd": ["@cgo_noop"], "timeout": 120,
     "summary": S(d=Z, i=Z, p=Z), "records": []},
    # Go's asynchronous preemption (SIGURG to threads spinning in Go) while
    # another goroutine's C calls hit the allocator's breakpoints. The
    # program cannot finish without working preemption (it spins forever
    # under GODEBUG=asyncpreemptoff=1).
    {"name": "go_preempt", "cmd": ["@go_preempt"], "timeout": 120,
     "stdout": b"spinners stopped: 4\nchurn rounds with a bad checksum: 0\n"
               b"leaked 7 blocks of 123 bytes\nSIGURG seen: yes\n",
     "summary": S(d=(861, 7), i=Z),
     "records": [R(D, 861, 7, ["malloc", "leak_some"])]},
    {"name": "kill_self", "cmd": ["@kill_self"], "status": 143,
     "json_exit": {"signal": 15},
     "summary": S(d=(123, 1), i=Z, p=Z, r=Z),
     "heap": {"allocations": 1, "frees": 0, "bytes_allocated": 123},
     "records": [R(D, 123, 1, ["malloc", "leak_before_dying", "main"])],
     "valgrind": True},
    {"name": "echo_stdin", "cmd": ["@echo_stdin"], "stdin": ECHO_INPUT,
     "stdout": ECHO_INPUT,
     "summary": S(d=(64, 1), i=Z, p=Z, r=Z),
     "heap": {"allocations": 1, "frees": 0, "bytes_allocated": 64},
     "records": [R(D, 64, 1, ["malloc", "leak_once@echo_stdin.c", "main"])],
     "valgrind": True},
    {"name": "exit_code_3", "cmd": ["@exit_code", "3"], "status": 3,
     "json_exit": {"code": 3},
     "summary": S(d=Z, i=Z, p=Z, r=Z),
     "heap": {"allocations": 0, "frees": 0, "bytes_allocated": 0},
     "records": [], "valgrind": True},
    {"name": "exit_code_3_leak", "cmd": ["@exit_code", "3", "42"],
     "status": 3,
     "summary": S(d=(42, 1), i=Z, p=Z, r=Z),
     "heap": {"allocations": 1, "frees": 0, "bytes_allocated": 42},
     "records": [R(D, 42, 1, ["malloc", "leak_some@exit_code.c", "main"])],
     "valgrind": True},
    # Libraries: a constructor of a linked-in library (before main), a
    # plugin's constructor (inside dlopen) and function, and a plugin that
    # is dlclosed (unmapped) long before the report: its frames keep their
    # names and files. The 333-byte stack is deeper than --num-callers
    # (the loader's frames): main is not in it. possibly lost: not
    # checked, the loader's business: dlopen's _dl_find_object_update
    # mallocs its segments and keeps only pointers aligned up from the
    # start (possibly lost or reachable depending on where the heap puts
    # them, i.e. on the length of the paths; valgrind frees them at exit).
    {"name": "dlopen_ctor",
     "cmd": ["@dlopen_main", "@libplug.so", "@libgone.so"],
     "stdout": b"called lib_leak\ncalled plug_leak\ncalled gone_leak\n"
               b"gone unmapped: yes\n",
     "summary": S(d=(1665, 5), i=Z),
     "records": [
         R(D, 555, 1, ["malloc", "gone_leak@libgone.c",
                       "main@dlopen_main.c"]),
         R(D, 444, 1, ["malloc", "plug_leak@libplug.c",
                       "main@dlopen_main.c"]),
         R(D, 333, 1, ["malloc", "plug_ctor_leak@libplug.c",
                       "libplug_init@libplug.c", "_dl_init"]),
         R(D, 222, 1, ["malloc", "lib_leak@libctor.c",
                       "main@dlopen_main.c"]),
         R(D, 111, 1, ["malloc", "ctor_leak@libctor.c",
                       "libctor_init@libctor.c", "_dl_init"])],
     "text": ["gone_leak (libgone.c:", "plug_ctor_leak (libplug.c:",
              "ctor_leak (libctor.c:"],
     "valgrind": True},
    # The same, and then another library (libreuse.so, allocating nothing)
    # is mapped where the dlclosed one was (the fixture checks and says
    # so): gone_leak's frames are still gone_leak's, not libreuse.so's.
    {"name": "dlopen_dlclose_reused",
     "cmd": ["@dlopen_main", "@libplug.so", "@libgone.so", "@libreuse.so"],
     "stdout": b"called lib_leak\ncalled plug_leak\ncalled gone_leak\n"
               b"gone unmapped: yes\ncalled reuse_here\n"
               b"reuse covers gone_leak's address: yes\n",
     "summary": S(d=(1665, 5), i=Z),
     "records": [
         R(D, 555, 1, ["malloc", "gone_leak@libgone.c",
                       "main@dlopen_main.c"]),
         R(D, 444, 1, ["malloc", "plug_leak@libplug.c",
                       "main@dlopen_main.c"]),
         R(D, 333, 1, ["malloc", "plug_ctor_leak@libplug.c",
                       "libplug_init@libplug.c", "_dl_init"]),
         R(D, 222, 1, ["malloc", "lib_leak@libctor.c",
                       "main@dlopen_main.c"]),
         R(D, 111, 1, ["malloc", "ctor_leak@libctor.c",
                       "libctor_init@libctor.c", "_dl_init"])],
     "text": ["gone_leak (libgone.c:"],
     "valgrind": True},
    # ---- Processes: signals, odd exits, exec, odd binaries (-k proc) ----
    # The program's own SIGTRAPs (raise, and an int3 in its code) reach its
    # handler.
    {"name": "proc_sig_trap", "cmd": ["@sig_trap"],
     "summary": S(d=(48, 1), i=Z, p=Z),
     "heap": {"allocations": 2, "bytes_allocated": 4144},
     "records": [R(D, 48, 1, ["malloc", "leak_after_traps@sig_trap.c",
                              "main"])],
     "valgrind": True},
    # A SIGALRM every 100 us while the loop allocates: 50,000 rounds, not
    # the 200,000 of the fixture's default (each signal is a ptrace stop:
    # 200,000 rounds take over a minute under ptleak).
    {"name": "proc_sig_alarm_storm", "cmd": ["@sig_alarm", "50000"],
     "timeout": 90,
     "summary": S(d=(120, 5), i=Z, p=Z),
     "heap": {"allocations": 50006, "frees": 50000},
     "records": [R(D, 120, 5, ["malloc", "leak_during_storm@sig_alarm.c",
                               "main"])]},
    {"name": "proc_abort", "cmd": ["@abort_leak"], "status": 134,
     "json_exit": {"signal": 6},
     "summary": S(d=(99, 1), i=Z, p=Z, r=Z),
     "heap": {"allocations": 1, "frees": 0, "bytes_allocated": 99},
     "records": [R(D, 99, 1, ["malloc", "leak_then_abort@abort_leak.c",
                              "main"])],
     "valgrind": True},
    # exit_group from a thread that is not the main one.
    {"name": "proc_thread_exit", "cmd": ["@thread_exit"], "status": 5,
     "json_exit": {"code": 5},
     "summary": S(d=(128, 2), i=Z),
     "records": [R(D, 128, 2, ["malloc", "leak_in_thread@thread_exit.c",
                               "run"])],
     "valgrind": True},
    # exec from a second thread: the report is leak_1000's, with its heap
    # only (the 555-byte block leaked before the exec is gone with the old
    # image). The JSON command is not compared (the process ran two).
    {"name": "proc_exec_from_thread", "cmd": ["@exec_thread", "@leak_1000"],
     "check_command": False,
     "summary": S(d=(1000, 1), i=Z, p=Z),
     "heap": {"allocations": 2, "bytes_allocated": 5096},
     "records": [R(D, 1000, 1, ["malloc", "do_leak@leak_1000.c", "main"])]},
    # No symbol table, no debug info: the numbers are exact all the same;
    # frames past the allocator may be ??? (only frame 0 is compared).
    {"name": "proc_stripped_dynamic", "cmd": ["@leak_stripped_dynamic"],
     "summary": S(d=(4203, 3), i=Z, p=Z, r=Z),
     "heap": {"allocations": 3, "frees": 0, "bytes_allocated": 4203,
              "peak_bytes": 4203},
     "records": [R(D, 4096, 1, ["malloc"]), R(D, 100, 1, ["malloc"]),
                 R(D, 7, 1, ["malloc"])],
     "valgrind": True},
]

# The ASan build of ptleak runs these too (fast, and between them every
# entry point, indirect loss, a deep stack and a signal death).
ASAN_SUBSET = ["valgrind_kinds", "list_no_head", "alloc_entry_points",
               "deep_chain", "kill_self"]


class Fail(Exception):
    """A test failure: message plus optional detail lines."""

    def __init__(self, msg, details=()):
        super().__init__(msg)
        self.details = list(details)


class Skip(Exception):
    pass


# --------------------------------------------------------------------------
# Running things
# --------------------------------------------------------------------------
class Result:
    def __init__(self, cmd, status, stdout, stderr, elapsed):
        self.cmd, self.status = cmd, status
        self.stdout, self.stderr, self.elapsed = stdout, stderr, elapsed


def session_processes(sid):
    """PIDs (with state) of live processes whose session id is SID."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...: comm may hold spaces.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid:
            found.append((int(d), fields[0],
                          stat[stat.find("(") + 1:stat.rfind(")")]))
    return found


def run(cmd, timeout, stdin=None, cwd=None, env=None, check_leftovers=True,
        preexec_fn=None):
    """Run CMD in its own session, with a hard time limit.

    On expiry the whole process group is killed (SIGKILL) and Fail raised.
    Afterwards no process of the session may be alive (zombies are given
    two seconds to be reaped): a leftover is killed and is a failure.
    PREEXEC_FN runs in the child before the exec (to drop privileges).
    """
    start = time.monotonic()
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None
                             else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=cwd, env=env, start_new_session=True,
                             preexec_fn=preexec_fn)
    except (OSError, subprocess.SubprocessError) as e:
        raise Fail("cannot run %s: %s" % (cmd[0], e))
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(p.pid)
        out, err = p.communicate()
        raise Fail("timed out after %d s: %s" % (timeout, shell_quote(cmd)),
                   tail(err))
    res = Result(cmd, p.returncode, out, err, time.monotonic() - start)
    if check_leftovers:
        left = []
        deadline = time.monotonic() + 2.0
        while True:
            left = [x for x in session_processes(p.pid) if x[1] != "Z"]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if left:
            kill_session(p.pid)
            raise Fail("processes left running after %s" % shell_quote(cmd),
                       ["pid %d state %s (%s)" % x for x in left])
    return res


def kill_session(sid):
    try:
        os.killpg(sid, signal.SIGKILL)
    except OSError:
        pass
    # Anything that left the process group but not the session.
    for pid, _, _ in session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def shell_quote(cmd):
    return " ".join(a if re.fullmatch(r"[\w@%+=:,./-]+", a) else repr(a)
                    for a in cmd)


def tail(data, n=15):
    lines = data.decode("utf-8", "replace").splitlines()
    return ["| " + l for l in lines[-n:]]


def mask(data):
    """Program output with pointers masked: ASLR differs between runs."""
    return re.sub(rb"0x[0-9a-fA-F]+", b"0xADDR", data)


def exit_status(returncode):
    """The shell's view: 128+S for a signal death."""
    return 128 - returncode if returncode < 0 else returncode


def describe_status(status):
    """An exit_status() in words: "exit 3", "killed by SIGTRAP (133)"."""
    if status > 128:
        try:
            return "killed by %s (%d)" % (signal.Signals(status - 128).name,
                                          status)
        except ValueError:
            pass
    return "exit %d" % status


# --------------------------------------------------------------------------
# Building fixtures
# --------------------------------------------------------------------------
class Builder:
    def __init__(self, build_dir, verbose):
        self.out_dir = os.path.join(os.path.abspath(build_dir), "fixtures")
        os.makedirs(self.out_dir, exist_ok=True)
        self.verbose = verbose
        self.done = {}

    def path(self, name):
        return os.path.join(self.out_dir, name)

    def get(self, name):
        """Path of built fixture NAME; Fail or Skip if it cannot be built."""
        if name not in self.done:
            try:
                self.done[name] = ("ok", self._build(name))
            except (Fail, Skip) as e:
                self.done[name] = ("err", e)
        state, val = self.done[name]
        if state == "err":
            raise val
        return val

    def _build(self, name):
        spec = BUILDS[name]
        out = self.path(name)
        srcs = [os.path.join(FIXTURES, s) for s in spec["src"]]
        kind = spec["kind"]
        env = None
        cwd = None
        if kind == "go":
            tool = "go"
            gobase = os.path.join(self.out_dir, "go")
            env = dict(os.environ, GOCACHE=os.path.join(gobase, "cache"),
                       GOPATH=os.path.join(gobase, "path"), GOENV="off",
                       GOFLAGS="-buildvcs=false", GOPROXY="off",
                       CGO_ENABLED="1", CGO_CFLAGS="-g -O0")
            cmd = ["go", "build", "-o", out] + spec["src"]
            cwd = FIXTURES
        else:
            tool = spec.get("cc") or ("g++" if kind == "cxx" else "gcc")
            cmd = [tool] + CFLAGS + spec.get("flags", [])
            if kind == "so":
                cmd += ["-shared", "-fPIC"]
            cmd += ["-o", out] + srcs
        libs = [self.get(lib) for lib in spec.get("link", [])]
        if libs:
            cmd += ["-L", self.out_dir] + \
                ["-l:" + os.path.basename(lib) for lib in libs] + \
                ["-Wl,-rpath,$ORIGIN"]
        if shutil.which(tool) is None:
            raise Skip("%s not installed (make test-deps installs it)" % tool)
        deps = srcs + libs + [os.path.join(FIXTURES, "scrub.h")]
        stamp = out + ".cmd"
        key = shell_quote(cmd) + (" && strip --strip-all" if spec.get("strip")
                                  else "")
        if (os.path.exists(out) and os.path.exists(stamp)
                and open(stamp).read() == key
                and os.path.getmtime(out) >= max(os.path.getmtime(d)
                                                 for d in deps)):
            return out
        if self.verbose:
            print("  BUILD   " + key, flush=True)
        try:
            res = run(cmd, 600, cwd=cwd, env=env)
        except Fail as e:
            raise Fail("cannot build %s: %s" % (name, e), e.details)
        if res.status != 0:
            raise Fail("cannot build %s (%s exited %d)" % (name, tool,
                                                          res.status),
                       tail(res.stderr, 30))
        if spec.get("strip"):
            res = run(["strip", "--strip-all", out], 60)
            if res.status != 0:
                raise Fail("cannot strip %s" % name, tail(res.stderr))
        with open(stamp, "w") as f:
            f.write(key)
        return out


# --------------------------------------------------------------------------
# Parsing ptleak's and valgrind's reports
# --------------------------------------------------------------------------
SUMMARY_RE = re.compile(
    r"^==(\d+)==\s+(definitely lost|indirectly lost|possibly lost|"
    r"still reachable|suppressed): ([\d,]+) bytes in ([\d,]+) blocks?\s*$")


def parse_summary_text(text):
    """{kind: (bytes, blocks)} from the LEAK SUMMARY lines of a report."""
    out = {}
    for line in text.splitlines():
        m = SUMMARY_RE.match(line)
        if m:
            kind = m.group(2).replace(" ", "_")
            out[kind] = (int(m.group(3).replace(",", "")),
                         int(m.group(4).replace(",", "")))
    return out


def parse_valgrind(text):
    """valgrind's leak summary and heap totals, as ptleak's JSON names."""
    summary = {k: (0, 0) for k in KINDS}
    if "All heap blocks were freed" not in text:
        got = parse_summary_text(text)
        if "definitely_lost" not in got:
            return None
        summary.update({k: got.get(k, (0, 0)) for k in KINDS})
    heap = {}
    m = re.search(r"total heap usage: ([\d,]+) allocs, ([\d,]+) frees, "
                  r"([\d,]+) bytes allocated", text)
    if m:
        heap = {"allocations": int(m.group(1).replace(",", "")),
                "frees": int(m.group(2).replace(",", "")),
                "bytes_allocated": int(m.group(3).replace(",", ""))}
    return {"summary": summary, "heap": heap}


def fmt(n):
    return format(n, ",")


def name_matches(want, frame):
    """WANT = 'f' or 'f|g' optionally '@file.c'; matches a JSON frame."""
    func, _, fname = want.partition("@")
    got = frame.get("function") or ""
    base = got.split("(")[0].strip() if "(" in got else got
    if not any(got == f or base == f for f in func.split("|")):
        return False
    if fname and os.path.basename(frame.get("file") or "") != fname:
        return False
    return True


def stack_matches(want, stack, below_main=False):
    """Frame 0 is want[0]; the rest of WANT follow in order, gaps allowed.
    A final 'main' must be the last frame unless BELOW_MAIN."""
    if not want:
        return True
    if not stack or not name_matches(want[0], stack[0]):
        return False
    i = 1
    last = 0
    for w in want[1:]:
        while i < len(stack) and not name_matches(w, stack[i]):
            i += 1
        if i >= len(stack):
            return False
        last = i
        i += 1
    if want[-1].split("@")[0] == "main" and not below_main:
        return last == len(stack) - 1
    return True


def show_stack(stack):
    return " <- ".join("%s%s" % (f.get("function") or "???",
                                 "@%s" % f["file"] if f.get("file") else "")
                       for f in stack)


def show_record(r):
    """A JSON loss record on one line."""
    return "%s %s bytes in %s blocks: %s" % (
        r.get("kind"), r.get("bytes"), r.get("blocks"),
        show_stack(r.get("stack") or []))


# --------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------
class Suite:
    def __init__(self, args):
        self.args = args
        self.verbose = args.verbose
        self.builder = Builder(args.build, args.verbose)
        self.tmp = tempfile.mkdtemp(prefix="ptleak-tests-")
        self.passed = self.failed = self.skipped = 0
        self.native_cache = {}
        self.valgrind_cache = {}
        self.ptleak = os.path.abspath(args.ptleak)
        self.asan = os.path.abspath(args.asan) if args.asan else None
        self.unit = os.path.abspath(args.unit) if args.unit else None
        self.python = ("/usr/bin/python3" if os.access("/usr/bin/python3",
                                                       os.X_OK)
                       else sys.executable)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("LD_PRELOAD", "MALLOC_CHECK_",
                                 "MALLOC_PERTURB_", "GLIBC_TUNABLES",
                                 "PYTHONMALLOC")}
        self.counter = 0

    # -- helpers ----------------------------------------------------------
    def resolve(self, cmd):
        out = []
        for a in cmd:
            if a == "@python":
                out.append(self.python)
            elif a.startswith("@"):
                out.append(self.builder.get(a[1:]))
            else:
                out.append(a.replace("%F", FIXTURES))
        return out

    def tmpfile(self, stem):
        self.counter += 1
        return os.path.join(self.tmp, "%s.%d" % (stem, self.counter))

    def native(self, cmd, stdin, timeout):
        key = (tuple(cmd), stdin)
        if key not in self.native_cache:
            self.native_cache[key] = run(cmd, timeout, stdin=stdin,
                                         env=self.env)
        return self.native_cache[key]

    def ptleak_run(self, opts, cmd, timeout=DEFAULT_TIMEOUT, stdin=None,
                   binary=None, cwd=None, json_file=True, env=None):
        """Run ptleak OPTS CMD; returns (Result, json document or None)."""
        jpath = self.tmpfile("report.json") if json_file else None
        full = [binary or self.ptleak] + (["--json=" + jpath] if jpath
                                          else []) + opts + cmd
        if self.verbose:
            print("  RUN     " + shell_quote(full), flush=True)
        res = run(full, timeout, stdin=stdin, cwd=cwd, env=env or self.env)
        if binary and binary == self.asan:
            errors = sanitizer_errors(res.stderr)
            if errors:
                raise Fail(errors[0], errors[1:])
        doc = None
        if jpath and os.path.exists(jpath):
            with open(jpath, "rb") as f:
                raw = f.read()
            try:
                doc = json.loads(raw)
            except ValueError as e:
                raise Fail("--json file is not valid JSON: %s" % e,
                           tail(raw))
        return res, doc

    def process(self, doc, res):
        if doc is None:
            raise Fail("no JSON report written (ptleak exited %d)"
                       % exit_status(res.status), tail(res.stderr))
        try:
            procs = doc["processes"]
            assert doc.get("tool") == "ptleak"
            return procs[0]
        except (KeyError, IndexError, TypeError, AssertionError):
            raise Fail("JSON report lacks tool/processes[0]",
                       [json.dumps(doc)[:300]])

    def valgrind(self, cmd, stdin, timeout):
        key = (tuple(cmd), stdin)
        if key in self.valgrind_cache:
            return self.valgrind_cache[key]
        if shutil.which("valgrind") is None:
            raise Skip("valgrind not installed: oracle not run "
                       "(make test-deps installs it)")
        log = self.tmpfile("valgrind.log")
        vcmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=all",
                "--log-file=" + log] + cmd
        run(vcmd, max(timeout, 120), stdin=stdin, env=self.env)
        text = open(log, encoding="utf-8", errors="replace").read()
        got = parse_valgrind(text)
        if got is None:
            raise Fail("no LEAK SUMMARY in valgrind's log",
                       ["| " + l for l in text.splitlines()[-15:]])
        self.valgrind_cache[key] = got
        return got

    # -- checks -----------------------------------------------------------
    @staticmethod
    def expand(t, n):
        """Expected summary/records with "N" replaced by the count."""
        def one(v, per):
            return n * per if v == "N" else v
        per = t.get("per_block", 1)
        summary = {}
        for k, v in t["summary"].items():
            summary[k] = ((n * per, n) if v == "N" else v)
        records = [dict(r, bytes=one(r["bytes"], per),
                        blocks=one(r["blocks"], 1))
                   for r in t.get("records", [])]
        return summary, records

    def check_leaks(self, t, proc, res, native_out, below_main=False):
        """Compare one JSON process entry (and the text) with table T."""
        errors = []
        n = None
        if "count" in t:
            m = re.search(t["count"], native_out.decode("utf-8", "replace"),
                          re.M)
            if not m:
                raise Fail("program did not print its count (%s)" % t["count"],
                           tail(native_out))
            n = int(m.group(1))
        summary, records = self.expand(t, n)

        got_sum = proc.get("summary") or {}
        for k in KINDS:
            want = summary.get(k)
            if want is None:
                continue
            g = got_sum.get(k) or {}
            got = (g.get("bytes"), g.get("blocks"))
            if got != tuple(want):
                errors.append("summary %s: want %s bytes in %s blocks, got "
                              "%s bytes in %s blocks" % (k, fmt(want[0]),
                                                         fmt(want[1]), *got))
        for k, want in t.get("heap", {}).items():
            if got_sum.get(k) != want:
                errors.append("summary %s: want %s, got %s"
                              % (k, want, got_sum.get(k)))

        # Loss records of the checked kinds, in order, largest first.
        checked = [k for k in KINDS if summary.get(k) is not None]
        leaks = proc.get("leaks") or []
        got_recs = [r for r in leaks if r.get("kind") in checked]
        if len(got_recs) != len(records):
            errors.append("want %d loss records of kinds %s, got %d"
                          % (len(records), ",".join(checked), len(got_recs)))
        for idx, (w, g) in enumerate(zip(records, got_recs)):
            if (g.get("kind"), g.get("bytes"), g.get("blocks")) != (
                    w["kind"], w["bytes"], w["blocks"]):
                errors.append("record %d: want %s %s bytes in %s blocks, "
                              "got %s %s bytes in %s blocks"
                              % (idx + 1, w["kind"], w["bytes"], w["blocks"],
                                 g.get("kind"), g.get("bytes"),
                                 g.get("blocks")))
            if not stack_matches(w["stack"], g.get("stack") or [],
                                 below_main):
                errors.append("record %d (%s bytes) stack: want %s, got %s"
                              % (idx + 1, w["bytes"],
                                 " <- ".join(w["stack"]),
                                 show_stack(g.get("stack") or [])))
        if errors:
            errors += ["got records:"] + ["  " + show_record(r)
                                          for r in leaks[:12]]
        # Records are largest first across all kinds (a definite record
        # ranks with the indirect bytes it holds, which the JSON does not
        # give: checked only without indirect records).
        sizes = [r.get("bytes", 0) for r in leaks]
        if sizes != sorted(sizes, reverse=True) and not any(
                r.get("kind") == "indirectly_lost" for r in leaks):
            errors.append("JSON leaks not largest first: %s" % sizes[:20])
        errors += self.check_text(t, summary, leaks, res.stderr)
        return errors

    def check_text(self, t, summary, leaks, stderr, shown=("definitely_lost",
                                                          "possibly_lost")):
        """The text report on stderr against the JSON and the table."""
        errors = []
        text = stderr.decode("utf-8", "replace")
        got = parse_summary_text(text)
        if "definitely_lost" not in got:
            return ["no LEAK SUMMARY in the text report on stderr"] + \
                tail(stderr)
        for k in KINDS:
            want = summary.get(k)
            if want is not None and got.get(k) != tuple(want):
                errors.append("text summary %s: want %s bytes in %s blocks, "
                              "got %s" % (KIND_TEXT[k], fmt(want[0]),
                                          fmt(want[1]), got.get(k)))
        # Each shown JSON record appears as "in loss record K of N".
        for k, r in enumerate(leaks, 1):
            if r.get("kind") not in shown:
                continue
            b, n = r.get("bytes", 0), r.get("blocks", 0)
            pat = (r"^==\d+== (%s|[\d,]+ \(%s direct, [\d,]+ indirect\)) "
                   r"bytes in %s blocks? are %s in loss record %d of %d$"
                   % (re.escape(fmt(b)), re.escape(fmt(b)), re.escape(fmt(n)),
                      KIND_TEXT[r["kind"]], k, len(leaks)))
            if not re.search(pat, text, re.M):
                errors.append("text lacks \"%s bytes in %s blocks are %s in "
                              "loss record %d of %d\"" % (
                                  fmt(b), fmt(n), KIND_TEXT[r["kind"]], k,
                                  len(leaks)))
        for s in t.get("text", []):
            if s not in text:
                errors.append("text lacks %r" % s)
        for line in text.splitlines():
            if SUMMARY_RE.match(line) and not re.match(r"^==\d+== ", line):
                errors.append("report line without ==PID==: %r" % line)
        return errors

    # -- test kinds -------------------------------------------------------
    def leak_test(self, t, binary=None, extra_checks=None):
        cmd = self.resolve(t["cmd"])
        timeout = t.get("timeout", DEFAULT_TIMEOUT)
        stdin = t.get("stdin")
        nat = self.native(cmd, stdin, timeout)
        want_status = t.get("status", 0)
        if exit_status(nat.status) != want_status:
            raise Fail("the fixture alone exited %d, the table says %d"
                       % (exit_status(nat.status), want_status),
                       tail(nat.stderr))
        res, doc = self.ptleak_run([], cmd, timeout, stdin=stdin,
                                   binary=binary)
        errors = []
        if exit_status(res.status) != want_status:
            errors.append("exit status: want %d, got %d"
                          % (want_status, exit_status(res.status)))
        want_out = t.get("stdout", nat.stdout)
        if mask(res.stdout) != mask(want_out):
            errors.append("program's stdout changed under ptleak")
            errors += ["  want: " + l for l in
                       mask(want_out).decode("utf-8", "replace")
                       .splitlines()[:5]]
            errors += ["  got:  " + l for l in
                       mask(res.stdout).decode("utf-8", "replace")
                       .splitlines()[:5]]
        proc = self.process(doc, res)
        if t.get("check_command", True) and proc.get("command") != cmd:
            errors.append("JSON command: want %s, got %s"
                          % (cmd, proc.get("command")))
        want_exit = t.get("json_exit", {"code": want_status})
        if proc.get("exit") != want_exit:
            errors.append("JSON exit: want %s, got %s"
                          % (want_exit, proc.get("exit")))
        errors += self.check_leaks(t, proc, res, nat.stdout)
        # ptleak == valgrind, when the oracle ran on the same command.
        vg = self.valgrind_cache.get((tuple(cmd), stdin))
        if vg:
            for k in ("definitely_lost", "indirectly_lost"):
                if t["summary"].get(k) is None:
                    continue
                g = (proc.get("summary") or {}).get(k) or {}
                if (g.get("bytes"), g.get("blocks")) != vg["summary"][k]:
                    errors.append("%s differs from valgrind's: valgrind %s "
                                  "bytes in %s blocks, ptleak %s in %s"
                                  % (k, *vg["summary"][k], g.get("bytes"),
                                     g.get("blocks")))
        if extra_checks:
            errors += extra_checks(res, proc)
        if errors:
            raise Fail(errors[0], errors[1:] + (tail(res.stderr)
                                                if self.verbose else []))

    def valgrind_test(self, t):
        cmd = self.resolve(t["cmd"])
        timeout = t.get("timeout", DEFAULT_TIMEOUT)
        stdin = t.get("stdin")
        vg = self.valgrind(cmd, stdin, timeout)
        n = None
        if "count" in t:
            nat = self.native(cmd, stdin, timeout)
            m = re.search(t["count"], nat.stdout.decode("utf-8", "replace"),
                          re.M)
            if not m:
                raise Fail("program did not print its count")
            n = int(m.group(1))
        summary, _ = self.expand(t, n)
        errors = []
        for k in ("definitely_lost", "indirectly_lost"):
            want = summary.get(k)
            if want is not None and vg["summary"][k] != tuple(want):
                errors.append("valgrind %s: %s bytes in %s blocks, the table "
                              "says %s in %s" % (k, *vg["summary"][k], *want))
        for k in ("allocations", "frees", "bytes_allocated"):
            want = t.get("heap", {}).get(k)
            # valgrind frees libc's own blocks at exit (__libc_freeres):
            # its frees count is only comparable without stdio.
            if want is None or k not in vg["heap"]:
                continue
            if vg["heap"][k] != want:
                errors.append("valgrind %s: %s, the table says %s"
                              % (k, vg["heap"][k], want))
        if errors:
            raise Fail("fixture's table entry disagrees with valgrind: "
                       + errors[0], errors[1:])


def sanitizer_errors(stderr):
    text = stderr.decode("utf-8", "replace")
    for pat in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer"):
        if pat in text:
            lines = text.splitlines()
            i = next(n for n, l in enumerate(lines) if pat in l)
            return ["sanitizer report from ptleak-asan: " + pat] + \
                ["| " + l for l in lines[i:i + 12]]
    return []


# --------------------------------------------------------------------------
# Hand-written tests: CLI contract, exit statuses, options, bad input.
# Each takes the suite and raises Fail/Skip.
# --------------------------------------------------------------------------
def expect_status(res, want, what=""):
    got = exit_status(res.status)
    if got != want:
        raise Fail("%sexit status: want %d, got %d" % (what, want, got),
                   tail(res.stderr))


def t_exit_status_200(s):
    res, doc = s.ptleak_run([], [s.builder.get("exit_code"), "200"])
    expect_status(res, 200)
    proc = s.process(doc, res)
    if proc.get("exit") != {"code": 200}:
        raise Fail("JSON exit: want {'code': 200}, got %s" % proc.get("exit"))


def t_error_exitcode_leak(s):
    res, _ = s.ptleak_run(["--error-exitcode=7"], [s.builder.get("leak_1000")])
    expect_status(res, 7, "definite leak with --error-exitcode=7: ")


def t_error_exitcode_no_leak(s):
    res, _ = s.ptleak_run(["--error-exitcode=7"],
                          [s.builder.get("exit_code"), "3"])
    expect_status(res, 3, "no leak with --error-exitcode=7: ")


def t_error_exitcode_leak_nonzero(s):
    res, _ = s.ptleak_run(["--error-exitcode=7"],
                          [s.builder.get("exit_code"), "3", "42"])
    expect_status(res, 7, "leak and status 3 with --error-exitcode=7: ")


def t_error_exitcode_kinds(s):
    hello = [s.builder.get("hello")]
    res, _ = s.ptleak_run(["--error-exitcode=7"], hello)
    expect_status(res, 0, "hello (only reachable blocks): ")
    res, _ = s.ptleak_run(["--error-exitcode=7",
                           "--errors-for-leak-kinds=reachable"], hello)
    expect_status(res, 7, "hello, --errors-for-leak-kinds=reachable: ")
    pl = [s.builder.get("possibly_lost")]
    res, _ = s.ptleak_run(["--error-exitcode=9"], pl)
    expect_status(res, 0, "possibly_lost, default kinds (definite): ")
    res, _ = s.ptleak_run(["--error-exitcode=9",
                           "--errors-for-leak-kinds=definite,possible"], pl)
    expect_status(res, 9, "possibly_lost, definite,possible: ")


def t_stdin_passthrough(s):
    data = bytes(range(256)) * 400  # binary, 100 KiB
    res, doc = s.ptleak_run([], [s.builder.get("echo_stdin")], stdin=data)
    expect_status(res, 0)
    if res.stdout != data:
        raise Fail("stdin did not pass through unchanged (%d bytes in, %d out)"
                   % (len(data), len(res.stdout)))


def t_output_file(s):
    out = s.tmpfile("report.txt")
    res, _ = s.ptleak_run(["-o", out], [s.builder.get("leak_1000")],
                          json_file=False)
    expect_status(res, 0)
    if not os.path.exists(out):
        raise Fail("-o FILE: no report file")
    text = open(out, encoding="utf-8", errors="replace").read()
    got = parse_summary_text(text)
    if got.get("definitely_lost") != (1000, 1):
        raise Fail("-o FILE: want 'definitely lost: 1,000 bytes in 1 blocks'",
                   ["| " + l for l in text.splitlines()[-12:]])
    if re.search(rb"^==\d+== ", res.stderr, re.M):
        raise Fail("-o FILE: report lines still on stderr", tail(res.stderr))
    res, _ = s.ptleak_run(["--output=" + out + "2"],
                          [s.builder.get("leak_1000")], json_file=False)
    if not os.path.exists(out + "2"):
        raise Fail("--output=FILE: no report file")


def t_json_space_form(s):
    j = s.tmpfile("report.json")
    res, _ = s.ptleak_run(["--json", j], [s.builder.get("exit_code"), "3",
                                          "42"], json_file=False)
    expect_status(res, 3)
    try:
        doc = json.load(open(j))
        d = doc["processes"][0]["summary"]["definitely_lost"]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise Fail("--json FILE (two arguments): %s" % e)
    if (d.get("bytes"), d.get("blocks")) != (42, 1):
        raise Fail("--json FILE: want 42 bytes in 1 blocks, got %s" % d)


def t_quiet(s):
    res, _ = s.ptleak_run(["-q"], [s.builder.get("leak_1000")])
    text = res.stderr.decode("utf-8", "replace")
    if "ptleak-" in text or "Command:" in text:
        raise Fail("-q: banner still printed", tail(res.stderr))
    if parse_summary_text(text).get("definitely_lost") != (1000, 1):
        raise Fail("-q: no LEAK SUMMARY with the leak", tail(res.stderr))
    res, _ = s.ptleak_run([], [s.builder.get("leak_1000")])
    text = res.stderr.decode("utf-8", "replace")
    if not re.search(r"^==\d+== ptleak-", text, re.M) or \
            not re.search(r"^==\d+== Command: ", text, re.M):
        raise Fail("default: no banner (==PID== ptleak-... / Command:)",
                   tail(res.stderr))


def deep_record(s, opts):
    res, doc = s.ptleak_run(opts, [s.builder.get("deep_chain")])
    expect_status(res, 0)
    proc = s.process(doc, res)
    recs = [r for r in proc.get("leaks") or []
            if r.get("kind") == "definitely_lost"]
    if len(recs) != 1 or recs[0].get("bytes") != 333:
        raise Fail("want one definitely lost record of 333 bytes, got %s"
                   % [show_record(r) for r in recs])
    return recs[0]["stack"]


def t_num_callers(s):
    stack = deep_record(s, ["--num-callers=2"])
    if not stack_matches(["malloc", "f3@deep_b.c"], stack) or len(stack) != 2:
        raise Fail("--num-callers=2: want malloc <- f3, got %s"
                   % show_stack(stack))


def t_show_below_main(s):
    stack = deep_record(s, ["--show-below-main"])
    names = [f.get("function") for f in stack]
    if "main" not in names or names.index("main") == len(names) - 1:
        raise Fail("--show-below-main: want frames after main, got %s"
                   % show_stack(stack))
    stack = deep_record(s, [])
    names = [f.get("function") for f in stack]
    if not names or names[-1] != "main":
        raise Fail("default: want main as the last frame, got %s"
                   % show_stack(stack))


def t_show_leak_kinds(s):
    exe = [s.builder.get("valgrind_kinds")]
    res, doc = s.ptleak_run(["--show-leak-kinds=all"], exe)
    text = res.stderr.decode("utf-8", "replace")
    for line in ("100 bytes in 1 blocks are still reachable in loss record "
                 "1 of 3",
                 "50 bytes in 1 blocks are definitely lost in loss record "
                 "2 of 3",
                 "10 bytes in 1 blocks are definitely lost in loss record "
                 "3 of 3"):
        if line not in text:
            raise Fail("--show-leak-kinds=all: text lacks %r" % line,
                       tail(res.stderr))
    res, doc = s.ptleak_run([], exe)
    text = res.stderr.decode("utf-8", "replace")
    if "still reachable in loss record" in text:
        raise Fail("default --show-leak-kinds: a still reachable record "
                   "was shown", tail(res.stderr))
    if "50 bytes in 1 blocks are definitely lost in loss record 2 of 3" \
            not in text:
        raise Fail("default: text lacks the 50-byte record", tail(res.stderr))
    res, doc = s.ptleak_run(["--show-leak-kinds=none"], exe)
    text = res.stderr.decode("utf-8", "replace")
    if "in loss record" in text:
        raise Fail("--show-leak-kinds=none: records shown", tail(res.stderr))
    proc = s.process(doc, res)
    if len(proc.get("leaks") or []) != 3:
        raise Fail("--show-leak-kinds=none: JSON must still hold all 3 "
                   "records, got %d" % len(proc.get("leaks") or []))
    res, doc = s.ptleak_run(["--show-leak-kinds=definite,reachable"], exe)
    text = res.stderr.decode("utf-8", "replace")
    if "100 bytes in 1 blocks are still reachable in loss record 1 of 3" \
            not in text:
        raise Fail("--show-leak-kinds=definite,reachable: no reachable "
                   "record", tail(res.stderr))


def t_help(s):
    res, _ = s.ptleak_run(["--help"], [], json_file=False)
    expect_status(res, 0, "--help: ")
    text = (res.stdout + res.stderr).decode("utf-8", "replace")
    missing = [w for w in ("125", "126", "127", "--json", "--error-exitcode")
               if w not in text]
    if missing or "usage" not in text.lower():
        raise Fail("--help lacks %s" % (missing or ["usage"]),
                   tail(res.stdout + res.stderr))
    res2, _ = s.ptleak_run(["-h"], [], json_file=False)
    expect_status(res2, 0, "-h: ")


def t_version(s):
    res, _ = s.ptleak_run(["--version"], [], json_file=False)
    expect_status(res, 0, "--version: ")
    text = (res.stdout + res.stderr).decode("utf-8", "replace")
    if "0.1" not in text:
        raise Fail("--version does not say 0.1", tail(res.stdout))


def t_double_dash(s):
    res, doc = s.ptleak_run(["--"], [s.builder.get("exit_code"), "4"])
    expect_status(res, 4, "-- PROGRAM: ")


def t_options_after_program(s):
    hello = s.builder.get("hello")
    res, doc = s.ptleak_run([], [hello, "--version", "-q", "--json=/x"])
    expect_status(res, 0)
    if res.stdout != b"hello, world\n":
        raise Fail("options after PROGRAM must go to it: stdout %r"
                   % res.stdout[:80])
    proc = s.process(doc, res)
    if proc.get("command") != [hello, "--version", "-q", "--json=/x"]:
        raise Fail("JSON command: got %s" % proc.get("command"))


def one_line_naming(res, name):
    lines = [l for l in res.stderr.decode("utf-8", "replace").splitlines()
             if l.strip()]
    if len(lines) != 1 or name not in lines[0]:
        raise Fail("want one line on stderr naming %r, got %d" % (name,
                                                                  len(lines)),
                   tail(res.stderr))


def t_bad_missing_path(s):
    name = "/nonexistent/ptleak-no-such-program"
    res, _ = s.ptleak_run([], [name], json_file=False)
    expect_status(res, 127)
    one_line_naming(res, name)


def t_bad_missing_in_path(s):
    name = "ptleak-no-such-command"
    res, _ = s.ptleak_run([], [name], json_file=False)
    expect_status(res, 127)
    one_line_naming(res, name)


def t_bad_directory(s):
    res, _ = s.ptleak_run([], [s.builder.out_dir], json_file=False)
    expect_status(res, 126)


def t_bad_not_executable(s):
    path = os.path.join(s.tmp, "not-executable")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(path, 0o644)
    res, _ = s.ptleak_run([], [path], json_file=False)
    expect_status(res, 126)


def t_bad_format(s):
    path = os.path.join(s.tmp, "bad-format")
    with open(path, "wb") as f:
        f.write(b"\x7fELF\x00garbage, not a program\n" + bytes(64))
    os.chmod(path, 0o755)
    res, _ = s.ptleak_run([], [path], json_file=False)
    expect_status(res, 126)


def t_bad_no_args(s):
    # One line naming the problem, as for every bad input.
    res, _ = s.ptleak_run([], [], json_file=False)
    expect_status(res, 125)
    lines = res.stderr.decode(errors="replace").splitlines()
    if len(lines) != 1 or "no program" not in lines[0]:
        raise Fail("no arguments: want one line saying no program was given",
                   tail(res.stderr))


def t_bad_unknown_option(s):
    res, _ = s.ptleak_run(["--no-such-option"], [s.builder.get("hello")],
                          json_file=False)
    expect_status(res, 125)
    if res.stdout:
        raise Fail("unknown option: the program must not run",
                   tail(res.stdout))


def t_bad_option_values(s):
    hello = [s.builder.get("hello")]
    for opt in ("--num-callers=0", "--num-callers=65", "--error-exitcode=0",
                "--error-exitcode=256", "--show-leak-kinds=bogus",
                "--errors-for-leak-kinds=bogus"):
        res, _ = s.ptleak_run([opt], hello, json_file=False)
        expect_status(res, 125, opt + ": ")


def t_bad_output_path(s):
    res, _ = s.ptleak_run(["-o", "/nonexistent-dir/report.txt"],
                          [s.builder.get("hello")], json_file=False)
    expect_status(res, 125, "unwritable -o path: ")
    res, _ = s.ptleak_run(["--json=/nonexistent-dir/report.json"],
                          [s.builder.get("hello")], json_file=False)
    expect_status(res, 125, "unwritable --json path: ")


def t_shebang_script(s):
    # A script is traced as its interpreter (/bin/sh), which execs the
    # fixture: only the exit status and "no hang" are asserted.
    s.builder.get("leak_1000")
    path = os.path.join(s.builder.out_dir, "run_leak_1000.sh")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec ./leak_1000\n")
    os.chmod(path, 0o755)
    res, _ = s.ptleak_run([], ["./run_leak_1000.sh"], cwd=s.builder.out_dir,
                          json_file=False)
    expect_status(res, 0, "shebang script: ")
    if b"calling malloc()" not in res.stdout:
        raise Fail("shebang script: the fixture's output is missing",
                   tail(res.stdout))


def t_static_identical(s):
    got = {}
    for name in ("leak_static_glibc", "leak_static_pie", "leak_static_musl"):
        res, doc = s.ptleak_run([], [s.builder.get(name)])
        proc = s.process(doc, res)
        summ = proc.get("summary") or {}
        recs = [(r.get("kind"), r.get("bytes"), r.get("blocks"),
                 tuple(f.get("function") for f in r.get("stack") or []))
                for r in proc.get("leaks") or []
                if r.get("kind") != "still_reachable"]
        got[name] = ([(k, (summ.get(k) or {}).get("bytes"),
                       (summ.get(k) or {}).get("blocks"))
                      for k in KINDS[:3]], recs)
    ref = got["leak_static_musl"]
    diff = [n for n, v in got.items() if v != ref]
    if diff:
        raise Fail("static builds differ from musl's: %s" % ", ".join(diff),
                   ["%s: %s" % (n, v) for n, v in got.items()])


def t_no_hang_on_child_exit_codes(s):
    # Several quick runs in a row: each must end and leave nothing behind.
    for code in ("0", "1", "255"):
        res, _ = s.ptleak_run([], [s.builder.get("exit_code"), code])
        expect_status(res, int(code))


# --------------------------------------------------------------------------
# Attach mode (-k attach) and processes (-k proc): the tests that need a
# process running beside the test (a server to talk to, a program to
# signal, a terminal). Every process is started in its own session by
# Background, waited for with a deadline, and killed with its session at
# the end of the test whatever happened.
# --------------------------------------------------------------------------
class Background:
    """A process in its own session; stdout/stderr collected by threads."""

    def __init__(self, cmd, env, stdin=False, cwd=None):
        self.cmd = cmd
        try:
            self.p = subprocess.Popen(
                cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                env=env, start_new_session=True)
        except OSError as e:
            raise Fail("cannot run %s: %s" % (cmd[0], e))
        self.pid = self.p.pid
        self.bufs = {"out": bytearray(), "err": bytearray()}
        self.eof = {"out": False, "err": False}
        self.cond = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(k, f),
                                         daemon=True)
                        for k, f in (("out", self.p.stdout),
                                     ("err", self.p.stderr))]
        for t in self.readers:
            t.start()
        self.status = None

    def _read(self, key, f):
        fd = f.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.eof[key] = True
                    self.cond.notify_all()
                    return
                self.bufs[key] += data
                self.cond.notify_all()

    @property
    def out(self):
        with self.cond:
            return bytes(self.bufs["out"])

    @property
    def err(self):
        with self.cond:
            return bytes(self.bufs["err"])

    def wait_for(self, key, pattern, timeout, what):
        """Wait until regex PATTERN (bytes, re.M) is in stdout/stderr."""
        start = time.monotonic()
        with self.cond:
            while True:
                m = re.search(pattern, bytes(self.bufs[key]), re.M)
                if m:
                    return m
                left = start + timeout - time.monotonic()
                if left <= 0 or self.eof[key]:
                    break
                self.cond.wait(min(left, 0.2))
        closed = ""
        if self.eof[key]:
            try:
                st = exit_status(self.p.wait(2))
            except subprocess.TimeoutExpired:
                st = "still running"
            closed = " (stream closed; exit status %s)" % st
        raise Fail("%s: %r not seen on %s after %.1f s%s"
                   % (what, pattern, "stdout" if key == "out" else "stderr",
                      time.monotonic() - start, closed),
                   ["stdout:"] + tail(self.out, 6) + ["stderr:"]
                   + tail(self.err, 10))

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def close_stdin(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass

    def poll(self):
        rc = self.p.poll()
        return None if rc is None else exit_status(rc)

    def signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except OSError:
            pass

    def wait(self, timeout, what):
        """Exit status (128+S for a signal), or Fail after TIMEOUT."""
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Fail("%s: still running after %.0f s (killed)"
                       % (what, timeout),
                       ["stdout:"] + tail(self.out, 6) + ["stderr:"]
                       + tail(self.err, 10))
        for t in self.readers:
            t.join(5)
        return exit_status(rc)

    def kill(self):
        kill_session(self.pid)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for t in self.readers:
            t.join(2)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass


class Processes:
    """with Processes(suite) as ps: ps.start(cmd) ...; all killed at exit."""

    def __init__(self, suite):
        self.suite = suite
        self.started = []

    def start(self, cmd, stdin=False, cwd=None):
        if self.suite.verbose:
            print("  START   " + shell_quote(cmd), flush=True)
        b = Background(cmd, self.suite.env, stdin=stdin, cwd=cwd)
        self.started.append(b)
        return b

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for b in reversed(self.started):
            b.kill()
        return False


def proc_status(pid):
    """{field: value} of /proc/PID/status, {} if PID is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(l.rstrip("\n").split(":\t", 1) for l in f
                        if ":\t" in l)
    except OSError:
        return {}


def tracer_pid(pid):
    return int(proc_status(pid).get("TracerPid", "0"))


def children_of(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def wait_until(cond, timeout, what, details=()):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail("%s (after %.1f s)" % (what, timeout), list(details))
        time.sleep(0.02)


def traced_child(ptleak_pid, timeout=10):
    """The program ptleak launched, once ptleak traces it."""
    def found():
        kids = children_of(ptleak_pid)
        return kids[0] if kids and tracer_pid(kids[0]) == ptleak_pid \
            else None
    return wait_until(found, timeout, "ptleak's program did not start")


def expect_alive_untraced(pid, what):
    st = proc_status(pid)
    state = st.get("State", "gone")
    if not st or state[0] in "ZXTt":
        raise Fail("%s: target %d should run on untraced, state %s"
                   % (what, pid, state))
    if int(st.get("TracerPid", "0")) != 0:
        raise Fail("%s: target %d still traced by %s after ptleak left"
                   % (what, pid, st.get("TracerPid")))


def attach_permitted():
    """Skip unless this user may attach to a process it did not start."""
    try:
        scope = int(open("/proc/sys/kernel/yama/ptrace_scope").read())
    except (OSError, ValueError):
        scope = 0
    cap = int(proc_status(os.getpid()).get("CapEff", "0"), 16)
    if scope >= 3 or (scope >= 1 and not cap & (1 << 19)):
        raise Skip("attaching is not permitted here (yama ptrace_scope %d, "
                   "CAP_SYS_PTRACE %s)" % (scope, "yes" if cap & (1 << 19)
                                           else "no"))


def load_json(path, what):
    if not os.path.exists(path):
        raise Fail("%s: no JSON report written" % what)
    raw = open(path, "rb").read()
    try:
        doc = json.loads(raw)
        assert doc.get("tool") == "ptleak"
        assert isinstance(doc.get("processes"), list)
        return doc
    except (ValueError, AssertionError, AttributeError) as e:
        raise Fail("%s: JSON report unreadable (%s)" % (what, e), tail(raw))


def record_key(r):
    """A loss record as (kind, bytes, blocks, function names)."""
    return (r.get("kind"), r.get("bytes"), r.get("blocks"),
            tuple(f.get("function") for f in r.get("stack") or []))


def proc_errors(proc, summary, records, label=""):
    """Compare one JSON process entry: SUMMARY {kind: (bytes, blocks)} and
    the loss records of those kinds, in order (R(...) entries)."""
    errors = []
    got_sum = proc.get("summary") or {}
    for k, want in summary.items():
        g = got_sum.get(k) or {}
        if (g.get("bytes"), g.get("blocks")) != tuple(want):
            errors.append("%s%s: want %s bytes in %s blocks, got %s in %s"
                          % (label, k, fmt(want[0]), fmt(want[1]),
                             g.get("bytes"), g.get("blocks")))
    leaks = proc.get("leaks") or []
    got = [r for r in leaks if r.get("kind") in summary]
    if len(got) != len(records):
        errors.append("%swant %d loss records of kinds %s, got %d"
                      % (label, len(records), ",".join(summary), len(got)))
    for n, (w, g) in enumerate(zip(records, got), 1):
        if (g.get("kind"), g.get("bytes"), g.get("blocks")) != (
                w["kind"], w["bytes"], w["blocks"]) or \
                not stack_matches(w["stack"], g.get("stack") or []):
            errors.append("%srecord %d: want %s %s bytes in %s blocks at %s, "
                          "got %s" % (label, n, w["kind"], w["bytes"],
                                      w["blocks"], " <- ".join(w["stack"]),
                                      show_record(g)))
    if errors:
        errors += ["%sgot records:" % label] + ["  " + show_record(r)
                                                for r in leaks[:10]]
    return errors


def one_line_error(res, what, *needles):
    """ptleak failed with one line on stderr holding every NEEDLE
    (regexes, case-insensitive), nothing on stdout."""
    lines = [l for l in res.stderr.decode("utf-8", "replace").splitlines()
             if l.strip()]
    if len(lines) != 1:
        raise Fail("%s: want one line on stderr, got %d" % (what, len(lines)),
                   tail(res.stderr))
    for n in needles:
        if not re.search(n, lines[0], re.I):
            raise Fail("%s: the message lacks %r" % (what, n),
                       ["| " + lines[0]])
    if res.stdout:
        raise Fail("%s: nothing may go to stdout" % what, tail(res.stdout))


# ---- A1: the leaking server ----------------------------------------------
SERVER_LEAK_BLOCKS, SERVER_LEAK_SIZE = 2, 48
SERVER_STACK = ["malloc", "leak_request@leak_server.c", "handle_request",
                "serve", "worker"]


def server_sum(seq):
    """The answer leak_server.c gives to request SEQ: (LEN, SUM)."""
    n = 256 + (seq * 37) % 512
    data = bytes((seq * 31 + i * 7) & 0xff for i in range(n))
    for k in range(SERVER_LEAK_BLOCKS):
        data += bytes((seq + i * 13 + k * 101) & 0xff
                      for i in range(SERVER_LEAK_SIZE))
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xffffffff
    return n, h


def server_requests(port, count, first_seq, what):
    """COUNT requests, one connection each; checks every answer. Returns
    the next sequence number."""
    seq = first_seq
    for _ in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) \
                    as c:
                c.sendall(b"GET\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = c.recv(256)
                    if not chunk:
                        break
                    data += chunk
        except OSError as e:
            raise Fail("%s: request %d: %s" % (what, seq, e))
        n, h = server_sum(seq)
        want = b"OK %d %d %08x\n" % (seq, n, h)
        if data != want:
            raise Fail("%s: request %d: want answer %r, got %r"
                       % (what, seq, want, data))
        seq += 1
    return seq


def start_server(s, ps):
    server = ps.start([s.builder.get("leak_server"), "120"])
    m = server.wait_for("out", rb"^port (\d+)$", 10, "leak_server")
    return server, int(m.group(1))


def start_attach(s, ps, pid, opts):
    """ptleak OPTS -p PID, once its banner says it is attached."""
    p = ps.start([s.ptleak] + opts + ["-p", str(pid)])
    p.wait_for("err", rb"attached.*\b%d\b" % pid, 20,
               "ptleak -p %d (waiting for its banner line \"... attached to "
               "process %d\")" % (pid, pid))
    return p


def check_server_report(doc, text, pid, first_seq, nreq, what):
    """The attach report after requests FIRST_SEQ.. (NREQ of them): exact,
    with ages."""
    procs = doc["processes"]
    if len(procs) != 1:
        raise Fail("%s: want one process in the JSON, got %d"
                   % (what, len(procs)))
    proc = procs[0]
    errors = []
    if proc.get("pid") != pid:
        errors.append("JSON pid: want %d, got %s" % (pid, proc.get("pid")))
    if proc.get("attached") is not True:
        errors.append("JSON attached: want true, got %s"
                      % proc.get("attached"))
    if proc.get("exit", "missing") is not None:
        errors.append("JSON exit: want null (still running), got %s"
                      % proc.get("exit"))
    traced = proc.get("traced_s")
    if not isinstance(traced, (int, float)) or traced <= 0:
        errors.append("JSON traced_s: want seconds > 0, got %r" % traced)
        traced = None
    nbytes = nreq * SERVER_LEAK_BLOCKS * SERVER_LEAK_SIZE
    nblocks = nreq * SERVER_LEAK_BLOCKS
    # Every call since attaching, from every thread: per request malloc
    # (buffer), calloc (64), realloc to 600 (grows: an allocation and a
    # free), strdup (the answer), the leaked blocks; 4 frees.
    heap = {"allocations": nreq * (4 + SERVER_LEAK_BLOCKS),
            "frees": nreq * 4,
            "bytes_allocated": sum(server_sum(q)[0] + 64 + 600 + len(
                b"OK %d %d %08x\n" % (q, *server_sum(q))) + 1
                + SERVER_LEAK_BLOCKS * SERVER_LEAK_SIZE
                for q in range(first_seq, first_seq + nreq))}
    got_sum = proc.get("summary") or {}
    for k, want in heap.items():
        if got_sum.get(k) != want:
            errors.append("summary %s since attaching: want %s, got %s"
                          % (k, want, got_sum.get(k)))
    errors += proc_errors(proc, {D: (nbytes, nblocks)},
                          [R(D, nbytes, nblocks, SERVER_STACK)])
    recs = [r for r in proc.get("leaks") or []
            if r.get("kind") == D and r.get("bytes") == nbytes]
    if recs:
        age = recs[0].get("age") or {}
        old, med = age.get("oldest_s"), age.get("median_s")
        if not all(isinstance(x, (int, float)) for x in (old, med)) or \
                not 0 <= med <= old or (traced and old > traced + 0.5):
            errors.append("record age: want 0 <= median_s <= oldest_s <= "
                          "traced_s (%s), got %s" % (traced, age))
    rec_line = (r"^==%d== %s bytes in %s blocks are definitely lost in loss "
                r"record \d+ of \d+ \(ages: oldest [\d.]+ s, median [\d.]+ "
                r"s\)$" % (pid, fmt(nbytes), fmt(nblocks)))
    if not re.search(rec_line, text, re.M):
        errors.append("text lacks the loss record line with ages: %r"
                      % rec_line)
    if not re.search(r"^==%d==\s+definitely lost: %s bytes in %s blocks$"
                     % (pid, fmt(nbytes), fmt(nblocks)), text, re.M):
        errors.append("text LEAK SUMMARY lacks \"definitely lost: %s bytes "
                      "in %s blocks\" under ==%d==" % (fmt(nbytes),
                                                       fmt(nblocks), pid))
    if errors:
        raise Fail("%s: %s" % (what, errors[0]), errors[1:] +
                   ["text:"] + ["| " + l for l in text.splitlines()[-14:]])


def attach_server_run(s, mode):
    attach_permitted()
    nreq = 25
    what = "attach (%s)" % mode
    with Processes(s) as ps:
        server, port = start_server(s, ps)
        # Requests before attaching: unknown to ptleak, never reported.
        seq = server_requests(port, 5, 1, what + ", before attaching")
        j = s.tmpfile("attach.json")
        opts = ["--json=" + j]
        if mode == "duration":
            opts.append("--duration=2")
        if mode == "interval":
            opts.append("--interval=0.5")
        t0 = time.monotonic()
        p = start_attach(s, ps, server.pid, opts)
        first = seq
        seq = server_requests(port, nreq, seq, what + ", attached")
        if mode == "duration":
            if time.monotonic() - t0 > 1.8:
                raise Fail("%s: the %d requests took %.1f s, longer than "
                           "--duration=2 allows" % (what, nreq,
                                                    time.monotonic() - t0))
            status = p.wait(20, "ptleak -p --duration=2")
        else:
            if mode == "interval":
                # A periodic block that has seen all the requests.
                site = (rb"^==%d==\s+%s bytes in %s blocks \([+-]?[\d,]+ "
                        rb"bytes\) at malloc < leak_request\b"
                        % (server.pid, fmt(nreq * 96).encode(),
                           fmt(nreq * 2).encode()))
                p.wait_for("err", site, 10, "--interval=0.5 block")
                head = (rb"^==%d== \[t=[\d.]+s\] live since attach: [\d,]+ "
                        rb"bytes in [\d,]+ blocks \([+-][\d,]+ bytes, "
                        rb"[+-][\d,]+ blocks in [\d.]+s\)$" % server.pid)
                if not re.search(head, p.err, re.M):
                    raise Fail("%s: no \"[t=...s] live since attach: ...\" "
                               "line" % what, tail(p.err))
            p.signal(signal.SIGINT)
            status = p.wait(20, "ptleak -p after SIGINT")
        if status != 0:
            raise Fail("%s: ptleak exit status: want 0, got %d"
                       % (what, status), tail(p.err))
        if mode == "duration":
            el = time.monotonic() - t0
            if el < 1.9:
                raise Fail("%s: ptleak left after %.1f s, before "
                           "--duration=2" % (what, el))
        expect_alive_untraced(server.pid, what)
        doc = load_json(j, what)
        text = p.err.decode("utf-8", "replace")
        check_server_report(doc, text, server.pid, first, nreq, what)
        if mode == "duration":
            traced = doc["processes"][0].get("traced_s")
            if not 1.9 <= traced <= 6:
                raise Fail("%s: traced_s %s, want about 2" % (what, traced))
        # Unharmed: it answers on, right, and is still alive.
        server_requests(port, 10, seq, what + ", after detaching")
        expect_alive_untraced(server.pid, what + ", after more requests")
        server.signal(signal.SIGTERM)
        st = server.wait(10, "leak_server after SIGTERM")
        if st != 128 + signal.SIGTERM:
            raise Fail("%s: the server should die of SIGTERM, exit %d"
                       % (what, st), tail(server.err))


def t_attach_server_sigint(s):
    attach_server_run(s, "sigint")


def t_attach_server_duration(s):
    attach_server_run(s, "duration")


def t_attach_server_interval(s):
    attach_server_run(s, "interval")


# ---- A2, A5: hammer --------------------------------------------------------
def start_hammer(s, ps):
    h = ps.start([s.builder.get("hammer"), "90"])
    h.wait_for("out", rb"^ready$", 10, "hammer")
    return h


def finish_hammer(h, what):
    if h.poll() is not None:
        raise Fail("%s: hammer died (status %d)" % (what, h.poll()),
                   tail(h.out) + tail(h.err))
    h.signal(signal.SIGUSR1)
    st = h.wait(20, "hammer after SIGUSR1")
    if st != 0 or h.out != b"ready\nok\n":
        raise Fail("%s: hammer must exit 0 and print ok; status %d"
                   % (what, st), tail(h.out) + tail(h.err))


def t_attach_detach_cycles(s):
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        t0 = time.monotonic()
        for i in range(20):
            res = run([s.ptleak, "-q", "-p", str(h.pid), "--duration=0.2",
                       "-o", "/dev/null"], 15, env=s.env)
            if exit_status(res.status) != 0:
                raise Fail("cycle %d: ptleak exit status %d, want 0"
                           % (i + 1, exit_status(res.status)),
                           tail(res.stderr))
            if h.poll() is not None:
                raise Fail("cycle %d: hammer died (status %d)"
                           % (i + 1, h.poll()), tail(h.out) + tail(h.err))
            expect_alive_untraced(h.pid, "cycle %d" % (i + 1))
            if time.monotonic() - t0 > 60:
                raise Fail("20 cycles take over 60 s (%d done)" % (i + 1))
        finish_hammer(h, "after 20 attach/detach cycles")


def t_attach_job_stopped(s):
    # A process stopped by SIGSTOP stays stopped while ptleak attaches,
    # hooks (which runs code in one of its threads), traces and leaves;
    # afterwards it is untraced, still stopped, and SIGCONT resumes it.
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        os.kill(h.pid, signal.SIGSTOP)
        wait_until(lambda: proc_state(h.pid).startswith("T"), 5,
                   "hammer never stopped")
        res = run([s.ptleak, "-q", "-p", str(h.pid), "--duration=0.5",
                   "-o", "/dev/null"], 20, env=s.env)
        if exit_status(res.status) != 0:
            raise Fail("ptleak -p on a stopped process: exit status %d, want 0"
                       % exit_status(res.status), tail(res.stderr))
        time.sleep(0.3)
        state = proc_state(h.pid)
        if not state.startswith("T") or tracer_pid(h.pid) != 0:
            raise Fail("after ptleak left: want state T (stopped) and untraced, "
                       "got state %s, TracerPid %d" % (state, tracer_pid(h.pid)))
        os.kill(h.pid, signal.SIGCONT)
        finish_hammer(h, "after ptleak attached to it while it was stopped")


def t_attach_sigterm(s):
    # SIGTERM to ptleak while the target allocates at full speed: ptleak
    # detaches cleanly, reports, exits 0; the target runs on.
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        j = s.tmpfile("attach.json")
        p = start_attach(s, ps, h.pid, ["--json=" + j])
        time.sleep(1.0)
        p.signal(signal.SIGTERM)
        st = p.wait(20, "ptleak -p after SIGTERM")
        if st != 0:
            raise Fail("ptleak exit status after SIGTERM: want 0, got %d"
                       % st, tail(p.err))
        expect_alive_untraced(h.pid, "after SIGTERM to ptleak")
        doc = load_json(j, "SIGTERM")
        procs = doc["processes"]
        if len(procs) != 1 or procs[0].get("pid") != h.pid or \
                procs[0].get("attached") is not True or \
                procs[0].get("exit", 0) is not None:
            raise Fail("JSON: want one process, pid %d, attached, exit null"
                       % h.pid, [json.dumps(procs)[:300]])
        if not re.search(rb"LEAK SUMMARY", p.err):
            raise Fail("no LEAK SUMMARY in the report", tail(p.err))
        time.sleep(0.5)
        finish_hammer(h, "after SIGTERM to ptleak")


def crash_restore_rounds(s, sig, rounds=5):
    """ptleak -p on a fresh hammer, tracing it for 1 s, then killed by SIG
    (as if it crashed): ptleak dies of SIG, the hammer is left untraced,
    without a breakpoint or a redirected return address, and finishes its
    checks. ROUNDS times, to catch the races of a crash at any moment."""
    attach_permitted()
    name = signal.Signals(sig).name
    for n in range(1, rounds + 1):
        what = "round %d/%d, %s to ptleak" % (n, rounds, name)
        with Processes(s) as ps:
            h = start_hammer(s, ps)
            p = start_attach(s, ps, h.pid, [])
            time.sleep(1.0)
            if p.poll() is not None or tracer_pid(h.pid) != p.pid:
                raise Fail("%s: ptleak should be tracing the hammer before "
                           "the signal (ptleak status %s, TracerPid %d)"
                           % (what, p.poll(), tracer_pid(h.pid)),
                           tail(p.err))
            p.signal(sig)
            st = p.wait(20, "ptleak -p after %s" % name)
            if st != 128 + sig:
                raise Fail("%s: ptleak must die of %s (status %d), got %d"
                           % (what, name, 128 + sig, st), tail(p.err))
            # A breakpoint left behind would kill it with SIGTRAP within
            # microseconds: let it run on before the checks.
            time.sleep(0.3)
            died = h.poll()
            if died is not None:
                h.wait(5, "hammer")
                raise Fail("%s: the hammer died after ptleak did: %s"
                           % (what, describe_status(died)),
                           ["ptleak's stderr:"] + tail(p.err, 8)
                           + ["hammer:"] + tail(h.out, 4) + tail(h.err, 4))
            expect_alive_untraced(h.pid, what)
            finish_hammer(h, what)


def t_attach_crash_segv(s):
    crash_restore_rounds(s, signal.SIGSEGV)


def t_attach_crash_abrt(s):
    crash_restore_rounds(s, signal.SIGABRT)


# ---- A3: the same records, launched or attached ----------------------------
TRIGGER_RECORDS = [R(D, 600, 2, ["calloc", "leak_beta@trigger_leaks.c",
                                 "main"]),
                   R(D, 400, 3, ["malloc", "leak_alpha@trigger_leaks.c",
                                 "main"])]


def t_attach_same_as_launch(s):
    attach_permitted()
    exe = s.builder.get("trigger_leaks")
    nat = s.native([exe], b"x", 20)
    if exit_status(nat.status) != 4 or \
            nat.stdout != b"ready\nleaked 5 blocks\n":
        raise Fail("trigger_leaks alone: status %d" % exit_status(nat.status),
                   tail(nat.stdout))
    res, doc = s.ptleak_run([], [exe], stdin=b"x", timeout=30)
    expect_status(res, 4, "launch: ")
    launch = s.process(doc, res)
    errs = proc_errors(launch, {D: (1000, 5), I: Z}, TRIGGER_RECORDS,
                       "launch: ")
    if errs:
        raise Fail(errs[0], errs[1:])
    with Processes(s) as ps:
        prog = ps.start([exe], stdin=True)
        prog.wait_for("out", rb"^ready$", 10, "trigger_leaks")
        j = s.tmpfile("attach.json")
        p = start_attach(s, ps, prog.pid, ["--json=" + j])
        prog.write(b"x")
        prog.close_stdin()
        st = p.wait(30, "ptleak -p on a process that exits")
        if st != 0:
            raise Fail("attach: ptleak exit status: want 0 (the process "
                       "exited while traced), got %d" % st, tail(p.err))
        pst = prog.wait(10, "trigger_leaks")
        if pst != 4 or prog.out != nat.stdout:
            raise Fail("attach: the program's status %d / stdout changed"
                       % pst, tail(prog.out))
        doc = load_json(j, "attach")
    attached = doc["processes"][0]
    errs = []
    if attached.get("exit") != {"code": 4}:
        errs.append("attach: JSON exit: want {'code': 4}, got %s"
                    % attached.get("exit"))
    errs += proc_errors(attached, {D: (1000, 5), I: Z}, TRIGGER_RECORDS,
                        "attach: ")
    a = [record_key(r) for r in launch.get("leaks") or [] if r["kind"] == D]
    b = [record_key(r) for r in attached.get("leaks") or []
         if r["kind"] == D]
    if a != b:
        errs += ["definitely lost records differ, launch vs attach:"] + \
            ["  launch: %s" % (r,) for r in a] + \
            ["  attach: %s" % (r,) for r in b]
    if errs:
        raise Fail(errs[0], errs[1:])


# ---- A4: errors ------------------------------------------------------------
def free_pid():
    """A PID no process has: one just reaped and not reused."""
    for _ in range(20):
        p = subprocess.Popen(["true"])
        p.wait()
        if not os.path.exists("/proc/%d" % p.pid):
            return p.pid
    raise Skip("no free pid found")


def t_attach_err_nonexistent_pid(s):
    pid = free_pid()
    res, _ = s.ptleak_run(["-p", str(pid)], [], json_file=False, timeout=20)
    expect_status(res, 125, "-p %d (no such process): " % pid)
    one_line_error(res, "-p %d" % pid, r"no such process", r"\b%d\b" % pid)


def traced_twice(s, first_tracer, target, what):
    res, _ = s.ptleak_run(["-p", str(target)], [], json_file=False,
                          timeout=20)
    expect_status(res, 125, "%s: " % what)
    one_line_error(res, what, r"\b%d\b" % first_tracer)
    if tracer_pid(target) != first_tracer:
        raise Fail("%s: the target lost its first tracer (TracerPid %d)"
                   % (what, tracer_pid(target)))


def t_attach_err_traced_by_strace(s):
    attach_permitted()
    if shutil.which("strace") is None:
        raise Skip("strace not installed")
    with Processes(s) as ps:
        st = ps.start(["strace", "-f", "-o", "/dev/null", "sleep", "30"])
        target = wait_until(
            lambda: next((k for k in children_of(st.pid)
                          if tracer_pid(k) == st.pid), None), 10,
            "strace's child never appeared traced")
        traced_twice(s, st.pid, target, "-p PID traced by strace")


def t_attach_err_traced_by_ptleak(s):
    attach_permitted()
    exe = s.builder.get("trigger_leaks")
    with Processes(s) as ps:
        first = ps.start([s.ptleak, "-q", exe], stdin=True)
        first.wait_for("out", rb"^ready$", 10, "ptleak trigger_leaks")
        target = traced_child(first.pid)
        traced_twice(s, first.pid, target, "-p PID traced by another ptleak")
        # The first ptleak goes on undisturbed.
        first.write(b"x")
        first.close_stdin()
        st = first.wait(20, "the first ptleak")
        if st != 4 or not parse_summary_text(
                first.err.decode("utf-8", "replace")).get(D) == (1000, 5):
            raise Fail("the first ptleak: want status 4 and 1,000 bytes in "
                       "5 blocks definitely lost, got status %d" % st,
                       tail(first.err))


def t_attach_err_bad_pid(s):
    for opts in (["-p", "abc"], ["--pid=abc"], ["-p", "12abc"], ["-p", "0"],
                 ["-p", "-5"], ["-p"]):
        res, _ = s.ptleak_run(opts, [], json_file=False, timeout=20)
        expect_status(res, 125, "%s: " % " ".join(opts))
        one_line_error(res, " ".join(opts))


def t_attach_err_pid_and_program(s):
    hello = s.builder.get("hello")
    with Processes(s) as ps:
        sl = ps.start(["sleep", "30"])
        res, _ = s.ptleak_run(["-p", str(sl.pid)], [hello], json_file=False,
                              timeout=20)
        expect_status(res, 125, "-p PID PROGRAM: ")
        one_line_error(res, "-p PID PROGRAM")
        expect_alive_untraced(sl.pid, "-p PID PROGRAM")


NOBODY = 65534


def as_nobody():
    """preexec_fn: become nobody (uid and gid 65534, no groups)."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def t_attach_err_not_permitted(s):
    # An unprivileged user attaching to root's process: refused by the
    # kernel (EPERM). One line saying so, with the way out; the target is
    # left as it was.
    if os.geteuid() != 0:
        raise Skip("needs root (to start a target nobody may not trace)")
    # A copy of ptleak that nobody can run wherever the checkout lives.
    bindir = tempfile.mkdtemp(prefix="ptleak-nobody-")
    try:
        os.chmod(bindir, 0o755)
        exe = os.path.join(bindir, "ptleak")
        shutil.copy(s.ptleak, exe)
        os.chmod(exe, 0o755)
        with Processes(s) as ps:
            target = ps.start(["sleep", "30"])
            wait_until(lambda: proc_status(target.pid).get("Uid", "")
                       .split()[:1] == ["0"] and
                       proc_status(target.pid).get("Name") == "sleep", 10,
                       "sleep did not start")
            what = "-p %d (root's) as nobody" % target.pid
            res = run([exe, "-p", str(target.pid)], 20, cwd=bindir,
                      env=s.env, preexec_fn=as_nobody)
            expect_status(res, 125, what + ": ")
            one_line_error(res, what, r"not permitted", r"\b%d\b"
                           % target.pid, r"CAP_SYS_PTRACE|ptrace_scope")
            expect_alive_untraced(target.pid, what)
            # Not stopped either, nor signalled: sleep runs on until told.
            target.signal(signal.SIGTERM)
            st = target.wait(10, "sleep after SIGTERM")
            if st != 128 + signal.SIGTERM:
                raise Fail("%s: the target should die of SIGTERM, exit %d"
                           % (what, st))
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


# ---- B1: fork --------------------------------------------------------------
def fork_pids(res):
    m = re.search(rb"fork_leaks: parent (\d+) child (\d+)", res.stderr)
    if not m:
        raise Fail("fork_leaks did not print its pids (ptleak exited %d)"
                   % exit_status(res.status), tail(res.stderr))
    return int(m.group(1)), int(m.group(2))


def native_same(s, cmd, res, stdin=None, cwd=None, timeout=30):
    """The program's stdout and status under ptleak equal a run alone."""
    key = (tuple(cmd), stdin, cwd)
    if key not in s.native_cache:
        s.native_cache[key] = run(cmd, timeout, stdin=stdin, cwd=cwd,
                                  env=s.env)
    nat = s.native_cache[key]
    errs = []
    if exit_status(res.status) != exit_status(nat.status):
        errs.append("exit status: alone %d, under ptleak %d"
                    % (exit_status(nat.status), exit_status(res.status)))
    if mask(res.stdout) != mask(nat.stdout):
        errs += ["stdout differs from a run alone:"] + \
            ["  alone: " + l for l in tail(nat.stdout, 8)] + \
            ["  under: " + l for l in tail(res.stdout, 8)]
    return errs


FORK_PARENT = [R(D, 200, 2, ["malloc", "parent_leak@fork_leaks.c", "main"])]
FORK_CHILD = [R(D, 600, 3, ["malloc", "child_leak@fork_leaks.c", "main"]),
              R(D, 200, 2, ["malloc", "parent_leak@fork_leaks.c", "main"])]


def t_fork_default(s):
    cmd = [s.builder.get("fork_leaks")]
    res, doc = s.ptleak_run([], cmd, timeout=30)
    errs = native_same(s, cmd, res)
    if res.stdout != b"child exited with status 7\n":
        errs.append("the child was harmed: stdout %r" % res.stdout)
    parent, child = fork_pids(res)
    procs = (doc or {}).get("processes") or []
    if [p.get("pid") for p in procs] != [parent]:
        errs.append("without -f the JSON has the parent only: want pids "
                    "[%d], got %s" % (parent, [p.get("pid") for p in procs]))
    if procs:
        errs += proc_errors(procs[0], {D: (200, 2), I: Z, P: Z}, FORK_PARENT)
        if procs[0].get("exit") != {"code": 0}:
            errs.append("JSON exit: %s" % procs[0].get("exit"))
    if re.search(rb"^==%d== " % child, res.stderr, re.M):
        errs.append("without -f the text reports the child %d" % child)
    if errs:
        raise Fail(errs[0], errs[1:])


def t_fork_follow(s):
    cmd = [s.builder.get("fork_leaks")]
    res, doc = s.ptleak_run(["-f"], cmd, timeout=30)
    errs = native_same(s, cmd, res)
    parent, child = fork_pids(res)
    procs = {p.get("pid"): p for p in (doc or {}).get("processes") or []}
    if sorted(procs) != sorted([parent, child]):
        raise Fail("-f: want processes %d and %d, got %s"
                   % (parent, child, sorted(procs)), errs)
    errs += proc_errors(procs[parent], {D: (200, 2), I: Z, P: Z},
                        FORK_PARENT, "parent: ")
    errs += proc_errors(procs[child], {D: (800, 5), I: Z, P: Z},
                        FORK_CHILD, "child: ")
    if procs[parent].get("exit") != {"code": 0}:
        errs.append("parent JSON exit: %s" % procs[parent].get("exit"))
    if procs[child].get("exit") != {"code": 7}:
        errs.append("child JSON exit: want {'code': 7}, got %s"
                    % procs[child].get("exit"))
    # Text: one block per process, in the order they exited (child first).
    text = res.stderr.decode("utf-8", "replace")
    pos = {}
    for pid, want in ((child, "800 bytes in 5 blocks"),
                      (parent, "200 bytes in 2 blocks")):
        m = re.search(r"^==%d==\s+definitely lost: %s$" % (pid, want), text,
                      re.M)
        if not m:
            errs.append("text: no \"==%d== definitely lost: %s\"" % (pid,
                                                                    want))
        else:
            pos[pid] = m.start()
    if len(pos) == 2 and pos[child] > pos[parent]:
        errs.append("text: the child's report (exited first) must come "
                    "before the parent's")
    if errs:
        raise Fail(errs[0], errs[1:])


# ---- B2: posix_spawn, vfork ------------------------------------------------
SPAWN_PARENT = [R(D, 88, 1, ["malloc", "leak_after@spawn_leaks.c", "main"]),
                R(D, 77, 1, ["malloc", "leak_before@spawn_leaks.c", "main"])]
SPAWN_OUT = (b"posix_spawn: status 5\n" * 3 + b"vfork: status 5\n" * 3
             + b"spawned 6\n")


def spawn_run(s, opts):
    cmd = [s.builder.get("spawn_leaks"), s.builder.get("exit_code"), "5",
           "9"]
    res, doc = s.ptleak_run(opts, cmd, timeout=30)
    errs = native_same(s, cmd, res)
    if res.stdout != SPAWN_OUT:
        errs.append("stdout: want %r" % SPAWN_OUT)
    procs = (doc or {}).get("processes") or []
    mine = [p for p in procs if p.get("command") == cmd]
    if len(mine) != 1:
        raise Fail("want one process with the command %s, got %d (ptleak "
                   "exited %d)" % (shell_quote(cmd), len(mine),
                                   exit_status(res.status)),
                   errs + [json.dumps(p.get("command")) for p in procs])
    errs += proc_errors(mine[0], {D: (165, 2), I: Z, P: Z}, SPAWN_PARENT,
                        "spawn_leaks: ")
    return procs, mine[0], errs


def t_spawn_default(s):
    procs, parent, errs = spawn_run(s, [])
    if len(procs) != 1:
        errs.append("without -f: want 1 process in the JSON, got %d"
                    % len(procs))
    if errs:
        raise Fail(errs[0], errs[1:])


def t_spawn_follow(s):
    procs, parent, errs = spawn_run(s, ["-f"])
    kids = [p for p in procs if p is not parent]
    if len(kids) != 6:
        errs.append("-f: want 6 children (3 posix_spawn, 3 vfork) besides "
                    "spawn_leaks, got %d" % len(kids))
    for k in kids:
        label = "child %s: " % k.get("pid")
        if k.get("exit") != {"code": 5}:
            errs.append(label + "JSON exit: want {'code': 5}, got %s"
                        % k.get("exit"))
        # After its exec the child's report is exit_code's.
        errs += proc_errors(k, {D: (9, 1), I: Z, P: Z},
                            [R(D, 9, 1, ["malloc", "leak_some@exit_code.c",
                                         "main"])], label)
    if errs:
        raise Fail(errs[0], errs[1:])


# ---- B3: exec ----------------------------------------------------------------
def t_exec_from_sh(s):
    s.builder.get("leak_1000")
    cmd = ["sh", "-c", "exec ./leak_1000"]
    res, doc = s.ptleak_run([], cmd, cwd=s.builder.out_dir, timeout=30)
    errs = native_same(s, cmd, res, cwd=s.builder.out_dir)
    procs = (doc or {}).get("processes") or []
    if len(procs) != 1:
        raise Fail("want 1 process in the JSON, got %d" % len(procs), errs)
    errs += proc_errors(procs[0], {D: (1000, 1), I: Z, P: Z},
                        [R(D, 1000, 1, ["malloc", "do_leak@leak_1000.c",
                                        "main"])])
    if procs[0].get("exit") != {"code": 0}:
        errs.append("JSON exit: %s" % procs[0].get("exit"))
    if parse_summary_text(res.stderr.decode("utf-8", "replace")).get(D) != \
            (1000, 1):
        errs.append("text: want \"definitely lost: 1,000 bytes in 1 blocks\"")
    if errs:
        raise Fail(errs[0], errs[1:])


def t_exec_wrapper_script(s):
    # pyenv's python3 on these machines is a bash script that execs pyenv,
    # which execs the real interpreter: the report is about the last one.
    wrapper = None
    for cand in (shutil.which("python3"), os.path.join(
            os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
            "shims", "python3")):
        if cand and os.access(cand, os.X_OK):
            with open(cand, "rb") as f:
                if f.read(2) == b"#!":
                    wrapper = cand
                    break
    if not wrapper:
        raise Skip("no python3 wrapper script here (pyenv's shim)")
    lib = s.builder.get("liballoc_free.so")
    cmd = [wrapper, os.path.join(FIXTURES, "py_alloc_free.py"), lib]
    res, doc = s.ptleak_run([], cmd, timeout=120)
    expect_status(res, 0, "python3 through its wrapper: ")
    n = int(res.stdout.decode().strip())
    procs = (doc or {}).get("processes") or []
    if len(procs) != 1:
        raise Fail("want 1 process in the JSON, got %d" % len(procs))
    command = procs[0].get("command") or [""]
    if command[0] == wrapper or not os.path.basename(command[0]).startswith("python"):
        raise Fail("the report is not about the interpreter the wrapper ran: %s"
                   % command)
    errs = proc_errors(procs[0], {D: (32 * n, n), I: Z},
                       [R(D, 32 * n, n, ["malloc", "do_alloc@alloc_free.c"])])
    if errs:
        raise Fail(errs[0], errs[1:])


# ---- B4: signals from outside, SIGKILL ------------------------------------
SIG_EXTERNAL_OUT = (b"ready\ngot SIGUSR1 #1\ngot SIGUSR1 #2\n"
                    b"got SIGUSR1 #3\ndone: 3 SIGUSR1, stopped: yes\n")


def drive_sig_external(b, pid, what):
    """3 SIGUSR1 (each acknowledged), SIGSTOP for 0.6 s, SIGCONT, SIGUSR2."""
    for n in range(1, 4):
        os.kill(pid, signal.SIGUSR1)
        b.wait_for("out", rb"^got SIGUSR1 #%d$" % n, 10, what)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(pid, signal.SIGCONT)
    time.sleep(0.1)
    os.kill(pid, signal.SIGUSR2)


def t_signals_from_outside(s):
    exe = s.builder.get("sig_external")
    with Processes(s) as ps:
        nat = ps.start([exe])
        nat.wait_for("out", rb"^ready$", 10, "sig_external alone")
        drive_sig_external(nat, nat.pid, "sig_external alone")
        st = nat.wait(20, "sig_external alone")
        if st != 0 or nat.out != SIG_EXTERNAL_OUT:
            raise Fail("sig_external alone: status %d, stdout %r"
                       % (st, nat.out))
        j = s.tmpfile("report.json")
        p = ps.start([s.ptleak, "--json=" + j, exe])
        p.wait_for("out", rb"^ready$", 20, "ptleak sig_external")
        prog = traced_child(p.pid)
        drive_sig_external(p, prog, "ptleak sig_external")
        st = p.wait(30, "ptleak sig_external")
        errs = []
        if st != 0:
            errs.append("exit status: want 0, got %d" % st)
        if p.out != nat.out:
            errs += ["stdout differs from a run alone:"] + \
                ["  alone: " + l for l in tail(nat.out)] + \
                ["  under: " + l for l in tail(p.out)]
        doc = load_json(j, "sig_external")
        errs += proc_errors(doc["processes"][0],
                            {D: (96, 3), I: Z, P: Z, RE: Z},
                            [R(D, 96, 3, ["malloc",
                                          "leak_per_signal@sig_external.c",
                                          "main"])])
        if errs:
            raise Fail(errs[0], errs[1:] + tail(p.err))


def t_killed_from_outside(s):
    exe = s.builder.get("sig_external")
    with Processes(s) as ps:
        j = s.tmpfile("report.json")
        p = ps.start([s.ptleak, "--json=" + j, exe])
        p.wait_for("out", rb"^ready$", 20, "ptleak sig_external")
        prog = traced_child(p.pid)
        os.kill(prog, signal.SIGUSR1)
        p.wait_for("out", rb"^got SIGUSR1 #1$", 10, "ptleak sig_external")
        os.kill(prog, signal.SIGKILL)
        st = p.wait(30, "ptleak after its program was SIGKILLed")
        if st != 137:
            raise Fail("exit status: want 137, got %d" % st, tail(p.err))
        doc = load_json(j, "SIGKILL")
        procs = doc["processes"]
        if len(procs) != 1 or procs[0].get("exit") != {"signal": 9}:
            raise Fail("JSON: want one process with exit {'signal': 9}, "
                       "got %s" % [q.get("exit") for q in procs])
        if not re.search(rb"^==%d== (HEAP|LEAK) SUMMARY" % prog, p.err,
                         re.M):
            raise Fail("no text report for the killed program",
                       tail(p.err))


# ---- B5: Ctrl-C at a terminal ------------------------------------------------
def run_in_pty(cmd, env, timeout, on_ready, pass_pid=False):
    """Run CMD as a session leader with a pseudo-terminal as its
    controlling terminal (stdin, stdout, stderr); when "ready" shows up,
    call on_ready(write) (on_ready(write, pid of CMD) with PASS_PID) and
    read to the end. Returns (status, output, whether ready was seen)."""
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR      # no CR before each LF in the output
    termios.tcsetattr(slave, termios.TCSANOW, attrs)

    def ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    try:
        p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                             env=env, start_new_session=True,
                             preexec_fn=ctty)
    except (OSError, subprocess.SubprocessError) as e:
        os.close(master)
        os.close(slave)
        raise Fail("cannot run %s in a pty: %s" % (cmd[0], e))
    os.close(slave)
    out = b""
    ready = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("timed out after %d s in a pty: %s"
                           % (timeout, shell_quote(cmd)), tail(out))
            r, _, _ = select.select([master], [], [], min(left, 0.5))
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:     # EIO: every slave fd closed
                    data = b""
                if not data:
                    break
                out += data
            if not ready and re.search(rb"^ready$", out, re.M):
                ready = True
                if pass_pid:
                    on_ready(lambda b: os.write(master, b), p.pid)
                else:
                    on_ready(lambda b: os.write(master, b))
        rc = p.wait(max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise Fail("timed out after %d s in a pty: %s"
                   % (timeout, shell_quote(cmd)), tail(out))
    finally:
        kill_session(p.pid)
        p.wait()
        os.close(master)
    return exit_status(rc), out, ready


def t_ctrl_c_at_terminal(s):
    exe = s.builder.get("ctrl_c")
    st, out, _ = run_in_pty([exe], s.env, 20, lambda w: w(b"\x03"))
    if st != 3 or b"got SIGINT" not in out:
        raise Fail("ctrl_c alone in a pty: status %d" % st, tail(out))
    j = s.tmpfile("report.json")
    st2, out2, ready = run_in_pty([s.ptleak, "--json=" + j, exe], s.env, 30,
                                  lambda w: w(b"\x03"))
    errs = []
    if not ready:
        errs.append("the program never printed ready")
    if st2 != 3:
        errs.append("exit status: want 3 (the program's), got %d" % st2)
    if b"got SIGINT" not in out2:
        errs.append("Ctrl-C did not reach the program (no \"got SIGINT\")")
    lines = [l for l in out2.splitlines() if not re.match(rb"==\d+==", l)]
    if lines != out.splitlines():
        errs += ["the program's output differs from a run alone:"] + \
            ["  alone: %r" % l for l in out.splitlines()] + \
            ["  under: %r" % l for l in lines]
    if not os.path.exists(j):
        errs.append("no JSON report")
    else:
        errs += proc_errors(load_json(j, "ctrl_c")["processes"][0],
                            {D: (50, 1), I: Z, P: Z, RE: Z},
                            [R(D, 50, 1, ["malloc",
                                          "leak_on_sigint@ctrl_c.c",
                                          "main"])])
    if parse_summary_text(out2.decode("utf-8", "replace")).get(D) != (50, 1):
        errs.append("text: no \"definitely lost: 50 bytes in 1 blocks\"")
    if errs:
        raise Fail(errs[0], errs[1:] + tail(out2))


# ---- Ctrl-Z at a terminal, then SIGCONT (fg) --------------------------------
# A shell's job control in a few lines: the session leader (this script)
# runs its argument as a job in a process group of its own, makes that
# group the terminal's foreground, waits for it to end (not for it to
# stop) and exits with its status (128+S for a signal). The job's group is
# not orphaned, so Ctrl-Z's SIGTSTP really stops it.
JOB_SHELL = r"""
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, os.getpid())
    for sig in (signal.SIGTTOU, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    os.execv(sys.argv[1], sys.argv[1:])
_, st = os.waitpid(pid, 0)
sys.exit(128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st))
"""
CTRL_Z_OUT = [b"ready"] + [b"progress %d/150" % r for r in range(30, 151, 30)] \
    + [b"done"]


def proc_state(pid):
    return proc_status(pid).get("State", "gone")


def ctrl_z_then_fg(s, traced, problems):
    """on_ready for run_in_pty(JOB_SHELL ...): Ctrl-Z, check that the job
    (and with TRACED, ptleak's program) is stopped, stays so for 0.5 s,
    then SIGCONT to the job's group. What went wrong goes to PROBLEMS."""
    def on_ready(write, shell_pid):
        kids = children_of(shell_pid)
        if len(kids) != 1:
            problems.append("the job shell has %d children" % len(kids))
            return
        job = kids[0]
        pids = [job] + ([traced_child(job)] if traced else [])
        write(b"\x1a")
        try:
            wait_until(lambda: all(proc_state(p)[0] in "Tt" for p in pids),
                       5, "Ctrl-Z did not stop the job",
                       ["pid %d: %s" % (p, proc_state(p)) for p in pids])
            time.sleep(0.5)
            late = ["pid %d: %s" % (p, proc_state(p)) for p in pids
                    if proc_state(p)[0] not in "Tt"]
            if late:
                problems.append("the job ran on during its suspension: "
                                + ", ".join(late))
        except Fail as e:
            problems.append("%s: %s" % (e, ", ".join(e.details)))
        os.killpg(job, signal.SIGCONT)
    return on_ready


def t_ctrl_z_at_terminal(s):
    exe = s.builder.get("ctrl_z")
    shell = [s.python, "-c", JOB_SHELL]
    problems = []
    st, out, _ = run_in_pty(shell + [exe], s.env, 20,
                            ctrl_z_then_fg(s, False, problems), pass_pid=True)
    out = out.replace(b"^Z", b"")     # the terminal's echo of Ctrl-Z
    if st != 4 or out.splitlines() != CTRL_Z_OUT or problems:
        raise Fail("ctrl_z alone in a pty: status %d, %s" % (st, problems),
                   tail(out))
    j = s.tmpfile("report.json")
    problems = []
    st2, out2, ready = run_in_pty(shell + [s.ptleak, "--json=" + j, exe],
                                  s.env, 30, ctrl_z_then_fg(s, True, problems),
                                  pass_pid=True)
    errs = problems[:]
    if not ready:
        errs.append("the program never printed ready")
    if st2 != 4:
        errs.append("exit status: want 4 (the program's), got %d" % st2)
    lines = [l for l in out2.replace(b"^Z", b"").splitlines()
             if not re.match(rb"==\d+==", l)]
    if lines != out.splitlines():
        errs += ["the program's output differs from a run alone:"] + \
            ["  alone: %r" % l for l in out.splitlines()] + \
            ["  under: %r" % l for l in lines]
    if not os.path.exists(j):
        errs.append("no JSON report")
    else:
        proc = load_json(j, "ctrl_z")["processes"][0]
        errs += proc_errors(proc, {D: (120, 5), I: Z, P: Z, RE: Z},
                            [R(D, 120, 5, ["malloc", "leak_one@ctrl_z.c",
                                           "main"])])
        heap = {"allocations": 155, "frees": 150, "bytes_allocated": 26445}
        got = proc.get("summary") or {}
        errs += ["summary %s: want %d, got %s" % (k, v, got.get(k))
                 for k, v in heap.items() if got.get(k) != v]
        if proc.get("exit") != {"code": 4}:
            errs.append("JSON exit: want {'code': 4}, got %s"
                        % proc.get("exit"))
    if parse_summary_text(out2.decode("utf-8", "replace")).get(D) != (120, 5):
        errs.append("text: no \"definitely lost: 120 bytes in 5 blocks\"")
    if errs:
        raise Fail(errs[0], errs[1:] + tail(out2))


# ---- B6: a static binary without symbols -----------------------------------
def t_static_stripped(s):
    exe = s.builder.get("leak_stripped_static")
    res, _ = s.ptleak_run(["-q"], [exe], json_file=False, timeout=30)
    nat = s.native([exe], None, 30)
    errs = []
    if exit_status(res.status) != 125:
        errs.append("exit status: want 125, got %d" % exit_status(res.status))
    lines = [l for l in res.stderr.decode("utf-8", "replace").splitlines()
             if l.strip()]
    if len(lines) != 1 or not re.search(r"no allocator.*found", lines[0],
                                        re.I):
        errs.append("want one line on stderr saying no allocator symbol was "
                    "found, got %d lines" % len(lines))
    if res.stdout != nat.stdout or nat.stdout != b"leaked 3 blocks\n":
        errs.append("the program must still run to completion: stdout %r "
                    "(alone %r)" % (res.stdout, nat.stdout))
    if errs:
        raise Fail(errs[0], errs[1:] + tail(res.stderr))


ATTACH_PROC_TESTS = [
    ("attach_server_sigint", t_attach_server_sigint),
    ("attach_server_duration", t_attach_server_duration),
    ("attach_server_interval", t_attach_server_interval),
    ("attach_detach_cycles", t_attach_detach_cycles),
    ("attach_job_stopped", t_attach_job_stopped),
    ("attach_sigterm_ptleak", t_attach_sigterm),
    ("attach_ptleak_crash_restores", t_attach_crash_segv),
    ("attach_ptleak_crash_restores_abrt", t_attach_crash_abrt),
    ("attach_same_as_launch", t_attach_same_as_launch),
    ("attach_err_nonexistent_pid", t_attach_err_nonexistent_pid),
    ("attach_err_traced_by_strace", t_attach_err_traced_by_strace),
    ("attach_err_traced_by_ptleak", t_attach_err_traced_by_ptleak),
    ("attach_err_bad_pid", t_attach_err_bad_pid),
    ("attach_err_pid_and_program", t_attach_err_pid_and_program),
    ("attach_err_not_permitted", t_attach_err_not_permitted),
    ("proc_fork_default", t_fork_default),
    ("proc_fork_follow", t_fork_follow),
    ("proc_spawn_default", t_spawn_default),
    ("proc_spawn_follow", t_spawn_follow),
    ("proc_exec_from_sh", t_exec_from_sh),
    ("proc_exec_wrapper_script", t_exec_wrapper_script),
    ("proc_signals_from_outside", t_signals_from_outside),
    ("proc_killed_from_outside", t_killed_from_outside),
    ("proc_ctrl_c_at_terminal", t_ctrl_c_at_terminal),
    ("proc_ctrl_z_at_terminal", t_ctrl_z_at_terminal),
    ("proc_static_stripped", t_static_stripped),
]


def t_inherit(s):
    # The program inherits what it would inherit without ptleak: the
    # environment (nothing added), file descriptors (a file left open on
    # fd 5 included, nothing of ptleak's), signal dispositions (SIGUSR1
    # ignored) and mask (SIGUSR2 blocked), personality, rlimits and umask.
    exe = s.builder.get("inherit_dump")
    script = ("import os, signal, sys\n"
              "os.umask(0o027)\n"
              "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
              "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n"
              "fd = os.open('/dev/null', os.O_RDONLY)\n"
              "os.dup2(fd, 5)\n"
              "os.execv(sys.argv[1], sys.argv[1:])\n")
    env = dict(s.env, PTLEAK_TEST_MARK="inherit")
    wrap = [sys.executable, "-c", script]
    direct = run(wrap + [exe], DEFAULT_TIMEOUT, env=env)
    traced = run(wrap + [s.ptleak, "-q", "-o", os.devnull, exe], DEFAULT_TIMEOUT,
                 env=env)
    expect_status(direct, 0, "inherit_dump alone: ")
    expect_status(traced, 0, "inherit_dump under ptleak: ")
    for want in (b"env PTLEAK_TEST_MARK=inherit", b"fd 5\n", b"signal 10 ignored",
                 b"signal 12 default blocked", b"umask 027"):
        if want not in direct.stdout:
            raise Fail("inherit_dump alone lacks %r: the test is broken" % want,
                       tail(direct.stdout))
    if traced.stdout != direct.stdout:
        a = direct.stdout.decode().splitlines()
        b = traced.stdout.decode().splitlines()
        diff = ["- " + x for x in a if x not in b] + ["+ " + x for x in b if x not in a]
        raise Fail("the program inherits something else under ptleak", diff[:15])


def t_unit_unwind(s):
    # symbols/ and the unwinder on a stopped process (tests/unit).
    if not s.unit:
        raise Skip("no unit test binary (--unit)")
    res = run([s.unit], 120)
    if res.status != 0 or b"FAIL" in res.stdout:
        raise Fail("unwind_test failed (status %d)" % exit_status(res.status),
                   [l for l in res.stdout.decode(errors="replace").splitlines()
                    if l.startswith("FAIL")][:15] or tail(res.stdout))
    if res.stdout.count(b"\nok ") + res.stdout.startswith(b"ok ") < 20:
        raise Fail("unwind_test ran fewer checks than it has", tail(res.stdout))


SPECIAL = [
    ("inherit", t_inherit),
    ("unit:unwind", t_unit_unwind),
    ("exit_status_200", t_exit_status_200),
    ("exit_status_series", t_no_hang_on_child_exit_codes),
    ("error_exitcode_leak", t_error_exitcode_leak),
    ("error_exitcode_no_leak", t_error_exitcode_no_leak),
    ("error_exitcode_leak_nonzero", t_error_exitcode_leak_nonzero),
    ("error_exitcode_kinds", t_error_exitcode_kinds),
    ("stdin_passthrough", t_stdin_passthrough),
    ("option_output_file", t_output_file),
    ("option_json_space_form", t_json_space_form),
    ("option_quiet", t_quiet),
    ("option_num_callers", t_num_callers),
    ("option_show_below_main", t_show_below_main),
    ("option_show_leak_kinds", t_show_leak_kinds),
    ("option_help", t_help),
    ("option_version", t_version),
    ("option_double_dash", t_double_dash),
    ("options_after_program", t_options_after_program),
    ("bad_missing_path", t_bad_missing_path),
    ("bad_missing_in_path", t_bad_missing_in_path),
    ("bad_directory", t_bad_directory),
    ("bad_not_executable", t_bad_not_executable),
    ("bad_format", t_bad_format),
    ("bad_no_args", t_bad_no_args),
    ("bad_unknown_option", t_bad_unknown_option),
    ("bad_option_values", t_bad_option_values),
    ("bad_output_path", t_bad_output_path),
    ("shebang_script", t_shebang_script),
    ("static_identical", t_static_identical),
] + ATTACH_PROC_TESTS


def all_tests(suite):
    """(name, callable) in run order."""
    tests = []
    for t in LEAKS:
        if t.get("valgrind"):
            tests.append(("valgrind:" + t["name"],
                          lambda t=t: suite.valgrind_test(t)))
        tests.append((t["name"], lambda t=t: suite.leak_test(t)))
    tests += [(n, lambda f=f: f(suite)) for n, f in SPECIAL]
    by_name = {t["name"]: t for t in LEAKS}
    for n in ASAN_SUBSET:
        tests.append(("asan:" + n, lambda t=by_name[n]: asan_test(suite, t)))
    return tests


def asan_test(suite, t):
    if not suite.asan or not os.access(suite.asan, os.X_OK):
        raise Skip("no ASan build of ptleak (%s)" % (suite.asan or "--asan"))
    env = dict(suite.env,
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    saved = suite.env
    suite.env = env
    try:
        suite.leak_test(t, binary=suite.asan)
    finally:
        suite.env = saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ptleak", required=True, help="ptleak binary to test")
    ap.add_argument("--asan", help="ASan/UBSan build of ptleak (optional)")
    ap.add_argument("--build", default="build",
                    help="build directory (fixtures go to BUILD/fixtures)")
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                    help="run only tests whose name contains SUBSTRING "
                    "(repeatable)")
    ap.add_argument("--unit", help="unit test binary (tests/unit/unwind_test)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    suite = Suite(args)
    if not os.access(suite.ptleak, os.X_OK):
        print("warning: %s is not an executable: every test will fail"
              % suite.ptleak, flush=True)
    tests = [(n, f) for n, f in all_tests(suite)
             if not args.k or any(k in n for k in args.k)]
    start = time.monotonic()
    try:
        for name, fn in tests:
            t0 = time.monotonic()
            try:
                fn()
            except Skip as e:
                suite.skipped += 1
                print("skip %s: %s" % (name, e), flush=True)
                continue
            except Fail as e:
                suite.failed += 1
                print("FAIL %s: %s" % (name, e), flush=True)
                for d in e.details:
                    print("    " + d, flush=True)
                continue
            suite.passed += 1
            print("ok %s%s" % (name, " (%.1f s)" % (time.monotonic() - t0)
                               if args.verbose else ""), flush=True)
    finally:
        shutil.rmtree(suite.tmp, ignore_errors=True)
    if args.verbose or suite.skipped:
        print("(%d skipped, %.0f s)" % (suite.skipped,
                                        time.monotonic() - start))
    print("%d passed, %d failed" % (suite.passed, suite.failed))
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
