"""Static binaries: glibc -static, -static-pie and musl alike; one without
symbols (tests/run.py -k static)."""
import re

from lib.proc import Fail, exit_status, tail
from lib.report import KINDS
from lib.runner import test


@test("static_identical")
def t_static_identical(s):
    got = {}
    for name in ("leak_static_glibc", "leak_static_pie", "leak_static_musl"):
        res, doc = s.ptleak_run([], [s.builder.get(name)])
        proc = s.process(doc, res)
        summ = proc.get("summary") or {}
        recs = [(r.get("kind"), r.get("bytes"), r.get("blocks"),
                 tuple(f.get("function") for f in r.get("stack") or []))
                for r in proc.get("leaks") or []
                if r.get("kind") != "still_reachable"]
        got[name] = ([(k, (summ.get(k) or {}).get("bytes"),
                       (summ.get(k) or {}).get("blocks"))
                      for k in KINDS[:3]], recs)
    ref = got["leak_static_musl"]
    diff = [n for n, v in got.items() if v != ref]
    if diff:
        raise Fail("static builds differ from musl's: %s" % ", ".join(diff),
                   ["%s: %s" % (n, v) for n, v in got.items()])


@test("proc_static_stripped")
# ---- B6: a static binary without symbols -----------------------------------
def t_static_stripped(s):
    exe = s.builder.get("leak_stripped_static")
    res, _ = s.ptleak_run(["-q"], [exe], json_file=False, timeout=30)
    nat = s.native([exe], None, 30)
    errs = []
    if exit_status(res.status) != 125:
        errs.append("exit status: want 125, got %d" % exit_status(res.status))
    lines = [l for l in res.stderr.decode("utf-8", "replace").splitlines()
             if l.strip()]
    if len(lines) != 1 or not re.search(r"no allocator.*found", lines[0],
                                        re.I):
        errs.append("want one line on stderr saying no allocator symbol was "
                    "found, got %d lines" % len(lines))
    if res.stdout != nat.stdout or nat.stdout != b"leaked 3 blocks\n":
        errs.append("the program must still run to completion: stdout %r "
                    "(alone %r)" % (res.stdout, nat.stdout))
    if errs:
        raise Fail(errs[0], errs[1:] + tail(res.stderr))
