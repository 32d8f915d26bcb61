"""The picture formats, each read by a real consumer (tests/run.py -k
pprof, -k folded, -k html):

  * --pprof: `go tool pprof` (Debian's golang-go) reads the profile: -top
    per sample type with exact bytes and objects, -traces with the leak
    kind labels and stacks, the program's mapping and build ID (compared
    with readelf's), -lines, -tagfocus, and -base diffs of two profiles;
  * --folded: the collapsed-stack lines flamegraph.pl, inferno and
    speedscope read (split at the last space, frames root first);
  * --html: headless Chromium opens the page (lib/browser.py): no console
    error and no request, the timeline and flame graphs in the pixels of
    a screenshot, clicks on a loss record and on a flame graph frame.
The numbers are fixtures/heap_shapes.c's.
"""
import gzip
import os
import re
import shutil
import signal

from areas.attach import (SERVER_LEAK_BLOCKS, SERVER_LEAK_SIZE,
                          server_requests, start_server)
from lib.attaching import start_attach
from lib import browser
from lib.checks import attach_permitted, expect_alive_untraced, one_line_error
from lib.proc import Fail, Skip, describe_status, exit_status, \
    expect_status, run, tail, wait_until
from lib.report import stack_matches
from lib.runner import test
from lib.suite import Processes

ROUNDS = 40
LEAK = 80000          # 40 copies of 2,000 bytes (fixtures/heap_shapes.c)
CACHE = 160 * 4096    # the cache entries, all freed


def go_pprof(s, args, what):
    go = shutil.which("go")
    if not go:
        raise Fail("go not installed (tests/deps.sh installs golang-go)")
    home = s.tmpfile("gohome")
    os.makedirs(home, exist_ok=True)
    env = dict(s.env, HOME=home, PPROF_TMPDIR=home, GOFLAGS="-mod=mod",
               GOCACHE=os.path.join(home, "cache"), GOTOOLCHAIN="local")
    res = run([go, "tool", "pprof"] + args, 120, env=env,
                check_leftovers=False)
    if res.status != 0:
        raise Fail("go tool pprof %s failed (%s): %s" % (
            " ".join(args[:-1]), what, describe_status(exit_status(res.status))),
            tail(res.stderr))
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
        raise Fail("%s: go tool pprof -top: %s" % (what, errors[0]),
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
    res = run(["readelf", "-n", path], 30, check_leftovers=False)
    m = re.search(rb"Build ID: ([0-9a-f]+)", res.stdout)
    if not m:
        raise Fail("readelf -n %s: no build ID" % path)
    return m.group(1).decode()


def shapes_run(s, opts, rounds=ROUNDS, name="heap_shapes"):
    binary = s.builder.get(name)
    res, doc = s.ptleak_run(opts, [binary, str(rounds)], timeout=60)
    expect_status(res, 0)
    return binary, res, doc


@test("pprof_go_tool")
def t_pprof_go_tool(s):
    prof = s.tmpfile("heap.pb.gz")
    binary, res, _ = shapes_run(s, ["--pprof=" + prof])
    raw = open(prof, "rb").read()
    if raw[:2] != b"\x1f\x8b":
        raise Fail("--pprof file is not gzip'd", [repr(raw[:16])])
    gzip.decompress(raw)  # a truncated stream raises here
    out = expect_top(s, prof, "inuse_space", {
        "malloc": (LEAK, LEAK), "xstrdup": (0, LEAK), "parse": (0, LEAK),
        "handle_request": (0, LEAK), "main": (0, LEAK)}, "inuse_space")
    for want in ("File: heap_shapes", "Build ID: " + build_id(binary),
                 "Type: inuse_space"):
        if want not in out:
            raise Fail("go tool pprof -top: no %r" % want,
                       out.splitlines()[:8])
    expect_top(s, prof, "inuse_objects", {
        "malloc": (40, 40), "xstrdup": (0, 40), "main": (0, 40)},
        "inuse_objects")
    expect_top(s, prof, "alloc_space", {
        "malloc": (LEAK + CACHE, LEAK + CACHE), "cache_put": (0, CACHE),
        "xstrdup": (0, LEAK), "main": (0, LEAK + CACHE)}, "alloc_space")
    expect_top(s, prof, "alloc_objects", {
        "malloc": (200, 200), "cache_put": (0, 160), "xstrdup": (0, 40)},
        "alloc_objects")
    # The leak kind is a label: -tagfocus keeps one kind, -tagignore drops.
    expect_top(s, prof, "alloc_space", {"malloc": (LEAK, LEAK),
                                        "xstrdup": (0, LEAK)},
               "-tagfocus=kind=definitely_lost",
               ["-tagfocus=kind=definitely_lost"])
    expect_top(s, prof, "alloc_space", {"malloc": (CACHE, CACHE),
                                        "cache_put": (0, CACHE)},
               "-tagfocus=kind=freed", ["-tagfocus=kind=freed"])
    got = traces(go_pprof(s, ["-traces", prof], "-traces"))
    want = [({"kind": "definitely_lost"},
             ["malloc", "xstrdup", "parse", "handle_request", "main"]),
            ({"kind": "freed"}, ["malloc", "cache_put", "main"])]
    shown = ["got: %s %s %s" % (l, v, " <- ".join(fs)) for l, v, fs in got]
    for labels, stack in want:
        if not any(l == labels and stack_matches(stack, [{"function": f}
                                                          for f in fs])
                   for l, _, fs in got):
            raise Fail("go tool pprof -traces: no sample %s %s" % (
                labels, " <- ".join(stack)), shown)
    if len(got) != len(want):
        raise Fail("go tool pprof -traces: want %d samples, got %d"
                   % (len(want), len(got)), shown)
    # Functions come with their files and lines: -lines shows them.
    out = go_pprof(s, ["-top", "-lines", "-nodefraction=0", prof], "-lines")
    if not re.search(r"xstrdup \S*heap_shapes\.c:\d+", out):
        raise Fail("go tool pprof -lines: no heap_shapes.c line for xstrdup",
                   out.splitlines()[:20])


@test("pprof_base_diff")
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
    """flamegraph.pl's reading of a folded file: the number after the last
    space, the stack before it; frames split on ';', root first."""
    got = {}
    for line in open(path, encoding="utf-8").read().splitlines():
        m = re.match(r"^(.*\S)\s+(\d+)$", line)
        if not m:
            raise Fail("folded line not 'STACK COUNT': %r" % line)
        key = tuple(m.group(1).split(";"))
        if key in got:
            raise Fail("folded stack on two lines: %r" % line)
        got[key] = int(m.group(2))
    return got


def folded_from_json(proc, kinds):
    want = {}
    for r in proc["leaks"]:
        if r["kind"] in kinds and r["bytes"]:
            key = tuple(f["function"] or "[%s]" % os.path.basename(
                f["module"] or "unknown") for f in reversed(r["stack"]))
            want[key] = want.get(key, 0) + r["bytes"]
    return want


@test("folded_flamegraph")
def t_folded(s):
    path = s.tmpfile("leaks.folded")
    shapes_run(s, ["--folded=" + path])
    got = folded_lines(path)
    want = {("main", "handle_request", "parse", "xstrdup", "malloc"): LEAK}
    if got != want:
        raise Fail("--folded: want %s, got %s" % (want, got))
    shapes_run(s, ["--folded=" + path, "--show-leak-kinds=reachable"])
    if open(path).read():
        raise Fail("--folded --show-leak-kinds=reachable: nothing is "
                   "reachable, the file must be empty", tail(open(path, "rb").read()))
    # Indirectly lost blocks come with the definitely lost ones, each under
    # its own stack: the same sums as the JSON report's records.
    for fixture in ("list_no_head", "student_cpp"):
        res, doc = s.ptleak_run(["--folded=" + path],
                                [s.builder.get(fixture)])
        proc = s.process(doc, res)
        want = folded_from_json(proc, ("definitely_lost", "indirectly_lost",
                                       "possibly_lost"))
        got = folded_lines(path)
        if got != want or not want:
            raise Fail("--folded (%s): not the JSON's leaked stacks" % fixture,
                       ["want %s %d" % (";".join(k), v) for k, v in want.items()]
                       + ["got  %s %d" % (";".join(k), v) for k, v in got.items()])


@test("report_not_over_executable")
def t_report_not_over_executable(s):
    # A typo (--pprof PROG ARGS...) must not overwrite the program.
    victim = s.tmpfile("prog")
    shutil.copy(s.builder.get("heap_shapes"), victim)
    before = open(victim, "rb").read()
    res = run([s.ptleak, "--pprof", victim, "true"], 30, env=s.env)
    expect_status(res, 125)
    if open(victim, "rb").read() != before:
        raise Fail("--pprof EXECUTABLE overwrote the executable")
    one_line_error(res, "--pprof EXECUTABLE", "refusing", re.escape(victim))


# ---- the HTML page, in headless Chromium ----------------------------------
def near(rgb, tol=40):
    return lambda r, g, b: (abs(r - rgb[0]) < tol and abs(g - rgb[1]) < tol
                            and abs(b - rgb[2]) < tol)


BLUE, RED = (0x24, 0x58, 0xc6), (0xd1, 0x24, 0x2f)   # page.html's COLORS
WARM = lambda r, g, b: r > 180 and r > b + 60 and b < 170   # noqa: E731


def page_data(page):
    return page.eval("JSON.parse(document.getElementById('ptleak-data')"
                     ".textContent)")


def open_page(s, path):
    try:
        b = browser.Browser(s.tmp)
    except browser.BrowserError as e:
        raise Fail(str(e))
    try:
        page = b.open("file://" + path, timeout=120)
    except browser.BrowserError as e:
        errors = []
        for ev in b.events:
            if ev.get("method") in ("Runtime.exceptionThrown",
                                    "Runtime.consoleAPICalled"):
                errors.append(str(ev.get("params"))[:300])
        b.close()
        raise Fail("chromium could not open the page: %s" % e, errors)
    if page.errors:
        b.close()
        raise Fail("the page logged errors or made requests", page.errors)
    return b, page


def click_center(page, selector):
    r = page.view(selector)
    if not r:
        raise Fail("the page has no %s" % selector)
    page.click(r["x"] + r["width"] / 2, r["y"] + r["height"] / 2)
    return r


def check_records(page, proc, what):
    """The page's loss records are the JSON report's, largest first."""
    d = page_data(page)["processes"][0]
    got = [(r[0], r[1], r[2]) for r in d["records"]]
    want = [(r["kind"], r["bytes"], r["blocks"]) for r in proc["leaks"]]
    if got != want:
        raise Fail("%s: the page's loss records are not the JSON's" % what,
                   ["want %s" % (want[:5],), "got  %s" % (got[:5],)])
    return d


@test("html_page", limit=400)
def t_html_page(s):
    path = s.tmpfile("report") + ".html"
    binary, res, doc = shapes_run(s, ["--html=" + path])
    proc = s.process(doc, res)
    b, page = open_page(s, path)
    with b:
        d = check_records(page, proc, "html")
        summary = page.text("#summary")
        for want in ("definitely lost80,000 bytes in 40 blocks",
                     "total heap usage200 allocs, 160 frees, 735,360 bytes",
                     "peak145,536 bytes"):
            if want not in summary:
                raise Fail("the page's summary lacks %r" % want, [summary])
        # The heap over time: live bytes drawn, the peak marked.
        tl = page.rect("#timeline")
        png = page.screenshot(tl)
        line, area = browser.count_pixels(png, near(BLUE, 30))
        peak, _ = browser.count_pixels(png, near(RED, 30))
        if line < 400 or peak < 20:
            raise Fail("timeline: want the live-bytes line and the peak "
                       "marker in the screenshot, got %d line and %d peak "
                       "pixels of %d" % (line, peak, area))
        if d["timeline"]["peak"]["bytes"] != 145536:
            raise Fail("timeline peak: want 145,536 bytes, got %s"
                       % d["timeline"]["peak"])
        # Top sites: the leak's staircase (blue, first: largest) climbs,
        # the cache's sawtooth (red) goes up and down, in the pixels.
        series = [(" < ".join(d["frames"][i][0] or "?"
                              for i in x["stack"][:3]), x) for x in d["series"]]
        names = [n for n, _ in series]
        if len(series) < 2 or "xstrdup" not in names[0] or \
                "cache_put" not in names[1]:
            raise Fail("top sites over time: want xstrdup's then cache_put's",
                       names)
        png = page.screenshot(page.rect("#sites"))
        blue = [y for y in browser.columns_top(png, near(BLUE, 30)) if y]
        red = [y for y in browser.columns_top(png, near(RED, 30)) if y]
        if len(blue) < 200 or len(red) < 200:
            raise Fail("top sites: lines missing from the screenshot "
                       "(%d blue, %d red columns)" % (len(blue), len(red)))
        rises = sum(1 for a, c in zip(blue, blue[8:]) if c > a + 2)
        turns = sum(1 for i in range(8, len(red) - 8)
                    if red[i] < red[i - 8] - 5 and red[i] < red[i + 8] - 5)
        if blue[-1] > blue[0] - 40 or rises > 3:
            raise Fail("top sites: the leak's line does not climb steadily "
                       "(left y %d, right y %d, %d dips)"
                       % (blue[0], blue[-1], rises))
        if turns < 5:
            raise Fail("top sites: the cache's line shows %d peaks, want a "
                       "sawtooth (9 flushes)" % turns)
        # Flame graphs: drawn, and a click on a frame zooms to it.
        for sel in ("#fg-leaked", "#fg-live"):
            png = page.screenshot(page.rect(sel))
            warm, area = browser.count_pixels(png, WARM)
            if warm < area // 3:
                raise Fail("flame graph %s: %d of %d pixels drawn"
                           % (sel, warm, area))
        r = page.view("#fg-leaked")
        depth = 3  # all, main, handle_request, parse
        page.click(r["x"] + r["width"] / 2, r["y"] + depth * 18 + 9)
        info = page.text("#fg-leaked-info")
        if not info.startswith("zoomed to parse: 80,000 bytes (100.0%)"):
            raise Fail("flame graph click: want 'zoomed to parse: 80,000 "
                       "bytes', got %r" % info)
        page.click(r["x"] + r["width"] / 2, r["y"] + depth * 18 + 9)
        if not page.text("#fg-leaked-info").startswith("zoomed to handle_request"):
            raise Fail("flame graph second click: want a zoom out to "
                       "handle_request", [page.text("#fg-leaked-info")])
        # A click on a loss record shows its stack with source lines.
        page.eval("document.getElementById('detail').textContent = ''")
        click_center(page, '#list .row[data-record="0"]')
        detail = page.text("#detail")
        rec = proc["leaks"][0]
        if "80,000 bytes in 40 blocks are definitely lost in loss record 1 " \
                "of 1" not in detail:
            raise Fail("record click: no title in the detail", [detail[:300]])
        for f in rec["stack"][1:]:
            where = "%s (%s:%d)" % (f["function"], os.path.basename(f["file"]),
                                    f["line"])
            if where not in detail:
                raise Fail("record click: frame %s not shown" % where,
                           [detail[:400]])
        src = open(os.path.join(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))), "fixtures",
            "heap_shapes.c")).read().splitlines()
        xs = rec["stack"][1]
        if src[xs["line"] - 1].strip() not in detail:
            raise Fail("record click: the source line of xstrdup (%d: %r) "
                       "is not shown" % (xs["line"], src[xs["line"] - 1]),
                       [detail[:400]])
        # The picture for the README: the whole page, small.
        shot = page.screenshot({"x": 0, "y": 0, "width": 1280, "height":
                                page.eval("document.body.scrollHeight")},
                               scale=0.6)
        with open(os.path.join(os.path.dirname(s.builder.out_dir),
                               "html-report.png"), "wb") as f:
            f.write(shot)


@test("html_100k_records", limit=600, exclusive=True)
def t_html_100k(s):
    e = s.expect("html_100k_records")
    path = s.tmpfile("many") + ".html"
    res, doc = s.ptleak_run(["--html=" + path, "--num-callers=16"],
                            s.resolve(e.cmd), timeout=300)
    expect_status(res, 0)
    proc = s.process(doc, res)
    got = proc["summary"]["definitely_lost"]
    if (got["bytes"], got["blocks"]) != (2350000, 100000) or \
            len(proc["leaks"]) != 100000:
        raise Fail("many_stacks: want 100,000 loss records of 2,350,000 "
                   "bytes, got %d records, %s" % (len(proc["leaks"]), got))
    b, page = open_page(s, path)
    with b:
        if page.text("#count") != "100,000 of 100,000 loss records":
            raise Fail("record count: %r" % page.text("#count"))
        n_rows = page.eval("document.querySelectorAll('#list .row').length")
        if not 0 < n_rows < 100:
            raise Fail("the list has %d rows in the DOM: not virtualized"
                       % n_rows)
        # The last record, scrolled to and clicked.
        page.eval("document.getElementById('list').scrollTop = 1e9")
        page.wait_for("document.querySelector('#list .row[data-record=\"99999\"]')")
        click_center(page, '#list .row[data-record="99999"]')
        detail = page.text("#detail")
        last = proc["leaks"][-1]
        title = "%d bytes in 1 blocks are definitely lost in loss record " \
                "100000 of 100000" % last["bytes"]
        if title not in detail or \
                len(re.findall(r"by 0x[0-9a-f]+: step\d ", detail)) != 9:
            raise Fail("click on the last record: want %r and its 9 step "
                       "frames" % title, [detail[:400]])
        # Filtering 100,000 records by function name.
        page.eval("document.getElementById('search').value = 'no_such_fn';"
                  "document.getElementById('search').dispatchEvent("
                  "new Event('input'))")
        page.wait_for("document.getElementById('count').textContent"
                      " === '0 of 100,000 loss records'")
        png = page.screenshot(page.rect("#fg-leaked"))
        warm, area = browser.count_pixels(png, WARM)
        if warm < area // 4:
            raise Fail("flame graph of 100,000 stacks: %d of %d pixels drawn"
                       % (warm, area))
        if page.errors:
            raise Fail("the page logged errors", page.errors)


# ---- ptleak -p: a running server's pictures, and --interval snapshots -----
def wait_file(path, timeout, what):
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0,
               timeout, what)


@test("pictures_attach_interval_snapshots", limit=300)
def t_attach_snapshots(s):
    # Seed 002: heap profiles of a server taken over time, compared with
    # pprof -base. --pprof=heap.%n.pb.gz writes one per --interval tick
    # and the last at detach; --html and --folded the same.
    attach_permitted()
    d = s.tmpfile("snapshots")
    os.makedirs(d)
    prof, page, folded = (os.path.join(d, "heap.%n.pb.gz"),
                          os.path.join(d, "page.%n.html"),
                          os.path.join(d, "leaks.%n.folded"))
    num = lambda pat, n: pat.replace("%n", str(n))   # noqa: E731
    what = "ptleak -p --interval=0.5 with numbered reports"
    with Processes(s) as ps:
        server, port = start_server(s, ps)
        p = start_attach(s, ps, server.pid, [
            "--interval=0.5", "--pprof=" + prof, "--html=" + page,
            "--folded=" + folded])
        wait_file(num(prof, 1), 20, "snapshot 1")
        # Requests between snapshot 1 and a later one: each leaks 2 x 48.
        nreq = 10
        seq = server_requests(port, nreq, 1, what)
        later = max(int(re.match(r"heap\.(\d+)\.pb\.gz$", f).group(1))
                    for f in os.listdir(d) if re.match(r"heap\.\d+\.pb\.gz$", f)) + 1
        wait_file(num(prof, later + 1), 20, "a snapshot after the requests")
        p.signal(signal.SIGINT)
        status = p.wait(20, "ptleak -p after SIGINT")
        if status != 0:
            raise Fail("%s: exit status %d" % (what, status), tail(p.err))
        expect_alive_untraced(server.pid, what)
        server_requests(port, 3, seq, what + ", after detaching")
    text = p.err.decode("utf-8", "replace")
    for n in (1, later + 1):
        line = "snapshot %d: %s %s %s" % (n, num(prof, n), num(folded, n),
                                          num(page, n))
        if line not in text:
            raise Fail("%s: no line %r on the report stream" % (what, line),
                       tail(p.err))
    files = sorted(f for f in os.listdir(d) if f.startswith("heap."))
    last = len(files)
    for pat in (page, folded):
        if not os.path.exists(num(pat, last)):
            raise Fail("%s: no %s (the final report's file)" % (what,
                                                                num(pat, last)))
    # The growth between two moments, as pprof -base shows it: exactly the
    # leaks of the requests (2 x 48 bytes each) at leak_request.
    grown = nreq * SERVER_LEAK_BLOCKS * SERVER_LEAK_SIZE
    expect_top(s, num(prof, later + 1), "inuse_space", {
        "leak_request": (0, grown), "handle_request": (0, grown)},
        "-base snapshot 1", ["-base=" + num(prof, 1)])
    expect_top(s, num(prof, later + 1), "inuse_objects", {
        "leak_request": (0, nreq * SERVER_LEAK_BLOCKS)},
        "-base snapshot 1, objects", ["-base=" + num(prof, 1)])
    out = go_pprof(s, ["-traces", num(prof, 2)], "snapshot 2")
    if "kind:  live" not in out or "File: leak_server" not in out:
        raise Fail("snapshot: samples labelled kind=live, the server's "
                   "mapping first", out.splitlines()[:12])
    # The final report (detach): leak kinds, since attach.
    got = [l for l, _, fs in traces(go_pprof(s, ["-traces", num(prof, last)],
                                             "the final profile"))
           if "leak_request" in fs]
    if {l.get("kind") for l in got} != {"definitely_lost"}:
        raise Fail("the final profile: leak_request's blocks should be "
                   "definitely lost", [str(got)])
    want = ("__clone3;start_thread;worker;serve;handle_request;"
            "leak_request;malloc")
    lines = folded_lines(num(folded, last))
    if lines.get(tuple(want.split(";"))) != grown:
        raise Fail("the final folded file: want %s %d" % (want, grown),
                   ["%s %d" % (";".join(k), v) for k, v in lines.items()])
    # A snapshot page and the final page open, with the server's stacks.
    for n in (later + 1, last):
        b, pg = open_page(s, num(page, n))
        with b:
            d0 = page_data(pg)["processes"][0]
            leaks = [r for r in d0["records"] if any(
                d0["frames"][i][0] == "leak_request" for i in r[5])]
            if sum(r[1] for r in leaks) != grown:
                raise Fail("page %d: leak_request's records hold %d bytes, "
                           "want %d" % (n, sum(r[1] for r in leaks), grown))
            want_kind = "definitely_lost" if n == last else "live"
            if {r[0] for r in leaks} != {want_kind}:
                raise Fail("page %d: leak_request's records are %s, want %s"
                           % (n, {r[0] for r in leaks}, want_kind))
            if n != last and not d0["snapshot"]:
                raise Fail("page %d does not say it is a snapshot" % n)


@test("pictures_follow_forks")
def t_follow_forks(s):
    # -f: every traced process in one profile (label pid) and one page
    # (a process selector), with each process's own numbers.
    prof = s.tmpfile("fork.pb.gz")
    path = s.tmpfile("fork") + ".html"
    res, doc = s.ptleak_run(["-f", "--pprof=" + prof, "--html=" + path],
                            [s.builder.get("fork_leaks")], timeout=60)
    m = re.search(rb"fork_leaks: parent (\d+) child (\d+)", res.stderr)
    if not m:
        raise Fail("fork_leaks did not print its pids", tail(res.stderr))
    parent, child = int(m.group(1)), int(m.group(2))
    for pid, leak in ((parent, 200), (child, 800)):
        out = go_pprof(s, ["-top", "-unit=B", "-tagfocus=pid=%d" % pid,
                           "-tagignore=kind=still_reachable", prof],
                       "pid %d" % pid)
        rows = top_table(out)
        if rows.get("malloc", (None,))[0] != leak:
            raise Fail("-f profile, pid %d: want %d definitely lost bytes, "
                       "got %s" % (pid, leak, rows.get("malloc")),
                       out.splitlines()[:12])
    b, page = open_page(s, path)
    with b:
        opts = page.eval("Array.from(document.querySelectorAll('#process "
                         "option')).map(o => o.textContent)")
        if len(opts) != 2 or not opts[0].startswith("pid %d" % parent) \
                and not opts[0].startswith("pid %d" % child):
            raise Fail("-f page: want a selector of the 2 processes", opts)
        data = page_data(page)["processes"]
        got = {d["pid"]: d["summary"]["definitely_lost"][0] for d in data}
        if got != {parent: 200, child: 800}:
            raise Fail("-f page: definitely lost per pid: %s" % got)
        idx = [d["pid"] for d in data].index(child)
        page.eval("const s = document.getElementById('process'); s.value = "
                  "'%d'; s.dispatchEvent(new Event('change'))" % idx)
        if "800 bytes in 5 blocks" not in page.text("#summary"):
            raise Fail("-f page: choosing the child shows its summary",
                       [page.text("#summary")])
        if page.errors:
            raise Fail("the page logged errors", page.errors)
