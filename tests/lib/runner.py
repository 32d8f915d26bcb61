"""Running the tests: selection, parallel workers, time limits, the tally.

Tests are registered with @test(NAME, ...) in the area files (tests/areas)
or made from the fixtures' @test lines (tests/areas/leaks.py). Each runs in
a thread of its own, up to -j at a time; a test marked exclusive runs with
no other test beside it (timing-sensitive ones), and tests of one group
never run at the same time as each other. Every test has a time
limit: when it expires, everything the test started is killed (each
process's whole session), the test counts as FAIL and the run goes on. A
test that raises anything but Fail/Skip FAILs with its traceback.

The output: one line per finished test ("ok NAME", "FAIL NAME: reason"
with indented details, "skip NAME: reason"), then exactly
"N passed, N failed" (", N skipped" follows when some were).
"""
import json
import queue
import threading
import time
import traceback

from lib.proc import Context, Fail, Skip, set_context

DEFAULT_LIMIT = 300
REGISTRY = []


class Test:
    def __init__(self, name, fn, limit=DEFAULT_LIMIT, exclusive=False,
                 area=None, group=None):
        self.name, self.fn, self.limit = name, fn, limit
        self.exclusive = exclusive
        self.area = area
        self.group = group


def test(name, limit=DEFAULT_LIMIT, exclusive=False, group=None):
    """Decorator: register FN(suite) as test NAME. LIMIT: its time limit
    in seconds; EXCLUSIVE: nothing else runs beside it; GROUP: no other
    test of the group runs beside it."""
    def register(fn):
        REGISTRY.append(Test(name, fn, limit, exclusive,
                             fn.__module__.rsplit(".", 1)[-1], group))
        return fn
    return register


class Outcome:
    def __init__(self, name, state, msg="", details=(), elapsed=0.0):
        self.name, self.state, self.msg = name, state, msg
        self.details, self.elapsed = list(details), elapsed


def run_one(t, suite, ctx):
    """T's outcome; never raises."""
    set_context(ctx)
    t0 = time.monotonic()
    try:
        t.fn(suite)
        state, msg, details = "ok", "", []
    except Skip as e:
        state, msg, details = "skip", str(e), []
    except Fail as e:
        state, msg, details = "FAIL", str(e), e.details
    except BaseException as e:     # a bug in the test: FAIL, run on
        state = "FAIL"
        msg = "unexpected %s: %s" % (type(e).__name__, e)
        details = traceback.format_exc().rstrip().splitlines()
    finally:
        set_context(None)
    return Outcome(t.name, state, msg, details, time.monotonic() - t0)


class Runner:
    def __init__(self, tests, suite, jobs, verbose, out=print,
                 times_file=None):
        self.tests, self.suite = tests, suite
        self.jobs = max(1, jobs)
        self.verbose = verbose
        self.out = out
        self.times_file = times_file
        self.counts = {"ok": 0, "FAIL": 0, "skip": 0}
        self.failed = []

    def report(self, o):
        if o.state == "ok":
            line = "ok %s" % o.name
            if self.verbose:
                line += " (%.1f s)" % o.elapsed
        else:
            line = "%s %s: %s" % (o.state, o.name, o.msg)
        lines = [line] + ["    " + d for d in o.details]
        self.out("\n".join(lines))
        self.counts[o.state] += 1
        if o.state == "FAIL":
            self.failed.append(o.name)

    def order(self):
        """Longest first (from the last run's times), exclusive ones last:
        the parallel part ends as evenly as it can."""
        times = {}
        if self.times_file:
            try:
                times = json.load(open(self.times_file))
            except (OSError, ValueError):
                times = {}
        # Without times, the tests that drive processes (seconds each)
        # before the fixtures' own (mostly well under a second).
        guess = {"attach": 3.0, "processes": 2.0}
        return sorted(self.tests, key=lambda t: (
            t.exclusive, -times.get(t.name, guess.get(t.area, 1.0))))

    def run(self):
        pending = self.order()
        running = {}            # name -> (test, ctx, start)
        done = queue.Queue()
        times = {}
        while pending or running:
            # Start what may start.
            while pending and len(running) < self.jobs:
                if any(r[0].exclusive for r in running.values()):
                    break
                busy = {r[0].group for r in running.values()}
                t = next((t for t in pending
                          if t.group is None or t.group not in busy), None)
                if t is None or (t.exclusive and running):
                    break
                pending.remove(t)
                ctx = Context(t.name)
                running[t.name] = (t, ctx, time.monotonic())
                th = threading.Thread(
                    target=lambda t=t, ctx=ctx: done.put(
                        run_one(t, self.suite, ctx)),
                    name=t.name, daemon=True)
                th.start()
            # Wait for one to end, or for a time limit.
            now = time.monotonic()
            next_limit = min(start + t.limit + ctx.extra_time - now
                             for t, ctx, start in running.values())
            try:
                o = done.get(timeout=max(0.05, min(next_limit, 1.0)))
            except queue.Empty:
                o = None
            if o is not None:
                if o.name in running:   # not one already given up
                    del running[o.name]
                    times[o.name] = round(o.elapsed, 2)
                    self.report(o)
                continue
            now = time.monotonic()
            for name, (t, ctx, start) in list(running.items()):
                if now - start > t.limit + ctx.extra_time:
                    ctx.kill_all()
                    del running[name]
                    times[name] = round(now - start, 2)
                    self.report(Outcome(
                        name, "FAIL", "time limit of %d s exceeded: killed "
                        "with every process it started" % t.limit,
                        elapsed=now - start))
        if self.times_file:
            try:
                old = json.load(open(self.times_file))
            except (OSError, ValueError):
                old = {}
            old.update(times)
            try:
                with open(self.times_file, "w") as f:
                    json.dump(old, f, indent=0, sort_keys=True)
            except OSError:
                pass
        return self.counts

    def tally(self):
        c = self.counts
        line = "%d passed, %d failed" % (c["ok"], c["FAIL"])
        if c["skip"]:
            line += ", %d skipped" % c["skip"]
        return line
