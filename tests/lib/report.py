"""Reading ptleak's and valgrind's reports and comparing them with
expectations: summaries per kind, heap totals, loss records with stacks.

An expectation (lib.fixtures.Expect) holds, per leak kind, (bytes, blocks)
or None (not checked), heap totals, and loss records of the checked kinds,
largest first, each with a stack of function names innermost first (see
stack_matches). Every function here returns a list of error lines (empty:
all good) or raises lib.proc.Fail.
"""
import json
import os
import re

from lib.proc import Fail, tail

D, I, P, RE = ("definitely_lost", "indirectly_lost", "possibly_lost",
               "still_reachable")
KINDS = [D, I, P, RE]
KIND_TEXT = {D: "definitely lost", I: "indirectly lost", P: "possibly lost",
             RE: "still reachable"}
Z = (0, 0)


def R(kind, nbytes, blocks, stack):
    """One loss record: kind, bytes, blocks, stack names innermost first."""
    return {"kind": kind, "bytes": nbytes, "blocks": blocks, "stack": stack}


def fmt(n):
    return format(n, ",") if isinstance(n, int) else str(n)


# A LEAK SUMMARY line's body, wherever it is on the line: the ==PID==
# prefix is checked separately (check_text), so a line that lost it fails.
SUMMARY_BODY_RE = re.compile(
    r"(definitely lost|indirectly lost|possibly lost|still reachable|"
    r"suppressed): ([\d,]+) bytes in ([\d,]+) blocks?\s*$")
SUMMARY_RE = re.compile(r"^==(\d+)==\s+" + SUMMARY_BODY_RE.pattern)


def parse_summary_text(text):
    """{kind: (bytes, blocks)} from the LEAK SUMMARY lines of a report."""
    out = {}
    for line in text.splitlines():
        m = SUMMARY_RE.match(line)
        if m:
            kind = m.group(2).replace(" ", "_")
            out[kind] = (int(m.group(3).replace(",", "")),
                         int(m.group(4).replace(",", "")))
    return out


def parse_valgrind(text):
    """valgrind's leak summary and heap totals, as ptleak's JSON names."""
    summary = {k: (0, 0) for k in KINDS}
    if "All heap blocks were freed" not in text:
        got = parse_summary_text(text)
        if D not in got:
            return None
        summary.update({k: got.get(k, (0, 0)) for k in KINDS})
    heap = {}
    m = re.search(r"total heap usage: ([\d,]+) allocs, ([\d,]+) frees, "
                  r"([\d,]+) bytes allocated", text)
    if m:
        heap = {"allocations": int(m.group(1).replace(",", "")),
                "frees": int(m.group(2).replace(",", "")),
                "bytes_allocated": int(m.group(3).replace(",", ""))}
    return {"summary": summary, "heap": heap}


def name_matches(want, frame):
    """WANT = 'f' or 'f|g' optionally '@file.c'; matches a JSON frame."""
    func, _, fname = want.partition("@")
    got = frame.get("function") or ""
    base = got.split("(")[0].strip() if "(" in got else got
    if not any(got == f or base == f for f in func.split("|")):
        return False
    if fname and os.path.basename(frame.get("file") or "") != fname:
        return False
    return True


def stack_matches(want, stack, below_main=False):
    """Frame 0 is want[0]; the rest of WANT follow in order, gaps allowed.
    A final 'main' must be the last frame unless BELOW_MAIN."""
    if not want:
        return not stack
    if not stack or not name_matches(want[0], stack[0]):
        return False
    i = 1
    last = 0
    for w in want[1:]:
        while i < len(stack) and not name_matches(w, stack[i]):
            i += 1
        if i >= len(stack):
            return False
        last = i
        i += 1
    if want[-1].split("@")[0] == "main" and not below_main:
        return last == len(stack) - 1
    return True


def show_stack(stack):
    return " <- ".join("%s%s" % (f.get("function") or "???",
                                 "@%s" % f["file"] if f.get("file") else "")
                       for f in stack)


def show_record(r):
    """A JSON loss record on one line."""
    return "%s %s bytes in %s blocks: %s" % (
        r.get("kind"), r.get("bytes"), r.get("blocks"),
        show_stack(r.get("stack") or []))


def record_key(r):
    """A loss record as (kind, bytes, blocks, function names)."""
    return (r.get("kind"), r.get("bytes"), r.get("blocks"),
            tuple(f.get("function") for f in r.get("stack") or []))


def load_json(path, what):
    if not os.path.exists(path):
        raise Fail("%s: no JSON report written" % what)
    raw = open(path, "rb").read()
    try:
        doc = json.loads(raw)
        assert doc.get("tool") == "ptleak"
        assert isinstance(doc.get("processes"), list)
        return doc
    except (ValueError, AssertionError, AttributeError) as e:
        raise Fail("%s: JSON report unreadable (%s)" % (what, e), tail(raw))


def summary_errors(proc, summary, heap=None, label=""):
    """SUMMARY {kind: (bytes, blocks) or None} and HEAP {name: n} against
    a JSON process entry."""
    errors = []
    got_sum = proc.get("summary") or {}
    for k in KINDS:
        want = summary.get(k)
        if want is None:
            continue
        g = got_sum.get(k) or {}
        got = (g.get("bytes"), g.get("blocks"))
        if got != tuple(want):
            errors.append("%ssummary %s: want %s bytes in %s blocks, got "
                          "%s bytes in %s blocks" % (label, k, fmt(want[0]),
                                                     fmt(want[1]), *got))
    for k, want in (heap or {}).items():
        if got_sum.get(k) != want:
            errors.append("%ssummary %s: want %s, got %s"
                          % (label, k, want, got_sum.get(k)))
    return errors


def rank(r):
    """The size a loss record is ordered by: valgrind's, a definite record
    counting with the indirect bytes under it."""
    return (r.get("bytes") or 0) + (r.get("indirect_bytes") or 0)


def order_errors(leaks, label=""):
    """Loss records largest first (by rank), across all kinds."""
    sizes = [rank(r) for r in leaks]
    if sizes != sorted(sizes, reverse=True):
        return ["%sJSON leaks not largest first (bytes + indirect_bytes): %s"
                % (label, sizes[:20])]
    return []


def records_errors(proc, summary, records, below_main=False, label=""):
    """The loss records of the kinds checked in SUMMARY (None = not
    checked), in order, against RECORDS; and the order of all records."""
    errors = []
    checked = [k for k in KINDS if summary.get(k) is not None]
    leaks = proc.get("leaks") or []
    got_recs = [r for r in leaks if r.get("kind") in checked]
    if len(got_recs) != len(records):
        errors.append("%swant %d loss records of kinds %s, got %d"
                      % (label, len(records), ",".join(checked),
                         len(got_recs)))
    for idx, (w, g) in enumerate(zip(records, got_recs)):
        if (g.get("kind"), g.get("bytes"), g.get("blocks")) != (
                w["kind"], w["bytes"], w["blocks"]):
            errors.append("%srecord %d: want %s %s bytes in %s blocks, "
                          "got %s %s bytes in %s blocks"
                          % (label, idx + 1, w["kind"], w["bytes"],
                             w["blocks"], g.get("kind"), g.get("bytes"),
                             g.get("blocks")))
        if not stack_matches(w["stack"], g.get("stack") or [], below_main):
            errors.append("%srecord %d (%s bytes) stack: want %s, got %s"
                          % (label, idx + 1, w["bytes"],
                             " <- ".join(w["stack"]),
                             show_stack(g.get("stack") or [])))
    errors += order_errors(leaks, label)
    if errors:
        errors += ["%sgot records:" % label] + ["  " + show_record(r)
                                                for r in leaks[:12]]
    return errors


def proc_errors(proc, summary, records, label="", heap=None):
    """One JSON process entry against SUMMARY, RECORDS (and HEAP)."""
    return summary_errors(proc, summary, heap, label) + \
        records_errors(proc, summary, records, label=label)


def expect_errors(proc, e, label=""):
    """A JSON process entry against an Expect (lib.fixtures)."""
    return proc_errors(proc, e.summary, e.records, label, e.heap)


def text_errors(text, summary, leaks, pid=None, program_stderr=b"",
                substrings=(), shown=(D, P)):
    """The text report against the JSON records and the expectation.

    Every line that is not the program's own stderr (PROGRAM_STDERR, from
    a run alone) must carry the ==PID== prefix, with PID when given."""
    errors = []
    got = parse_summary_text(text)
    if D not in got:
        return ["no LEAK SUMMARY in the text report"] + tail(text)
    for k in KINDS:
        want = summary.get(k)
        if want is not None and got.get(k) != tuple(want):
            errors.append("text summary %s: want %s bytes in %s blocks, "
                          "got %s" % (KIND_TEXT[k], fmt(want[0]),
                                      fmt(want[1]), got.get(k)))
    # Each shown JSON record appears as "in loss record K of N", and no
    # other record does.
    nshown = 0
    for k, r in enumerate(leaks, 1):
        if r.get("kind") not in shown:
            continue
        nshown += 1
        b, n = r.get("bytes", 0), r.get("blocks", 0)
        pat = (r"^==\d+== (%s|[\d,]+ \(%s direct, [\d,]+ indirect\)) "
               r"bytes in %s blocks? are %s in loss record %d of %d$"
               % (re.escape(fmt(b)), re.escape(fmt(b)), re.escape(fmt(n)),
                  KIND_TEXT[r["kind"]], k, len(leaks)))
        if not re.search(pat, text, re.M):
            errors.append("text lacks \"%s bytes in %s blocks are %s in "
                          "loss record %d of %d\"" % (
                              fmt(b), fmt(n), KIND_TEXT[r["kind"]], k,
                              len(leaks)))
    lines = re.findall(r"in loss record \d+ of \d+", text)
    if len(lines) != nshown:
        errors.append("text shows %d loss records, the JSON has %d of the "
                      "shown kinds" % (len(lines), nshown))
    for s in substrings:
        if s not in text:
            errors.append("text lacks %r" % s)
    own = set(program_stderr.decode("utf-8", "replace").splitlines())
    prefix = re.compile(r"^==%s==( |$)" % (pid if pid is not None
                                           else r"\d+"))
    for line in text.splitlines():
        if line in own or prefix.match(line):
            continue
        errors.append("report line without ==%s==: %r"
                      % (pid if pid is not None else "PID", line))
        break
    return errors
