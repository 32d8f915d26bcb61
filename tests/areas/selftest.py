"""The runner's own checks must be able to fail (tests/run.py -k self):
a wrong expectation, a report line without its ==PID== prefix, records
out of order, an exception inside a test, a hung test."""
import copy
import time

from lib.proc import Fail, run
from lib.report import R, D, order_errors, text_errors
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
