#!/usr/bin/env python3
"""ptleak's benchmarks (`make bench`). Not tests: these machines are shared
and noisy, so nothing here passes or fails on a number. Every figure is a
median of REPEAT runs, and the programs compared are run side by side,
interleaved, in the same invocation.

Prints:
  - the bare int3 round trip of a ptrace tracer on this machine (the floor),
    with a blocking wait and with a bounded poll before it, on the machine
    as it is and with one CPU kept busy by a spinning process (an idle
    virtual CPU is halted: every hand-off that wakes one costs more);
  - ptleak's cost per traced allocator event in trap mode on an
    allocation-heavy loop (3 stops per malloc/free pair), and its ratio to
    the floor;
  - slowdowns against the untraced program: allocation-heavy loop, and a
    compute-heavy program; valgrind memcheck on the same loop for scale;
  - the same per-event cost with ptleak's poll turned off
    (PTLEAK_SPIN_US=0), idle and busy;
  - a signal-heavy program (fixtures/sig_alarm.c: SIGALRM every 100 us
    while it allocates): native, ptleak, ptleak without polling;
  - the reachability scan of a heap of 1 GiB in a million live blocks;
  - ptleak -p on a program holding a million blocks: how long reading its
    heap from before the attach keeps it stopped, and a leak check on
    demand (SIGUSR1) there: how long the program is stopped for it;
  - with --baseline=OTHER_PTLEAK: the alloc loop under both, interleaved
    (what a change costs per event: e.g. the heap-over-time sampling,
    always on, against a build without it);
  - the HTML page of 100,000 loss records (fixtures/many_stacks.c): its
    size, and how long headless Chromium takes to load and draw it.
  - ptleak's own peak RSS attached to a program holding a million live
    blocks, and its bytes per live block.
  - the event sources side by side (issue 9), in seconds: native, ptleak
    --mode=fast, ptleak --mode=trap, valgrind memcheck, heaptrack on W1
    (1,000,000 malloc/free pairs), W4 (4 threads x 250,000 pairs), W5
    (Debian's sqlite3, 80,000 INSERTs in :memory:), W3 (python3 json), W2
    and W6 (gzip -6, xz -6 of a few MB), C1 (compute-bound: a sieve, two
    allocations a round) and C0 (true(1): nothing but start-up and exit),
    in wall and CPU seconds and as ratios to native; and redis-server
    under redis-benchmark: requests/s native, launched under each tool,
    and while ptleak -p (and heaptrack -p) is attached. The machine's
    load average is printed with each table.
    --quick runs a fifth of W1/W4/W5, once; --side-by-side only these
    tables, full size; --only W1 --only redis ... some of them.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")


def build(src, out):
    subprocess.run(["cc", "-O2", "-g", "-pthread", "-I", FIXTURES, "-o", out, src],
                   check=True)


def timed(cmd, stdin_file=None, timeout=1800, **kw):
    """Wall seconds of CMD, its stdin from STDIN_FILE (default: none);
    None if it ran past TIMEOUT (then killed)."""
    t = time.monotonic()
    with open(stdin_file or os.devnull, "rb") as f:
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stdin=f,
                           stderr=subprocess.DEVNULL, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            return None
    return time.monotonic() - t


def env_with(**kv):
    e = dict(os.environ)
    e.update(kv)
    return e


NO_POLL = env_with(PTLEAK_SPIN_US="0")


class Busy:
    """One process spinning on the CPU for as long as the block runs."""
    def __enter__(self):
        self.p = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def secs(v, limit):
    return f"{v:.2f} s" if v is not None else f"> {limit:.0f} s (killed)"


def median_or_none(vals):
    """Median where a None (timed out) counts as longer than anything."""
    vals = sorted(vals, key=lambda v: float("inf") if v is None else v)
    return vals[len(vals) // 2]


def peak_rss_attached(ptleak, exe, count):
    """ptleak -p on big_heap holding COUNT blocks: ptleak's peak RSS in
    KiB (from wait4: it has no children in attach mode) and seconds."""
    mb = max(1, count * 16 >> 20)
    h = subprocess.Popen([exe, str(count), str(mb), "wait"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        if h.stdout.readline() != b"ready\n":
            raise RuntimeError("big_heap did not start")
        p = subprocess.Popen([ptleak, "-q", "-p", str(h.pid), "-o", os.devnull],
                             stderr=subprocess.DEVNULL)
        # Attached once the target shows ptleak as its tracer.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(f"/proc/{h.pid}/status") as f:
                if f"TracerPid:\t{p.pid}\n" in f.read():
                    break
            time.sleep(0.05)
        time.sleep(0.3)	# hooks armed after the threads are seized
        t = time.monotonic()
        h.stdin.write(b"go\n")
        h.stdin.flush()
        if not h.stdout.readline().startswith(b"allocated "):
            raise RuntimeError("big_heap did not allocate")
        took = time.monotonic() - t
        p.send_signal(signal.SIGINT)
        _, status, ru = os.wait4(p.pid, 0)
        if status != 0:
            raise RuntimeError(f"ptleak -p exited with status {status}")
        return ru.ru_maxrss, took
    finally:
        h.stdin.close()
        h.wait()


def timed_cpu(cmd, stdin_file=None):
    """(wall seconds, CPU seconds of every process of the run, user + sys):
    on a loaded machine the CPU time says more than the wall clock."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(cmd, stdin_file)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fmt_s(v):
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def sqlite_script(path, n):
    with open(path, "w") as f:
        f.write("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);\nBEGIN;\n")
        for i in range(n):
            f.write(f"INSERT INTO t(name, v) VALUES('name-{i * 7919 % 100003}', {i * 0.5});\n")
        f.write("COMMIT;\nSELECT count(*), sum(v) FROM t;\n")


def text_file(path, mb):
    """A few MB of text that compresses like text, the same every run."""
    words = [("w%x" % (i * 2654435761 % 99991)) for i in range(5000)]
    x, out, size = 1, [], 0
    while size < mb << 20:
        x = (x * 1103515245 + 12345) & 0x7fffffff
        w = words[x % len(words)]
        out.append(w)
        size += len(w) + 1
    with open(path, "w") as f:
        f.write(" ".join(out))


PY_JSON = ("import json\n"
           "d = [{'k%d' % i: [i, str(i) * 5, {'x': i, 'y': [i] * 3}]} for i in range(30000)]\n"
           "for _ in range(5):\n"
           "    d = json.loads(json.dumps(d))\n")


def load_avg():
    return "load average %.1f, %.1f, %.1f" % os.getloadavg()


def side_by_side(a, ptleak, exe, tmp):
    rep = 1 if a.quick else a.sbs_repeat
    scale = 5 if a.quick else 1
    sql = os.path.join(tmp, "w5.sql")
    sqlite_script(sql, 80000 // scale)
    txt = os.path.join(tmp, "w2.txt")
    text_file(txt, 4)
    py = shutil.which("python3.11") or shutil.which("python3")
    true = shutil.which("true") or "/bin/true"
    work = [
        (f"W1 {1000000 // scale:,} malloc/free pairs", [exe["alloc_loop"], str(1000000 // scale)], None),
        (f"W4 4 threads x {250000 // scale:,} pairs", [exe["alloc_threads"], "4", str(250000 // scale)], None),
        (f"W5 sqlite3, {80000 // scale:,} INSERTs in :memory:", ["sqlite3", ":memory:"], sql),
        ("W3 python3 json", [py, "-c", PY_JSON], None),
        ("W2 gzip -6 of 4 MB", ["gzip", "-6", "-c", txt], None),
        ("W6 xz -6 of 4 MB", ["xz", "-6", "-c", "-T1", txt], None),
        # Compute-bound: a sieve in one block, 2 allocations a round;
        # then nothing but start-up and exit.
        (f"C1 compute-bound (sieve, {a.compute_rounds} rounds)",
         [exe["compute"], str(a.compute_rounds)], None),
        ("C0 true(1): start-up and exit only", [true], None),
    ]
    ht_dir = os.path.join(tmp, "heaptrack")
    os.makedirs(ht_dir, exist_ok=True)
    tools = [("native", lambda c: c),
             ("ptleak fast", lambda c: [ptleak, "-q", "--mode=fast", "-o", os.devnull] + c),
             ("ptleak trap", lambda c: [ptleak, "-q", "--mode=trap", "-o", os.devnull] + c)]
    if shutil.which("valgrind"):
        tools.append(("memcheck", lambda c: ["valgrind", "-q", "--leak-check=full"] + c))
    if shutil.which("heaptrack"):
        tools.append(("heaptrack", lambda c: ["heaptrack", "-o", os.path.join(ht_dir, "ht")] + c))
    names = [t for t, _ in tools]
    print(f"event sources side by side, seconds, medians of {rep} "
          f"(ptleak trap: of {min(rep, a.trap_repeat)}); {load_avg()}:")
    print("| workload | " + " | ".join(names) + " | fast / heaptrack | fast / native |")
    print("|---|" + "---|" * (len(tools) + 2))
    rows = []
    for name, cmd, stdin in work:
        if a.only and not any(name.split()[0] == w for w in a.only):
            continue
        if not shutil.which(cmd[0]) and not os.path.exists(cmd[0]):
            print(f"| {name} | not installed |")
            continue
        # ptleak trap takes minutes on W1/W4/W5: run once (--trap-repeat).
        runs = {t: [] for t in names}
        for r in range(rep):
            for t, wrap in tools:
                if t != "ptleak trap" or r < a.trap_repeat:
                    runs[t].append(timed_cpu(wrap(cmd), stdin))
        res = [statistics.median(w for w, _ in runs[t]) for t in names]
        cpu = [statistics.median(c for _, c in runs[t]) for t in names]
        ht = res[names.index("heaptrack")] if "heaptrack" in names else None
        ratio = f"{res[1] / ht:.2f}" if ht else "-"
        print(f"| {name} | " + " | ".join(fmt_s(r) for r in res) +
              f" | {ratio} | {res[1] / res[0]:.2f} |")
        rows.append((name, res, cpu))
        sys.stdout.flush()
        shutil.rmtree(ht_dir, ignore_errors=True)
        os.makedirs(ht_dir, exist_ok=True)
    print("the same runs, CPU seconds (user + sys of every process), medians:")
    for name, _, cpu in rows:
        ht = cpu[names.index("heaptrack")] if "heaptrack" in names else None
        ratio = f"{cpu[1] / ht:.2f}" if ht else "-"
        print(f"| {name} | " + " | ".join(fmt_s(c) for c in cpu) +
              f" | {ratio} | {cpu[1] / max(cpu[0], 1e-3):.2f} |")
    print("the same runs as ratios to native (wall clock; CPU time in brackets):")
    print("| workload | " + " | ".join(names[1:]) + " |")
    print("|---|" + "---|" * (len(names) - 1))
    for name, res, cpu in rows:
        cells = [f"{res[i] / res[0]:.2f}x ({cpu[i] / max(cpu[0], 1e-3):.2f}x)"
                 for i in range(1, len(names))]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"({load_avg()} at the end)")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=20):
    import socket
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def redis_rps(port, n):
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q",
                          "--csv", "-t", "set,get", "-n", str(n), "-c", "20"],
                         capture_output=True, text=True, timeout=600).stdout
    rps = []
    for line in out.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if len(f) > 1 and f[0] in ("SET", "GET"):
            rps.append(float(f[1]))
    return sum(rps) / len(rps) if rps else 0.0


def group_alive(pgid):
    """Whether a process of group PGID runs (zombies do not count: an
    orphan's may wait for a reaper here)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(st[2]) == pgid and st[0] != "Z":
            return True
    return False


def redis_case(a, wrap, attach, n, tmp):
    """requests/s of redis-server under redis-benchmark: launched through
    WRAP (a command prefix, None: alone) or with ATTACH(pid) (a command
    that attaches to it and prints a line once it has) running."""
    port = free_port()
    cmd = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--port", str(port)]
    # A session of its own: a wrapper (heaptrack's script) may not pass
    # our SIGTERM on, the whole group gets it.
    srv = subprocess.Popen((wrap or []) + cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, cwd=tmp, start_new_session=True)
    tr = None
    try:
        if not wait_port(port, 120):
            return None
        if attach:
            # The server's own pid (under a wrapper it is the child).
            tr = subprocess.Popen(attach(srv.pid), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True, cwd=tmp)
            want = attach.ready
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                line = tr.stdout.readline()
                if not line or want in line:
                    break
            if tr.poll() is not None:
                return None
        return redis_rps(port, n)
    finally:
        # ptleak -p leaves on SIGINT; heaptrack -p ends with the server.
        if tr:
            tr.send_signal(signal.SIGINT)
            try:
                tr.wait(10)
            except subprocess.TimeoutExpired:
                pass
        os.killpg(srv.pid, signal.SIGTERM)
        try:
            srv.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(srv.pid, signal.SIGKILL)
            srv.wait()
        # heaptrack's interpreter outlives its script: wait for the group.
        for group in [srv.pid] + ([tr.pid] if tr else []):
            deadline = time.monotonic() + 60
            while group_alive(group) and time.monotonic() < deadline:
                time.sleep(0.1)
            if group_alive(group):
                os.killpg(group, signal.SIGKILL)
        if tr:
            tr.wait()
            tr.stdout.close()


class Attach:
    """A command attaching to a pid, and the text of the line it prints
    once attached."""
    def __init__(self, make, ready):
        self.make, self.ready = make, ready

    def __call__(self, pid):
        return self.make(pid)


def redis_table(a, ptleak, tmp):
    """redis-server under redis-benchmark (SET and GET, 20 clients),
    requests/s launched under each tool and with each that can attach
    attached, rounds interleaved, medians."""
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        print("redis-server: not installed (Debian: redis-server, redis-tools)")
        return
    rep = 1 if a.quick else 3
    fast_n = 20000 if a.quick else 200000
    slow_n = 20000
    null = os.devnull
    ht = os.path.join(tmp, "ht-redis")
    cols = ["native", "ptleak fast", "ptleak trap"]
    launched = {"native": (None, fast_n),
                "ptleak fast": ([ptleak, "-q", "--mode=fast", "-o", null], fast_n),
                "ptleak trap": ([ptleak, "-q", "--mode=trap", "-o", null], slow_n)}
    attached = {"ptleak fast": (Attach(lambda pid: [ptleak, "--mode=fast", "-o", null,
                                                    "-p", str(pid)], "attached"), fast_n),
                "ptleak trap": (Attach(lambda pid: [ptleak, "--mode=trap", "-o", null,
                                                    "-p", str(pid)], "attached"), slow_n)}
    if shutil.which("valgrind"):
        cols.append("memcheck")
        launched["memcheck"] = (["valgrind", "-q", "--leak-check=full"], slow_n)
    if shutil.which("heaptrack"):
        cols.append("heaptrack")
        launched["heaptrack"] = (["heaptrack", "-o", ht], fast_n)
        if shutil.which("gdb"):
            attached["heaptrack"] = (Attach(lambda pid: ["heaptrack", "-o", ht, "-p", str(pid)],
                                            "injection finished"), fast_n)
    cases = [("launched", t, launched[t]) for t in cols if t in launched] + \
            [("attached", t, attached[t]) for t in cols if t in attached]
    runs = {(k, t): [] for k, t, _ in cases}
    for _ in range(rep):
        for kind, t, (how, n) in cases:
            if kind == "launched":
                v = redis_case(a, how, None, n, tmp)
            else:
                v = redis_case(a, None, how, n, tmp)
            runs[(kind, t)].append(v)
            for f in glob.glob(ht + "*"):
                os.remove(f)
    med = {k: statistics.median([x or 0.0 for x in v]) for k, v in runs.items()}
    native = med.get(("launched", "native"))
    print(f"redis-server (Debian) under redis-benchmark -t set,get -c 20, requests/s, "
          f"medians of {rep} (and % of native); {load_avg()}:")
    print("| redis-server | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for kind in ("launched", "attached"):
        cells = []
        for t in cols:
            if t == "native":
                cells.append(f"{native:.0f}" if kind == "launched" and native else "-")
                continue
            v = med.get((kind, t))
            if (kind, t) not in med:
                cells.append("cannot attach" if kind == "attached" else "-")
            elif not v:
                cells.append("failed")
            else:
                cells.append(f"{v:.0f} ({v / native:.0%})" if native else f"{v:.0f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    sys.stdout.flush()


def median_of(repeat, fns):
    """Run each fn in turn, REPEAT rounds interleaved; medians per fn."""
    results = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            results[i].append(fn())
    return [statistics.median(r) for r in results]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ptleak", required=True)
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=200000)
    ap.add_argument("--scan-blocks", type=int, default=1000000)
    ap.add_argument("--scan-mb", type=int, default=1024)
    ap.add_argument("--baseline", help="another ptleak to compare on the alloc loop")
    ap.add_argument("--cost-pairs", type=int, default=50000)
    ap.add_argument("--sig-rounds", type=int, default=200000)
    ap.add_argument("--sig-limit", type=float, default=120)
    ap.add_argument("--rss-blocks", type=int, default=1000000)
    ap.add_argument("--sbs-repeat", type=int, default=3,
                    help="runs per cell of the side-by-side table")
    ap.add_argument("--trap-repeat", type=int, default=1,
                    help="runs of ptleak --mode=trap per cell (minutes each)")
    ap.add_argument("--quick", action="store_true",
                    help="side by side only, a fifth of W1/W4/W5, once")
    ap.add_argument("--side-by-side", action="store_true",
                    help="only the side-by-side tables (issue 9) and redis, full size")
    ap.add_argument("--only", action="append", default=[], metavar="W1",
                    help="side by side: only this workload (W1 ... C0, or redis); repeatable")
    ap.add_argument("--compute-rounds", type=int, default=20,
                    help="rounds of the compute-bound workload C1")
    a = ap.parse_args()
    ptleak = os.path.abspath(a.ptleak)
    bdir = os.path.join(a.build, "bench")
    os.makedirs(bdir, exist_ok=True)
    exe = {}
    for name in ("trap_roundtrip", "alloc_loop", "compute", "big_heap", "held_heap",
                 "alloc_threads"):
        exe[name] = os.path.join(bdir, name)
        build(os.path.join(HERE, "bench", name + ".c"), exe[name])
    exe["sig_alarm"] = os.path.join(bdir, "sig_alarm")
    build(os.path.join(FIXTURES, "sig_alarm.c"), exe["sig_alarm"])
    tmp = tempfile.mkdtemp(prefix="ptleak-bench-")
    rep = a.repeat
    print(f"ptleak benchmarks: medians of {rep} runs, {os.cpu_count()} CPUs")
    if a.quick or a.side_by_side:
        side_by_side(a, ptleak, exe, tmp)
        if not a.only or "redis" in a.only:
            redis_table(a, ptleak, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        return 0

    # 1. The floor: one int3 stop handled by a minimal tracer, with a
    # blocking wait and with ptleak's bounded poll; as the machine is, and
    # with one CPU kept busy (an idle CPU must be woken at each hand-off).
    def trap(how, prefix=()):
        def fn():
            out = subprocess.run(list(prefix) + [exe["trap_roundtrip"], "50000", how],
                                 check=True, capture_output=True, text=True).stdout
            return float(out)
        return fn
    floor, floor_poll, floor1 = median_of(rep, [
        trap("block"), trap("poll"), trap("block", ["taskset", "-c", "0"])])
    with Busy():
        busy_block, busy_poll = median_of(rep, [trap("block"), trap("poll")])
    print("bare int3 round trip (waitpid+GETREGS+CONT), us:")
    print(f"  machine as it is: blocking wait {floor:.2f}, polling {floor_poll:.2f}"
          f" (tracer and tracee on one CPU: {floor1:.2f})")
    print(f"  one CPU kept busy: blocking wait {busy_block:.2f}, polling {busy_poll:.2f}")

    # 2. Allocation-heavy loop: native vs ptleak vs valgrind.
    n = a.pairs
    loop = [exe["alloc_loop"], str(n)]
    fns = [lambda: timed(loop),
           lambda: timed([ptleak, "-q", "--mode=trap", "-o", os.devnull] + loop)]
    have_vg = shutil.which("valgrind") is not None
    if have_vg:
        fns.append(lambda: timed(["valgrind", "-q", "--leak-check=full"] + loop))
    res = median_of(rep, fns)
    native, traced = res[0], res[1]
    events = 3 * n
    per_event = (traced - native) / events * 1e6
    print(f"alloc loop, {n} malloc/free pairs ({events} traced events), --mode=trap:")
    print(f"  native {native:.3f} s, ptleak {traced:.3f} s "
          f"(slowdown {traced / native:.0f}x)" +
          (f", valgrind {res[2]:.3f} s (slowdown {res[2] / native:.0f}x)" if have_vg else ""))
    print(f"  ptleak per traced event: {per_event:.2f} us = {per_event / floor:.2f}x "
          f"the bare round trip (target: <= 1.5x)")

    # 2b. ptleak's cost per event with and without its poll, idle and busy.
    m = a.cost_pairs
    small = [exe["alloc_loop"], str(m)]
    traced = [ptleak, "-q", "-o", os.devnull] + small

    def cost_row():
        nat, on, off = median_of(rep, [lambda: timed(small), lambda: timed(traced),
                                       lambda: timed(traced, env=NO_POLL)])
        return [(v - nat) / (3 * m) * 1e6 for v in (on, off)]
    idle_on, idle_off = cost_row()
    with Busy():
        busy_on, busy_off = cost_row()
    print(f"ptleak per traced event ({m} pairs), us: machine as it is: {idle_on:.2f} "
          f"(without polling {idle_off:.2f}); one CPU kept busy: {busy_on:.2f} "
          f"(without polling {busy_off:.2f})")

    # 2c. A signal-heavy program: SIGALRM every 100 us while it allocates.
    sig = [exe["sig_alarm"], str(a.sig_rounds)]
    lim = a.sig_limit
    runs = [[], [], []]
    for _ in range(min(rep, 3)):
        runs[0].append(timed(sig, timeout=lim))
        runs[1].append(timed([ptleak, "-q", "-o", os.devnull] + sig, timeout=lim))
        runs[2].append(timed([ptleak, "-q", "-o", os.devnull] + sig, timeout=lim,
                             env=NO_POLL))
    s_nat, s_on, s_off = (median_or_none(r) for r in runs)
    print(f"SIGALRM every 100 us, {a.sig_rounds} allocating rounds: native "
          f"{secs(s_nat, lim)}, ptleak {secs(s_on, lim)}, "
          f"ptleak without polling {secs(s_off, lim)}")

    # 3. Compute-heavy program, and ptleak's fixed cost (its own start-up:
    # loading libdw, libunwind, capstone; symbols of the program; the scan).
    comp = [exe["compute"], "60"]
    true = [shutil.which("true") or "/bin/true"]
    native_c, traced_c, native_t, traced_t = median_of(rep, [
        lambda: timed(comp), lambda: timed([ptleak, "-q", "-o", os.devnull] + comp),
        lambda: timed(true), lambda: timed([ptleak, "-q", "-o", os.devnull] + true)])
    print(f"compute-heavy program: native {native_c:.3f} s, ptleak {traced_c:.3f} s "
          f"(slowdown {traced_c / native_c:.2f}x)")
    print(f"fixed cost of a ptleak run (true(1)): {(traced_t - native_t) * 1000:.0f} ms")

    # 4. The reachability scan at exit (one run: it takes a while to build).
    js = os.path.join(tmp, "scan.json")
    t = timed([ptleak, "-q", "-o", os.devnull, "--json=" + js,
               exe["big_heap"], str(a.scan_blocks), str(a.scan_mb)])
    with open(js) as f:
        summ = json.load(f)["processes"][0]["summary"]
    print(f"scan of {a.scan_mb} MiB in {a.scan_blocks} live blocks: "
          f"{summ['scan_ms'] / 1000:.2f} s (target: < 2 s; whole run {t:.1f} s); "
          f"still reachable {summ['still_reachable']['blocks']} blocks")
    # 5. Attaching to a program that holds a million blocks: the pause of
    # the inventory of its glibc heap, and of a leak check on demand.
    def attach_once():
        held = subprocess.Popen([exe["held_heap"], str(a.scan_blocks)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        held.stdout.readline()
        js = os.path.join(tmp, "attach.json")
        p = subprocess.Popen([ptleak, "-q", "-o", os.devnull, "--json=" + js,
                              "-p", str(held.pid), "--duration=4"])
        time.sleep(2)
        p.send_signal(signal.SIGUSR1)
        p.wait(timeout=600)
        held.stdin.close()
        held.wait(timeout=60)
        with open(js) as f:
            doc = json.load(f)
        ba = doc["processes"][0]["summary"]["before_attach"]
        checks = doc["checks"]
        return (ba["read_ms"], ba["found_blocks"],
                checks[0]["stopped_ms"] if checks else float("nan"))
    runs = [attach_once() for _ in range(3)]
    read_ms = statistics.median(r[0] for r in runs)
    check_ms = statistics.median(r[2] for r in runs)
    print(f"ptleak -p on {runs[0][1]} live blocks: the heap from before the attach "
          f"read in {read_ms:.0f} ms (the program stopped); a leak check stopped it "
          f"{check_ms:.0f} ms (medians of 3)")

    # 6. A change's cost per event, side by side with another build.
    if a.baseline:
        base = os.path.abspath(a.baseline)
        t_new, t_base = median_of(rep, [
            lambda: timed([ptleak, "-q", "-o", os.devnull] + loop),
            lambda: timed([base, "-q", "-o", os.devnull] + loop)])
        print(f"alloc loop, this ptleak {t_new:.3f} s vs --baseline {t_base:.3f} s: "
              f"{t_new / t_base:.3f}x ({(t_new - t_base) / events * 1e9:+.0f} ns per event)")

    # 7. The HTML page of 100,000 loss records in a real browser.
    html_page(ptleak, a.build, tmp, rep)

    # 8. ptleak's own memory: peak RSS attached to a program holding
    # RSS_BLOCKS live blocks, against a run holding 1,000.
    rss_base, _ = peak_rss_attached(ptleak, exe["big_heap"], 1000)
    peak, took = peak_rss_attached(ptleak, exe["big_heap"], a.rss_blocks)
    per = (peak - rss_base) * 1024 / (a.rss_blocks - 1000)
    print(f"ptleak's peak RSS attached to {a.rss_blocks} live blocks: {peak / 1024:.0f} MiB "
          f"({rss_base / 1024:.0f} MiB with 1,000), {per:.0f} bytes per live block "
          f"(allocating them took {took:.0f} s)")
    # 8. Fast mode against trap mode and the peers, and a real server.
    side_by_side(a, ptleak, exe, tmp)
    redis_table(a, ptleak, tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def html_page(ptleak, build_dir, tmp, rep):
    sys.path.insert(0, HERE)
    from lib import browser     # noqa: E402  (tests/lib/browser.py)
    if not browser.chromium():
        print("html page: chromium not installed, skipped")
        return
    many = os.path.join(build_dir, "bench", "many_stacks")
    subprocess.run(["cc", "-g", "-O0", "-fno-omit-frame-pointer", "-I",
                    os.path.join(HERE, "..", "fixtures"), "-o", many,
                    os.path.join(HERE, "..", "fixtures", "many_stacks.c")], check=True)
    page = os.path.join(tmp, "many.html")
    t = timed([ptleak, "-q", "-o", os.devnull, "--num-callers=16", "--html=" + page,
               many, "100000"])
    loads, draws = [], []
    for _ in range(rep):
        with browser.Browser(tmp) as b:
            t0 = time.monotonic()
            pg = b.open("file://" + page, timeout=300)
            loads.append(time.monotonic() - t0)
            draws.append(float(pg.eval("document.body.dataset.drawMs")))
    print(f"html page of 100,000 loss records: {os.path.getsize(page) / 1e6:.1f} MB "
          f"(ptleak run {t:.1f} s); loaded and drawn by headless chromium in "
          f"{statistics.median(loads):.2f} s, of which its script drawing "
          f"{statistics.median(draws) / 1000:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
