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
  - ptleak's cost per traced allocator event on an allocation-heavy loop
    (3 stops per malloc/free pair), and its ratio to the floor;
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
"""
import argparse
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
    subprocess.run(["cc", "-O2", "-g", "-I", FIXTURES, "-o", out, src], check=True)


def timed(cmd, timeout=1800, **kw):
    """Wall seconds of CMD; None if it ran past TIMEOUT (then killed)."""
    t = time.monotonic()
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
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
    a = ap.parse_args()
    ptleak = os.path.abspath(a.ptleak)
    bdir = os.path.join(a.build, "bench")
    os.makedirs(bdir, exist_ok=True)
    exe = {}
    for name in ("trap_roundtrip", "alloc_loop", "compute", "big_heap", "held_heap"):
        exe[name] = os.path.join(bdir, name)
        build(os.path.join(HERE, "bench", name + ".c"), exe[name])
    exe["sig_alarm"] = os.path.join(bdir, "sig_alarm")
    build(os.path.join(FIXTURES, "sig_alarm.c"), exe["sig_alarm"])
    tmp = tempfile.mkdtemp(prefix="ptleak-bench-")
    rep = a.repeat
    print(f"ptleak benchmarks: medians of {rep} runs, {os.cpu_count()} CPUs")

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
           lambda: timed([ptleak, "-q", "-o", os.devnull] + loop)]
    have_vg = shutil.which("valgrind") is not None
    if have_vg:
        fns.append(lambda: timed(["valgrind", "-q", "--leak-check=full"] + loop))
    res = median_of(rep, fns)
    native, traced = res[0], res[1]
    events = 3 * n
    per_event = (traced - native) / events * 1e6
    print(f"alloc loop, {n} malloc/free pairs ({events} traced events):")
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
