"""The runner's own checks must be able to fail (tests/run.py -k self):
a wrong expectation, a report line without its ==PID== prefix, records
out of order, an exception inside a test, a hung test, a typo in a
fixture's header."""
import copy
import os
import tempfile
import time

from lib.fixtures import Catalog, ParseError
from lib.proc import Fail, run
from lib.report import D, I, R, RE, order_errors, text_errors
from lib.runner import Runner, Test, test

GOOD_TEXT = ("==7== LEAK SUMMARY:\n"
             "==7==    definitely lost: 60 bytes in 2 blocks\n"
             "==7==    indirectly lost: 0 bytes in 0 blocks\n")


@test("selftest_wrong_expectation_fails")
def t_wrong_expectation(s):
    # valgrind_kinds with one number off by one, one function renamed:
    # each must FAIL the generic test (and the true one pass).
    good = s.expect("valgrind_kinds")
    s.leak_test(good)
    bad_sum = copy.deepcopy(good)
    bad_sum.summary[D] = (61, 2)
    bad_stack = copy.deepcopy(good)
    bad_stack.records[1] = R(D, 50, 1, ["malloc", "not_main"])
    bad_heap = copy.deepcopy(good)
    bad_heap.heap["allocations"] = 4
    for what, e in (("summary", bad_sum), ("stack", bad_stack),
                    ("heap", bad_heap)):
        try:
            s.leak_test(e)
        except Fail:
            continue
        raise Fail("a wrong %s expectation passed" % what)


@test("selftest_text_checks_fail")
def t_text_checks(s):
    summary = {D: (60, 2)}
    if text_errors(GOOD_TEXT, summary, [], pid=7):
        raise Fail("a good text report fails: %s"
                   % text_errors(GOOD_TEXT, summary, [], pid=7))
    for what, text, pid in (
            ("a line without ==PID==",
             GOOD_TEXT + "   still reachable: 1 bytes in 1 blocks\n", 7),
            ("a line of another pid", GOOD_TEXT, 8),
            ("a wrong summary",
             GOOD_TEXT.replace("60 bytes", "61 bytes"), 7)):
        if not text_errors(text, summary, [], pid=pid):
            raise Fail("the text check passes %s" % what)
    if not order_errors([{"bytes": 10}, {"bytes": 20}]):
        raise Fail("records smallest first pass the order check")
    if order_errors([{"bytes": 16, "indirect_bytes": 144},
                     {"bytes": 144, "kind": "indirectly_lost"}]):
        raise Fail("a definite record ranked with its indirect bytes "
                   "fails the order check")


@test("selftest_runner_survives")
def t_runner_survives(s):
    # A test that raises something unexpected, one that hangs: the run
    # goes on, both FAIL, and the tally line is exact.
    lines = []

    def boom(_):
        raise KeyError("oops")

    def hang(_):
        run(["sleep", "60"], 100)

    def fine(_):
        pass
    r = Runner([Test("boom", boom), Test("hang", hang, limit=1),
                Test("fine", fine)], s, 2, False, lines.append)
    t0 = time.monotonic()
    r.run()
    if time.monotonic() - t0 > 10:
        raise Fail("the hung test was not stopped at its time limit")
    text = "\n".join(lines)
    if r.tally() != "1 passed, 2 failed" or "FAIL boom" not in text or \
            "KeyError" not in text or "FAIL hang: time limit" not in text:
        raise Fail("runner: want boom and hang FAIL, fine ok, got %r"
                   % r.tally(), lines)


@test("selftest_fixture_format")
def t_fixture_format(s):
    # The header format: a good block parses to what it says; a typo, a
    # record of an unchecked kind, a test stated twice are errors, not
    # silently fewer checks.
    d = tempfile.mkdtemp(dir=s.tmp)
    good = ("/*\n * @build demo -pthread\n *\n * @test demo_a @demo a b\n"
            " * @summary definite 6_000/2 indirect 0/0 reachable -\n"
            " * @record definite 6000/2: malloc < f@demo.c < \\\n"
            " *     main\n * @status 3\n * @stdout one\n * @stdout two\n"
            " */\n")
    with open(os.path.join(d, "demo.c"), "w") as f:
        f.write(good)
    c = Catalog(d)
    e = c.expects["demo_a"]
    want = (["@demo", "a", "b"], {D: (6000, 2), I: (0, 0), RE: None},
            [R(D, 6000, 2, ["malloc", "f@demo.c", "main"])], 3,
            b"one\ntwo\n", ["-pthread"])
    got = (e.cmd, e.summary, e.records, e.status, e.stdout,
           c.builds["demo"].flags)
    if got != want:
        raise Fail("the format parsed wrong", ["want %s" % (want,),
                                               "got  %s" % (got,)])
    for what, text in (
            ("an unknown kind", good.replace("indirect 0/0", "indirekt 0/0")),
            ("a bad size", good.replace("6_000/2", "6000")),
            ("a record of an unchecked kind",
             good.replace("@record definite", "@record possible")),
            ("no definite summary", good.replace("definite 6_000/2 ", "")),
            ("a test stated twice", good + good.replace("@build demo",
                                                        "@build demo2"))):
        with open(os.path.join(d, "demo.c"), "w") as f:
            f.write(text)
        try:
            Catalog(d)
        except ParseError:
            continue
        raise Fail("the format accepts %s" % what)


@test("selftest_names_defined")
def t_names_defined(s):
    # Every global name a function of the runner or of an area file uses
    # exists: a failure path that would die of a NameError (a helper
    # ported without its import) fails here, before it hides a failure.
    import builtins
    import importlib
    import symtable
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    missing = []
    for sub in ("lib", "areas"):
        for f in sorted(os.listdir(os.path.join(here, sub))):
            if not f.endswith(".py"):
                continue
            path = os.path.join(here, sub, f)
            mod = importlib.import_module("%s.%s" % (sub, f[:-3]))
            table = symtable.symtable(open(path).read(), path, "exec")
            todo = list(table.get_children())
            while todo:
                t = todo.pop()
                todo += t.get_children()
                for sym in t.get_symbols():
                    name = sym.get_name()
                    if (sym.is_global() and sym.is_referenced()
                            and not hasattr(mod, name)
                            and not hasattr(builtins, name)):
                        missing.append("%s/%s: %s uses %s" % (
                            sub, f, t.get_name(), name))
    if missing:
        raise Fail("undefined names: " + missing[0], missing[1:])
