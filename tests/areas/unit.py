"""Unit tests in C (tests/unit/NAME_test.c, built by make into
BUILD/unit/NAME_test), each run as the test unit:NAME (tests/run.py -k
unit). A unit test prints one "ok ..." or "FAIL ..." line per check and
exits 0 only if every check passed."""
import glob
import os

from lib.fixtures import ROOT
from lib.proc import Fail, Skip, exit_status, run, tail
from lib.runner import Test

# Checks a unit test must at least run (a test that stopped early passes
# nothing).
MIN_CHECKS = {"unwind": 20, "glibc_heap": 33, "heap": 32, "stacks": 13, "relocate": 32,
              "timeline": 12, "probe_walk": 3, "cfi_rows": 10}
# Arguments of a unit test: "@B" is built fixture B.
ARGS = {"glibc_heap": ["@preattach_heap", "@preattach_heap_o2",
                       "@preattach_heap_static"]}


def unit_test(name):
    def fn(s):
        if not s.unit_dir:
            raise Skip("no unit test directory (--unit BUILD/unit)")
        exe = os.path.join(s.unit_dir, name + "_test")
        if not os.access(exe, os.X_OK):
            raise Fail("%s not built (make check builds it)" % exe)
        # With --sanitized, the unit tests are the sanitizer builds too.
        res = run([exe] + s.resolve(ARGS.get(name, [])), 120,
                  env=s.ptleak_env)
        s.check_sanitizer(res.stderr)
        out = res.stdout.decode(errors="replace").splitlines()
        fails = [l for l in out if l.startswith("FAIL")]
        if res.status != 0 or fails:
            raise Fail("%s_test failed (status %d)"
                       % (name, exit_status(res.status)),
                       fails[:15] or tail(res.stdout) + tail(res.stderr))
        oks = sum(1 for l in out if l.startswith("ok "))
        if oks < MIN_CHECKS.get(name, 1):
            raise Fail("%s_test ran %d checks, fewer than it has (%d)"
                       % (name, oks, MIN_CHECKS.get(name, 1)),
                       tail(res.stdout))
    return fn


def tests():
    found = sorted(glob.glob(os.path.join(ROOT, "tests", "unit",
                                          "*_test.c")))
    return [Test("unit:" + os.path.basename(p)[:-len("_test.c")],
                 unit_test(os.path.basename(p)[:-len("_test.c")]), 180,
                 area="unit") for p in found]
