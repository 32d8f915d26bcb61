"""Processes (tests/run.py -k proc): fork/-f, posix_spawn/vfork, exec,
signals sent from outside, a terminal's Ctrl-C and Ctrl-Z (in a
pseudo-terminal), what a program inherits; the program's stdout and
status must equal a run without ptleak."""
import json
import os
import re
import shutil
import signal
import sys
import time

from lib.checks import native_same, traced_child
from lib.fixtures import FIXTURES
from lib.proc import (Fail, Skip, exit_status, expect_status, proc_state,
                      run, run_in_pty, shell_quote, tail, children_of,
                      tracer_pid, wait_until)
from lib.report import (D, I, Z, expect_errors, fmt, load_json,
                        parse_summary_text, parse_valgrind, proc_errors)
from lib.runner import test
from lib.suite import Processes


# ---- B1: fork --------------------------------------------------------------
def fork_pids(res):
    m = re.search(rb"fork_leaks: parent (\d+) child (\d+)", res.stderr)
    if not m:
        raise Fail("fork_leaks did not print its pids (ptleak exited %d)"
                   % exit_status(res.status), tail(res.stderr))
    return int(m.group(1)), int(m.group(2))


@test("proc_fork_default")
def t_fork_default(s):
    cmd = [s.builder.get("fork_leaks")]
    res, doc = s.ptleak_run([], cmd, timeout=30)
    errs = native_same(s, cmd, res)
    want = s.expect("fork_parent")
    if res.stdout != want.stdout:
        errs.append("the child was harmed: stdout %r" % res.stdout)
    parent, child = fork_pids(res)
    procs = (doc or {}).get("processes") or []
    if [p.get("pid") for p in procs] != [parent]:
        errs.append("without -f the JSON has the parent only: want pids "
                    "[%d], got %s" % (parent, [p.get("pid") for p in procs]))
    if procs:
        errs += expect_errors(procs[0], want)
        if procs[0].get("exit") != want.want_exit():
            errs.append("JSON exit: %s" % procs[0].get("exit"))
    if re.search(rb"^==%d== " % child, res.stderr, re.M):
        errs.append("without -f the text reports the child %d" % child)
    if errs:
        raise Fail(errs[0], errs[1:])


@test("proc_fork_follow")
def t_fork_follow(s):
    cmd = [s.builder.get("fork_leaks")]
    res, doc = s.ptleak_run(["-f"], cmd, timeout=30)
    errs = native_same(s, cmd, res)
    parent, child = fork_pids(res)
    procs = {p.get("pid"): p for p in (doc or {}).get("processes") or []}
    if sorted(procs) != sorted([parent, child]):
        raise Fail("-f: want processes %d and %d, got %s"
                   % (parent, child, sorted(procs)), errs)
    wp, wc = s.expect("fork_parent"), s.expect("fork_child")
    errs += expect_errors(procs[parent], wp, "parent: ")
    errs += expect_errors(procs[child], wc, "child: ")
    if procs[parent].get("exit") != wp.want_exit():
        errs.append("parent JSON exit: %s" % procs[parent].get("exit"))
    if procs[child].get("exit") != wc.want_exit():
        errs.append("child JSON exit: want %s, got %s"
                    % (wc.want_exit(), procs[child].get("exit")))
    # Text: one block per process, in the order they exited (child first).
    text = res.stderr.decode("utf-8", "replace")
    pos = {}
    for pid, want in ((child, "%s bytes in %s blocks"
                       % tuple(map(fmt, wc.summary[D]))),
                      (parent, "%s bytes in %s blocks"
                       % tuple(map(fmt, wp.summary[D])))):
        m = re.search(r"^==%d==\s+definitely lost: %s$" % (pid, want), text,
                      re.M)
        if not m:
            errs.append("text: no \"==%d== definitely lost: %s\"" % (pid,
                                                                    want))
        else:
            pos[pid] = m.start()
    if len(pos) == 2 and pos[child] > pos[parent]:
        errs.append("text: the child's report (exited first) must come "
                    "before the parent's")
    if errs:
        raise Fail(errs[0], errs[1:])


@test("proc_fork_follow_unfollowable")
def t_fork_follow_unfollowable(s):
    # -f, and the child's symbols cannot be set up (forced through ptleak's
    # test-only PTLEAK_TEST_FAIL=follow, as an unreadable /proc/PID/maps
    # would; it used to leave the child traced without an unwinder, and
    # its first malloc crashed ptleak): one line says so, the child runs
    # on untraced and unharmed (its parent sees exit 7), the parent's
    # report is exact, and ptleak exits 125 (a report asked for is
    # missing).
    cmd = [s.builder.get("fork_leaks")]
    env = dict(s.env, PTLEAK_TEST_FAIL="follow")
    res, doc = s.ptleak_run(["-f"], cmd, timeout=30, env=env)
    errs = [e for e in native_same(s, cmd, res)
            if not e.startswith("exit status")]
    wp = s.expect("fork_parent")
    if res.stdout != wp.stdout:
        errs.append("the child was harmed: stdout %r" % res.stdout)
    if exit_status(res.status) != 125:
        errs.append("ptleak exit status %d, want 125" % exit_status(res.status))
    parent, child = fork_pids(res)
    want = ("ptleak: cannot follow child process %d (cannot read the modules "
            "of process %d); it runs on untraced" % (child, child)).encode()
    lines = [l for l in res.stderr.splitlines() if l.startswith(b"ptleak:")]
    if lines != [want]:
        errs.append("want exactly the line %r, got %r" % (want, lines))
    procs = (doc or {}).get("processes") or []
    if [p.get("pid") for p in procs] != [parent]:
        errs.append("the JSON has the parent only: want pids [%d], got %s"
                    % (parent, [p.get("pid") for p in procs]))
    if procs:
        errs += expect_errors(procs[0], wp)
    if re.search(rb"^==%d== " % child, res.stderr, re.M):
        errs.append("the text reports the child %d it did not trace" % child)
    if errs:
        raise Fail(errs[0], errs[1:] + tail(res.stderr))


# ---- B2: posix_spawn, vfork ------------------------------------------------
def spawn_run(s, opts):
    want = s.expect("spawn_parent")
    cmd = s.resolve(want.cmd)
    res, doc = s.ptleak_run(opts, cmd, timeout=30)
    errs = native_same(s, cmd, res)
    if res.stdout != want.stdout:
        errs.append("stdout: want %r" % want.stdout)
    procs = (doc or {}).get("processes") or []
    mine = [p for p in procs if p.get("command") == cmd]
    if len(mine) != 1:
        raise Fail("want one process with the command %s, got %d (ptleak "
                   "exited %d)" % (shell_quote(cmd), len(mine),
                                   exit_status(res.status)),
                   errs + [json.dumps(p.get("command")) for p in procs])
    errs += expect_errors(mine[0], want, "spawn_leaks: ")
    return procs, mine[0], errs


@test("proc_spawn_default")
def t_spawn_default(s):
    procs, parent, errs = spawn_run(s, [])
    if len(procs) != 1:
        errs.append("without -f: want 1 process in the JSON, got %d"
                    % len(procs))
    if errs:
        raise Fail(errs[0], errs[1:])


@test("proc_spawn_follow")
def t_spawn_follow(s):
    procs, parent, errs = spawn_run(s, ["-f"])
    kids = [p for p in procs if p is not parent]
    if len(kids) != 6:
        errs.append("-f: want 6 children (3 posix_spawn, 3 vfork) besides "
                    "spawn_leaks, got %d" % len(kids))
    want = s.expect("spawn_child")
    for k in kids:
        label = "child %s: " % k.get("pid")
        if k.get("exit") != want.want_exit():
            errs.append(label + "JSON exit: want %s, got %s"
                        % (want.want_exit(), k.get("exit")))
        # After its exec the child's report is exit_code's.
        errs += expect_errors(k, want, label)
    if errs:
        raise Fail(errs[0], errs[1:])


def valgrind_of_parent(s, cmd, timeout=120):
    """valgrind's summary and heap totals of CMD's own process, with
    --log-file=%p: a (v)forked child writes a report of its own."""
    if shutil.which("valgrind") is None:
        raise Skip("valgrind not installed: oracle not run")
    d = s.tmpfile("valgrind.d")
    os.makedirs(d, exist_ok=True)
    res = run(["valgrind", "--leak-check=full", "--show-leak-kinds=all",
               "--log-file=" + os.path.join(d, "vg.%p")] + cmd, timeout,
              env=s.env)
    logs = {}
    for name in os.listdir(d):
        with open(os.path.join(d, name), encoding="utf-8",
                  errors="replace") as f:
            logs[int(name[3:])] = f.read()
    def parent_pid(text):
        m = re.search(r"^==\d+== Parent PID: (\d+)", text, re.M)
        return int(m.group(1)) if m else 0
    # The process the test started: its parent is none of them.
    parent = [t for t in logs.values() if parent_pid(t) not in logs]
    got = parse_valgrind(parent[0]) if len(parent) == 1 else None
    if got is None:
        raise Fail("valgrind: no report of %s's own process (status %d)"
                   % (cmd[0], exit_status(res.status)),
                   ["| " + l for t in logs.values()
                    for l in t.splitlines()[-6:]])
    return got, logs


@test("proc_vfork_alloc")
def t_vfork_alloc(s):
    """A vfork child's allocations, made on its parent's memory (and in
    fast mode through its parent's probe and ring) before it execs or
    calls _exit, are not the parent's: its report is valgrind's report
    of the parent (which runs vfork as fork), with and without -f."""
    want = s.expect("vfork_alloc")
    kid = s.expect("spawn_child")
    cmd = s.resolve(want.cmd)
    vg, logs = valgrind_of_parent(s, cmd)
    errs = []
    # The oracle itself: the parent's two blocks only; the child that
    # called _exit reports its 333 bytes (and the inherited 100) itself.
    if vg["summary"][D] != want.summary[D] or \
            vg["heap"].get("allocations") != want.heap["allocations"] or \
            vg["heap"].get("bytes_allocated") != want.heap["bytes_allocated"]:
        errs.append("valgrind's parent: %s, heap %s; the fixture says %s, %s"
                    % (vg["summary"][D], vg["heap"], want.summary[D],
                       want.heap))
    if not any(re.search(r"definitely lost: 433 bytes in 2 blocks", t)
               for t in logs.values()):
        errs.append("valgrind: no report of the _exit child's 333 bytes "
                    "(+ the 100 it inherited)")
    for opts in ([], ["-f"]):
        label = "ptleak %s: " % " ".join(opts or ["(no -f)"])
        res, doc = s.ptleak_run(opts, cmd, timeout=30)
        errs += [label + e for e in native_same(s, cmd, res)]
        procs = (doc or {}).get("processes") or []
        mine = [p for p in procs if p.get("command") == cmd]
        if len(mine) != 1:
            raise Fail(label + "want one process with the command %s, got "
                       "%d (ptleak exited %d)"
                       % (shell_quote(cmd), len(mine),
                          exit_status(res.status)),
                       errs + tail(res.stderr))
        errs += expect_errors(mine[0], want, label)
        g = (mine[0].get("summary") or {}).get(D) or {}
        if (g.get("bytes"), g.get("blocks")) != vg["summary"][D]:
            errs.append(label + "definitely lost %s/%s, valgrind's parent "
                        "%s/%s" % (g.get("bytes"), g.get("blocks"),
                                   *vg["summary"][D]))
        kids = [p for p in procs if p is not mine[0]]
        if not opts and kids:
            errs.append(label + "without -f the JSON has the parent only, "
                        "got %d more" % len(kids))
        if opts:
            # Followed from its exec: exit_code's report, 9 bytes.
            if len(kids) != 1:
                errs.append(label + "want 1 child (the one that exec'd), "
                            "got %d" % len(kids))
            for k in kids:
                errs += expect_errors(k, kid, label + "child: ")
    if errs:
        raise Fail(errs[0], errs[1:])


# ---- B3: exec ----------------------------------------------------------------
@test("proc_exec_from_sh")
def t_exec_from_sh(s):
    # The report is leak_1000's, as if it had been run directly.
    s.builder.get("leak_1000")
    cmd = ["sh", "-c", "exec ./leak_1000"]
    res, doc = s.ptleak_run([], cmd, cwd=s.builder.out_dir, timeout=30)
    errs = native_same(s, cmd, res, cwd=s.builder.out_dir)
    procs = (doc or {}).get("processes") or []
    if len(procs) != 1:
        raise Fail("want 1 process in the JSON, got %d" % len(procs), errs)
    want = s.expect("leak_1000")
    errs += expect_errors(procs[0], want)
    if procs[0].get("exit") != want.want_exit():
        errs.append("JSON exit: %s" % procs[0].get("exit"))
    if parse_summary_text(res.stderr.decode("utf-8", "replace")).get(D) != \
            want.summary[D]:
        errs.append("text: want \"definitely lost: %s bytes in %s blocks\""
                    % tuple(map(fmt, want.summary[D])))
    if errs:
        raise Fail(errs[0], errs[1:])


@test("proc_exec_wrapper_script")
def t_exec_wrapper_script(s):
    # pyenv's python3 on these machines is a bash script that execs pyenv,
    # which execs the real interpreter: the report is about the last one.
    wrapper = None
    for cand in (shutil.which("python3"), os.path.join(
            os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
            "shims", "python3")):
        if cand and os.access(cand, os.X_OK):
            with open(cand, "rb") as f:
                if f.read(2) == b"#!":
                    wrapper = cand
                    break
    if not wrapper:
        raise Skip("no python3 wrapper script here (pyenv's shim)")
    lib = s.builder.get("liballoc_free.so")
    cmd = [wrapper, os.path.join(FIXTURES, "py_alloc_free.py"), lib]
    res, doc = s.ptleak_run([], cmd, timeout=120)
    expect_status(res, 0, "python3 through its wrapper: ")
    n = int(res.stdout.decode().strip())
    procs = (doc or {}).get("processes") or []
    if len(procs) != 1:
        raise Fail("want 1 process in the JSON, got %d" % len(procs))
    command = procs[0].get("command") or [""]
    if command[0] == wrapper or not os.path.basename(command[0]).startswith("python"):
        raise Fail("the report is not about the interpreter the wrapper ran: %s"
                   % command)
    summary, records = s.expect("py_alloc_free").expand(n)
    errs = proc_errors(procs[0], dict(summary, **{I: Z}), records)
    if errs:
        raise Fail(errs[0], errs[1:])


def text_summary_errors(out, want):
    """The text report's definitely lost line says what WANT does."""
    if parse_summary_text(out.decode("utf-8", "replace")).get(D) != \
            want.summary[D]:
        return ["text: no \"definitely lost: %s bytes in %s blocks\""
                % tuple(map(fmt, want.summary[D]))]
    return []


# ---- B4: signals from outside, SIGKILL ------------------------------------
def drive_sig_external(b, pid, what):
    """3 SIGUSR1 (each acknowledged), SIGSTOP for 0.6 s, SIGCONT, SIGUSR2."""
    for n in range(1, 4):
        os.kill(pid, signal.SIGUSR1)
        b.wait_for("out", rb"^got SIGUSR1 #%d$" % n, 10, what)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(pid, signal.SIGCONT)
    time.sleep(0.1)
    os.kill(pid, signal.SIGUSR2)


@test("proc_signals_from_outside")
def t_signals_from_outside(s):
    want = s.expect("sig_external")
    exe = s.builder.get("sig_external")
    with Processes(s) as ps:
        nat = ps.start([exe])
        nat.wait_for("out", rb"^ready$", 10, "sig_external alone")
        drive_sig_external(nat, nat.pid, "sig_external alone")
        st = nat.wait(20, "sig_external alone")
        if st != want.status or nat.out != want.stdout:
            raise Fail("sig_external alone: status %d, stdout %r"
                       % (st, nat.out))
        j = s.tmpfile("report.json")
        p = ps.start([s.ptleak, "--no-default-suppressions", "--json=" + j, exe])
        p.wait_for("out", rb"^ready$", 20, "ptleak sig_external")
        prog = traced_child(p.pid)
        drive_sig_external(p, prog, "ptleak sig_external")
        st = p.wait(30, "ptleak sig_external")
        errs = []
        if st != want.status:
            errs.append("exit status: want %d, got %d" % (want.status, st))
        if p.out != nat.out:
            errs += ["stdout differs from a run alone:"] + \
                ["  alone: " + l for l in tail(nat.out)] + \
                ["  under: " + l for l in tail(p.out)]
        doc = load_json(j, "sig_external")
        errs += expect_errors(doc["processes"][0], want)
        if errs:
            raise Fail(errs[0], errs[1:] + tail(p.err))


@test("proc_killed_from_outside")
def t_killed_from_outside(s):
    exe = s.builder.get("sig_external")
    with Processes(s) as ps:
        j = s.tmpfile("report.json")
        p = ps.start([s.ptleak, "--no-default-suppressions", "--json=" + j, exe])
        p.wait_for("out", rb"^ready$", 20, "ptleak sig_external")
        prog = traced_child(p.pid)
        os.kill(prog, signal.SIGUSR1)
        p.wait_for("out", rb"^got SIGUSR1 #1$", 10, "ptleak sig_external")
        os.kill(prog, signal.SIGKILL)
        st = p.wait(30, "ptleak after its program was SIGKILLed")
        if st != 137:
            raise Fail("exit status: want 137, got %d" % st, tail(p.err))
        doc = load_json(j, "SIGKILL")
        procs = doc["processes"]
        if len(procs) != 1 or procs[0].get("exit") != {"signal": 9}:
            raise Fail("JSON: want one process with exit {'signal': 9}, "
                       "got %s" % [q.get("exit") for q in procs])
        if not re.search(rb"^==%d== (HEAP|LEAK) SUMMARY" % prog, p.err,
                         re.M):
            raise Fail("no text report for the killed program",
                       tail(p.err))


@test("proc_launch_ptleak_kill9")
def t_launch_ptleak_kill9(s):
    """kill -9 of a launched ptleak while its program allocates at full
    speed. Fast mode: the program runs on untraced and unharmed, as after
    a crash of ptleak: the probe goes quiet, its allocations and its exit
    go through it. Trap mode: the program ends with ptleak
    (PTRACE_O_EXITKILL): its int3s would kill it at its next allocator
    call anyway. The hammer's threads allocate in libc; dlopen_new_threads
    loaded libstdc++ under ptleak while a thread ran, and calls its
    operator new and delete (hooked then with every thread stopped)."""
    launch_ptleak_kill9(s, "hammer", ["90"], HAMMER_DONE)
    launch_ptleak_kill9(s, "dlopen_new_threads", ["60"], None)


HAMMER_DONE = rb"^hammer: \d+ operations, stopped by SIGUSR1$"


@test("proc_launch_ptleak_kill9_jemalloc")
def t_launch_ptleak_kill9_jemalloc(s):
    """The same with jemalloc, whose own mmap and munmap calls (inside
    malloc and free) ptleak follows too: through the probe in fast mode,
    so nothing stops the program there after the kill -9 either."""
    launch_ptleak_kill9(s, "hammer_jemalloc", ["90"], HAMMER_DONE,
                        # freed extents unmapped at once: mmap and munmap
                        # all the time, not only while the heap grows
                        ["env", "MALLOC_CONF=retain:false,dirty_decay_ms:0,"
                         "muzzy_decay_ms:0"])


def launch_ptleak_kill9(s, fixture, args, err_pattern, wrap=()):
    exe = s.builder.get(fixture)

    def gone(pid):
        return proc_state(pid)[:1] in ("Z", "X", "g")   # zombie, dead, gone
    with Processes(s) as ps:
        p = ps.start([s.ptleak, "-q", "-o", "/dev/null"] + list(wrap) +
                     [exe] + args)
        p.wait_for("out", rb"^ready$", 20, "ptleak " + fixture)
        prog = traced_child(p.pid)
        time.sleep(0.5)
        p.signal(signal.SIGKILL)
        wait_until(lambda: p.poll() is not None, 10, "ptleak after kill -9")
        if s.mode != "fast":
            wait_until(lambda: gone(prog), 10, "trap mode: %s must end with "
                       "ptleak (PTRACE_O_EXITKILL)" % fixture)
            return
        # A breakpoint or a waiting probe would show within microseconds.
        time.sleep(0.3)
        if gone(prog) or tracer_pid(prog) != 0:
            raise Fail("fast mode: after kill -9 of ptleak %s must run on "
                       "untraced (%s, TracerPid %s)"
                       % (fixture, "gone" if gone(prog) else "alive",
                          None if gone(prog) else tracer_pid(prog)),
                       tail(p.out) + tail(p.err))
        os.kill(prog, signal.SIGUSR1)
        wait_until(lambda: gone(prog), 20, "%s after SIGUSR1" % fixture)
        # Not our child (reparented): its stdout and stderr tell, once
        # read to their end (the readers lagged behind its exit, on a
        # loaded machine: "ok" missing from a run that exited 0).
        p.streams_closed(10)
        if p.out != b"ready\nok\n" or \
                (err_pattern and not re.search(err_pattern, p.err, re.M)):
            raise Fail("fast mode: %s must finish its checks and print ok "
                       "after kill -9 of ptleak" % fixture,
                       tail(p.out) + tail(p.err))


def terminal_output_errors(alone, traced):
    """The program's terminal output under ptleak (ptleak's own ==PID==
    lines left out) against its output alone: a list of error lines."""
    lines = [l for l in traced.splitlines() if not re.match(rb"==\d+==", l)]
    if lines == alone.splitlines():
        return []
    return (["the program's output differs from a run alone:"] +
            ["  alone: %r" % l for l in alone.splitlines()] +
            ["  under: %r" % l for l in lines])


@test("proc_ctrl_c_at_terminal")
def t_ctrl_c_at_terminal(s):
    want = s.expect("ctrl_c")
    exe = s.builder.get("ctrl_c")
    st, out, _ = run_in_pty([exe], s.env, 20, lambda w: w(b"\x03"))
    if st != want.status or b"got SIGINT" not in out:
        raise Fail("ctrl_c alone in a pty: status %d" % st, tail(out))
    j = s.tmpfile("report.json")
    st2, out2, ready = run_in_pty([s.ptleak, "--no-default-suppressions", "--json=" + j, exe], s.env, 30,
                                  lambda w: w(b"\x03"))
    errs = []
    if not ready:
        errs.append("the program never printed ready")
    if st2 != want.status:
        errs.append("exit status: want %d (the program's), got %d"
                    % (want.status, st2))
    if b"got SIGINT" not in out2:
        errs.append("Ctrl-C did not reach the program (no \"got SIGINT\")")
    errs += terminal_output_errors(out, out2)
    if not os.path.exists(j):
        errs.append("no JSON report")
    else:
        errs += expect_errors(load_json(j, "ctrl_c")["processes"][0], want)
    errs += text_summary_errors(out2, want)
    if errs:
        raise Fail(errs[0], errs[1:] + tail(out2))


# ---- Ctrl-Z at a terminal, then SIGCONT (fg) --------------------------------
# A shell's job control in a few lines: the session leader (this script)
# runs its argument as a job in a process group of its own, makes that
# group the terminal's foreground, waits for it to end (not for it to
# stop) and exits with its status (128+S for a signal). The job's group is
# not orphaned, so Ctrl-Z's SIGTSTP really stops it.
JOB_SHELL = r"""
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, os.getpid())
    for sig in (signal.SIGTTOU, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    os.execv(sys.argv[1], sys.argv[1:])
_, st = os.waitpid(pid, 0)
sys.exit(128 + os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st))
"""


def ctrl_z_then_fg(s, traced, problems):
    """on_ready for run_in_pty(JOB_SHELL ...): Ctrl-Z, check that the job
    (and with TRACED, ptleak's program) is stopped, stays so for 0.5 s,
    then SIGCONT to the job's group. What went wrong goes to PROBLEMS."""
    def on_ready(write, shell_pid):
        kids = children_of(shell_pid)
        if len(kids) != 1:
            problems.append("the job shell has %d children" % len(kids))
            return
        job = kids[0]
        pids = [job] + ([traced_child(job)] if traced else [])
        write(b"\x1a")
        try:
            wait_until(lambda: all(proc_state(p)[0] in "Tt" for p in pids),
                       5, "Ctrl-Z did not stop the job",
                       ["pid %d: %s" % (p, proc_state(p)) for p in pids])
            time.sleep(0.5)
            late = ["pid %d: %s" % (p, proc_state(p)) for p in pids
                    if proc_state(p)[0] not in "Tt"]
            if late:
                problems.append("the job ran on during its suspension: "
                                + ", ".join(late))
        except Fail as e:
            problems.append("%s: %s" % (e, ", ".join(e.details)))
        os.killpg(job, signal.SIGCONT)
    return on_ready


@test("proc_ctrl_z_at_terminal")
def t_ctrl_z_at_terminal(s):
    want = s.expect("ctrl_z")
    exe = s.builder.get("ctrl_z")
    shell = [s.python, "-c", JOB_SHELL]
    problems = []
    st, out, _ = run_in_pty(shell + [exe], s.env, 20,
                            ctrl_z_then_fg(s, False, problems), pass_pid=True)
    out = out.replace(b"^Z", b"")     # the terminal's echo of Ctrl-Z
    if st != want.status or out.splitlines() != want.stdout.splitlines() \
            or problems:
        raise Fail("ctrl_z alone in a pty: status %d, %s" % (st, problems),
                   tail(out))
    j = s.tmpfile("report.json")
    problems = []
    st2, out2, ready = run_in_pty(shell + [s.ptleak, "--no-default-suppressions", "--json=" + j, exe],
                                  s.env, 30, ctrl_z_then_fg(s, True, problems),
                                  pass_pid=True)
    errs = problems[:]
    if not ready:
        errs.append("the program never printed ready")
    if st2 != want.status:
        errs.append("exit status: want %d (the program's), got %d"
                    % (want.status, st2))
    errs += terminal_output_errors(out, out2.replace(b"^Z", b""))
    if not os.path.exists(j):
        errs.append("no JSON report")
    else:
        proc = load_json(j, "ctrl_z")["processes"][0]
        errs += expect_errors(proc, want)
        if proc.get("exit") != want.want_exit():
            errs.append("JSON exit: want %s, got %s"
                        % (want.want_exit(), proc.get("exit")))
    errs += text_summary_errors(out2, want)
    if errs:
        raise Fail(errs[0], errs[1:] + tail(out2))


@test("inherit")
def t_inherit(s):
    # The program inherits what it would inherit without ptleak: the
    # environment (nothing added), file descriptors (a file left open on
    # fd 5 included, nothing of ptleak's), signal dispositions (SIGUSR1
    # ignored) and mask (SIGUSR2 blocked), personality, rlimits and umask.
    exe = s.builder.get("inherit_dump")
    script = ("import os, signal, sys\n"
              "os.umask(0o027)\n"
              "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
              "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})\n"
              "fd = os.open('/dev/null', os.O_RDONLY)\n"
              "os.dup2(fd, 5)\n"
              "os.execv(sys.argv[1], sys.argv[1:])\n")
    env = dict(s.env, PTLEAK_TEST_MARK="inherit")
    wrap = [sys.executable, "-c", script]
    direct = run(wrap + [exe], 60, env=env)
    traced = run(wrap + [s.ptleak, "-q", "-o", os.devnull, exe], 60,
                 env=env)
    s.check_sanitizer(traced.stderr)
    expect_status(direct, 0, "inherit_dump alone: ")
    expect_status(traced, 0, "inherit_dump under ptleak: ")
    for want in (b"env PTLEAK_TEST_MARK=inherit", b"fd 5\n", b"signal 10 ignored",
                 b"signal 12 default blocked", b"umask 027"):
        if want not in direct.stdout:
            raise Fail("inherit_dump alone lacks %r: the test is broken" % want,
                       tail(direct.stdout))
    if traced.stdout != direct.stdout:
        a = direct.stdout.decode().splitlines()
        b = traced.stdout.decode().splitlines()
        diff = ["- " + x for x in a if x not in b] + ["+ " + x for x in b if x not in a]
        raise Fail("the program inherits something else under ptleak", diff[:15])
