"""What the attach tests of several areas share (attach, signals): ptleak
-p once it says it is attached, the allocator hammer (fixtures/hammer.c)
as a target, and the checks that a target was left as ptleak found it."""
import signal
import time

from lib.checks import attach_permitted, expect_alive_untraced
from lib.proc import Fail, describe_status, tail, tracer_pid
from lib.suite import Processes


def start_attach(s, ps, pid, opts, env=None):
    """ptleak OPTS -p PID, once its banner says it is attached (ENV:
    variables added to ptleak's environment)."""
    p = ps.start([s.ptleak, "--no-default-suppressions"] + opts + ["-p", str(pid)],
                 env=env)
    p.wait_for("err", rb"attached.*\b%d\b" % pid, 20,
               "ptleak -p %d (waiting for its banner line \"... attached to "
               "process %d\")" % (pid, pid))
    return p


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


def exec_pages(pid):
    """Anonymous, private, executable one-page mappings of PID (ptleak's
    code pages look like that; a program seldom has any)."""
    n = 0
    try:
        with open("/proc/%d/maps" % pid) as f:
            for line in f:
                parts = line.split()
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if parts[1] == "r-xp" and len(parts) == 5 and hi - lo == 4096:
                    n += 1
    except OSError:
        pass
    return n


def expect_left_clean(pid, pages_before, what):
    """PID runs on untraced, without a page of ptleak's left mapped."""
    expect_alive_untraced(pid, what)
    now = exec_pages(pid)
    if now != pages_before:
        raise Fail("%s: %d anonymous executable pages in the target, %d before "
                   "ptleak attached: ptleak's code page is still mapped"
                   % (what, now, pages_before))


def crash_restore_rounds(s, sig, rounds=5, opts=(), target=None):
    """ptleak -p on a fresh hammer, tracing it for 1 s, then killed by SIG
    (as if it crashed): ptleak dies of SIG, the hammer is left untraced,
    without a breakpoint or a redirected return address, and finishes its
    checks, with ptleak's code pages unmapped. ROUNDS times, to catch the
    races of a crash at any moment. TARGET: another fixture that prints
    ready, and ok at SIGUSR1."""
    attach_permitted()
    name = signal.Signals(sig).name
    for n in range(1, rounds + 1):
        what = "round %d/%d, %s to ptleak" % (n, rounds, name)
        with Processes(s) as ps:
            if target:
                h = ps.start([s.builder.get(target)])
                h.wait_for("out", rb"^ready$", 10, target)
            else:
                h = start_hammer(s, ps)
            pages = exec_pages(h.pid)
            p = start_attach(s, ps, h.pid, list(opts))
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
            if sig == signal.SIGKILL:
                # Nothing can run after a kill -9: the probe's and the
                # code pages stay mapped, inert (README).
                expect_alive_untraced(h.pid, what)
            else:
                expect_left_clean(h.pid, pages, what)
            # Its exit goes through the probe's _exit site too.
            finish_hammer(h, what)
