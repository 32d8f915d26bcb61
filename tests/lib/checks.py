"""Checks several area files share: attaching, a traced child, one-line
errors, a program's output and status the same with and without ptleak."""
import os
import re

from lib.proc import (Fail, Skip, exit_status, mask, proc_status, tail,
                      tracer_pid, children_of, wait_until)


def attach_permitted():
    """Skip unless this user may attach to a process it did not start."""
    try:
        scope = int(open("/proc/sys/kernel/yama/ptrace_scope").read())
    except (OSError, ValueError):
        scope = 0
    cap = int(proc_status(os.getpid()).get("CapEff", "0"), 16)
    if scope >= 3 or (scope >= 1 and not cap & (1 << 19)):
        raise Skip("attaching is not permitted here (yama ptrace_scope %d, "
                   "CAP_SYS_PTRACE %s)" % (scope, "yes" if cap & (1 << 19)
                                           else "no"))


def expect_alive_untraced(pid, what):
    st = proc_status(pid)
    state = st.get("State", "gone")
    if not st or state[0] in "ZXTt":
        raise Fail("%s: target %d should run on untraced, state %s"
                   % (what, pid, state))
    if int(st.get("TracerPid", "0")) != 0:
        raise Fail("%s: target %d still traced by %s after ptleak left"
                   % (what, pid, st.get("TracerPid")))


def traced_child(ptleak_pid, timeout=10):
    """The program ptleak launched, once ptleak traces it."""
    def found():
        kids = children_of(ptleak_pid)
        return kids[0] if kids and tracer_pid(kids[0]) == ptleak_pid \
            else None
    return wait_until(found, timeout, "ptleak's program did not start")


def one_line_error(res, what, *needles):
    """ptleak failed with one line on stderr holding every NEEDLE
    (regexes, case-insensitive), nothing on stdout."""
    lines = [l for l in res.stderr.decode("utf-8", "replace").splitlines()
             if l.strip()]
    if len(lines) != 1:
        raise Fail("%s: want one line on stderr, got %d" % (what, len(lines)),
                   tail(res.stderr))
    for n in needles:
        if not re.search(n, lines[0], re.I):
            raise Fail("%s: the message lacks %r" % (what, n),
                       ["| " + lines[0]])
    if res.stdout:
        raise Fail("%s: nothing may go to stdout" % what, tail(res.stdout))


def native_same(s, cmd, res, stdin=None, cwd=None, timeout=30):
    """The program's stdout and status under ptleak equal a run alone."""
    nat = s.native(cmd, stdin, timeout, cwd)
    errs = []
    if exit_status(res.status) != exit_status(nat.status):
        errs.append("exit status: alone %d, under ptleak %d"
                    % (exit_status(nat.status), exit_status(res.status)))
    if mask(res.stdout) != mask(nat.stdout):
        errs += ["stdout differs from a run alone:"] + \
            ["  alone: " + l for l in tail(nat.stdout, 8)] + \
            ["  under: " + l for l in tail(res.stdout, 8)]
    return errs
