#!/usr/bin/env python3
"""ptleak's test suite: real programs run under ptleak, exact numbers compared.

    python3 tests/run.py --ptleak build/ptleak --build build \\
        [--unit build/unit] [--sanitized] [-j N] [-k SUBSTRING]... [-v]

What runs
  * fixtures/: real programs, built on demand into BUILD/fixtures (gcc/g++
    -g -O0 -fno-omit-frame-pointer, never with sanitizers; -static,
    -static-pie, musl-gcc; Go with go build). Each states in its header
    comment how it is built (@build) and what each of its tests must
    report (@test, @expect): the LEAK SUMMARY per kind, heap totals, the
    loss records with their stacks as function names, exit status, stdout.
    The format is in tests/lib/fixtures.py.
  * Each @test runs its command alone first (stdout, 0x... masked, and the
    status are the reference), then under ptleak --json, and compares exit
    status, stdout, the JSON summary/heap/records (largest first), and the
    text report (LEAK SUMMARY lines, "in loss record K of N" for each
    shown record, the ==PID== prefix on every line that is not the
    program's own). With @valgrind, valgrind --leak-check=full runs on the
    same command (the oracle): test valgrind:NAME checks that it agrees
    with the fixture, and NAME that ptleak agrees with it.
  * tests/areas/*.py: the tests a table cannot say, by area: cli (options,
    exit statuses, bad input), attach (ptleak -p on processes the test
    starts and talks to), processes (fork, spawn, exec, signals, terminals),
    signals (signals sent to ptleak itself, real servers), static, unit
    (the C unit tests of tests/unit/), pictures (--pprof read by go tool
    pprof, --folded, --html opened by headless Chromium), selftest (the
    runner's own checks can fail).
  * Tests run in parallel (-j, default: the machine's cores); tests marked
    exclusive (timing-sensitive) run alone. Each has a time limit: on
    expiry every process it started is killed with its session and it
    FAILs. A test that raises an unexpected exception FAILs with its
    traceback; the run goes on.
  * Both event sources: the tests of the areas that depend on it (leaks,
    attach, processes, static, signals, live) run once with ptleak
    --mode=trap and once with --mode=fast (named fast:NAME), PTLEAK_MODE
    being set in every environment the suite uses; --mode=trap or
    --mode=fast runs one.
  * --sanitized: PTLEAK is the ASan/UBSan build (make check-asan): any
    sanitizer report on its stderr fails the test.

Output: one line per test as it ends, "ok NAME", "FAIL NAME: reason"
(+ indented details) or "skip NAME: reason", then exactly
"N passed, N failed" (", N skipped" follows when some were).
Exit status 1 if anything failed.

Adding a test
  * A program with leaks to compare: a fixture in fixtures/ with an
    @build line and an @test block in its header comment. Nothing else.
  * A test that needs more (a process to talk to, a signal to send, a
    terminal): a function in the area file it belongs to, decorated with
    @test("NAME") (lib.runner); its expected leaks go in the fixture as an
    @expect NAME block, read with s.expect(NAME) and compared with
    lib.report.expect_errors().
  * A C unit test: tests/unit/NAME_test.c with a Makefile rule building
    BUILD/unit/NAME_test; it runs as unit:NAME.
Run one test: python3 tests/run.py --ptleak build/ptleak --build build -k NAME
"""
import argparse
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from lib import runner                                     # noqa: E402
from lib.fixtures import Catalog, ParseError               # noqa: E402
from lib.proc import Context, Fail, Skip, set_context      # noqa: E402
from lib.suite import Suite                                # noqa: E402
from areas import (attach, cli, formats, leaks, live,      # noqa: E402,F401
                   pictures, processes, selftest, signals, static,
                   suppressions,
                   unit)


def all_tests(catalog):
    tests = leaks.tests(catalog) + list(runner.REGISTRY) + unit.tests()
    seen = set()
    for t in tests:
        if t.name in seen:
            raise ParseError("two tests named %s" % t.name)
        seen.add(t.name)
    return tests


# The areas whose tests depend on how ptleak sees allocator calls: they
# run in both modes. (valgrind:NAME runs no ptleak; options, suppressions
# and the unit tests do not depend on the event source.) signals: what a
# signal to ptleak leaves of the program depends on what is in it (int3s,
# or the probe); live: leak checks, --interval and --track-mmap.
MODE_AREAS = ("leaks", "attach", "processes", "static", "signals", "live")


def set_mode(suite, mode):
    """PTLEAK_MODE (ptleak's --mode default) in every environment the
    suite runs things with, the program's runs alone included, so that
    both see the same environment."""
    suite.mode = mode
    suite.env["PTLEAK_MODE"] = mode
    suite.ptleak_env["PTLEAK_MODE"] = mode


def fast_variants(args, catalog, suite, tests):
    """fast:NAME for each test of MODE_AREAS, run with a suite in fast
    mode that shares the fixtures, the programs' runs alone and the
    valgrind oracles with SUITE."""
    fast = Suite(args, catalog)
    fast.builder, fast.natives, fast.oracles = (suite.builder, suite.natives,
                                                suite.oracles)
    set_mode(fast, "fast")
    out = []
    for t in tests:
        if t.area not in MODE_AREAS or t.name.startswith("valgrind:"):
            continue
        out.append(runner.Test("fast:" + t.name,
                               lambda _s, fn=t.fn: fn(fast), t.limit,
                               t.exclusive, t.area,
                               t.group))
    suite.also_cleanup = fast
    return out


def prebuild(suite, names, jobs):
    """Build the fixtures NAMES, JOBS at a time; errors are left for the
    tests that need them to report."""
    names = list(names)
    lock = threading.Lock()

    def worker():
        set_context(Context("build"))
        while True:
            with lock:
                if not names:
                    return
                n = names.pop(0)
            try:
                suite.builder.get(n)
            except (Fail, Skip):
                pass
    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ptleak", required=True, help="ptleak binary to test")
    ap.add_argument("--sanitized", action="store_true",
                    help="PTLEAK is the ASan/UBSan build: sanitizer reports "
                    "fail")
    ap.add_argument("--build", default="build",
                    help="build directory (fixtures go to BUILD/fixtures)")
    ap.add_argument("--unit", metavar="DIR",
                    help="directory of the built C unit tests (BUILD/unit)")
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                    help="run only tests whose name contains SUBSTRING "
                    "(repeatable)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                    help="tests at a time (default: the number of cores)")
    ap.add_argument("--mode", choices=("trap", "fast", "both"), default="both",
                    help="ptleak's event source (--mode); both: every test "
                    "that depends on it runs in both, those in fast mode "
                    "named fast:NAME (default)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    try:
        catalog = Catalog()
        tests = [t for t in all_tests(catalog)
                 if not args.k or any(k in t.name for k in args.k)]
    except ParseError as e:
        print("FAIL fixtures: %s" % e)
        print("0 passed, 1 failed")
        return 1
    suite = Suite(args, catalog)
    first = "fast" if args.mode == "fast" else "trap"
    set_mode(suite, first)
    if args.mode == "both":
        tests = tests + fast_variants(args, catalog, suite, tests)
    if not os.access(suite.ptleak, os.X_OK):
        print("warning: %s is not an executable: every test will fail"
              % suite.ptleak, flush=True)
    # Every fixture for a whole run; with -k those the selected @tests
    # name (the area tests build theirs when they need them).
    if args.k:
        wanted = {a[1:] for t in tests for e in [catalog.expects.get(
            t.name.split(":")[-1])] if e and e.cmd
            for a in e.cmd if a.startswith("@") and a != "@python"}
    else:
        wanted = set(catalog.builds)
    prebuild(suite, sorted(wanted), args.jobs)

    def out(text):
        print(text, flush=True)
    r = runner.Runner(tests, suite, args.jobs, args.verbose, out,
                      times_file=os.path.join(suite.builder.out_dir,
                                              "test-times.json"))
    try:
        r.run()
    finally:
        suite.cleanup()
        if getattr(suite, "also_cleanup", None):
            suite.also_cleanup.cleanup()
    if r.failed:
        print("failed: " + " ".join(sorted(r.failed)))
    print(r.tally(), flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
