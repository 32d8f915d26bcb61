"""While the program runs (tests/run.py -k live): the banner at the start,
--interval in launch mode, leak checks on demand (kill -USR1 to ptleak,
ptleak --check PID) in both modes with exact numbers while threads
allocate at full speed, and --track-mmap's regions."""
import re
import signal
import time

from lib.checks import (attach_permitted, expect_alive_untraced,
                        one_line_error, traced_child)
from lib.proc import Fail, expect_status, run, tail, wait_until
from lib.report import D, P, RE, expect_errors, fmt, load_json
from lib.runner import test
from lib.suite import Processes

def play(prog, n, what):
    """Round N of check_live.c; returns what it says it lost so far."""
    prog.write(b"%d\n" % n)
    m = prog.wait_for("out", rb"^round %d lost (\d+) (\d+)$" % n, 20, what)
    return int(m.group(1)), int(m.group(2))


def wait_check(p, pid, n, what):
    """The text of check N, once ptleak wrote all of it."""
    pat = re.compile(rb"^==%d== LEAK CHECK %d \(.*?^==%d== END OF LEAK CHECK "
                     rb"%d$" % (pid, n, pid, n), re.M | re.S)
    found = wait_until(lambda: pat.search(p.err), 20,
                       "%s: check %d not written" % (what, n),
                       tail(p.err, 20))
    return found.group(0).decode("utf-8", "replace")


def delta_re(v):
    """writer_delta's form: +0, +1,000, -250."""
    return ("\\+" if v >= 0 else "-") + fmt(abs(v))


def record_line(pid, nbytes, dbytes, blocks, dblocks, kind, change):
    """The regex of a check's loss record line."""
    return (r"^==%d== %s \(%s\) bytes in %s \(%s\) blocks are %s in loss "
            r"record \d+ of \d+ \(%s\)$" % (pid, fmt(nbytes), delta_re(dbytes),
                                         fmt(blocks), delta_re(dblocks), kind,
                                         change))


def summary_line(pid, kind, nbytes, dbytes, blocks, dblocks):
    return (r"^==%d==\s+%s: %s \(%s\) bytes in %s \(%s\) blocks$" % (
        pid, kind, fmt(nbytes), delta_re(dbytes), fmt(blocks),
        delta_re(dblocks)))


def check_text(text, pid, lines, what):
    errs = [l for l in lines if not re.search(l, text, re.M)]
    if errs:
        raise Fail("%s: the check lacks %r" % (what, errs[0]),
                   ["missing: %r" % e for e in errs[1:]] +
                   ["| " + l for l in text.splitlines()])


def json_check(doc, n, what):
    checks = [c for c in doc.get("checks") or [] if c.get("check") == n]
    if len(checks) != 1:
        raise Fail("%s: want one JSON check %d, got %d" % (what, n,
                                                           len(checks)))
    return checks[0]


def json_record(c, kind, stack_fn, before=False):
    for r in c.get("leaks") or []:
        fns = [f.get("function") for f in r.get("stack") or []]
        if r.get("kind") == kind and r.get("before_attach") is before and \
                (before or stack_fn in fns):
            return r
    return None


def expect_record(c, kind, fn, want, what, before=False):
    """WANT: (bytes, blocks, delta_bytes, delta_blocks, change)."""
    r = json_record(c, kind, fn, before)
    got = r and (r.get("bytes"), r.get("blocks"), r.get("delta_bytes"),
                 r.get("delta_blocks"), r.get("change"))
    if got != want:
        raise Fail("%s: JSON check %s record %s: want %s, got %s"
                   % (what, c.get("check"), fn or "before the attach", want,
                      got))


@test("live_banner_at_start")
def t_banner_at_start(s):
    # The banner is out as soon as tracing begins; -q has none at all.
    exe = s.builder.get("check_live")
    for quiet in (False, True):
        with Processes(s) as ps:
            p = ps.start([s.ptleak] + (["-q"] if quiet else []) + [exe, "60"],
                         stdin=True)
            p.wait_for("out", rb"^ready$", 20, "check_live under ptleak")
            pid = traced_child(p.pid)
            if quiet:
                time.sleep(0.2)	# time for a line that must not come
            else:
                # Written before the program ran; the test's reader of
                # stderr may just be behind its reader of stdout.
                p.wait_for("err", rb"^==%d== Command: " % pid, 10,
                           "the banner while the program runs")
            err = p.err.decode("utf-8", "replace")
            want = ["==%d== ptleak-0.1, an out-of-process leak finder" % pid,
                    "==%d== Command: %s 60" % (pid, exe)]
            if quiet and err.strip():
                raise Fail("-q: nothing may be on stderr while it runs",
                           tail(p.err))
            if not quiet and err.splitlines()[:2] != want:
                raise Fail("the banner must be out while the program runs: "
                           "want %s" % want, tail(p.err))
            p.close_stdin()
            st = p.wait(30, "ptleak check_live")
            if st != 0:
                raise Fail("exit status %d, want 0" % st, tail(p.err))
            text = p.err.decode("utf-8", "replace")
            if not quiet and text.count("ptleak-0.1, an out-of-process") != 1:
                raise Fail("the banner must be written once", tail(p.err))
            if not re.search(r"^==%d== LEAK SUMMARY:$" % pid, text, re.M):
                raise Fail("no report at the exit", tail(p.err))


@test("live_interval_launch")
def t_interval_launch(s):
    # --interval in launch mode: the same periodic top sites as with -p.
    exe = s.builder.get("check_live")
    with Processes(s) as ps:
        p = ps.start([s.ptleak, "--interval=0.3", exe, "60"], stdin=True)
        p.wait_for("out", rb"^ready$", 20, "check_live under ptleak")
        pid = traced_child(p.pid)
        play(p, 1, "round 1")
        site = (rb"^==%d==   500 bytes in 5 blocks \([+-][\d,]+ bytes\) at "
                rb"malloc < leak_a \(check_live\.c:\d+\) < play_round "
                rb"\(check_live\.c:\d+\)" % pid)
        p.wait_for("err", site, 10, "--interval=0.3: the leak_a site")
        head = (rb"^==%d== \[t=[\d.]+s\] live: [\d,]+ bytes in [\d,]+ blocks "
                rb"\([+-][\d,]+ bytes, [+-][\d,]+ blocks in [\d.]+s\)$" % pid)
        if not re.search(head, p.err, re.M):
            raise Fail("no \"[t=...s] live: ...\" line", tail(p.err))
        p.close_stdin()
        st = p.wait(30, "ptleak --interval")
        if st != 0:
            raise Fail("exit status %d, want 0" % st, tail(p.err))


@test("live_check_launch", exclusive=True)
def t_check_launch(s):
    exe = s.builder.get("check_live")
    what = "check (launch)"
    j = s.tmpfile("check.json")
    with Processes(s) as ps:
        p = ps.start([s.ptleak, "--json=" + j, "--show-leak-kinds=all", exe,
                      "60"], stdin=True)
        p.wait_for("out", rb"^ready$", 20, "check_live under ptleak")
        pid = traced_child(p.pid)
        # Round 1, then SIGUSR1 to ptleak while 3 threads allocate.
        if play(p, 1, what) != (500, 5):
            raise Fail("%s: check_live lost other than 500 bytes in 5 blocks"
                       % what)
        p.signal(signal.SIGUSR1)
        t = wait_check(p, pid, 1, what)
        check_text(t, pid, [
            record_line(pid, 500, 500, 5, 5, "definitely lost", "new"),
            record_line(pid, 1000, 1000, 4, 4, "still reachable", "new"),
            summary_line(pid, "definitely lost", 500, 500, 5, 5),
            summary_line(pid, "possibly lost", 0, 0, 0, 0),
            r"changes since the start:$"], what + ", check 1")
        # Round 2, then ptleak --check PROGRAM from "another terminal".
        play(p, 2, what)
        res = run([s.ptleak, "--check", str(pid)], 20, env=s.env)
        if res.status != 0 or not re.search(
                rb"leak check asked of ptleak \(process %d\)" % p.pid,
                res.stderr):
            raise Fail("%s: ptleak --check %d: status %d" % (what, pid,
                                                           res.status),
                       tail(res.stderr))
        t = wait_check(p, pid, 2, what)
        check_text(t, pid, [
            record_line(pid, 800, 300, 8, 3, "definitely lost", "increased"),
            record_line(pid, 80, 80, 2, 2, "definitely lost", "new"),
            record_line(pid, 750, -250, 3, -1, "still reachable",
                        "decreased"),
            summary_line(pid, "definitely lost", 880, 380, 10, 5),
            r"changes since check 1:$"], what + ", check 2")
        # Round 3 changes nothing; SIGUSR1 again.
        play(p, 3, what)
        p.signal(signal.SIGUSR1)
        t = wait_check(p, pid, 3, what)
        check_text(t, pid, [summary_line(pid, "definitely lost", 880, 0, 10,
                                         0)], what + ", check 3")
        for n in ("leak_a", "leak_b"):
            if re.search(r"by 0x[0-9A-F]+: %s " % n, t):
                raise Fail("%s: check 3 shows %s's record, unchanged"
                           % (what, n), t.splitlines())
        p.close_stdin()
        st = p.wait(30, what)
        if st != 0:
            raise Fail("%s: exit status %d, want 0" % (what, st), tail(p.err))
    doc = load_json(j, what)
    proc = doc["processes"][0]
    errs = expect_errors(proc, s.expect("check_live"))
    if errs:
        raise Fail("%s: the report at the exit: %s" % (what, errs[0]),
                   errs[1:])
    c1, c2, c3 = (json_check(doc, n, what) for n in (1, 2, 3))
    expect_record(c1, D, "leak_a", (500, 5, 500, 5, "new"), what)
    expect_record(c2, D, "leak_a", (800, 8, 300, 3, "increased"), what)
    expect_record(c2, D, "leak_b", (80, 2, 80, 2, "new"), what)
    expect_record(c2, RE, "keep", (750, 3, -250, -1, "decreased"), what)
    expect_record(c3, D, "leak_a", (800, 8, 0, 0, "unchanged"), what)
    for c, want in ((c1, (500, 5)), (c2, (880, 10)), (c3, (880, 10))):
        sm = c["summary"][D]
        if (sm["bytes"], sm["blocks"]) != want or c["summary"][P]["blocks"]:
            raise Fail("%s: JSON check %d summary: want %s definitely lost, "
                       "none possibly, got %s" % (what, c["check"], want,
                                                  c["summary"]))
        if c.get("pid") != pid or not isinstance(c.get("stopped_ms"), float):
            raise Fail("%s: JSON check %d: pid/stopped_ms" % (what,
                                                              c["check"]))


@test("live_check_attach", exclusive=True)
def t_check_attach(s):
    # Round 1 before the attach: its leaks come from glibc's heap (usable
    # size 104 for malloc(100)); round 2 after; a check sees both.
    attach_permitted()
    exe = s.builder.get("check_live")
    what = "check (attach)"
    j = s.tmpfile("check.json")
    with Processes(s) as ps:
        prog = ps.start([exe, "60"], stdin=True)
        prog.wait_for("out", rb"^ready$", 10, "check_live")
        play(prog, 1, what)
        # Three threads allocate at full speed: one may be stopped in the
        # middle of malloc or free, its tcache or a bin half updated; ptleak
        # then reads the heap again after a moment (attach_preattach_busy).
        p = ps.start([s.ptleak, "--json=" + j, "-p", str(prog.pid)])
        p.wait_for("err", rb"were live in glibc's heap", 20,
                   "ptleak -p check_live")
        pid = prog.pid
        play(prog, 2, what)
        res = run([s.ptleak, "--check", str(pid)], 20, env=s.env)
        expect_status(res, 0, "ptleak --check: ")
        t = wait_check(p, pid, 1, what)
        check_text(t, pid, [
            record_line(pid, 520, 520, 5, 5, "definitely lost", "new")
            + r"\n==%d==    allocated before ptleak attached$" % pid,
            record_line(pid, 300, 300, 3, 3, "definitely lost", "new"),
            record_line(pid, 80, 80, 2, 2, "definitely lost", "new"),
            summary_line(pid, "definitely lost", 900, 900, 10, 10),
            r"changes since the attach:$"], what + ", check 1")
        play(prog, 3, what)
        p.signal(signal.SIGUSR1)
        t = wait_check(p, pid, 2, what)
        check_text(t, pid, [summary_line(pid, "definitely lost", 900, 0, 10,
                                         0)], what + ", check 2")
        p.signal(signal.SIGINT)
        if p.wait(20, "ptleak -p after SIGINT") != 0:
            raise Fail("%s: ptleak exit status" % what, tail(p.err))
        expect_alive_untraced(pid, what)
        prog.close_stdin()
        if prog.wait(20, "check_live") != 0:
            raise Fail("%s: check_live did not exit 0 after ptleak left"
                       % what, tail(prog.err))
    doc = load_json(j, what)
    c1 = json_check(doc, 1, what)
    expect_record(c1, D, None, (520, 5, 520, 5, "new"), what, before=True)
    expect_record(c1, D, "leak_a", (300, 3, 300, 3, "new"), what)
    sm = doc["processes"][0]["summary"][D]
    if (sm["bytes"], sm["blocks"]) != (900, 10):
        raise Fail("%s: the report on leaving: want 900 bytes in 10 blocks "
                   "definitely lost, got %s" % (what, sm))


@test("live_check_errors")
def t_check_errors(s):
    # --check on what no ptleak traces: 125, one line, nobody signalled.
    with Processes(s) as ps:
        prog = ps.start([s.builder.get("check_live"), "60"], stdin=True)
        prog.wait_for("out", rb"^ready$", 10, "check_live")
        res = run([s.ptleak, "--check", str(prog.pid)], 20, env=s.env)
        expect_status(res, 125, "--check on an untraced process: ")
        one_line_error(res, "--check untraced", r"not traced by ptleak",
                       r"\b%d\b" % prog.pid)
        if prog.poll() is not None:
            raise Fail("the untraced process died of --check")
    res = run([s.ptleak, "--check", "999999999"], 20, env=s.env)
    expect_status(res, 125, "--check on no process: ")
    one_line_error(res, "--check nonexistent", r"no such process")
    for opts in (["--check", "1", "-p", "1"], ["--check", "1", "true"],
                 ["--check=abc"]):
        res = run([s.ptleak] + opts, 20, env=s.env)
        expect_status(res, 125, " ".join(opts) + ": ")
        one_line_error(res, " ".join(opts))


MMAP_RECORDS = [(786432, 2, "make_arena"), (131072, 2, "make_pool"),
                (40960, 1, "grow_buffer")]


@test("live_track_mmap")
def t_track_mmap(s):
    exe = s.builder.get("mmap_pools")
    res, doc = s.ptleak_run(["--track-mmap"], [exe])
    expect_status(res, 0, "--track-mmap: ")
    proc = s.process(doc, res)
    errs = expect_errors(proc, s.expect("mmap_pools"))
    mr = proc.get("mmap_regions") or {}
    got = [(r.get("bytes"), r.get("regions"),
            [f.get("function") for f in r.get("stack") or []])
           for r in mr.get("records") or []]
    want = [(b, n, ["mmap", "map", fn, "main"]) for b, n, fn in MMAP_RECORDS]
    if got != want:
        errs.append("mmap records: want %s, got %s" % (want, got))
    if (mr.get("bytes"), mr.get("regions"), mr.get("thread_stack_regions")) \
            != (958464, 5, 1):
        errs.append("mmap_regions: want 958,464 bytes in 5 regions and 1 "
                    "thread stack apart, got %s" % {k: v for k, v in
                                                     mr.items() if k !=
                                                     "records"})
    text = res.stderr.decode("utf-8", "replace")
    pid = proc["pid"]
    for b, n, fn in MMAP_RECORDS:
        pat = (r"^==%d== %s bytes in %d regions are still mapped in mmap "
               r"record \d of 3\n==%d==    at 0x[0-9A-F]+: mmap .*\n==%d==    "
               r"by 0x[0-9A-F]+: map .*\n==%d==    by 0x[0-9A-F]+: %s "
               % (pid, fmt(b), n, pid, pid, pid, fn))
        if not re.search(pat, text, re.M):
            errs.append("text lacks the mmap record of %s" % fn)
    if not re.search(r"^==%d==     still mapped at exit: 958,464 bytes in 5 "
                     r"regions$" % pid, text, re.M):
        errs.append("text lacks the MMAP SUMMARY total")
    if errs:
        raise Fail(errs[0], errs[1:] + tail(res.stderr, 30))
    # Without the option: nothing of it.
    res, doc = s.ptleak_run([], [exe])
    proc = s.process(doc, res)
    if "mmap_regions" in proc or b"MMAP SUMMARY" in res.stderr:
        raise Fail("without --track-mmap the report has mmap regions")
