"""Attach mode (tests/run.py -k attach): ptleak -p on processes the test
starts itself (a TCP server it talks to, an allocator hammer, ...): exact
reports, the target unharmed after ptleak leaves, error messages. Every
process is started in its own session, waited for with a deadline and
killed with its session at the end of the test whatever happened."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from lib.checks import (attach_permitted, expect_alive_untraced,
                        one_line_error, traced_child)
from lib.attaching import (crash_restore_rounds, finish_hammer, start_attach,
                           start_hammer)
from lib.proc import (Fail, Skip, describe_status, exit_status,
                      expect_status, proc_state, proc_status, run, tail,
                      tracer_pid, children_of, wait_until)
from lib.report import (D, I, P, R, RE, expect_errors, fmt, load_json,
                        parse_summary_text, proc_errors, record_key,
                        stack_matches)
from lib.runner import test
from lib.suite import Processes


# ---- A1: the leaking server ----------------------------------------------
SERVER_LEAK_BLOCKS, SERVER_LEAK_SIZE = 2, 48
SERVER_LEAK_USABLE = 56     # malloc_usable_size(malloc(48)) in glibc


def server_sum(seq):
    """The answer leak_server.c gives to request SEQ: (LEN, SUM)."""
    n = 256 + (seq * 37) % 512
    data = bytes((seq * 31 + i * 7) & 0xff for i in range(n))
    for k in range(SERVER_LEAK_BLOCKS):
        data += bytes((seq + i * 13 + k * 101) & 0xff
                      for i in range(SERVER_LEAK_SIZE))
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xffffffff
    return n, h


def server_requests(port, count, first_seq, what):
    """COUNT requests, one connection each; checks every answer. Returns
    the next sequence number."""
    seq = first_seq
    for _ in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) \
                    as c:
                c.sendall(b"GET\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = c.recv(256)
                    if not chunk:
                        break
                    data += chunk
        except OSError as e:
            raise Fail("%s: request %d: %s" % (what, seq, e))
        n, h = server_sum(seq)
        want = b"OK %d %d %08x\n" % (seq, n, h)
        if data != want:
            raise Fail("%s: request %d: want answer %r, got %r"
                       % (what, seq, want, data))
        seq += 1
    return seq


def start_server(s, ps):
    server = ps.start([s.builder.get("leak_server"), "120"])
    m = server.wait_for("out", rb"^port (\d+)$", 10, "leak_server")
    return server, int(m.group(1))


def check_server_report(s, doc, text, pid, first_seq, nreq, what):
    """The attach report after requests FIRST_SEQ.. (NREQ of them): exact,
    with ages."""
    procs = doc["processes"]
    if len(procs) != 1:
        raise Fail("%s: want one process in the JSON, got %d"
                   % (what, len(procs)))
    proc = procs[0]
    errors = []
    if proc.get("pid") != pid:
        errors.append("JSON pid: want %d, got %s" % (pid, proc.get("pid")))
    if proc.get("attached") is not True:
        errors.append("JSON attached: want true, got %s"
                      % proc.get("attached"))
    if proc.get("exit", "missing") is not None:
        errors.append("JSON exit: want null (still running), got %s"
                      % proc.get("exit"))
    traced = proc.get("traced_s")
    if not isinstance(traced, (int, float)) or traced <= 0:
        errors.append("JSON traced_s: want seconds > 0, got %r" % traced)
        traced = None
    nbytes = nreq * SERVER_LEAK_BLOCKS * SERVER_LEAK_SIZE
    nblocks = nreq * SERVER_LEAK_BLOCKS
    # The requests served before the attach leaked too: read from glibc's
    # heap, with their usable size (56 for malloc(48)) and no stack.
    pre_blocks = (first_seq - 1) * SERVER_LEAK_BLOCKS
    pre_bytes = pre_blocks * SERVER_LEAK_USABLE
    # Every call since attaching, from every thread: per request malloc
    # (buffer), calloc (64), realloc to 600 (grows: an allocation and a
    # free), strdup (the answer), the leaked blocks; 4 frees.
    heap = {"allocations": nreq * (4 + SERVER_LEAK_BLOCKS),
            "frees": nreq * 4,
            "bytes_allocated": sum(server_sum(q)[0] + 64 + 600 + len(
                b"OK %d %d %08x\n" % (q, *server_sum(q))) + 1
                + SERVER_LEAK_BLOCKS * SERVER_LEAK_SIZE
                for q in range(first_seq, first_seq + nreq))}
    got_sum = proc.get("summary") or {}
    for k, want in heap.items():
        if got_sum.get(k) != want:
            errors.append("summary %s since attaching: want %s, got %s"
                          % (k, want, got_sum.get(k)))
    want = s.expect("leak_server").expand(nblocks)[1]
    if pre_blocks:
        want.append(R(D, pre_bytes, pre_blocks, []))
        want.sort(key=lambda r: -r["bytes"])
    errors += proc_errors(proc, {D: (nbytes + pre_bytes,
                                     nblocks + pre_blocks)}, want)
    dl = [r for r in proc.get("leaks") or [] if r.get("kind") == D]
    before = [(r.get("bytes"), r.get("blocks")) for r in dl
              if r.get("before_attach") is True]
    if before != ([(pre_bytes, pre_blocks)] if pre_blocks else []):
        errors.append("definitely lost before the attach: want %s bytes in %s "
                      "blocks (before_attach: true, no stack), got %s"
                      % (pre_bytes, pre_blocks, before))
    if any(r.get("stack") for r in dl if r.get("before_attach")):
        errors.append("a before_attach record has a stack")
    if proc.get("before_attach_known") is not True:
        errors.append("before_attach_known: want true, got %r"
                      % proc.get("before_attach_known"))
    recs = [r for r in proc.get("leaks") or []
            if r.get("kind") == D and r.get("bytes") == nbytes]
    if recs:
        age = recs[0].get("age") or {}
        old, med = age.get("oldest_s"), age.get("median_s")
        if not all(isinstance(x, (int, float)) for x in (old, med)) or \
                not 0 <= med <= old or (traced and old > traced + 0.5):
            errors.append("record age: want 0 <= median_s <= oldest_s <= "
                          "traced_s (%s), got %s" % (traced, age))
    rec_line = (r"^==%d== %s bytes in %s blocks are definitely lost in loss "
                r"record \d+ of \d+ \(ages: oldest [\d.]+ s, median [\d.]+ "
                r"s\)$" % (pid, fmt(nbytes), fmt(nblocks)))
    if not re.search(rec_line, text, re.M):
        errors.append("text lacks the loss record line with ages: %r"
                      % rec_line)
    if not re.search(r"^==%d==\s+definitely lost: %s bytes in %s blocks$"
                     % (pid, fmt(nbytes + pre_bytes),
                        fmt(nblocks + pre_blocks)), text, re.M):
        errors.append("text LEAK SUMMARY lacks \"definitely lost: %s bytes "
                      "in %s blocks\" under ==%d==" % (
                          fmt(nbytes + pre_bytes), fmt(nblocks + pre_blocks),
                          pid))
    if pre_blocks and not re.search(
            r"^==%d== %s bytes in %s blocks are definitely lost in loss record "
            r"\d+ of \d+\n==%d==    allocated before ptleak attached$"
            % (pid, fmt(pre_bytes), fmt(pre_blocks), pid), text, re.M):
        errors.append("text lacks the loss record of the %s blocks from "
                      "before the attach, \"allocated before ptleak "
                      "attached\"" % pre_blocks)
    if errors:
        raise Fail("%s: %s" % (what, errors[0]), errors[1:] +
                   ["text:"] + ["| " + l for l in text.splitlines()[-14:]])


class Overran(Exception):
    """The requests took longer than --duration gave them."""


def attach_server_run(s, mode, duration=2):
    attach_permitted()
    nreq = 25
    what = "attach (%s)" % mode
    with Processes(s) as ps:
        server, port = start_server(s, ps)
        # Requests before attaching: their leaks are found in glibc's heap.
        seq = server_requests(port, 5, 1, what + ", before attaching")
        j = s.tmpfile("attach.json")
        opts = ["--json=" + j]
        if mode == "duration":
            opts.append("--duration=%d" % duration)
        if mode == "interval":
            opts.append("--interval=0.5")
        t0 = time.monotonic()
        p = start_attach(s, ps, server.pid, opts)
        first = seq
        seq = server_requests(port, nreq, seq, what + ", attached")
        if mode == "duration":
            if time.monotonic() - t0 > duration - 0.2:
                raise Overran("the %d requests took %.1f s, longer than "
                              "--duration=%d allows" % (nreq,
                                                        time.monotonic() - t0,
                                                        duration))
            status = p.wait(20 + duration, "ptleak -p --duration=%d"
                            % duration)
        else:
            if mode == "interval":
                # A periodic block that has seen all the requests.
                site = (rb"^==%d==\s+%s bytes in %s blocks \([+-]?[\d,]+ "
                        rb"bytes\) at malloc < leak_request\b"
                        % (server.pid, fmt(nreq * 96).encode(),
                           fmt(nreq * 2).encode()))
                p.wait_for("err", site, 10, "--interval=0.5 block")
                head = (rb"^==%d== \[t=[\d.]+s\] live since attach: [\d,]+ "
                        rb"bytes in [\d,]+ blocks \([+-][\d,]+ bytes, "
                        rb"[+-][\d,]+ blocks in [\d.]+s\)$" % server.pid)
                if not re.search(head, p.err, re.M):
                    raise Fail("%s: no \"[t=...s] live since attach: ...\" "
                               "line" % what, tail(p.err))
            p.signal(signal.SIGINT)
            status = p.wait(20, "ptleak -p after SIGINT")
        if status != 0:
            raise Fail("%s: ptleak exit status: want 0, got %d"
                       % (what, status), tail(p.err))
        if mode == "duration":
            el = time.monotonic() - t0
            if el < duration - 0.1:
                raise Fail("%s: ptleak left after %.1f s, before "
                           "--duration=%d" % (what, el, duration))
        expect_alive_untraced(server.pid, what)
        doc = load_json(j, what)
        text = p.err.decode("utf-8", "replace")
        check_server_report(s, doc, text, server.pid, first, nreq, what)
        if mode == "duration":
            traced = doc["processes"][0].get("traced_s")
            if not duration - 0.1 <= traced <= duration + 4:
                raise Fail("%s: traced_s %s, want about %d" % (what, traced,
                                                               duration))
        # Unharmed: it answers on, right, and is still alive.
        server_requests(port, 10, seq, what + ", after detaching")
        expect_alive_untraced(server.pid, what + ", after more requests")
        server.signal(signal.SIGTERM)
        st = server.wait(10, "leak_server after SIGTERM")
        if st != 128 + signal.SIGTERM:
            raise Fail("%s: the server should die of SIGTERM, exit %d"
                       % (what, st), tail(server.err))


@test("attach_server_sigint")
def t_attach_server_sigint(s):
    attach_server_run(s, "sigint")


# Exclusive: it times its own requests against --duration=2. Requests
# slower than that (a loaded machine, the sanitizer build) measure the
# machine, not ptleak: then again with a window they fit in.
@test("attach_server_duration", exclusive=True)
def t_attach_server_duration(s):
    try:
        attach_server_run(s, "duration", 2)
    except Overran:
        try:
            attach_server_run(s, "duration", 10)
        except Overran as e:
            raise Fail("attach (duration): %s, twice" % e)


@test("attach_server_interval")
def t_attach_server_interval(s):
    attach_server_run(s, "interval")


# ---- A2, A5: hammer --------------------------------------------------------
@test("attach_detach_cycles")
def t_attach_detach_cycles(s):
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        # Each cycle is bounded by its own time limit (a hang fails it);
        # how long 20 take on a loaded machine is no verdict.
        for i in range(20):
            res, _ = s.ptleak_run(["-q", "-p", str(h.pid), "--duration=0.2",
                                   "-o", "/dev/null"], [], timeout=30,
                                  json_file=False)
            expect_status(res, 0, "cycle %d: ptleak: " % (i + 1))
            if h.poll() is not None:
                raise Fail("cycle %d: hammer died (status %d)"
                           % (i + 1, h.poll()), tail(h.out) + tail(h.err))
            expect_alive_untraced(h.pid, "cycle %d" % (i + 1))
        finish_hammer(h, "after 20 attach/detach cycles")


@test("attach_preattach_busy")
def t_attach_preattach_busy(s):
    """Attached while three threads allocate at full speed, ptleak may stop
    one inside malloc or free, glibc's lists half updated (rare: none in
    20 attaches by hand; once in CI). It lets the threads run a moment and
    reads the heap again. Each of 20 attaches takes that path here (its
    first reading counted as half updated: PTLEAK_TORN_READS=1) while
    they allocate: each then reads the heap, the blocks allocated in that
    moment keep their stacks (never "allocated before ptleak attached"),
    and the hammer's checks of its own data all pass."""
    attach_permitted()
    env = dict(s.ptleak_env, PTLEAK_DEBUG="1", PTLEAK_TORN_READS="1")
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        for i in range(20):
            what = "attach %d" % (i + 1)
            res, doc = s.ptleak_run(["-p", str(h.pid), "--duration=0.2",
                                     "--show-leak-kinds=all", "-o", "/dev/null"],
                                    [], timeout=30, env=env)
            expect_status(res, 0, what + ": ptleak: ")
            err = res.stderr.decode("utf-8", "replace")
            if "reading it again after 2 ms" not in err or \
                    "the heap read whole after 1 more readings" not in err:
                raise Fail(what + ": want one more reading of the heap, whole",
                           [l for l in err.splitlines() if "heap" in l])
            if not re.search(r"^==%d== [\d,]+ bytes in [\d,]+ blocks were live "
                             r"in glibc's heap" % h.pid, err, re.M):
                raise Fail(what + ": the heap from before the attach was not "
                           "read", [l for l in err.splitlines() if "attach" in l])
            proc = s.process(doc, res)
            ba = proc["summary"]["before_attach"]
            if ba["blocks"] > ba["found_blocks"] or ba["found_blocks"] > 3 * 64 + 16:
                raise Fail(what + ": the hammer holds 3 x 64 blocks, and libc "
                           "a few: before_attach %s" % ba)
            for r in proc.get("leaks") or []:
                if r.get("before_attach") and r.get("stack"):
                    raise Fail(what + ": a record from before the attach has a "
                               "stack", [json.dumps(r)[:300]])
            if h.poll() is not None:
                raise Fail("%s: hammer died (status %d)" % (what, h.poll()),
                           tail(h.out) + tail(h.err))
        finish_hammer(h, "after 20 attaches")


@test("attach_job_stopped")
def t_attach_job_stopped(s):
    # A process stopped by SIGSTOP stays stopped while ptleak attaches,
    # hooks (which runs code in one of its threads), traces and leaves;
    # afterwards it is untraced, still stopped, and SIGCONT resumes it.
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        os.kill(h.pid, signal.SIGSTOP)
        wait_until(lambda: proc_state(h.pid).startswith("T"), 5,
                   "hammer never stopped")
        res, _ = s.ptleak_run(["-q", "-p", str(h.pid), "--duration=0.5",
                               "-o", "/dev/null"], [], timeout=20,
                              json_file=False)
        expect_status(res, 0, "ptleak -p on a stopped process: ")
        time.sleep(0.3)
        state = proc_state(h.pid)
        if not state.startswith("T") or tracer_pid(h.pid) != 0:
            raise Fail("after ptleak left: want state T (stopped) and untraced, "
                       "got state %s, TracerPid %d" % (state, tracer_pid(h.pid)))
        os.kill(h.pid, signal.SIGCONT)
        finish_hammer(h, "after ptleak attached to it while it was stopped")


@test("attach_sigterm_ptleak")
def t_attach_sigterm(s):
    # SIGTERM to ptleak while the target allocates at full speed: ptleak
    # detaches cleanly, reports, exits 0; the target runs on.
    attach_permitted()
    with Processes(s) as ps:
        h = start_hammer(s, ps)
        j = s.tmpfile("attach.json")
        p = start_attach(s, ps, h.pid, ["--json=" + j])
        time.sleep(1.0)
        p.signal(signal.SIGTERM)
        st = p.wait(20, "ptleak -p after SIGTERM")
        if st != 0:
            raise Fail("ptleak exit status after SIGTERM: want 0, got %d"
                       % st, tail(p.err))
        expect_alive_untraced(h.pid, "after SIGTERM to ptleak")
        doc = load_json(j, "SIGTERM")
        procs = doc["processes"]
        if len(procs) != 1 or procs[0].get("pid") != h.pid or \
                procs[0].get("attached") is not True or \
                procs[0].get("exit", 0) is not None:
            raise Fail("JSON: want one process, pid %d, attached, exit null"
                       % h.pid, [json.dumps(procs)[:300]])
        if not re.search(rb"LEAK SUMMARY", p.err):
            raise Fail("no LEAK SUMMARY in the report", tail(p.err))
        time.sleep(0.5)
        finish_hammer(h, "after SIGTERM to ptleak")


@test("attach_ptleak_crash_restores")
def t_attach_crash_segv(s):
    crash_restore_rounds(s, signal.SIGSEGV)


@test("attach_ptleak_crash_restores_abrt")
def t_attach_crash_abrt(s):
    crash_restore_rounds(s, signal.SIGABRT)


# Fast mode only: in trap mode an int3 left by a killed ptleak ends the
# program at its next allocation, which is what the probe avoids. Every
# site of fast mode goes through the probe, the allocator's, ld.so's r_brk
# (dlopen) and _exit (the scan at exit): the program allocates, loads
# libraries and exits after the kill as if ptleak had never been there.
@test("attach_fast_ptleak_kill9")
def t_attach_fast_kill9(s):
    crash_restore_rounds(s, signal.SIGKILL, opts=["--mode=fast"])


@test("attach_fast_ptleak_kill9_dlopen")
def t_attach_fast_kill9_dlopen(s):
    """The dynamic linker's r_brk goes through the probe too: a dlopen
    after ptleak was killed meets no int3."""
    crash_restore_rounds(s, signal.SIGKILL, rounds=3, opts=["--mode=fast"],
                         target="dlopen_loop")


@test("attach_fast_ptleak_kill9_again")
def t_attach_fast_kill9_again(s):
    """ptleak -p, killed with -9, three times on one program that dlopens
    all the time: each ptleak finds the previous one's jumps (ld.so's
    r_brk, a one-byte function, under a jmp over its padding) and takes
    them over; none may leave an int3."""
    attach_permitted()
    with Processes(s) as ps:
        h = ps.start([s.builder.get("dlopen_loop")])
        h.wait_for("out", rb"^ready$", 10, "dlopen_loop")
        for n in range(1, 4):
            what = "round %d/3, kill -9 of ptleak -p on one program" % n
            p = start_attach(s, ps, h.pid, ["--mode=fast"])
            time.sleep(0.8)
            p.signal(signal.SIGKILL)
            if p.wait(20, what) != 128 + signal.SIGKILL:
                raise Fail(what + ": ptleak must die of SIGKILL", tail(p.err))
            time.sleep(0.3)
            if h.poll() is not None:
                raise Fail("%s: the program died: %s"
                           % (what, describe_status(h.poll())),
                           tail(h.out) + tail(h.err))
            expect_alive_untraced(h.pid, what)
        finish_hammer(h, "after three kills of ptleak")


# ---- A3: the same records, launched or attached ----------------------------
@test("attach_same_as_launch")
def t_attach_same_as_launch(s):
    attach_permitted()
    want = s.expect("trigger_leaks")
    exe = s.builder.get("trigger_leaks")
    nat = s.native([exe], b"x", 20)
    if exit_status(nat.status) != want.status or nat.stdout != want.stdout:
        raise Fail("trigger_leaks alone: status %d" % exit_status(nat.status),
                   tail(nat.stdout))
    res, doc = s.ptleak_run([], [exe], stdin=b"x", timeout=30)
    expect_status(res, want.status, "launch: ")
    launch = s.process(doc, res)
    errs = expect_errors(launch, want, "launch: ")
    if errs:
        raise Fail(errs[0], errs[1:])
    with Processes(s) as ps:
        prog = ps.start([exe], stdin=True)
        prog.wait_for("out", rb"^ready$", 10, "trigger_leaks")
        j = s.tmpfile("attach.json")
        p = start_attach(s, ps, prog.pid, ["--json=" + j])
        prog.write(b"x")
        prog.close_stdin()
        st = p.wait(30, "ptleak -p on a process that exits")
        if st != 0:
            raise Fail("attach: ptleak exit status: want 0 (the process "
                       "exited while traced), got %d" % st, tail(p.err))
        pst = prog.wait(10, "trigger_leaks")
        if pst != want.status or prog.out != nat.stdout:
            raise Fail("attach: the program's status %d / stdout changed"
                       % pst, tail(prog.out))
        doc = load_json(j, "attach")
    attached = doc["processes"][0]
    errs = []
    if attached.get("exit") != want.want_exit():
        errs.append("attach: JSON exit: want %s, got %s"
                    % (want.want_exit(), attached.get("exit")))
    errs += expect_errors(attached, want, "attach: ")
    a = [record_key(r) for r in launch.get("leaks") or [] if r["kind"] == D]
    b = [record_key(r) for r in attached.get("leaks") or []
         if r["kind"] == D]
    if a != b:
        errs += ["definitely lost records differ, launch vs attach:"] + \
            ["  launch: %s" % (r,) for r in a] + \
            ["  attach: %s" % (r,) for r in b]
    if errs:
        raise Fail(errs[0], errs[1:])


# ---- A4: errors ------------------------------------------------------------
def free_pid():
    """A PID no process has: one just reaped and not reused."""
    for _ in range(20):
        p = subprocess.Popen(["true"])
        p.wait()
        if not os.path.exists("/proc/%d" % p.pid):
            return p.pid
    raise Skip("no free pid found")


# ---- the heap from before the attach -------------------------------------
def preattach_run(s, name, torn=0):
    """preattach_heap.c built as NAME: the blocks it says it holds, read
    from glibc's heap at -p: the lost ones definitely lost, exactly, with
    no stack; nothing else lost; the program unharmed. TORN: the first
    TORN readings of the heap count as half updated (PTLEAK_TORN_READS),
    each followed by a moment of running and another reading."""
    attach_permitted()
    with Processes(s) as ps:
        prog = ps.start([s.builder.get(name), "60"], stdin=True)
        prog.wait_for("out", rb"^ready$", 15, name)
        out = prog.out.decode()
        kept = tuple(int(x) for x in re.search(r"^kept (\d+) (\d+)$", out,
                                               re.M).groups())
        lost = tuple(int(x) for x in re.search(r"^lost (\d+) (\d+)$", out,
                                               re.M).groups())
        if kept[1] != 29 or lost[1] != 13:
            raise Fail("%s says it keeps %d and lost %d blocks, want 29 and 13"
                       % (name, kept[1], lost[1]), tail(prog.out))
        j = s.tmpfile("preattach.json")
        env = {"PTLEAK_TORN_READS": str(torn), "PTLEAK_DEBUG": "1"} if torn else None
        p = start_attach(s, ps, prog.pid, ["--json=" + j,
                                           "--show-leak-kinds=all"], env=env)
        time.sleep(0.3)
        p.signal(signal.SIGINT)
        st = p.wait(20, "ptleak -p after SIGINT")
        if st != 0:
            raise Fail("ptleak exit status: want 0, got %d" % st, tail(p.err))
        expect_alive_untraced(prog.pid, name)
        doc = load_json(j, name)
        proc = doc["processes"][0]
        text = p.err.decode("utf-8", "replace")
        if torn:
            again = len(re.findall(r"reading it again after", text))
            if again != torn or "the heap read whole after %d more readings" \
                    % torn not in text:
                raise Fail("%s: want %d readings again, then the heap read "
                           "whole; got %d" % (name, torn, again), tail(p.err))
            text = "\n".join(l for l in text.splitlines()
                             if not l.startswith("ptleak[debug]"))
        allocator = "musl" if name.endswith("musl") else "glibc"
        errs = proc_errors(proc, {D: lost, I: (0, 0), P: (0, 0)},
                           [R(D, lost[0], lost[1], [])])
        leaks = proc.get("leaks") or []
        if [r.get("before_attach") for r in leaks if r.get("kind") == D] != \
                [True]:
            errs.append("the definitely lost record must be before_attach")
        if any(r.get("stack") for r in leaks if r.get("before_attach")):
            errs.append("a before_attach record has a stack")
        reach = (proc.get("summary") or {}).get(RE) or {}
        # Still reachable: what it keeps, and libc's own (stdout's buffer,
        # the threads' DTVs): a few blocks more, never fewer.
        if not (kept[0] <= reach.get("bytes", 0) <= kept[0] + 16384 and
                kept[1] <= reach.get("blocks", 0) <= kept[1] + 12):
            errs.append("still reachable: want the %d bytes in %d blocks it "
                        "keeps and a few of libc's, got %s" % (kept + (reach,)))
        ba = (proc.get("summary") or {}).get("before_attach") or {}
        if (ba.get("bytes"), ba.get("blocks")) != (
                reach.get("bytes", 0) + lost[0], reach.get("blocks", 0)
                + lost[1]) or ba.get("found_blocks") != ba.get("blocks"):
            errs.append("summary before_attach: want every live block, "
                        "found and still live, got %s" % ba)
        if not re.search(r"^==%d== %s bytes in %s blocks were live in %s's "
                         r"heap \(allocated before ptleak attached\)$"
                         % (prog.pid, fmt(ba.get("found_bytes", 0)),
                            fmt(ba.get("found_blocks", 0)), allocator), text,
                         re.M):
            errs.append("no banner line \"N bytes in M blocks were live in "
                        "%s's heap\"" % allocator)
        if proc.get("before_attach_allocator") != allocator:
            errs.append("before_attach_allocator: want %s, got %r"
                        % (allocator, proc.get("before_attach_allocator")))
        if not re.search(r"^==%d== %s bytes in %s blocks are definitely lost "
                         r"in loss record \d+ of \d+\n==%d==    allocated "
                         r"before ptleak attached$" % (
                             prog.pid, fmt(lost[0]), fmt(lost[1]), prog.pid),
                         text, re.M):
            errs.append("text lacks the definitely lost record \"allocated "
                        "before ptleak attached\"")
        if errs:
            raise Fail("%s: %s" % (name, errs[0]), errs[1:] + ["text:"] +
                       ["| " + l for l in text.splitlines()[-16:]])
        prog.close_stdin()
        if prog.wait(10, name) != 0:
            raise Fail("%s: exit status %s after ptleak left, want 0"
                       % (name, prog.poll()), tail(prog.err))


@test("attach_preattach")
def t_attach_preattach(s):
    preattach_run(s, "preattach_heap")


@test("attach_preattach_o2")
def t_attach_preattach_o2(s):
    preattach_run(s, "preattach_heap_o2")


@test("attach_preattach_torn")
def t_attach_preattach_torn(s):
    preattach_run(s, "preattach_heap", torn=2)


@test("attach_preattach_static")
def t_attach_preattach_static(s):
    preattach_run(s, "preattach_heap_static")


def preattach_other_allocator(s, name, why, exact=True):
    """Neither glibc's malloc nor musl's: said so, conservative, the attach
    report as exact as ever for what happens after (EXACT false: jemalloc's
    own memory keeps pointers to the leaked blocks, in launch mode too:
    only the 5 blocks, of whatever kind, are checked)."""
    attach_permitted()
    with Processes(s) as ps:
        prog = ps.start([s.builder.get(name)], stdin=True)
        prog.wait_for("out", rb"^ready$", 10, name)
        j = s.tmpfile("attach.json")
        p = start_attach(s, ps, prog.pid, ["--json=" + j])
        line = (rb"^==%d== blocks allocated before the attach are not known: "
                rb"the allocator is not glibc's \(%s\); leak kinds are "
                rb"conservative$" % (prog.pid, why.encode()))
        p.wait_for("err", line, 5, "the banner's line about the allocator")
        prog.write(b"x")
        prog.close_stdin()
        if p.wait(30, "ptleak -p") != 0 or prog.wait(10, name) != 4:
            raise Fail("%s: ptleak or the program ended badly" % name,
                       tail(p.err))
        doc = load_json(j, name)
    proc = doc["processes"][0]
    want = s.expect("trigger_leaks")
    if exact:
        errs = expect_errors(proc, want)
    else:
        got = sorted((r.get("bytes"), r.get("blocks"))
                     for r in proc.get("leaks") or []
                     if any(stack_matches(w["stack"], r.get("stack") or [])
                            for w in want.records))
        sizes = sorted((w["bytes"], w["blocks"]) for w in want.records)
        errs = [] if got == sizes else [
            "want the records of (bytes, blocks) %s, got %s" % (sizes, got)]
    if proc.get("before_attach_known") is not False or \
            "not glibc's" not in (proc.get("before_attach_why") or ""):
        errs.append("JSON: want before_attach_known false and the reason, got "
                    "%r, %r" % (proc.get("before_attach_known"),
                                proc.get("before_attach_why")))
    if errs:
        raise Fail("%s: %s" % (name, errs[0]), errs[1:])


@test("attach_preattach_musl")
def t_attach_preattach_musl(s):
    # A static musl binary: its mallocng heap, sizes as asked for.
    preattach_run(s, "preattach_heap_musl")


@test("attach_preattach_jemalloc")
def t_attach_preattach_jemalloc(s):
    preattach_other_allocator(s, "trigger_leaks_jemalloc",
                              r"malloc is libjemalloc\.so\.2's", exact=False)


@test("attach_err_nonexistent_pid")
def t_attach_err_nonexistent_pid(s):
    pid = free_pid()
    res, _ = s.ptleak_run(["-p", str(pid)], [], json_file=False, timeout=20)
    expect_status(res, 125, "-p %d (no such process): " % pid)
    one_line_error(res, "-p %d" % pid, r"no such process", r"\b%d\b" % pid)


def traced_twice(s, first_tracer, target, what):
    res, _ = s.ptleak_run(["-p", str(target)], [], json_file=False,
                          timeout=20)
    expect_status(res, 125, "%s: " % what)
    one_line_error(res, what, r"\b%d\b" % first_tracer)
    if tracer_pid(target) != first_tracer:
        raise Fail("%s: the target lost its first tracer (TracerPid %d)"
                   % (what, tracer_pid(target)))


@test("attach_err_traced_by_strace")
def t_attach_err_traced_by_strace(s):
    attach_permitted()
    if shutil.which("strace") is None:
        raise Skip("strace not installed")
    with Processes(s) as ps:
        st = ps.start(["strace", "-f", "-o", "/dev/null", "sleep", "30"])
        # Traced and past its exec: strace's child is sleep by then (just
        # after the fork, ptleak has been seen to say "no such process").
        target = wait_until(
            lambda: next((k for k in children_of(st.pid)
                          if tracer_pid(k) == st.pid and
                          proc_status(k).get("Name") == "sleep"), None), 10,
            "strace's child never appeared traced, as sleep")
        traced_twice(s, st.pid, target, "-p PID traced by strace")


@test("attach_err_traced_by_ptleak")
def t_attach_err_traced_by_ptleak(s):
    attach_permitted()
    want = s.expect("trigger_leaks")
    exe = s.builder.get("trigger_leaks")
    with Processes(s) as ps:
        first = ps.start([s.ptleak, "-q", exe], stdin=True)
        first.wait_for("out", rb"^ready$", 10, "ptleak trigger_leaks")
        target = traced_child(first.pid)
        traced_twice(s, first.pid, target, "-p PID traced by another ptleak")
        # The first ptleak goes on undisturbed.
        first.write(b"x")
        first.close_stdin()
        st = first.wait(20, "the first ptleak")
        if st != want.status or not parse_summary_text(
                first.err.decode("utf-8", "replace")).get(D) == \
                want.summary[D]:
            raise Fail("the first ptleak: want status %d and %s bytes in "
                       "%s blocks definitely lost, got status %d"
                       % (want.status, *map(fmt, want.summary[D]), st),
                       tail(first.err))


@test("attach_err_bad_pid")
def t_attach_err_bad_pid(s):
    for opts in (["-p", "abc"], ["--pid=abc"], ["-p", "12abc"], ["-p", "0"],
                 ["-p", "-5"], ["-p"]):
        res, _ = s.ptleak_run(opts, [], json_file=False, timeout=20)
        expect_status(res, 125, "%s: " % " ".join(opts))
        one_line_error(res, " ".join(opts))


@test("attach_err_pid_and_program")
def t_attach_err_pid_and_program(s):
    hello = s.builder.get("hello")
    with Processes(s) as ps:
        sl = ps.start(["sleep", "30"])
        res, _ = s.ptleak_run(["-p", str(sl.pid)], [hello], json_file=False,
                              timeout=20)
        expect_status(res, 125, "-p PID PROGRAM: ")
        one_line_error(res, "-p PID PROGRAM")
        expect_alive_untraced(sl.pid, "-p PID PROGRAM")


NOBODY = 65534


@test("attach_err_not_permitted")
def t_attach_err_not_permitted(s):
    # An unprivileged user attaching to root's process: refused by the
    # kernel (EPERM). One line saying so, with the way out; the target is
    # left as it was.
    if os.geteuid() != 0:
        raise Skip("needs root (to start a target nobody may not trace)")
    # A copy of ptleak that nobody can run wherever the checkout lives.
    bindir = tempfile.mkdtemp(prefix="ptleak-nobody-")
    try:
        os.chmod(bindir, 0o755)
        exe = os.path.join(bindir, "ptleak")
        shutil.copy(s.ptleak, exe)
        os.chmod(exe, 0o755)
        with Processes(s) as ps:
            target = ps.start(["sleep", "30"])
            wait_until(lambda: proc_status(target.pid).get("Uid", "")
                       .split()[:1] == ["0"] and
                       proc_status(target.pid).get("Name") == "sleep", 10,
                       "sleep did not start")
            what = "-p %d (root's) as nobody" % target.pid
            res = run([exe, "-p", str(target.pid)], 20, cwd=bindir,
                      env=s.ptleak_env, user=NOBODY)
            s.check_sanitizer(res.stderr)
            expect_status(res, 125, what + ": ")
            one_line_error(res, what, r"not permitted", r"\b%d\b"
                           % target.pid, r"CAP_SYS_PTRACE|ptrace_scope")
            expect_alive_untraced(target.pid, what)
            # Not stopped either, nor signalled: sleep runs on until told.
            target.signal(signal.SIGTERM)
            st = target.wait(10, "sleep after SIGTERM")
            if st != 128 + signal.SIGTERM:
                raise Fail("%s: the target should die of SIGTERM, exit %d"
                           % (what, st))
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


# ---- what -p names -------------------------------------------------------
@test("attach_command_as_ps", limit=120)
def t_attach_command_as_ps(s):
    """redis-server rewrites its argv as a title padded with NULs: the
    report's command is what ps shows, not a list of empty strings."""
    attach_permitted()
    redis = shutil.which("redis-server")
    if not redis:
        raise Fail("redis-server not installed (make test-deps installs it)")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with Processes(s) as ps:
        srv = ps.start([redis, "--port", str(port), "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no"])
        def title():
            t = run(["ps", "-o", "args=", "-p", str(srv.pid)], 10,
                    env=s.env).stdout.decode().strip()
            return t if t.endswith(":%d" % port) else None
        want = wait_until(title, 10, "redis-server's title (ps: ...:%d)" % port)
        res, doc = s.ptleak_run(["-p", str(srv.pid), "--duration=0.5"], [])
        expect_status(res, 0)
        cmd = s.process(doc, res)["command"]
        if cmd != [want]:
            raise Fail("command %r, ps shows %r" % (cmd, want))
        line = [l for l in res.stderr.decode().splitlines() if "Command:" in l]
        if len(line) != 1 or line[0].endswith(" ") or \
                not line[0].endswith("Command: " + want.replace(" ", "\\ ")):
            raise Fail("text Command: line %r for %r" % (line, want))
        expect_alive_untraced(srv.pid, "redis-server after ptleak left")


@test("attach_err_zombie_kthread")
def t_attach_err_zombie_kthread(s):
    """-p of a zombie or a kernel thread says so (not 'another user's
    process'), 125, and creates no report file."""
    out = s.tmpfile("report.txt")
    res, _ = s.ptleak_run(["-p", "2", "-o", out], [], json_file=False, timeout=20)
    expect_status(res, 125, "-p 2 (kthreadd): ")
    one_line_error(res, "-p 2", r"kernel thread", r"\(kthreadd\)")
    child = subprocess.Popen(["true"])
    try:
        wait_until(lambda: proc_state(child.pid).startswith("Z"), 10, "a zombie")
        res, _ = s.ptleak_run(["-p", str(child.pid), "-o", out], [],
                              json_file=False, timeout=20)
        expect_status(res, 125, "-p of a zombie: ")
        one_line_error(res, "-p zombie", r"it is a zombie", r"\b%d\b" % child.pid)
    finally:
        child.wait()
    if os.path.exists(out):
        raise Fail("a report file was created for a process never traced")
