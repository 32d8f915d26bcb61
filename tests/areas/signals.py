"""Signals to ptleak itself (tests/run.py -k signals): no signal that ends
ptleak ends the program. The table in tracer/signals.c: attach mode, every
signal whose default action would end ptleak makes it leave cleanly (exit
0, report written), SIGALRM is its own ticker, a crash restores the
program first and ptleak dies of it; launch mode, a signal a process sent
to ptleak goes to the program, the terminal's reach it by themselves.
Tested on an allocator hammer and on Debian's redis-server and memcached
under a client that checks every answer."""
import os
import re
import shutil
import signal
import socket
import threading
import time

from lib.attaching import (crash_restore_rounds, exec_pages,
                           expect_left_clean, finish_hammer, start_attach,
                           start_hammer)
from lib.checks import attach_permitted, expect_alive_untraced, traced_child
from lib.proc import (Fail, Skip, describe_status, expect_status, mask,
                      proc_state, proc_status, run, run_in_pty, tail,
                      tracer_pid, wait_until)
from lib.report import (D, I, P, R, RE, Z, expect_errors, load_json,
                        proc_errors)
from lib.runner import test
from lib.suite import Processes

LEAVE_SIGNALS = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
                 signal.SIGPIPE,
                 signal.SIGUSR2, signal.SIGIO, signal.SIGPROF,
                 signal.SIGVTALRM, signal.SIGXCPU, signal.SIGXFSZ,
                 signal.SIGSTKFLT, signal.SIGPWR, 32, 33, signal.SIGRTMIN,
                 signal.SIGRTMIN + 7, signal.SIGRTMAX]


def sig_name(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "signal %d" % sig


def signal_ptleak_attached(s, ps, pid, sig, what):
    """ptleak -p PID, then SIG to ptleak: it must leave (exit 0, report
    written), PID untraced and clean. SIGALRM (its ticker) and SIGUSR1 (a
    leak check, whose report must appear): it must stay attached."""
    before = exec_pages(pid)
    p = start_attach(s, ps, pid, [])
    time.sleep(0.4)
    if p.poll() is not None or tracer_pid(pid) != p.pid:
        raise Fail("%s: ptleak should trace %d before the signal" % (what, pid),
                   tail(p.err))
    p.signal(sig)
    if sig in (signal.SIGALRM, signal.SIGUSR1):
        if sig == signal.SIGUSR1:
            p.wait_for("err", rb"^==\d+== END OF LEAK CHECK 1$", 30,
                       "%s: the leak check's report" % what)
        time.sleep(0.5)
        if p.poll() is not None or tracer_pid(pid) != p.pid:
            raise Fail("%s: ptleak must stay attached" % what, tail(p.err))
        p.signal(signal.SIGINT)
    st = p.wait(20, "ptleak -p after %s" % what)
    if st != 0:
        raise Fail("%s: ptleak must leave cleanly and exit 0, got %s"
                   % (what, describe_status(st)),
                   tail(p.err))
    if not re.search(rb"LEAK SUMMARY", p.err):
        raise Fail("%s: ptleak left without its report" % what, tail(p.err))
    time.sleep(0.2)
    expect_left_clean(pid, before, what)


@test("attach_signals_leave")
def t_attach_signals_leave(s):
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        for sig in LEAVE_SIGNALS + [signal.SIGALRM, signal.SIGUSR1]:
            what = "%s to ptleak -p" % sig_name(sig)
            signal_ptleak_attached(s, ps, h.pid, sig, what)
            if h.poll() is not None:
                raise Fail("%s: the hammer died (%s)"
                           % (what, describe_status(h.poll())),
                           tail(h.out) + tail(h.err))
        finish_hammer(h, "after a signal of each kind to ptleak")


@test("attach_ptleak_crash_restores_sys_trap")
def t_attach_crash_sys_trap(s):
    crash_restore_rounds(s, signal.SIGSYS, rounds=2)
    crash_restore_rounds(s, signal.SIGTRAP, rounds=2)


@test("attach_output_closed")
def t_attach_output_closed(s):
    # The user's pipeline: ptleak -p PID --interval=0.1 2>&1 | head -3.
    # head leaves after 3 lines; ptleak's next write finds the pipe closed:
    # it must detach and exit, the program run on unharmed.
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        before = exec_pages(h.pid)
        sh = ps.start(["sh", "-c", '"$0" -p "$1" --interval=0.1 2>&1 | head -3; '
                       'echo end', s.ptleak, str(h.pid)])
        st = sh.wait(30, "ptleak -p ... | head -3")
        lines = sh.out.splitlines()
        if st != 0 or len(lines) != 4 or b"attached" not in lines[0] or \
                lines[3] != b"end":
            raise Fail("ptleak -p | head -3: want 3 lines of ptleak's and the "
                       "shell's, status 0; got status %d" % st,
                       tail(sh.out) + tail(sh.err))
        time.sleep(0.3)
        expect_left_clean(h.pid, before, "after head closed ptleak's output")
        finish_hammer(h, "after head closed ptleak's output")



# Runs ptleak (argv[1:]) with its stderr into a pipe that it empties 4 KiB
# at a time with a pause in between, so that ptleak's writes block on a
# full pipe over and over; every 20 ms of that it sends ptleak a SIGUSR1
# (a leak check). Writes what it read to stdout, then ptleak's status.
SLOW_READER = r"""
import os, signal, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
fd, out, last = p.stderr.fileno(), bytearray(), 0.0
while True:
    data = os.read(fd, 4096)
    if not data:
        break
    out += data
    if time.monotonic() - last > 0.02:
        last = time.monotonic()
        try:
            os.kill(p.pid, signal.SIGUSR1)
        except OSError:
            pass
    time.sleep(0.002)
sys.stdout.buffer.write(bytes(out))
sys.stdout.write("status %d\n" % p.wait())
"""


def final_report(text):
    """The report at the exit (from HEAP SUMMARY on), pid and addresses
    masked."""
    at = text.find(b"HEAP SUMMARY:")
    if at < 0:
        return None
    text = re.sub(rb"^==\d+==", b"==PID==", text[at:], flags=re.M)
    return mask(text)


@test("report_slow_pipe_signals")
def t_report_slow_pipe_signals(s):
    # ptleak's handlers have no SA_RESTART (its waits must end on a
    # signal): a write to a full pipe that a signal interrupted used to
    # lose what stdio had buffered, a loss record now and then. Here the
    # ticker (--interval=0.01) and SIGUSR1s interrupt the text report of
    # 3,000 loss records (about 2 MB) all along a slow pipe: it must come
    # out whole, the same as written to a file by a run without them.
    n = 3000
    exe = s.builder.get("many_stacks")
    ref_file = s.tmpfile("slow_pipe_ref.txt")
    res = run([s.ptleak, "-o", ref_file, exe, str(n)], 120, env=s.ptleak_env)
    s.check_sanitizer(res.stderr)
    expect_status(res, 0, "ptleak -o FILE many_stacks: ")
    with open(ref_file, "rb") as f:
        ref = final_report(f.read())
    nbytes = sum(16 + i % 16 for i in range(n))
    want = ("==PID==    definitely lost: {:,} bytes in {:,} blocks\n"
            .format(nbytes, n).encode())
    if ref is None or want not in ref or \
            ref.count(b" are definitely lost in loss record ") != n:
        raise Fail("ptleak -o FILE: want %d loss records and %r"
                   % (n, want), tail(ref or b""))
    res = run([s.python, "-c", SLOW_READER, s.ptleak, "--interval=0.01", exe,
               str(n)], 120, env=s.ptleak_env)
    s.check_sanitizer(res.stdout)
    if not res.stdout.endswith(b"status 0\n"):
        raise Fail("ptleak into a slow pipe: want exit status 0",
                   tail(res.stdout) + tail(res.stderr))
    got = final_report(res.stdout[:-len(b"status 0\n")])
    if got != ref:
        got_lines, ref_lines = (got or b"").splitlines(), ref.splitlines()
        first = next((i for i, (a, b) in
                      enumerate(zip(got_lines, ref_lines)) if a != b),
                     min(len(got_lines), len(ref_lines)))
        raise Fail("the report through a slow pipe, under signals, differs "
                   "from the file's: %d lines against %d, first difference "
                   "at line %d" % (len(got_lines), len(ref_lines), first + 1),
                   ["pipe: " + l.decode("utf-8", "replace") for l in
                    got_lines[first:first + 3]] +
                   ["file: " + l.decode("utf-8", "replace") for l in
                    ref_lines[first:first + 3]])


# ---- Real servers: redis-server and memcached (Debian) ----------------------
def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def connect(port, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return c
        except OSError:
            if time.monotonic() > deadline:
                raise Fail("no server on port %d after %d s" % (port, timeout))
            time.sleep(0.05)


class Redis:
    """The few RESP commands the tests need, on one connection."""
    name = "redis-server"

    def __init__(self, port):
        self.c = connect(port)
        self.f = self.c.makefile("rb")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.c.sendall(out)
        return self.reply()

    def reply(self):
        line = self.f.readline()
        if not line:
            raise OSError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"-":
            raise OSError("redis error: %r" % rest)
        return rest

    def set(self, k, v):
        return self.cmd(b"SET", k, v) == b"OK"

    def get(self, k):
        return self.cmd(b"GET", k)

    def delete(self, k):
        self.cmd(b"DEL", k)

    def close(self):
        self.c.close()


class Memcached:
    name = "memcached"

    def __init__(self, port):
        self.c = connect(port)
        self.f = self.c.makefile("rb")

    def set(self, k, v):
        self.c.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v))
        return self.f.readline() == b"STORED\r\n"

    def get(self, k):
        self.c.sendall(b"get %s\r\n" % k)
        line = self.f.readline()
        if line == b"END\r\n":
            return None
        n = int(line.split()[3])
        v = self.f.read(n + 2)[:-2]
        if self.f.readline() != b"END\r\n":
            raise OSError("memcached: bad reply")
        return v

    def delete(self, k):
        self.c.sendall(b"delete %s\r\n" % k)
        self.f.readline()

    def close(self):
        self.c.close()


def kv_value(i, n):
    return (b"%d:" % i + bytes((i * 7 + k) & 0xff for k in range(251))
            * (n // 251 + 1))[:n]


def kv_round(cl, first, count):
    """SET COUNT keys of sizes 1..9,000 bytes, read each back, delete every
    third: the server's allocator at work. A list of what went wrong."""
    bad = []
    for i in range(first, first + count):
        k, v = b"k%d" % (i % 500), kv_value(i, 1 + (i * 2654435761) % 9000)
        if not cl.set(k, v):
            bad.append("SET %r failed" % k)
        got = cl.get(k)
        if got != v:
            bad.append("GET %r: %d bytes back, want %d (%s)"
                       % (k, -1 if got is None else len(got), len(v),
                          "missing" if got is None else "different"))
        if i % 3 == 0:
            cl.delete(k)
        if len(bad) > 3:
            break
    return bad


class Driver:
    """A client thread keeping the server busy (bounded: stop() ends it)."""

    def __init__(self, client):
        self.cl, self.stop_ = client, threading.Event()
        self.bad, self.rounds = [], 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        i = 0
        while not self.stop_.is_set() and not self.bad:
            try:
                self.bad += kv_round(self.cl, i, 50)
            except (OSError, ValueError, IndexError) as e:
                self.bad.append("client: %s" % e)
            i += 50
            self.rounds += 1

    def stop(self):
        self.stop_.set()
        self.t.join(30)
        return self.bad


def start_kv_server(s, ps, kind):
    port = free_port()
    if kind is Redis:
        exe = shutil.which("redis-server")
        cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--io-threads", "2"]
    else:
        exe = shutil.which("memcached")
        cmd = [exe, "-p", str(port), "-l", "127.0.0.1", "-U", "0", "-t", "4",
               "-u", "root" if os.getuid() == 0 else str(os.getuid())]
    if not exe:
        raise Skip("%s is not installed (tests/deps.sh test installs it)"
                   % kind.name)
    srv = ps.start(cmd)
    cl = kind(port)
    return srv, cl, port


def kv_server_signals(s, kind):
    """ptleak -p on a busy server, then a signal to ptleak, for each of the
    signals the issue names (and a crash): the server answers every
    request right while and after ptleak leaves, untraced, no page of
    ours left; at the end a heavy round, and a clean shutdown."""
    attach_permitted()
    with Processes(s) as ps:
        srv, cl, port = start_kv_server(s, ps, kind)
        bad = kv_round(cl, 0, 200)
        if bad:
            raise Fail("%s alone: %s" % (kind.name, bad[0]), bad[1:])
        before = exec_pages(srv.pid)
        drv = Driver(kind(port))
        for sig in (signal.SIGQUIT, signal.SIGUSR1, signal.SIGPIPE,
                    signal.SIGUSR2, 34):
            what = "%s: %s to ptleak -p" % (kind.name, sig_name(sig))
            signal_ptleak_attached(s, ps, srv.pid, sig, what)
            if srv.poll() is not None or drv.bad:
                raise Fail("%s: the server %s" % (what, "died (%s)"
                           % describe_status(srv.poll()) if srv.poll()
                           is not None else "answered wrong"), drv.bad
                           + tail(srv.err))
        # A crash of ptleak, then ptleak -p | head -3.
        p = start_attach(s, ps, srv.pid, [])
        time.sleep(0.4)
        p.signal(signal.SIGSEGV)
        st = p.wait(20, "ptleak -p after SIGSEGV")
        if st != 128 + signal.SIGSEGV:
            raise Fail("%s: ptleak must die of SIGSEGV, got %d" % (kind.name, st),
                       tail(p.err))
        time.sleep(0.3)
        expect_left_clean(srv.pid, before, "%s: after a crash of ptleak"
                          % kind.name)
        sh = ps.start(["sh", "-c", '"$0" -p "$1" --interval=0.1 2>&1 | head -3',
                       s.ptleak, str(srv.pid)])
        if sh.wait(30, "ptleak -p %s | head -3" % kind.name) != 0:
            raise Fail("%s: ptleak -p | head -3 failed" % kind.name,
                       tail(sh.out) + tail(sh.err))
        time.sleep(0.3)
        expect_left_clean(srv.pid, before, "%s: after head closed ptleak's "
                          "output" % kind.name)
        if s.mode == "fast":
            # kill -9 of ptleak (last: its pages stay, inert): the probe
            # goes quiet, the server serves on and shuts down cleanly, its
            # _exit through the probe too. (Trap mode: its int3s stay and
            # kill it at its next malloc.)
            for n in range(1, 3):
                what = "%s: kill -9 of ptleak -p, round %d" % (kind.name, n)
                p = start_attach(s, ps, srv.pid, [])
                time.sleep(0.4)
                p.signal(signal.SIGKILL)
                if p.wait(20, what) != 128 + signal.SIGKILL:
                    raise Fail(what + ": ptleak must die of it", tail(p.err))
                time.sleep(0.3)
                expect_alive_untraced(srv.pid, what)
                if drv.bad:
                    raise Fail(what + ": the server answered wrong",
                               drv.bad + tail(srv.err))
        bad = drv.stop()
        if not bad:
            bad = kv_round(cl, 10000, 2000)
        if bad or drv.rounds < 5:
            raise Fail("%s: requests answered wrong (%d rounds driven)"
                       % (kind.name, drv.rounds), bad + tail(srv.err))
        cl.close()
        srv.signal(signal.SIGTERM)
        st = srv.wait(20, "%s after SIGTERM" % kind.name)
        if st != 0:
            raise Fail("%s: a clean shutdown must exit 0, got %s"
                       % (kind.name, describe_status(st)),
                       tail(srv.err))


@test("attach_redis_signals")
def t_attach_redis_signals(s):
    kv_server_signals(s, Redis)


@test("attach_memcached_signals")
def t_attach_memcached_signals(s):
    kv_server_signals(s, Memcached)


# ---- Launch mode: ptleak is a wrapper ---------------------------------------
def launch_ready(s, ps, name):
    """ptleak --json on fixture NAME, once it printed "ready": (ptleak,
    the JSON's path)."""
    j = s.tmpfile("report.json")
    p = ps.start([s.ptleak, "--no-default-suppressions", "--json=" + j,
                  s.builder.get(name)])
    p.wait_for("out", rb"^ready$", 20, "ptleak %s" % name)
    return p, j


@test("proc_launch_signal_forwarded")
def t_launch_signal_forwarded(s):
    # A signal sent to ptleak by a process reaches the program (SIGUSR2
    # ends sig_external's loop), as SIGTERM and SIGHUP always did; SIGUSR1
    # to ptleak is a leak check, not the program's (it counts its own).
    with Processes(s) as ps:
        p, j = launch_ready(s, ps, "sig_external")
        prog = traced_child(p.pid)
        os.kill(prog, signal.SIGUSR1)
        p.wait_for("out", rb"^got SIGUSR1 #1$", 10, "SIGUSR1 to the program")
        p.signal(signal.SIGUSR1)
        p.wait_for("err", rb"^==\d+== END OF LEAK CHECK 1$", 30,
                   "SIGUSR1 to ptleak: a leak check")
        p.signal(signal.SIGUSR2)
        st = p.wait(30, "ptleak sig_external after SIGUSR2 to ptleak")
        errs = []
        if st != 0:
            errs.append("exit status: want 0, got %d" % st)
        # The leak check stops the program: on a loaded machine for long
        # enough that it tells (its "stopped:" is not this test's concern).
        want = rb"ready\ngot SIGUSR1 #1\ndone: 1 SIGUSR1, stopped: (yes|no)\n"
        if not re.fullmatch(want, p.out):
            errs.append("stdout: want %r, got %r" % (want, p.out))
        errs += proc_errors(load_json(j, "forwarded")["processes"][0],
                            {D: (32, 1), I: Z, P: Z, RE: Z},
                            [R(D, 32, 1, ["malloc",
                                          "leak_per_signal@sig_external.c",
                                          "main"])])
        if errs:
            raise Fail(errs[0], errs[1:] + tail(p.err))


def quit_leak_expect(s, doc, out, st, what):
    errs = []
    if st != 128 + signal.SIGQUIT:
        errs.append("%s: exit status: want 131 (the program's SIGQUIT), got %d"
                    % (what, st))
    errs += expect_errors(doc["processes"][0], s.expect("proc_launch_sigquit"),
                          what + ": ")
    if doc["processes"][0].get("exit") != {"signal": 3}:
        errs.append("%s: JSON exit: want {'signal': 3}, got %s"
                    % (what, doc["processes"][0].get("exit")))
    return errs


@test("proc_launch_sigquit_at_terminal")
def t_launch_sigquit_at_terminal(s):
    # Ctrl-\ at a terminal goes to the whole foreground group: the program
    # dies of it as it would alone, ptleak (which got it too) reports.
    exe = s.builder.get("quit_leak")
    st, out, _ = run_in_pty([exe], s.env, 20, lambda w: w(b"\x1c"))
    if st != 131 or not out.startswith(b"ready\n"):   # then the echoed ^\
        raise Fail("quit_leak alone in a pty: status %d" % st, tail(out))
    j = s.tmpfile("report.json")
    st2, out2, ready = run_in_pty([s.ptleak, "--no-default-suppressions",
                                   "--json=" + j, exe], s.ptleak_env, 30,
                                  lambda w: w(b"\x1c"))
    errs = [] if ready else ["the program never printed ready"]
    if not os.path.exists(j):
        raise Fail("no JSON report: ptleak died of Ctrl-\\ (status %d)" % st2,
                   tail(out2))
    errs += quit_leak_expect(s, load_json(j, "Ctrl-\\"), out2, st2, "Ctrl-\\")
    if errs:
        raise Fail(errs[0], errs[1:] + tail(out2))


@test("proc_launch_sigquit_sent")
def t_launch_sigquit_sent(s):
    # kill -QUIT to ptleak (a process sent it, not the terminal): passed on.
    with Processes(s) as ps:
        p, j = launch_ready(s, ps, "quit_leak")
        p.signal(signal.SIGQUIT)
        st = p.wait(30, "ptleak quit_leak after SIGQUIT to ptleak")
        errs = quit_leak_expect(s, load_json(j, "kill -QUIT"), p.out, st,
                                "kill -QUIT ptleak")
        if errs:
            raise Fail(errs[0], errs[1:] + tail(p.err))


@test("proc_launch_crash_program_runs_on")
def t_launch_crash_program_runs_on(s):
    # A crash of ptleak in launch mode: the program gets its code back and
    # runs on untraced (no int3, no page of ours), answering signals.
    exe = s.builder.get("sig_external")
    with Processes(s) as ps:
        p = ps.start([s.ptleak, "-q", exe])
        p.wait_for("out", rb"^ready$", 20, "ptleak sig_external")
        prog = traced_child(p.pid)
        os.kill(prog, signal.SIGUSR1)
        p.wait_for("out", rb"^got SIGUSR1 #1$", 10, "sig_external under ptleak")
        p.signal(signal.SIGSEGV)
        # Not p.wait(): its readers would wait for the end of the output,
        # which the program, running on, still holds.
        wait_until(lambda: p.poll() is not None, 20, "ptleak after SIGSEGV")
        if p.poll() != 128 + signal.SIGSEGV:
            raise Fail("ptleak must die of SIGSEGV, got %d" % p.poll(),
                       tail(p.err))
        time.sleep(0.3)
        expect_left_clean(prog, 0, "the program after ptleak crashed")
        os.kill(prog, signal.SIGUSR1)
        p.wait_for("out", rb"^got SIGUSR1 #2$", 10,
                   "the program after ptleak crashed, at SIGUSR1")
        os.kill(prog, signal.SIGUSR2)
        wait_until(lambda: not proc_status(prog) or
                   proc_state(prog).startswith("Z"), 10,
                   "the program did not end after SIGUSR2")
        # "stopped:" is left open: the crash handler holds the program
        # while it puts the code back, which on a loaded machine or under
        # the sanitizer build can take longer than the fixture's 0.3 s.
        want = re.compile(rb"ready\ngot SIGUSR1 #1\ngot SIGUSR1 #2\n"
                          rb"done: 2 SIGUSR1, stopped: (yes|no)\n\Z")
        deadline = time.monotonic() + 5
        while not want.match(p.out) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not want.match(p.out):
            raise Fail("the program's output after ptleak crashed: want %r, "
                       "got %r" % (want.pattern, p.out))



@test("sig_usr1_before_tracing")
def t_usr1_before_tracing(s):
    """SIGUSR1 (ptleak --check's signal) that reaches ptleak before it
    traces anything does not kill it: it asks for a leak check, made once
    the program runs. Here ptleak is reading its suppressions from a FIFO
    (as from a shell's --suppressions=<(...)) when the signal comes; the
    read goes on, the program runs and the report is whole."""
    fifo = s.tmpfile("supp.fifo")
    os.mkfifo(fifo)
    exe = s.builder.get("leak_1000")
    with Processes(s) as ps:
        p = ps.start([s.ptleak, "--suppressions=" + fifo, exe])
        # Opening the FIFO for writing waits for ptleak to open it to read.
        fd = os.open(fifo, os.O_WRONLY)
        try:
            os.kill(p.pid, signal.SIGUSR1)
            time.sleep(0.2)
            if p.poll() is not None:
                raise Fail("ptleak died of a SIGUSR1 while it read its "
                           "suppressions: %s" % describe_status(p.poll()),
                           tail(p.err))
            os.write(fd, b"# no suppressions\n")
        finally:
            os.close(fd)
        st = p.wait(30, "ptleak after an early SIGUSR1")
        err = p.err.decode("utf-8", "replace")
        if st != 0:
            raise Fail("ptleak exit status %d, want 0" % st, tail(p.err))
        if not re.search(r"^==\d+== LEAK CHECK 1 \(on request", err, re.M):
            raise Fail("no leak check for the early SIGUSR1", tail(p.err))
        if not re.search(r"^==\d+== 1,000 bytes in 1 blocks are definitely "
                         r"lost", err, re.M):
            raise Fail("the report at the exit lacks the 1,000 bytes lost",
                       tail(p.err))
