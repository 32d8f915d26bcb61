"""The report formats against real consumers (tests/run.py -k xml, -k
sarif, -k text): valgrind's XML compared with valgrind's own --xml=yes
output of the same programs through an XML parser; SARIF validated
against the SARIF 2.1.0 schema and read by Microsoft's SARIF SDK (its
multitool); the text report's valgrind lines against valgrind's."""
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET

from lib.proc import Fail, Skip, expect_status, run, tail
from lib.runner import test

XML_FIXTURES = ["valgrind_kinds", "list_no_head", "possibly_lost",
                "student_cpp", "leak_100", "deep_chain", "real_inline"]
FRAME_TAGS = {"ip", "obj", "fn", "dir", "file", "line"}


def parse_xml(path, what):
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise Fail("%s: not well-formed XML: %s" % (what, e))


def xml_errors(root):
    """Per <error>: kind, bytes, blocks, text without the record number,
    the program's own frames (dir, file, line, fn), the suppression's
    sframes; sorted, since valgrind numbers smallest first, ptleak largest."""
    out = []
    exe = root.findtext("args/argv/exe")
    for e in root.findall("error"):
        frames = e.findall("stack/frame")
        for f in frames:
            extra = {c.tag for c in f} - FRAME_TAGS
            if extra:
                raise Fail("frame with unknown elements %s" % sorted(extra))
        own = tuple((f.findtext("dir"), f.findtext("file"), f.findtext("line"),
                     f.findtext("fn")) for f in frames
                    if f.findtext("obj") == os.path.realpath(exe))
        sup = tuple(sf[0].tag + ":" + (sf[0].text or "")
                    for sf in e.findall("suppression/sframe"))
        out.append((e.findtext("kind"), int(e.findtext("xwhat/leakedbytes")),
                    int(e.findtext("xwhat/leakedblocks")),
                    re.sub(r" in loss record \d+ of \d+$", "",
                           e.findtext("xwhat/text") or ""), own, sup))
    return sorted(out)


def valgrind_xml(s, cmd, opts=()):
    if shutil.which("valgrind") is None:
        raise Skip("valgrind not installed (make test-deps installs it)")
    path = s.tmpfile("valgrind.xml")
    run(["valgrind", "--leak-check=full", "--xml=yes", "--xml-file=" + path]
        + list(opts) + cmd, 180, env=s.env)
    return parse_xml(path, "valgrind's XML")


@test("xml_same_as_valgrind", limit=600)
def t_xml_same_as_valgrind(s):
    """ptleak --xml and valgrind --xml=yes on the same programs: the same
    top-level elements, and per error the same kind, leakedbytes,
    leakedblocks, text, the program's own frames (dir, file, line, fn)
    and, with --gen-suppressions=all, the same suppression frames."""
    for name in XML_FIXTURES:
        cmd = [s.builder.get(name)]
        vg = valgrind_xml(s, cmd, ["--gen-suppressions=all"])
        path = s.tmpfile(name + ".xml")
        res, _ = s.ptleak_run(["--xml=" + path, "--gen-suppressions=all"],
                              cmd, json_file=False)
        expect_status(res, exit_status_of(s, cmd))
        mine = parse_xml(path, "ptleak's XML")
        tags_v = [c.tag for c in vg]
        tags_m = [c.tag for c in mine]
        if sorted(set(tags_v)) != sorted(set(tags_m)):
            raise Fail("%s: top-level elements differ: valgrind %s, ptleak %s"
                       % (name, sorted(set(tags_v)), sorted(set(tags_m))))
        for t in ("protocolversion", "protocoltool", "tool"):
            if vg.findtext(t) != mine.findtext(t):
                raise Fail("%s: <%s> valgrind %r, ptleak %r"
                           % (name, t, vg.findtext(t), mine.findtext(t)))
        if [x.text for x in mine.findall("args/argv/*")] != cmd or \
                int(mine.findtext("pid")) <= 0 or int(mine.findtext("ppid")) <= 0:
            raise Fail("%s: args/argv or pid/ppid wrong" % name)
        if [x.findtext("state") for x in mine.findall("status")] != \
                ["RUNNING", "FINISHED"]:
            raise Fail("%s: want status RUNNING then FINISHED" % name)
        ev, em = xml_errors(vg), xml_errors(mine)
        if ev != em:
            raise Fail("%s: errors differ" % name,
                       ["valgrind: %s" % (x,) for x in ev] +
                       ["ptleak:   %s" % (x,) for x in em])
        if not ev:
            raise Fail("%s: no <error> to compare" % name)


def exit_status_of(s, cmd):
    from lib.proc import exit_status
    return exit_status(s.native(cmd).status)


@test("xml_ci_green")
def t_xml_ci_green(s):
    """The CI job of the issue: --suppressions=known.supp --error-exitcode=1
    --xml=report.xml on a program whose only leaks are suppressed: status
    0, no <error>, the suppressions counted in <suppcounts>; without the
    file: status 1 and the errors; --xml=yes --xml-file=F is the same."""
    exe = s.builder.get("list_no_head")
    supp = s.tmpfile("known.supp")
    open(supp, "w").write("{\n   list-without-head\n   Memcheck:Leak\n"
                          "   match-leak-kinds: definite,indirect\n"
                          "   fun:malloc\n   fun:case_ll_with_no_head\n}\n")
    for xml_opts in (["--xml=%s"], ["--xml=yes", "--xml-file=%s"]):
        path = s.tmpfile("report.xml")
        opts = [o % path if "%s" in o else o for o in xml_opts]
        res, _ = s.ptleak_run(["--suppressions=" + supp, "--error-exitcode=1",
                               "--show-leak-kinds=all"] + opts, [exe],
                              json_file=False)
        expect_status(res, 0, "all leaks suppressed: ")
        root = parse_xml(path, "report.xml")
        pairs = [(p.findtext("count"), p.findtext("name"))
                 for p in root.findall("suppcounts/pair")]
        if root.findall("error") or pairs != [("2", "list-without-head")]:
            raise Fail("%s: want no <error> and suppcounts 2 list-without-head, "
                       "got %d errors, %s" % (opts, len(root.findall("error")),
                                              pairs))
    path = s.tmpfile("report.xml")
    res, _ = s.ptleak_run(["--error-exitcode=1", "--xml=" + path], [exe],
                          json_file=False)
    expect_status(res, 1, "without the suppressions: ")
    errs = xml_errors(parse_xml(path, "report.xml"))
    if [(e[0], e[1], e[2]) for e in errs] != [("Leak_DefinitelyLost", 160, 1)]:
        raise Fail("without the suppressions: want one Leak_DefinitelyLost of "
                   "160 bytes (16 direct, 144 indirect) in 1 block, got %s" % errs)


def sarif_tool(s):
    d = os.path.join(os.path.abspath(s.args.build), "npm", "node_modules",
                     "@microsoft", "sarif-multitool-linux")
    if not os.access(os.path.join(d, "Sarif.Multitool"), os.X_OK):
        raise Fail("no SARIF multitool in %s (make test-deps installs it)" % d)
    return d


def sarif_schema_errors(d, doc):
    try:
        import jsonschema
    except ImportError:
        raise Fail("python3-jsonschema missing (make test-deps installs it)")
    schema = json.load(open(os.path.join(d, "sarif-2.1.0.json")))
    cls = jsonschema.validators.validator_for(schema)
    return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path), e.message)
            for e in cls(schema).iter_errors(doc)]


@test("sarif_valid", limit=600)
def t_sarif_valid(s):
    """--sarif: valid against the SARIF 2.1.0 schema, read back by the
    SARIF SDK (multitool rewrite), and exact: one result per definitely,
    indirectly and possibly lost record (error, error, warning), located
    at the program's own source line, the whole stack attached; the
    schema check itself rejects a broken document."""
    d = sarif_tool(s)
    broken = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
                                           "results": [{"message": {"text": "m"},
                                                        "level": "fatal"}]}]}
    if not sarif_schema_errors(d, broken):
        raise Fail("the schema check accepts a result of level 'fatal'")
    from lib.fixtures import FIXTURES
    src = open(os.path.join(FIXTURES, "valgrind_kinds.c")).read().splitlines()
    line_of = {n: next(i + 1 for i, l in enumerate(src)
                       if "= malloc(%d);" % n in l)
               for n in (10, 50)}
    cases = {
        "valgrind_kinds": [("definitely-lost", "error", 50, 1, line_of[50]),
                           ("definitely-lost", "error", 10, 1, line_of[10])],
        "list_no_head": [("definitely-lost", "error", 16, 1, None),
                         ("indirectly-lost", "error", 144, 9, None)],
        "possibly_lost": [("possibly-lost", "warning", 160, 1, None)],
    }
    for name, want in cases.items():
        cmd = [s.builder.get(name)]
        path = s.tmpfile(name + ".sarif")
        res, doc = s.ptleak_run(["--sarif=" + path], cmd)
        try:
            sarif = json.load(open(path))
        except (OSError, ValueError) as e:
            raise Fail("%s: no SARIF JSON: %s" % (name, e))
        errs = sarif_schema_errors(d, sarif)
        if errs:
            raise Fail("%s: SARIF fails the 2.1.0 schema" % name, errs[:10])
        out = s.tmpfile(name + ".rw.sarif")
        rw = run([os.path.join(d, "Sarif.Multitool"), "rewrite", path,
                  "--output", out, "--log", "ForceOverwrite"], 120, env=s.env)
        if rw.status != 0 or not os.path.exists(out):
            raise Fail("%s: the SARIF SDK cannot read it" % name,
                       [l for l in rw.stdout.decode(errors="replace").splitlines()
                        if "Exception" in l][:5] or tail(rw.stdout))
        run0 = sarif["runs"][0]
        results = run0["results"]
        got = []
        for r in results:
            loc = r["locations"][0]["physicalLocation"]
            frames = r["stacks"][0]["frames"]
            got.append((r["ruleId"], r["level"], r["properties"]["bytes"],
                        r["properties"]["blocks"], loc["region"]["startLine"]))
            if not loc["artifactLocation"]["uri"].endswith(
                    "/fixtures/%s.c" % name) or \
                    not loc["artifactLocation"]["uri"].startswith("file:///"):
                raise Fail("%s: result located at %s, not the program's source"
                           % (name, loc["artifactLocation"]["uri"]))
            fns = [f["location"]["logicalLocations"][0]["fullyQualifiedName"]
                   for f in frames if f["location"].get("logicalLocations")]
            if fns[0] != "malloc" or fns[-1] != "main":
                raise Fail("%s: stack %s: want malloc ... main" % (name, fns))
        rows = [g[:4] + ((g[4],) if w[4] else (None,))
                for g, w in zip(got, want)]
        if rows != want or len(got) != len(want):
            raise Fail("%s: results %s, want %s" % (name, got, want))
        if run0["invocations"][0].get("exitCode") != 0 or \
                run0["invocations"][0]["arguments"] != cmd:
            raise Fail("%s: invocation %s" % (name, run0["invocations"][0]))


# ---- the text report: valgrind's words where valgrind has them -----------
def valgrind_text(s, cmd, opts=()):
    if shutil.which("valgrind") is None:
        raise Skip("valgrind not installed (make test-deps installs it)")
    log = s.tmpfile("valgrind.log")
    run(["valgrind", "--leak-check=full", "--log-file=" + log] + list(opts) + cmd,
        180, env=s.env)
    return open(log, encoding="utf-8", errors="replace").read()


def unprefixed(text, what):
    """Lines of TEXT that matter, without their ==PID== prefix."""
    return [re.sub(r"^==\d+== ?", "", l) for l in text.splitlines()
            if re.match(r"==\d+== ", l) and what(l)]


@test("text_command_and_ending", limit=300)
def t_text_command_and_ending(s):
    """The Command: line is one line, quoted as valgrind quotes it (the
    oracle's own line for the same arguments); how the program ended."""
    exe = s.builder.get("exit_code")
    args = [exe, "3", "a b", "x\ny", "q<r>\\s", "é"]
    res, _ = s.ptleak_run([], args, json_file=False)
    expect_status(res, 3)
    text = res.stderr.decode("utf-8", "replace")
    mine = unprefixed(text, lambda l: "Command:" in l)
    theirs = unprefixed(valgrind_text(s, args), lambda l: "Command:" in l)
    if len(mine) != 1 or mine != theirs:
        raise Fail("Command: line: ptleak %r, valgrind %r" % (mine, theirs))
    if not re.search(r"^==\d+== Process exited with code 3$", text, re.M):
        raise Fail("no 'Process exited with code 3'", tail(res.stderr))
    res, _ = s.ptleak_run([], [s.builder.get("abort_leak")], json_file=False)
    expect_status(res, 134)
    if not re.search(r"^==\d+== Process terminating with default action of "
                     r"signal 6 \(SIGABRT\)(, core dumped)?$",
                     res.stderr.decode("utf-8", "replace"), re.M):
        raise Fail("no 'Process terminating with default action of signal 6 "
                   "(SIGABRT)'", tail(res.stderr))


@test("text_hints_as_valgrind", limit=300)
def t_text_hints_as_valgrind(s):
    """After the LEAK SUMMARY: valgrind's lines on hidden reachable blocks
    and its ERROR SUMMARY, the same as valgrind's for the same program;
    how many records were not shown; the children that ran untraced."""
    cmd = [s.builder.get("valgrind_kinds")]
    res, _ = s.ptleak_run([], cmd, json_file=False)
    text = res.stderr.decode("utf-8", "replace")
    vg = valgrind_text(s, cmd)
    for what in ("Reachable blocks", "To see them", "ERROR SUMMARY"):
        mine = unprefixed(text, lambda l: what in l)
        theirs = unprefixed(vg, lambda l: what in l)[:1]
        if mine != theirs:
            raise Fail("%r line: ptleak %s, valgrind %s" % (what, mine, theirs))
    if not re.search(r"^==\d+== 1 of 3 loss records not shown \(1 still "
                     r"reachable\): --show-leak-kinds=all shows them$", text, re.M):
        raise Fail("no '1 of 3 loss records not shown'", tail(res.stderr))
    res, _ = s.ptleak_run(["--show-leak-kinds=all"], cmd, json_file=False)
    if b"not shown" in res.stderr:
        raise Fail("--show-leak-kinds=all: still a 'not shown' hint",
                   tail(res.stderr))
    fork = [s.builder.get("fork_leaks")]
    res, _ = s.ptleak_run([], fork, json_file=False)
    if not re.search(rb"^==\d+== 1 child process ran untraced: rerun with -f "
                     rb"\(--trace-children=yes\) to trace it$", res.stderr, re.M):
        raise Fail("fork_leaks without -f: no '1 child process ran untraced'",
                   tail(res.stderr))
    res, _ = s.ptleak_run(["-f"], fork, json_file=False)
    if b"ran untraced" in res.stderr:
        raise Fail("fork_leaks with -f: 'ran untraced' said anyway",
                   tail(res.stderr))


@test("text_module_offset_stripped", limit=300)
def t_text_module_offset_stripped(s):
    """A stripped binary's frames read '??? (in MODULE+0xOFFSET)', and the
    offset is the one addr2line takes: on the unstripped twin it names the
    leaking function, as LSan's (module+0x...) would."""
    if shutil.which("addr2line") is None or shutil.which("strip") is None:
        raise Skip("binutils missing (make test-deps installs it)")
    full = s.builder.get("leak_1000")
    d = s.tmpfile("stripped")
    os.mkdir(d)
    exe = os.path.join(d, "leak_1000")
    shutil.copy(full, exe)
    run(["strip", exe], 30, env=s.env)
    res, doc = s.ptleak_run([], [exe])
    text = res.stderr.decode("utf-8", "replace")
    offs = re.findall(r"^==\d+==    by 0x[0-9A-F]+: \?\?\? \(in %s\+0x([0-9a-f]+)\)$"
                      % re.escape(exe), text, re.M)
    if len(offs) < 2:
        raise Fail("want the stripped frames as '??? (in %s+0x...)'" % exe,
                   tail(res.stderr))
    frames = next(l for l in s.process(doc, res)["leaks"]
                  if l["kind"] == "definitely_lost")["stack"]
    json_offs = [f["module_offset"][2:] for f in frames
                 if f["module"] == exe and not f["function"]]
    if json_offs[:len(offs)] != offs:
        raise Fail("text offsets %s, JSON module_offset %s" % (offs, json_offs))
    # A return address: the call is the byte before it.
    a2l = run(["addr2line", "-f", "-e", full, "0x%x" % (int(offs[0], 16) - 1)],
              30, env=s.env)
    if a2l.stdout.split(b"\n")[0] != b"do_leak":
        raise Fail("addr2line -e leak_1000 0x%s: want do_leak, got %r"
                   % (offs[0], a2l.stdout))


def definite_frames(text):
    """The frames after frame 0 of the definitely lost records of a text
    report or valgrind log: [(function, where), ...] per record, sorted."""
    return sorted([f[1:] for f in frames]
                  for (_, _, kind), frames in text_stacks(text).items()
                  if kind == "definitely lost")


@test("text_debug_file_separate", limit=300)
def t_text_debug_file_separate(s):
    """A binary stripped of its DWARF, whose .gnu_debuglink names a debug
    file beside it or in its .debug directory, has its file:line from
    that file, as valgrind shows them (the oracle, on the same binary); a
    debug file of another build (another build ID) is not used."""
    for tool in ("objcopy", "strip"):
        if shutil.which(tool) is None:
            raise Skip("binutils missing (make test-deps installs it)")
    full = s.builder.get("leak_1000")
    d = s.tmpfile("debuglink")
    os.makedirs(os.path.join(d, ".debug"))
    exe = os.path.join(d, "leak_1000")
    dbg = os.path.join(d, "leak_1000.debug")
    run(["objcopy", "--only-keep-debug", full, dbg], 30, env=s.env)
    run(["objcopy", "--strip-all", "--add-gnu-debuglink=" + dbg, full, exe],
        30, env=s.env)

    def frames(what):
        res, _ = s.ptleak_run([], [exe])
        got = definite_frames(res.stderr.decode("utf-8", "replace"))
        if len(got) != 1:
            raise Fail("%s: want 1 definitely lost record, got %d"
                       % (what, len(got)), tail(res.stderr))
        return got[0]

    log = s.tmpfile("valgrind-debuglink.log")
    run(["valgrind", "--leak-check=full", "--log-file=" + log, exe], 120,
        env=s.env)
    want = definite_frames(open(log, errors="replace").read())
    if len(want) != 1:
        raise Fail("valgrind: want one definitely lost record", want)
    want = want[0]
    if not want or want[0][0] != "do_leak" or \
            not want[0][1].startswith("leak_1000.c:"):
        raise Fail("valgrind does not name do_leak (leak_1000.c:N)", want)
    def expect_valgrinds(what):
        got = frames(what)
        if got != want:
            raise Fail(what + ": frames differ",
                       ["valgrind: %s" % (f,) for f in want] +
                       ["ptleak:   %s" % (f,) for f in got])

    expect_valgrinds("debug file beside the binary")
    os.rename(dbg, os.path.join(d, ".debug", "leak_1000.debug"))
    expect_valgrinds("debug file in .debug/")
    # Another build's debug file under the same name: another build ID.
    other = s.builder.get("leak_100")
    run(["objcopy", "--only-keep-debug", other,
         os.path.join(d, ".debug", "leak_1000.debug")], 30, env=s.env)
    got = frames("another build's debug file")
    own = [f for f, w in got if exe in w]
    if not own or any(f != "???" for f in own) or \
            any(w.startswith(("leak_1000.c", "leak_100.c")) for f, w in got):
        raise Fail("another build's debug file was used: want '???' frames "
                   "in leak_1000", got)


# ---- inlined functions: frames of their own, as valgrind shows them -----
INLINE_FIXTURES = ["real_inline", "real_inline_O0", "real_inline_cpp"]
INLINE_KINDS = "--show-leak-kinds=definite,indirect"
FRAME_LINE_RE = re.compile(r"^==\d+==    (at|by) (0x[0-9A-F]+): (.*?) \((.*)\)$")
RECORD_LINE_RE = re.compile(r"^==\d+== ([\d,]+)(?: \(([\d,]+) direct, [\d,]+ "
                            r"indirect\))? bytes in ([\d,]+) blocks are "
                            r"(.*?) in loss record")


def text_stacks(text):
    """{(direct bytes, blocks, kind): [(address, function, where), ...]} of a
    text report or valgrind log, frame 0 (the allocator, whose module
    differs) left out."""
    out, cur = {}, None
    for l in text.splitlines():
        m = RECORD_LINE_RE.match(l)
        if m:
            cur = out.setdefault((m.group(2) or m.group(1), m.group(3),
                                  m.group(4)), [])
            continue
        m = FRAME_LINE_RE.match(l)
        if m and cur is not None and m.group(1) == "by":
            # valgrind's frame 0 is operator new; ptleak's is the malloc
            # under it (doc/internals.md, suppressions).
            if not cur and m.group(3).startswith("operator new"):
                continue
            cur.append((m.group(2), m.group(3), m.group(4)))
        elif not m:
            cur = None
    return out


def same_address_pattern(frames):
    """For each frame: does the next one share its address?"""
    return [i + 1 < len(frames) and frames[i][0] == frames[i + 1][0]
            for i in range(len(frames))]


def compare_inline_text(name, vg, mine, what):
    """The own frames of every valgrind record in ptleak's text: the same
    functions and file:line in the same order, the same address shared."""
    sv, sm = text_stacks(vg), text_stacks(mine)
    for key, vframes in sv.items():
        mframes = sm.get(key)
        if mframes is None:
            raise Fail("%s%s: valgrind's record %s not in ptleak's text"
                       % (name, what, key), sorted(sm))
        if [f[1:] for f in vframes] != [f[1:] for f in mframes] or \
                same_address_pattern(vframes) != same_address_pattern(mframes):
            raise Fail("%s%s: record %s: frames differ" % (name, what, key),
                       ["valgrind: %s" % (f,) for f in vframes] +
                       ["ptleak:   %s" % (f,) for f in mframes])
    if not any(any(same_address_pattern(v)) for v in sv.values()):
        raise Fail("%s%s: valgrind shows no inlined frame" % (name, what))
    return sm


@test("inline_frames", limit=600)
def t_inline_frames(s):
    """Functions inlined at -O2 (and always_inline at -O0) are frames of
    their own, as valgrind shows them: the text report has valgrind's
    frames (function, file:line, one address for a whole inline chain),
    also with --num-callers=2 (valgrind counts return addresses); the JSON
    has them with "inlined" true on all but the last of a chain; the XML
    has a <frame> each with the shared <ip>. C (always_inline, -O2 and
    -O0) and C++ at -O2 (push_back, the allocator: valgrind names them by
    DW_AT_name)."""
    for name in INLINE_FIXTURES:
        cmd = [s.builder.get(name)]
        xml = s.tmpfile(name + ".xml")
        res, doc = s.ptleak_run(["--xml=" + xml, INLINE_KINDS], cmd)
        expect_status(res, 0)
        mine = compare_inline_text(name, valgrind_text(s, cmd, [INLINE_KINDS]),
                                   res.stderr.decode("utf-8", "replace"), "")
        words = {"definitely_lost": "definitely lost",
                 "indirectly_lost": "indirectly lost"}
        for leak in s.process(doc, res)["leaks"]:
            if leak["kind"] not in words:
                continue
            key = (format(leak["bytes"], ","), format(leak["blocks"], ","),
                   words[leak["kind"]])
            js = leak["stack"][1:]
            if js and (js[0]["function"] or "").startswith("operator new"):
                js = js[1:]
            want = [(f[0], f[1]) for f in mine[key]]
            got = [("0x%X" % int(f["address"], 16), f["function"]) for f in js]
            flags = [f["inlined"] for f in js]
            if got != want or flags != same_address_pattern(mine[key]) or \
                    leak["stack"][0]["inlined"] is not False:
                raise Fail("%s: JSON stack of %s differs from the text" % (name, key),
                           ["text: %s" % (f,) for f in mine[key]] +
                           ["json: %s %s" % (g, fl) for g, fl in zip(got, flags)])
        root = parse_xml(xml, "ptleak's XML")
        for e in root.findall("error"):
            key = (format(int(e.findtext("xwhat/leakedbytes")), ","),
                   format(int(e.findtext("xwhat/leakedblocks")), ","),
                   {"Leak_DefinitelyLost": "definitely lost",
                    "Leak_IndirectlyLost": "indirectly lost"}.get(e.findtext("kind")))
            frames = [(f.findtext("ip"), f.findtext("fn"))
                      for f in e.findall("stack/frame")][1:]
            if frames and (frames[0][1] or "").startswith("operator new"):
                frames = frames[1:]
            if key in mine and frames != [(f[0], f[1]) for f in mine[key]]:
                raise Fail("%s: XML stack of %s differs from the text" % (name, key),
                           ["xml:  %s" % (f,) for f in frames] +
                           ["text: %s" % (f,) for f in mine[key]])
        if name.endswith("_cpp"):
            continue    # ptleak's malloc under operator new is one more
        res2, _ = s.ptleak_run(["--num-callers=2", INLINE_KINDS], cmd,
                               json_file=False)
        compare_inline_text(name, valgrind_text(s, cmd, ["--num-callers=2",
                                                         INLINE_KINDS]),
                            res2.stderr.decode("utf-8", "replace"),
                            " --num-callers=2")
