"""Running programs for the tests: hard time limits, whole sessions killed.

Every process a test starts goes through run(), Background or run_in_pty,
each in a session of its own. The session ids are recorded in the
running test's context (lib.runner sets it per thread), so that a test
that overruns its time limit can be killed with everything it started.
"""
import os
import re
import select
import signal
import subprocess
import sys
import termios
import threading
import time


class Fail(Exception):
    """A test failure: message plus optional detail lines."""

    def __init__(self, msg, details=()):
        super().__init__(msg)
        self.details = list(details)


class Skip(Exception):
    pass


# -- the running test's context ---------------------------------------------
_local = threading.local()


class Context:
    """What one test started (session ids), and whether it was given up."""

    def __init__(self, name):
        self.name = name
        self.sessions = []
        self.lock = threading.Lock()
        self.abandoned = False
        self.extra_time = 0.0   # seconds spent building fixtures

    def add(self, sid):
        with self.lock:
            if self.abandoned:
                kill_session(sid)
                raise Fail("test given up (time limit): not starting more")
            self.sessions.append(sid)

    def kill_all(self):
        with self.lock:
            self.abandoned = True
            sids = list(self.sessions)
        for sid in sids:
            kill_session(sid)


def set_context(ctx):
    _local.ctx = ctx


def context():
    return getattr(_local, "ctx", None)


def _register(pid):
    ctx = context()
    if ctx is not None:
        ctx.add(pid)


# -- small helpers ---------------------------------------------------------
def shell_quote(cmd):
    return " ".join(a if re.fullmatch(r"[\w@%+=:,./-]+", a) else repr(a)
                    for a in cmd)


def tail(data, n=15):
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return ["| " + l for l in data.splitlines()[-n:]]


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


def expect_status(res, want, what=""):
    got = exit_status(res.status)
    if got != want:
        raise Fail("%sexit status: want %d, got %d" % (what, want, got),
                   tail(res.stderr))


# -- /proc ------------------------------------------------------------------
def session_processes(sid):
    """(pid, state, comm) of live processes whose session id is SID."""
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


def proc_status(pid):
    """{field: value} of /proc/PID/status, {} if PID is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(l.rstrip("\n").split(":\t", 1) for l in f
                        if ":\t" in l)
    except OSError:
        return {}


def proc_state(pid):
    return proc_status(pid).get("State", "gone")


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


# -- running ------------------------------------------------------------------
class Result:
    def __init__(self, cmd, status, stdout, stderr, elapsed):
        self.cmd, self.status = cmd, status
        self.stdout, self.stderr, self.elapsed = stdout, stderr, elapsed


def run(cmd, timeout, stdin=None, cwd=None, env=None, check_leftovers=True,
        user=None):
    """Run CMD in its own session, with a hard time limit.

    On expiry the whole process group is killed (SIGKILL) and Fail raised.
    Afterwards no process of the session may be alive (zombies are given
    two seconds to be reaped): a leftover is killed and is a failure.
    USER: uid (and gid, no supplementary groups) to run as.
    """
    start = time.monotonic()
    ids = {} if user is None else {"user": user, "group": user,
                                   "extra_groups": []}
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None
                             else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=cwd, env=env, start_new_session=True, **ids)
    except (OSError, subprocess.SubprocessError) as e:
        raise Fail("cannot run %s: %s" % (cmd[0], e))
    _register(p.pid)
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
        _register(self.pid)
        self.bufs = {"out": bytearray(), "err": bytearray()}
        self.eof = {"out": False, "err": False}
        self.cond = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(k, f),
                                         daemon=True)
                        for k, f in (("out", self.p.stdout),
                                     ("err", self.p.stderr))]
        for t in self.readers:
            t.start()

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
        self.streams_closed(10)
        return exit_status(rc)

    def streams_closed(self, timeout):
        """Wait up to TIMEOUT for the end of stdout and stderr (every
        writer gone: a program that outlived this process, too); whether
        both ended."""
        end = time.monotonic() + timeout
        for t in self.readers:
            t.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self.readers)

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


# Becomes the controlling terminal's session leader's first act: a session
# leader (start_new_session) takes its stdin, a terminal, as its
# controlling terminal, then execs the command (same pid). Done in a tiny
# exec'd step rather than a preexec_fn, which is unsafe with threads.
_CTTY = ("import fcntl, os, sys, termios\n"
         "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
         "os.execvp(sys.argv[1], sys.argv[1:])\n")


def run_in_pty(cmd, env, timeout, on_ready, pass_pid=False):
    """Run CMD as a session leader with a pseudo-terminal as its
    controlling terminal (stdin, stdout, stderr); when "ready" shows up,
    call on_ready(write) (on_ready(write, pid of CMD) with PASS_PID) and
    read to the end. Returns (status, output, whether ready was seen)."""
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR      # no CR before each LF in the output
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    try:
        p = subprocess.Popen([sys.executable, "-c", _CTTY] + cmd,
                             stdin=slave, stdout=slave, stderr=slave,
                             env=env, start_new_session=True)
    except (OSError, subprocess.SubprocessError) as e:
        os.close(master)
        os.close(slave)
        raise Fail("cannot run %s in a pty: %s" % (cmd[0], e))
    os.close(slave)
    _register(p.pid)
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
