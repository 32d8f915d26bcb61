"""The tests the fixtures state (@test lines, see lib/fixtures.py): for
each, ptleak on its command compared with its expectation, and with
@valgrind the oracle's own test valgrind:NAME (valgrind must agree with
the fixture)."""
from lib.runner import Test


def tests(catalog):
    out = []
    for e in catalog.tests():
        # A time limit for the whole test: the program alone, valgrind
        # and ptleak, each bounded by the run's own timeout.
        limit = 3 * max(e.timeout, 120) + 60
        if e.valgrind:
            out.append(Test("valgrind:" + e.name,
                            lambda s, e=e: s.valgrind_test(e), limit,
                            area="leaks"))
        out.append(Test(e.name, lambda s, e=e: s.leak_test(e), limit,
                        area="leaks", group=e.group,
                        exclusive=e.exclusive))
    return out
