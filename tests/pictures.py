"""Tests of the picture formats, each read by a real consumer:

  * --pprof: `go tool pprof` (Debian's golang-go) reads the profile: -top
    per sample type with exact bytes and objects, -traces with the leak
    kind labels and stacks, the program's mapping and build ID (compared
    with readelf's), and -base diffs of two profiles;
  * --folded: the collapsed-stack lines flamegraph.pl, inferno and
    speedscope read (split at the last space, frames root first);
  * --html: headless Chromium opens the page (tests/browser.py).

run.py registers TESTS (name, function(suite)); `R` is run.py itself, for
its helpers (Fail, Skip, run, expect_status, ...).
"""
import gzip
import os
import re
import shutil
import subprocess

R = None  # run.py, set by register()

ROUNDS = 40
LEAK = 80000          # 40 copies of 2,000 bytes (fixtures/heap_shapes.c)
BUFFER = 4096         # stdout's buffer, to a pipe: still reachable
CACHE = 160 * 4096    # the cache entries, all freed


def go_pprof(s, args, what):
    go = shutil.which("go")
    if not go:
        raise R.Fail("go not installed (tests/deps.sh installs golang-go)")
    home = s.tmpfile("gohome")
    os.makedirs(home, exist_ok=True)
    env = dict(s.env, HOME=home, PPROF_TMPDIR=home, GOFLAGS="-mod=mod",
               GOCACHE=os.path.join(home, "cache"), GOTOOLCHAIN="local")
    res = R.run([go, "tool", "pprof"] + args, 120, env=env,
                check_leftovers=False)
    if res.status != 0:
        raise R.Fail("go tool pprof %s failed (%s): %s" % (
            " ".join(args[:-1]), what, R.describe_status(R.exit_status(res.status))),
            R.tail(res.stderr))
    return res.stdout.decode("utf-8", "replace")


def top_table(text):
    """-top -unit=B output: {function: (flat, cum)} in bytes or counts."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\d+)B?\s+[\d.]+%\s+[\d.]+%\s+(\d+)B?\s+[\d.]+%\s+(.+)$",
                     line)
        if m:
            rows[m.group(3).strip()] = (int(m.group(1)), int(m.group(2)))
    return rows


def expect_top(s, path, index, want, what, extra=()):
    out = go_pprof(s, ["-top", "-unit=B", "-nodefraction=0", "-sample_index="
                       + index] + list(extra) + [path], what)
    rows = top_table(out)
    errors = []
    for fn, (flat, cum) in want.items():
        got = rows.get(fn)
        if got != (flat, cum):
            errors.append("%s %s: want flat %s cum %s, got %s"
                          % (index, fn, flat, cum, got))
    if errors:
        raise R.Fail("%s: go tool pprof -top: %s" % (what, errors[0]),
                     errors[1:] + out.splitlines()[:25])
    return out


def traces(text):
    """-traces output: [(labels {key: value}, value, [functions])]."""
    out = []
    for block in text.split("-----------+")[1:]:
        labels, funcs, value = {}, [], None
        for line in block.splitlines()[1:]:
            m = re.match(r"\s+(\w+):\s+(.+)$", line)
            if m and not funcs and value is None:
                labels[m.group(1)] = m.group(2).strip()
                continue
            m = re.match(r"\s*(\S+)\s+(\S.*)$", line)
            if value is None and m:
                value = m.group(1)
                funcs.append(m.group(2).strip())
            elif line.strip():
                funcs.append(line.strip())
        if value is not None:
            out.append((labels, value, funcs))
    return out


def build_id(path):
    res = R.run(["readelf", "-n", path], 30, check_leftovers=False)
    m = re.search(rb"Build ID: ([0-9a-f]+)", res.stdout)
    if not m:
        raise R.Fail("readelf -n %s: no build ID" % path)
    return m.group(1).decode()


def shapes_run(s, opts, rounds=ROUNDS, name="heap_shapes"):
    binary = s.builder.get(name)
    res, doc = s.ptleak_run(opts, [binary, str(rounds)], timeout=60)
    R.expect_status(res, 0)
    return binary, res, doc


def t_pprof_go_tool(s):
    prof = s.tmpfile("heap.pb.gz")
    binary, res, _ = shapes_run(s, ["--pprof=" + prof])
    raw = open(prof, "rb").read()
    if raw[:2] != b"\x1f\x8b":
        raise R.Fail("--pprof file is not gzip'd", [repr(raw[:16])])
    gzip.decompress(raw)  # a truncated stream raises here
    live = LEAK + BUFFER
    out = expect_top(s, prof, "inuse_space", {
        "malloc": (live, live), "xstrdup": (0, LEAK), "parse": (0, LEAK),
        "handle_request": (0, LEAK), "printf": (0, BUFFER),
        "main": (0, live)}, "inuse_space")
    for want in ("File: heap_shapes", "Build ID: " + build_id(binary),
                 "Type: inuse_space"):
        if want not in out:
            raise R.Fail("go tool pprof -top: no %r" % want,
                         out.splitlines()[:8])
    expect_top(s, prof, "inuse_objects", {
        "malloc": (41, 41), "xstrdup": (0, 40), "main": (0, 41)},
        "inuse_objects")
    expect_top(s, prof, "alloc_space", {
        "malloc": (live + CACHE, live + CACHE), "cache_put": (0, CACHE),
        "xstrdup": (0, LEAK), "main": (0, live + CACHE)}, "alloc_space")
    expect_top(s, prof, "alloc_objects", {
        "malloc": (201, 201), "cache_put": (0, 160), "xstrdup": (0, 40)},
        "alloc_objects")
    expect_top(s, prof, "inuse_space", {"malloc": (LEAK, LEAK),
                                        "xstrdup": (0, LEAK)},
               "-tagfocus=kind=definitely_lost",
               ["-tagfocus=kind=definitely_lost"])
    got = traces(go_pprof(s, ["-traces", prof], "-traces"))
    want = [({"kind": "definitely_lost"},
             ["malloc", "xstrdup", "parse", "handle_request", "main"]),
            ({"kind": "still_reachable"}, ["malloc", "printf", "main"]),
            ({"kind": "freed"}, ["malloc", "cache_put", "main"])]
    for labels, stack in want:
        if not any(l == labels and R.stack_matches(stack, [{"function": f}
                                                            for f in fs])
                   for l, _, fs in got):
            raise R.Fail("go tool pprof -traces: no sample %s %s" % (
                labels, " <- ".join(stack)),
                ["got: %s %s %s" % (l, v, " <- ".join(fs)) for l, v, fs in got])
    if len(got) != 3:
        raise R.Fail("go tool pprof -traces: want 3 samples, got %d" % len(got),
                     ["got: %s %s %s" % (l, v, " <- ".join(fs)) for l, v, fs in got])
    # Functions come with their files and lines: -lines shows them.
    out = go_pprof(s, ["-top", "-lines", "-nodefraction=0", prof], "-lines")
    if not re.search(r"xstrdup \S*heap_shapes\.c:\d+", out):
        raise R.Fail("go tool pprof -lines: no heap_shapes.c line for xstrdup",
                     out.splitlines()[:20])


def t_pprof_base_diff(s):
    # Seed 002's workflow: two profiles, pprof -base OLD NEW shows growth.
    old, new = s.tmpfile("old.pb.gz"), s.tmpfile("new.pb.gz")
    shapes_run(s, ["--pprof=" + old], rounds=20)
    shapes_run(s, ["--pprof=" + new], rounds=40)
    grown = LEAK // 2
    expect_top(s, new, "inuse_space", {
        "malloc": (grown, grown), "xstrdup": (0, grown), "main": (0, grown)},
        "-base, inuse_space", ["-base=" + old])
    expect_top(s, new, "alloc_space", {
        "cache_put": (0, CACHE // 2), "xstrdup": (0, grown)},
        "-base, alloc_space", ["-base=" + old])


def folded_lines(path):
    """flamegraph.pl's reading of a folded file: stack, then the number
    after the last space; frames split on ';', root first."""
    got = {}
    for line in open(path, encoding="utf-8").read().splitlines():
        m = re.match(r"^(.*\S)\s+(\d+)$", line)
        if not m:
            raise R.Fail("folded line not 'STACK COUNT': %r" % line)
        got[tuple(m.group(1).split(";"))] = int(m.group(2))
    return got


def t_folded(s):
    path = s.tmpfile("leaks.folded")
    shapes_run(s, ["--folded=" + path])
    got = folded_lines(path)
    want = {("main", "handle_request", "parse", "xstrdup", "malloc"): LEAK}
    if got != want:
        raise R.Fail("--folded: want %s, got %s" % (want, got))
    # --show-leak-kinds=all: every live block, printf's buffer too.
    shapes_run(s, ["--folded=" + path, "--show-leak-kinds=all"])
    got = folded_lines(path)
    printf = [k for k in got if k[0] == "main" and "printf" in k]
    if len(got) != 2 or len(printf) != 1 or got[printf[0]] != BUFFER \
            or printf[0][-1] != "malloc":
        raise R.Fail("--folded --show-leak-kinds=all: want the leak and "
                     "printf's 4096-byte buffer (main first, malloc last)",
                     ["%s %d" % (";".join(k), v) for k, v in got.items()])


def t_report_not_over_executable(s):
    # A typo (--pprof PROG ARGS...) must not overwrite the program.
    victim = s.tmpfile("prog")
    shutil.copy(s.builder.get("heap_shapes"), victim)
    before = open(victim, "rb").read()
    res = R.run([s.ptleak, "--pprof", victim, "true"], 30, env=s.env)
    R.expect_status(res, 125)
    if open(victim, "rb").read() != before:
        raise R.Fail("--pprof EXECUTABLE overwrote the executable")
    R.one_line_error(res, "--pprof EXECUTABLE", "refusing", re.escape(victim))


TESTS = [
    ("pprof_go_tool", t_pprof_go_tool),
    ("pprof_base_diff", t_pprof_base_diff),
    ("folded_flamegraph", t_folded),
    ("report_not_over_executable", t_report_not_over_executable),
]


def register(run_module):
    global R
    R = run_module
    return TESTS
