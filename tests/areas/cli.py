"""The command line: exit statuses, options, bad input (tests/run.py -k
option, -k bad, -k exit, ...)."""
import json
import os
import re
import shutil
import tempfile

from lib.proc import Fail, expect_status, run, tail
from lib.report import expect_errors, parse_summary_text, show_record, \
    show_stack, stack_matches
from lib.runner import test


@test("exit_status_200")
def t_exit_status_200(s):
    res, doc = s.ptleak_run([], [s.builder.get("exit_code"), "200"])
    expect_status(res, 200)
    proc = s.process(doc, res)
    if proc.get("exit") != {"code": 200}:
        raise Fail("JSON exit: want {'code': 200}, got %s" % proc.get("exit"))


@test("exit_status_series")
def t_no_hang_on_child_exit_codes(s):
    # Several quick runs in a row: each must end and leave nothing behind.
    for code in ("0", "1", "255"):
        res, _ = s.ptleak_run([], [s.builder.get("exit_code"), code])
        expect_status(res, int(code))


@test("error_exitcode_leak")
def t_error_exitcode_leak(s):
    res, _ = s.ptleak_run(["--error-exitcode=7"], [s.builder.get("leak_1000")])
    expect_status(res, 7, "definite leak with --error-exitcode=7: ")


@test("error_exitcode_no_leak")
def t_error_exitcode_no_leak(s):
    res, _ = s.ptleak_run(["--error-exitcode=7"],
                          [s.builder.get("exit_code"), "3"])
    expect_status(res, 3, "no leak with --error-exitcode=7: ")


@test("error_exitcode_leak_nonzero")
def t_error_exitcode_leak_nonzero(s):
    res, _ = s.ptleak_run(["--error-exitcode=7"],
                          [s.builder.get("exit_code"), "3", "42"])
    expect_status(res, 7, "leak and status 3 with --error-exitcode=7: ")


@test("error_exitcode_kinds")
def t_error_exitcode_kinds(s):
    hello = [s.builder.get("hello")]
    res, _ = s.ptleak_run(["--error-exitcode=7"], hello)
    expect_status(res, 0, "hello (only reachable blocks): ")
    res, _ = s.ptleak_run(["--error-exitcode=7",
                           "--errors-for-leak-kinds=reachable"], hello)
    expect_status(res, 7, "hello, --errors-for-leak-kinds=reachable: ")
    pl = [s.builder.get("possibly_lost")]
    res, _ = s.ptleak_run(["--error-exitcode=9"], pl)
    expect_status(res, 0, "possibly_lost, default kinds (definite): ")
    res, _ = s.ptleak_run(["--error-exitcode=9",
                           "--errors-for-leak-kinds=definite,possible"], pl)
    expect_status(res, 9, "possibly_lost, definite,possible: ")


@test("stdin_passthrough")
def t_stdin_passthrough(s):
    data = bytes(range(256)) * 400  # binary, 100 KiB
    res, doc = s.ptleak_run([], [s.builder.get("echo_stdin")], stdin=data)
    expect_status(res, 0)
    if res.stdout != data:
        raise Fail("stdin did not pass through unchanged (%d bytes in, %d out)"
                   % (len(data), len(res.stdout)))


@test("option_output_file")
def t_output_file(s):
    out = s.tmpfile("report.txt")
    res, _ = s.ptleak_run(["-o", out], [s.builder.get("leak_1000")],
                          json_file=False)
    expect_status(res, 0)
    if not os.path.exists(out):
        raise Fail("-o FILE: no report file")
    text = open(out, encoding="utf-8", errors="replace").read()
    got = parse_summary_text(text)
    if got.get("definitely_lost") != (1000, 1):
        raise Fail("-o FILE: want 'definitely lost: 1,000 bytes in 1 blocks'",
                   ["| " + l for l in text.splitlines()[-12:]])
    if re.search(rb"^==\d+== ", res.stderr, re.M):
        raise Fail("-o FILE: report lines still on stderr", tail(res.stderr))
    res, _ = s.ptleak_run(["--output=" + out + "2"],
                          [s.builder.get("leak_1000")], json_file=False)
    if not os.path.exists(out + "2"):
        raise Fail("--output=FILE: no report file")
    text = open(out + "2", encoding="utf-8", errors="replace").read()
    if parse_summary_text(text).get("definitely_lost") != (1000, 1):
        raise Fail("--output=FILE: want 'definitely lost: 1,000 bytes in 1 "
                   "blocks'", ["| " + l for l in text.splitlines()[-12:]])


@test("option_json_space_form")
def t_json_space_form(s):
    j = s.tmpfile("report.json")
    res, _ = s.ptleak_run(["--json", j], [s.builder.get("exit_code"), "3",
                                          "42"], json_file=False)
    expect_status(res, 3)
    try:
        doc = json.load(open(j))
        d = doc["processes"][0]["summary"]["definitely_lost"]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise Fail("--json FILE (two arguments): %s" % e)
    if (d.get("bytes"), d.get("blocks")) != (42, 1):
        raise Fail("--json FILE: want 42 bytes in 1 blocks, got %s" % d)


@test("option_quiet")
def t_quiet(s):
    res, _ = s.ptleak_run(["-q"], [s.builder.get("leak_1000")])
    text = res.stderr.decode("utf-8", "replace")
    if "ptleak-" in text or "Command:" in text:
        raise Fail("-q: banner still printed", tail(res.stderr))
    if parse_summary_text(text).get("definitely_lost") != (1000, 1):
        raise Fail("-q: no LEAK SUMMARY with the leak", tail(res.stderr))
    res, _ = s.ptleak_run([], [s.builder.get("leak_1000")])
    text = res.stderr.decode("utf-8", "replace")
    if not re.search(r"^==\d+== ptleak-", text, re.M) or \
            not re.search(r"^==\d+== Command: ", text, re.M):
        raise Fail("default: no banner (==PID== ptleak-... / Command:)",
                   tail(res.stderr))


def deep_record(s, opts):
    res, doc = s.ptleak_run(opts, [s.builder.get("deep_chain")])
    expect_status(res, 0)
    proc = s.process(doc, res)
    recs = [r for r in proc.get("leaks") or []
            if r.get("kind") == "definitely_lost"]
    if len(recs) != 1 or recs[0].get("bytes") != 333:
        raise Fail("want one definitely lost record of 333 bytes, got %s"
                   % [show_record(r) for r in recs])
    return recs[0]["stack"]


@test("option_num_callers")
def t_num_callers(s):
    stack = deep_record(s, ["--num-callers=2"])
    if not stack_matches(["malloc", "f3@deep_b.c"], stack) or len(stack) != 2:
        raise Fail("--num-callers=2: want malloc <- f3, got %s"
                   % show_stack(stack))


@test("option_show_below_main")
def t_show_below_main(s):
    stack = deep_record(s, ["--show-below-main"])
    names = [f.get("function") for f in stack]
    if "main" not in names or names.index("main") == len(names) - 1:
        raise Fail("--show-below-main: want frames after main, got %s"
                   % show_stack(stack))
    stack = deep_record(s, [])
    names = [f.get("function") for f in stack]
    if not names or names[-1] != "main":
        raise Fail("default: want main as the last frame, got %s"
                   % show_stack(stack))


@test("option_show_leak_kinds")
def t_show_leak_kinds(s):
    exe = [s.builder.get("valgrind_kinds")]
    res, doc = s.ptleak_run(["--show-leak-kinds=all"], exe)
    text = res.stderr.decode("utf-8", "replace")
    for line in ("100 bytes in 1 blocks are still reachable in loss record "
                 "1 of 3",
                 "50 bytes in 1 blocks are definitely lost in loss record "
                 "2 of 3",
                 "10 bytes in 1 blocks are definitely lost in loss record "
                 "3 of 3"):
        if line not in text:
            raise Fail("--show-leak-kinds=all: text lacks %r" % line,
                       tail(res.stderr))
    res, doc = s.ptleak_run([], exe)
    text = res.stderr.decode("utf-8", "replace")
    if "still reachable in loss record" in text:
        raise Fail("default --show-leak-kinds: a still reachable record "
                   "was shown", tail(res.stderr))
    if "50 bytes in 1 blocks are definitely lost in loss record 2 of 3" \
            not in text:
        raise Fail("default: text lacks the 50-byte record", tail(res.stderr))
    res, doc = s.ptleak_run(["--show-leak-kinds=none"], exe)
    text = res.stderr.decode("utf-8", "replace")
    if "in loss record" in text:
        raise Fail("--show-leak-kinds=none: records shown", tail(res.stderr))
    proc = s.process(doc, res)
    if len(proc.get("leaks") or []) != 3:
        raise Fail("--show-leak-kinds=none: JSON must still hold all 3 "
                   "records, got %d" % len(proc.get("leaks") or []))
    res, doc = s.ptleak_run(["--show-leak-kinds=definite,reachable"], exe)
    text = res.stderr.decode("utf-8", "replace")
    if "100 bytes in 1 blocks are still reachable in loss record 1 of 3" \
            not in text:
        raise Fail("--show-leak-kinds=definite,reachable: no reachable "
                   "record", tail(res.stderr))


@test("option_help")
def t_help(s):
    res, _ = s.ptleak_run(["--help"], [], json_file=False)
    expect_status(res, 0, "--help: ")
    text = (res.stdout + res.stderr).decode("utf-8", "replace")
    missing = [w for w in ("125", "126", "127", "--json", "--error-exitcode")
               if w not in text]
    if missing or "usage" not in text.lower():
        raise Fail("--help lacks %s" % (missing or ["usage"]),
                   tail(res.stdout + res.stderr))
    res2, _ = s.ptleak_run(["-h"], [], json_file=False)
    expect_status(res2, 0, "-h: ")


@test("option_version")
def t_version(s):
    res, _ = s.ptleak_run(["--version"], [], json_file=False)
    expect_status(res, 0, "--version: ")
    text = (res.stdout + res.stderr).decode("utf-8", "replace")
    if "0.1" not in text:
        raise Fail("--version does not say 0.1", tail(res.stdout))


@test("option_double_dash")
def t_double_dash(s):
    cmd = [s.builder.get("exit_code"), "4"]
    res, doc = s.ptleak_run(["--"], cmd)
    expect_status(res, 4, "-- PROGRAM: ")
    if s.process(doc, res).get("command") != cmd:
        raise Fail("-- PROGRAM: JSON command: want %s, got %s"
                   % (cmd, s.process(doc, res).get("command")))


@test("options_after_program")
def t_options_after_program(s):
    hello = s.builder.get("hello")
    res, doc = s.ptleak_run([], [hello, "--version", "-q", "--json=/x"])
    expect_status(res, 0)
    if res.stdout != b"hello, world\n":
        raise Fail("options after PROGRAM must go to it: stdout %r"
                   % res.stdout[:80])
    proc = s.process(doc, res)
    if proc.get("command") != [hello, "--version", "-q", "--json=/x"]:
        raise Fail("JSON command: got %s" % proc.get("command"))


def one_line_naming(res, name):
    lines = [l for l in res.stderr.decode("utf-8", "replace").splitlines()
             if l.strip()]
    if len(lines) != 1 or name not in lines[0]:
        raise Fail("want one line on stderr naming %r, got %d" % (name,
                                                                  len(lines)),
                   tail(res.stderr))


@test("bad_missing_path")
def t_bad_missing_path(s):
    name = "/nonexistent/ptleak-no-such-program"
    res, _ = s.ptleak_run([], [name], json_file=False)
    expect_status(res, 127)
    one_line_naming(res, name)


@test("bad_missing_in_path")
def t_bad_missing_in_path(s):
    name = "ptleak-no-such-command"
    res, _ = s.ptleak_run([], [name], json_file=False)
    expect_status(res, 127)
    one_line_naming(res, name)


@test("bad_directory")
def t_bad_directory(s):
    res, _ = s.ptleak_run([], [s.builder.out_dir], json_file=False)
    expect_status(res, 126)
    one_line_naming(res, s.builder.out_dir)


@test("bad_not_executable")
def t_bad_not_executable(s):
    path = os.path.join(s.tmp, "not-executable")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(path, 0o644)
    res, _ = s.ptleak_run([], [path], json_file=False)
    expect_status(res, 126)
    one_line_naming(res, path)


@test("bad_format")
def t_bad_format(s):
    path = os.path.join(s.tmp, "bad-format")
    with open(path, "wb") as f:
        f.write(b"\x7fELF\x00garbage, not a program\n" + bytes(64))
    os.chmod(path, 0o755)
    res, _ = s.ptleak_run([], [path], json_file=False)
    expect_status(res, 126)
    one_line_naming(res, path)


@test("bad_no_args")
def t_bad_no_args(s):
    # One line naming the problem, as for every bad input.
    res, _ = s.ptleak_run([], [], json_file=False)
    expect_status(res, 125)
    lines = res.stderr.decode(errors="replace").splitlines()
    if len(lines) != 1 or "no program" not in lines[0]:
        raise Fail("no arguments: want one line saying no program was given",
                   tail(res.stderr))


@test("bad_unknown_option")
def t_bad_unknown_option(s):
    res, _ = s.ptleak_run(["--no-such-option"], [s.builder.get("hello")],
                          json_file=False)
    expect_status(res, 125)
    if res.stdout:
        raise Fail("unknown option: the program must not run",
                   tail(res.stdout))
    one_line_naming(res, "--no-such-option")


@test("bad_option_values")
def t_bad_option_values(s):
    hello = [s.builder.get("hello")]
    for opt in ("--num-callers=0", "--num-callers=65", "--error-exitcode=-1",
                "--error-exitcode=256", "--show-leak-kinds=bogus",
                "--errors-for-leak-kinds=bogus"):
        res, _ = s.ptleak_run([opt], hello, json_file=False)
        expect_status(res, 125, opt + ": ")
        one_line_naming(res, opt.split("=")[0])
        if res.stdout:
            raise Fail("%s: the program must not run" % opt,
                       tail(res.stdout))


@test("bad_output_path")
def t_bad_output_path(s):
    for opt, path in (("-o", "/nonexistent-dir/report.txt"),
                      ("--json=", "/nonexistent-dir/report.json")):
        opts = [opt, path] if opt == "-o" else [opt + path]
        res, _ = s.ptleak_run(opts, [s.builder.get("hello")],
                              json_file=False)
        expect_status(res, 125, "unwritable %s path: " % opt)
        one_line_naming(res, path)
        if res.stdout:
            raise Fail("unwritable %s path: the program must not run" % opt,
                       tail(res.stdout))


@test("shebang_script")
def t_shebang_script(s):
    # A script is traced as its interpreter (/bin/sh), which execs the
    # fixture: the report is the fixture's.
    s.builder.get("leak_1000")
    path = os.path.join(s.builder.out_dir, "run_leak_1000.sh")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec ./leak_1000\n")
    os.chmod(path, 0o755)
    res, doc = s.ptleak_run([], ["./run_leak_1000.sh"],
                            cwd=s.builder.out_dir)
    expect_status(res, 0, "shebang script: ")
    if b"calling malloc()" not in res.stdout:
        raise Fail("shebang script: the fixture's output is missing",
                   tail(res.stdout))
    errs = expect_errors(s.process(doc, res), s.expect("leak_1000"))
    if errs:
        raise Fail("shebang script: " + errs[0], errs[1:])


# ---- the command line valgrind users type; typos that must not destroy ----
@test("cli_valgrind_spellings")
def t_cli_valgrind_spellings(s):
    """--leak-check=full --log-file=F.%p --trace-children=yes
    --show-reachable=yes --error-exitcode=0: one file per process with
    its exact leaks, reachable records shown, status the program's."""
    d = tempfile.mkdtemp(dir=s.tmp)
    cmd = [s.builder.get("fork_leaks")]
    res, _ = s.ptleak_run(["--leak-check=full", "--log-file=%s/log.%%p" % d,
                           "--trace-children=yes", "--show-reachable=yes",
                           "--error-exitcode=0"], cmd, json_file=False)
    expect_status(res, 0, "--error-exitcode=0 is off: ")
    from areas.processes import fork_pids
    parent, child = fork_pids(res)
    files = sorted(os.listdir(d))
    if files != sorted(["log.%d" % parent, "log.%d" % child]):
        raise Fail("--log-file=log.%%p with -f: want log.%d and log.%d, got %s"
                   % (parent, child, files))
    for pid, want in ((parent, (200, 2)), (child, (800, 5))):
        text = open(os.path.join(d, "log.%d" % pid)).read()
        got = parse_summary_text(text)
        if got.get("definitely_lost") != want or \
                not re.search(r"^==%d== LEAK SUMMARY:$" % pid, text, re.M):
            raise Fail("log.%d: want definitely lost %s, got %s"
                       % (pid, want, got), text.splitlines()[-8:])
    vk = [s.builder.get("valgrind_kinds")]
    res, _ = s.ptleak_run(["--show-reachable=yes"], vk, json_file=False)
    if b"100 bytes in 1 blocks are still reachable in loss record 1 of 3" \
            not in res.stderr:
        raise Fail("--show-reachable=yes: no still reachable record",
                   tail(res.stderr))
    res, _ = s.ptleak_run(["--leak-check=summary"], vk, json_file=False)
    got = parse_summary_text(res.stderr.decode())
    if b"in loss record" in res.stderr or got.get("definitely_lost") != (60, 2):
        raise Fail("--leak-check=summary: want the summary (60 bytes in 2 "
                   "blocks) and no loss record", tail(res.stderr))
    res, _ = s.ptleak_run(["--trace-children=no"], cmd, json_file=False)
    if len(set(re.findall(rb"^==(\d+)== LEAK SUMMARY", res.stderr, re.M))) != 1:
        raise Fail("--trace-children=no: want one report", tail(res.stderr))
    for bad in (["--leak-check=no"], ["--trace-children=maybe"],
                ["--xml=yes"], ["--log-file=x.%z"]):
        res, _ = s.ptleak_run(bad, vk, json_file=False)
        expect_status(res, 125, "%s: " % bad)
        one_line_naming(res, bad[0].split("=")[0])


DID_YOU_MEAN = [("--levk-check=full", "--leak-check"), ("-F", "-f"),
                ("--follow", "--follow-forks"), ("--supressions=x.supp",
                                                 "--suppressions"),
                ("--josn=out.json", "--json"), ("--show-leak-kind=all",
                                                "--show-leak-kinds"),
                ("--trace-childs=yes", "--trace-children"),
                ("--track-origins=yes", None), ("-Z", None)]


@test("cli_did_you_mean")
def t_cli_did_you_mean(s):
    vk = [s.builder.get("valgrind_kinds")]
    for arg, near in DID_YOU_MEAN:
        res, _ = s.ptleak_run([arg], vk, json_file=False)
        expect_status(res, 125, "%s: " % arg)
        want = ("unknown option '%s' (did you mean %s?)" % (arg, near) if near
                else "unknown option '%s' (try" % arg)
        one_line_naming(res, want)


@test("cli_no_data_loss")
def t_cli_no_data_loss(s):
    """A typo never destroys a file: PROGRAM is resolved before any report
    is opened, and no report is written over an executable or PROGRAM."""
    d = tempfile.mkdtemp(dir=s.tmp)
    prog = os.path.join(d, "prog")
    shutil.copy(s.builder.get("valgrind_kinds"), prog)
    orig = open(prog, "rb").read()
    open(os.path.join(d, "input.txt"), "w").write("data\n")
    cases = [(["--json", "./prog", "input.txt"], 127, "cannot run 'input.txt'"),
             (["-o", "out.txt", "nosuch"], 127, "cannot run 'nosuch'"),
             (["--json=./prog", "./input.txt"], 126, "cannot run"),
             (["-q", "--json=./prog", s.builder.get("exit_code"), "0"], 125,
              "refusing to write report './prog' over an executable file"),
             (["-q", "-o", "prog", "./prog"], 125, "refusing to write report "
              "'prog' over the program to run"),
             (["-q", "--log-file=link", "./prog"], 125,
              "refusing to write report 'link' over the program to run")]
    os.symlink(prog, os.path.join(d, "link"))
    os.chmod(os.path.join(d, "input.txt"), 0o644)
    for argv, status, msg in cases:
        res = run([s.ptleak] + argv, 30, cwd=d, env=s.ptleak_env)
        expect_status(res, status, "%s: " % argv)
        one_line_naming(res, msg)
        if open(prog, "rb").read() != orig:
            raise Fail("%s: ./prog was changed" % argv)
        if os.path.exists(os.path.join(d, "out.txt")):
            raise Fail("%s: out.txt was created" % argv)
        if open(os.path.join(d, "input.txt")).read() != "data\n":
            raise Fail("%s: input.txt was changed" % argv)
    # A plain file is a report's to replace, as before.
    out = os.path.join(d, "old.txt")
    open(out, "w").write("old\n")
    res = run([s.ptleak, "-q", "-o", out, "./prog"], 30, cwd=d, env=s.ptleak_env)
    expect_status(res, 0)
    if "definitely lost: 60 bytes in 2 blocks" not in open(out).read():
        raise Fail("-o over a plain file: no report in it")


@test("docs_cover_every_option")
def t_docs_cover_every_option(s):
    """Every option --help names is in the man page (its OPTIONS), the
    README's options table and doc/output.md, and both synopses are in the
    man page; every valgrind spelling the issue names is in --help."""
    from lib.fixtures import FIXTURES
    root = os.path.dirname(FIXTURES)
    res = run([s.ptleak, "--help"], 10, env=s.ptleak_env)
    expect_status(res, 0)
    helptext = res.stdout.decode()
    opts = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", helptext.split(
        "exit status:")[0])) - {"-", "--"}
    for need in ("--leak-check", "--log-file", "--trace-children",
                 "--show-reachable", "--error-exitcode", "--xml", "--xml-file",
                 "--sarif", "--suppressions", "--gen-suppressions",
                 "--no-default-suppressions", "-v", "-p", "-f"):
        if need not in opts:
            raise Fail("--help does not name %s" % need)
    man = re.sub(r"\\f[BIR]", "", open(os.path.join(root, "doc", "ptleak.1"))
                 .read().replace("\\-", "-"))
    man_opts = man.split(".SH OPTIONS")[1].split(".SH EXIT STATUS")[0]
    readme = open(os.path.join(root, "README.md")).read()
    output = open(os.path.join(root, "doc", "output.md")).read()
    missing = [(o, where) for o in sorted(opts)
               for where, text in (("man page", man_opts), ("README", readme),
                                   ("doc/output.md", output))
               if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), text)]
    if missing:
        raise Fail("options of --help missing from the docs",
                   ["%s: %s" % m for m in missing])
    syn = man.split(".SH SYNOPSIS")[1].split(".SH")[0]
    if "PROGRAM" not in syn or "-p PID" not in syn:
        raise Fail("the man page's SYNOPSIS lacks the launch or the -p form")
    for status in ("125", "126", "127", "128+"):
        if status not in man.split(".SH EXIT STATUS")[1]:
            raise Fail("man page EXIT STATUS lacks %s" % status)
    if "Attaching with" not in man:
        raise Fail("man page EXIT STATUS lacks attach mode's")
    # README's exit-status table is one table: no prose between its rows.
    sec = readme.split("### Exit status")[1].split("\n\n")
    table = [b for b in sec if b.lstrip().startswith("| status")]
    rows = [l for l in table[0].splitlines() if l.startswith("|")] if table else []
    if not any("127" in r for r in rows) or not any("125" in r for r in rows):
        raise Fail("README's exit-status table is split: 125 and 127 not in "
                   "one table")
