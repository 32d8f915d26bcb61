"""The fixtures' own statements of how to build them and what they leak.

Each fixture in fixtures/ says, in its header comment (a Python fixture:
its docstring), how it is built and what each test of it must report,
once, in lines starting with a directive (after the comment's "*", "//"
or "#"):

  @build NAME [c|cxx|so|go] [-FLAG]... [+SOURCE]... [cc=CC] [link=LIB]...
         [strip]
        BUILD/fixtures/NAME from this file (plus the +SOURCEs of fixtures/),
        kind from the extension unless given (so: a shared library, -shared
        -fPIC), -FLAGs to the compiler (-static, -pthread, ...; -lLIB
        and -Wl, ones go after the sources, as the linker needs), cc=
        another compiler (musl-gcc), link= built libraries to link against
        (found at run time through an $ORIGIN rpath), strip: strip
        --strip-all afterwards. Never sanitizers.
  @test NAME [CMD...]
        a launch test: ptleak CMD, compared with the expectation lines that
        follow. CMD: "@B" = built fixture B, "@python" = the interpreter,
        "%F" = fixtures/; default "@NAME" if NAME is built here, else this
        file's only build.
  @expect NAME [CMD...]
        the same lines for a test written in an area file (tests/areas/),
        which reads them with suite.expect(NAME).
Expectation lines (before the first @test/@expect: defaults for every test
of the file; summary and heap merge key by key, the others replace):
  @summary KIND SIZE [KIND SIZE]...   KIND: definite, indirect, possible,
        reachable; SIZE: BYTES/BLOCKS, N (the count, see @count) or - (not
        checked: libc's, the runtime's business). Kinds not named are not
        checked.
  @heap allocations=N frees=N bytes_allocated=N peak_bytes=N  (a subset)
  @record KIND SIZE: F < G < ...   one loss record of a checked kind, in
        report order (largest first); its stack as function names,
        innermost first: frame 0 is F, the others follow in order with
        frames between allowed; "f|g" either name; "f@file.c" also the
        file's basename; a last "main" must be the last frame.
  @valgrind          valgrind --leak-check=full on CMD must agree
                     (definitely/indirectly lost, heap totals): the oracle
  @status N          exit status (default 0); @exit code=N|signal=N: the
                     JSON "exit" (default code=STATUS)
  @stdout LINE       the program's stdout, line by line (default: as alone,
                     0x... masked); "@stdout stdin": what it was given
  @stdin repeat COUNT FORMAT   COUNT lines FORMAT % n (n = 0, 1, ...)
  @text SUBSTRING    must appear in the text report ("..." keeps spaces at
                     either end)
  @count PER_BLOCK [REGEX]   N = the number REGEX (group 1) finds in the
                     program's stdout (without REGEX: the test's own N,
                     e.g. the requests it made); a SIZE "N" is
                     N*PER_BLOCK/N
  @env VAR=VALUE...  the program's environment has these too (alone,
                     under valgrind, and under ptleak, which runs
                     "env VAR=VALUE... CMD" so that ptleak's own is not
                     changed): LD_PRELOAD of an allocator
  @timeout SECONDS   per run (default 60)
  @command any       the JSON "command" is not compared (after an exec)
  @group NAME        never run beside another test of group NAME
  @exclusive         never run beside any other test
Numbers may use "_" between digits (6_430_720). A line ending in "\\"
continues on the next.
"""
import os
import re
import shlex
import shutil
import threading
import time

from lib.proc import Fail, Skip, context, shell_quote, tail, run
from lib.report import D, I, P, RE, R

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures")
CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer"]
DEFAULT_TIMEOUT = 60
KIND_WORDS = {"definite": D, "indirect": I, "possible": P, "reachable": RE}
EXT_KIND = {".c": "c", ".cpp": "cxx", ".go": "go"}
DIRECTIVES = ("build", "test", "expect", "summary", "heap", "record",
              "valgrind", "status", "exit", "stdout", "stdin", "text",
              "timeout", "count", "command", "group", "exclusive", "env")
LINE_RE = re.compile(r"^\s*(?:/?\*+|//+|#+)?\s*@(%s)\b\s*(.*?)\s*$"
                     % "|".join(DIRECTIVES))


class Expect:
    """A test's expectation, as a fixture states it."""

    def __init__(self, name, kind, path, cmd):
        self.name, self.kind, self.path = name, kind, path
        self.cmd = cmd
        self.summary = {}        # kind -> (bytes, blocks) | "N" | None
        self.heap = {}
        self.records = []
        self.valgrind = False
        self.status = 0
        self.json_exit = None
        self.stdout = None
        self.stdin = None
        self.text = []
        self.timeout = DEFAULT_TIMEOUT
        self.count = None        # (per_block, regex)
        self.check_command = True
        self.group = None
        self.exclusive = False
        self.env = {}

    @property
    def fixture(self):
        return os.path.basename(self.path)

    def want_exit(self):
        return self.json_exit or {"code": self.status}

    def expand(self, n):
        """(summary, records) with the count N put in for "N"."""
        per = self.count[0] if self.count else 1

        def size(v, per_):
            return n * per_ if v == "N" else v
        summary = {k: ((n * per, n) if v == "N" else v)
                   for k, v in self.summary.items()}
        records = [dict(r, bytes=size(r["bytes"], per),
                        blocks=size(r["blocks"], 1)) for r in self.records]
        return summary, records


class Build:
    def __init__(self, name, path, kind):
        self.name, self.path, self.kind = name, path, kind
        self.srcs = [path]
        self.flags, self.link = [], []
        self.cc, self.strip = None, False


class ParseError(Exception):
    pass


def _number(s, where):
    try:
        return int(s)
    except ValueError:
        raise ParseError("%s: not a number: %r" % (where, s))


def _size(s, where):
    if s == "N":
        return "N"
    if s == "-":
        return None
    b, sep, n = s.partition("/")
    if not sep:
        raise ParseError("%s: size %r is not BYTES/BLOCKS, N or -" % (where,
                                                                     s))
    return (_number(b, where), _number(n, where))


def _lines(path):
    """(line number, directive, rest) of PATH's directive lines."""
    out = []
    pending = None
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            if pending is not None:
                cont = re.sub(r"^\s*(?:\*+|//+|#+)?\s*", "", raw.rstrip())
                pending[2] += " " + cont
                if pending[2].endswith("\\"):
                    pending[2] = pending[2][:-1].rstrip()
                    continue
                out.append(tuple(pending))
                pending = None
                continue
            m = LINE_RE.match(raw.rstrip("\n"))
            if not m:
                continue
            item = [no, m.group(1), m.group(2)]
            if item[2].endswith("\\"):
                item[2] = item[2][:-1].rstrip()
                pending = item
            else:
                out.append(tuple(item))
    return out


def _parse_build(path, rest, where):
    words = rest.split()
    if not words:
        raise ParseError("%s: @build needs a name" % where)
    ext = os.path.splitext(path)[1]
    b = Build(words[0], path, EXT_KIND.get(ext))
    for w in words[1:]:
        if w in ("c", "cxx", "so", "go"):
            b.kind = w
        elif w.startswith("-"):
            b.flags.append(w)
        elif w.startswith("+"):
            b.srcs.append(os.path.join(FIXTURES, w[1:]))
        elif w.startswith("cc="):
            b.cc = w[3:]
        elif w.startswith("link="):
            b.link.append(w[5:])
        elif w == "strip":
            b.strip = True
        else:
            raise ParseError("%s: @build: unknown word %r" % (where, w))
    if b.kind is None:
        raise ParseError("%s: @build %s: no kind (c, cxx, so, go)"
                         % (where, b.name))
    return b


def _apply(e, key, rest, where):
    """One expectation line onto Expect E."""
    if key == "summary":
        words = rest.split()
        if not words or len(words) % 2:
            raise ParseError("%s: @summary wants KIND SIZE pairs" % where)
        for k, v in zip(words[::2], words[1::2]):
            if k not in KIND_WORDS:
                raise ParseError("%s: unknown kind %r" % (where, k))
            e.summary[KIND_WORDS[k]] = _size(v, where)
    elif key == "heap":
        for w in rest.split():
            k, sep, v = w.partition("=")
            if not sep or k not in ("allocations", "frees",
                                    "bytes_allocated", "peak_bytes"):
                raise ParseError("%s: @heap: bad %r" % (where, w))
            e.heap[k] = _number(v, where)
    elif key == "record":
        head, sep, stack = rest.partition(":")
        words = head.split()
        if not sep or len(words) != 2 or words[0] not in KIND_WORDS:
            raise ParseError("%s: @record wants KIND SIZE: F < G ..."
                             % where)
        size = _size(words[1], where)
        names = [x.strip() for x in stack.split("<")]
        if size is None or not all(names):
            raise ParseError("%s: @record: bad size or stack" % where)
        if size == "N":
            size = ("N", "N")
        e.records.append(R(KIND_WORDS[words[0]], size[0], size[1], names))
    elif key == "valgrind":
        e.valgrind = rest in ("", "yes")
    elif key == "status":
        e.status = _number(rest, where)
    elif key == "exit":
        k, sep, v = rest.partition("=")
        if k not in ("code", "signal") or not sep:
            raise ParseError("%s: @exit code=N or signal=N" % where)
        e.json_exit = {k: _number(v, where)}
    elif key == "stdout":
        if rest == "stdin":
            e.stdout = "stdin"
        else:
            e.stdout = (e.stdout if isinstance(e.stdout, bytes) else b"") + \
                rest.encode() + b"\n"
    elif key == "stdin":
        words = rest.split(None, 2)
        if len(words) != 3 or words[0] != "repeat":
            raise ParseError("%s: @stdin repeat COUNT FORMAT" % where)
        e.stdin = b"".join(words[2].encode() % n + b"\n"
                           for n in range(_number(words[1], where)))
    elif key == "text":
        if len(rest) > 1 and rest[0] == rest[-1] == '"':
            rest = rest[1:-1]       # to keep spaces at either end
        e.text.append(rest)
    elif key == "timeout":
        e.timeout = _number(rest, where)
    elif key == "count":
        per, _, regex = rest.partition(" ")
        e.count = (_number(per, where), regex or None)
    elif key == "group":
        e.group = rest
    elif key == "exclusive":
        e.exclusive = True
    elif key == "env":
        for w in shlex.split(rest):
            k, sep, v = w.partition("=")
            if not sep or not k:
                raise ParseError("%s: @env VAR=VALUE..." % where)
            e.env[k] = v
    elif key == "command":
        if rest != "any":
            raise ParseError("%s: @command any" % where)
        e.check_command = False


_REPLACED = ("records", "valgrind", "status", "json_exit", "stdout", "stdin",
             "text", "timeout", "count", "check_command", "group",
             "exclusive", "env")


def parse(path):
    """(builds, expects) stated by fixture PATH."""
    builds, expects = [], []
    defaults = Expect(None, None, path, None)
    set_here = set()      # keys a test set itself (the rest: defaults)
    cur = None
    fname = os.path.basename(path)

    def finish():
        if cur is None:
            return
        for k in _REPLACED:
            if k not in set_here:
                v = getattr(defaults, k)
                setattr(cur, k, list(v) if isinstance(v, list) else v)
        cur.summary = dict(defaults.summary, **cur.summary)
        cur.heap = dict(defaults.heap, **cur.heap)
        expects.append(cur)

    started = []
    for no, key, rest in _lines(path):
        where = "%s:%d" % (fname, no)
        if key == "build":
            builds.append(_parse_build(path, rest, where))
        elif key in ("test", "expect"):
            finish()
            words = shlex.split(rest)
            if not words:
                raise ParseError("%s: @%s needs a name" % (where, key))
            cur = Expect(words[0], key, path, words[1:] or None)
            cur.line = no
            started.append(cur)
            set_here = set()
        else:
            target = cur if cur is not None else defaults
            _apply(target, key, rest, where)
            if cur is not None:
                set_here.add({"exit": "json_exit", "command": "check_command",
                              "record": "records"}.get(key, key))
    finish()
    for e in expects:
        if e.cmd is None:
            if any(b.name == e.name for b in builds):
                e.cmd = ["@" + e.name]
            elif len(builds) == 1:
                e.cmd = ["@" + builds[0].name]
            elif e.kind == "test":
                raise ParseError("%s: @test %s: no command and no single "
                                 "build to run" % (fname, e.name))
        if e.kind == "test":
            checked = [k for k, v in e.summary.items() if v is not None]
            if D not in checked:
                raise ParseError("%s: @test %s: no definite summary (a "
                                 "launch test checks at least that)"
                                 % (fname, e.name))
            bad = [r for r in e.records if r["kind"] not in checked]
            if bad:
                raise ParseError("%s: @test %s: a record of an unchecked "
                                 "kind %s" % (fname, e.name, bad[0]["kind"]))
    return builds, expects


class Catalog:
    """Every fixture's builds and expectations."""

    def __init__(self, fixtures=FIXTURES):
        self.builds, self.expects, self.order = {}, {}, []
        for f in sorted(os.listdir(fixtures)):
            path = os.path.join(fixtures, f)
            if not os.path.isfile(path) or f.endswith(".h"):
                continue
            builds, expects = parse(path)
            for b in builds:
                if b.name in self.builds:
                    raise ParseError("build %s stated twice (%s, %s)"
                                     % (b.name, self.builds[b.name].path,
                                        path))
                self.builds[b.name] = b
            for e in expects:
                if e.name in self.expects:
                    raise ParseError("test %s stated twice (%s, %s)"
                                     % (e.name, self.expects[e.name].path,
                                        path))
                self.expects[e.name] = e
                self.order.append(e.name)
        for b in self.builds.values():
            for lib in b.link:
                if lib not in self.builds:
                    raise ParseError("build %s links %s, which no fixture "
                                     "builds" % (b.name, lib))

    def tests(self):
        return [self.expects[n] for n in self.order
                if self.expects[n].kind == "test"]


class Builder:
    """Builds fixtures on demand into BUILD/fixtures, once per run (and not
    again while the output is newer than its sources and was built by the
    same command). Thread-safe: one lock per fixture."""

    def __init__(self, build_dir, catalog, verbose):
        self.out_dir = os.path.join(os.path.abspath(build_dir), "fixtures")
        os.makedirs(self.out_dir, exist_ok=True)
        self.catalog = catalog
        self.verbose = verbose
        self.done = {}
        self.lock = threading.Lock()
        self.locks = {}

    def path(self, name):
        return os.path.join(self.out_dir, name)

    def get(self, name):
        """Path of built fixture NAME; Fail or Skip if it cannot be built."""
        with self.lock:
            lock = self.locks.setdefault(name, threading.Lock())
        t0 = time.monotonic()
        with lock:
            if name not in self.done:
                try:
                    self.done[name] = ("ok", self._build(name))
                except (Fail, Skip) as e:
                    self.done[name] = ("err", e)
        # Building (or waiting for another test's build) is not the
        # test's own time.
        ctx = context()
        if ctx is not None:
            ctx.extra_time += time.monotonic() - t0
        state, val = self.done[name]
        if state == "err":
            raise val
        return val

    def _build(self, name):
        spec = self.catalog.builds.get(name)
        if spec is None:
            raise Fail("no fixture says @build %s" % name)
        out = self.path(name)
        env = cwd = None
        if spec.kind == "go":
            tool = "go"
            gobase = os.path.join(self.out_dir, "go")
            env = dict(os.environ, GOCACHE=os.path.join(gobase, "cache"),
                       GOPATH=os.path.join(gobase, "path"), GOENV="off",
                       GOFLAGS="-buildvcs=false", GOPROXY="off",
                       CGO_ENABLED="1", CGO_CFLAGS="-g -O0")
            cmd = ["go", "build", "-o", out] + [os.path.basename(s)
                                                for s in spec.srcs]
            cwd = FIXTURES
        else:
            tool = spec.cc or ("g++" if spec.kind == "cxx" else "gcc")
            # Libraries after the sources: the linker takes from a
            # library only what the objects before it need.
            late = [f for f in spec.flags if f.startswith(("-l", "-Wl,"))]
            cmd = [tool] + CFLAGS + [f for f in spec.flags if f not in late]
            if spec.kind == "so":
                cmd += ["-shared", "-fPIC"]
            cmd += ["-o", out] + spec.srcs + late
        libs = [self.get(lib) for lib in spec.link]
        if libs:
            cmd += ["-L", self.out_dir] + \
                ["-l:" + os.path.basename(lib) for lib in libs] + \
                ["-Wl,-rpath,$ORIGIN"]
        if shutil.which(tool) is None:
            raise Skip("%s not installed (make test-deps installs it)" % tool)
        deps = spec.srcs + libs + [os.path.join(FIXTURES, "scrub.h")]
        stamp = out + ".cmd"
        key = shell_quote(cmd) + (" && strip --strip-all" if spec.strip
                                  else "")
        if (os.path.exists(out) and os.path.exists(stamp)
                and open(stamp).read() == key
                and os.path.getmtime(out) >= max(os.path.getmtime(d)
                                                 for d in deps)):
            return out
        if self.verbose:
            print("  BUILD   " + key, flush=True)
        try:
            res = run(cmd, 600, cwd=cwd, env=env)
        except Fail as e:
            raise Fail("cannot build %s: %s" % (name, e), e.details)
        if res.status != 0:
            raise Fail("cannot build %s (%s exited %d)" % (name, tool,
                                                          res.status),
                       tail(res.stderr, 30))
        if spec.strip:
            res = run(["strip", "--strip-all", out], 60)
            if res.status != 0:
                raise Fail("cannot strip %s" % name, tail(res.stderr))
        with open(stamp, "w") as f:
            f.write(key)
        return out
