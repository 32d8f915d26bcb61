"""A real browser for the tests: headless Chromium (Debian's package)
driven through the DevTools protocol over --remote-debugging-pipe (JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no
websocket library and nothing downloaded. Also a small PNG decoder, to
check the pixels of screenshots.

    with Browser(tmpdir) as b:
        page = b.open("file:///.../report.html")   # waits for the load
        page.errors      # console errors, exceptions, network requests
        png = page.screenshot(clip)                 # bytes
        w, h, px = decode_png(png)                  # px[y][x] = (r, g, b)
"""
import base64
import fcntl
import json
import os
import queue
import shutil
import struct
import subprocess
import threading
import time
import zlib

from lib.proc import _register

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--no-default-browser-check",
                  "--disable-extensions", "--mute-audio",
                  "--hide-scrollbars"]


class BrowserError(Exception):
    pass


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, tmpdir, width=1280, height=900):
        self.exe = chromium()
        if not self.exe:
            raise BrowserError("chromium not installed (tests/deps.sh "
                               "installs Debian's chromium)")
        self.profile = os.path.join(tmpdir, "chromium-profile-%d"
                                    % time.monotonic_ns())
        os.makedirs(self.profile)
        self.log = open(os.path.join(self.profile, "stderr.txt"), "wb")
        self.width, self.height = width, height
        to_r, self.to_w = os.pipe()      # we write, chromium reads fd 3
        self.from_r, from_w = os.pipe()  # chromium writes fd 4
        # Out of the way of 3 and 4 themselves, then moved there in the
        # child (after the fork, before chromium runs; pass_fds keeps them).
        to_r = self._high(to_r)
        from_w = self._high(from_w)
        cmd = [self.exe] + CHROMIUM_FLAGS + [
            "--user-data-dir=" + self.profile, "--remote-debugging-pipe",
            "--window-size=%d,%d" % (width, height), "about:blank"]

        def move_fds():
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.proc = subprocess.Popen(
            cmd, pass_fds=(3, 4), preexec_fn=move_fds,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True)
        _register(self.proc.pid)   # killed with its session on a time out
        os.close(to_r)
        os.close(from_w)
        self.next_id = 0
        self.replies = {}
        self.events = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        buf = b""
        while True:
            try:
                data = os.read(self.from_r, 65536)
            except OSError:
                data = b""
            if not data:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            buf += data
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self.cond:
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self.cond.notify_all()

    closed = False

    @staticmethod
    def _high(fd):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high

    def call(self, method, params=None, session=None, timeout=30):
        with self.cond:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self.cond:
            while mid not in self.replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise BrowserError("%s: no answer from chromium in %d s"
                                       % (method, timeout))
                self.cond.wait(left)
            reply = self.replies.pop(mid)
        if "error" in reply:
            raise BrowserError("%s: %s" % (method, reply["error"]))
        return reply.get("result", {})

    def wait_event(self, method, session, timeout=30, start=0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.events[start:]:
                    if e.get("method") == method and e.get("sessionId") == session:
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise BrowserError("no %s from chromium in %d s"
                                       % (method, timeout))
                self.cond.wait(left)

    def open(self, url, timeout=60):
        target = self.call("Target.createTarget", {"url": "about:blank"})
        sid = self.call("Target.attachToTarget",
                        {"targetId": target["targetId"],
                         "flatten": True})["sessionId"]
        page = Page(self, sid)
        for m in ("Page.enable", "Runtime.enable", "Log.enable",
                  "Network.enable"):
            self.call(m, session=sid)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height,
                   "deviceScaleFactor": 1, "mobile": False}, session=sid)
        with self.cond:
            mark = len(self.events)
        page.mark = mark
        self.call("Page.navigate", {"url": url}, session=sid)
        self.wait_event("Page.loadEventFired", sid, timeout, start=mark)
        page.wait_for("document.body && document.body.dataset.ready === '1'",
                      timeout)
        return page

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except (BrowserError, OSError):
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, 9)
                    self.proc.wait(5)
        finally:
            for fd in (self.to_w, self.from_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Page:
    def __init__(self, browser, session):
        self.b = browser
        self.sid = session
        self.mark = 0

    def eval(self, expr, timeout=30):
        r = self.b.call("Runtime.evaluate", {"expression": expr,
                                             "returnByValue": True,
                                             "awaitPromise": True},
                        session=self.sid, timeout=timeout)
        if "exceptionDetails" in r:
            raise BrowserError("page script failed: %s: %s" % (
                expr[:60], r["exceptionDetails"].get("exception", {})
                .get("description", r["exceptionDetails"].get("text"))))
        return r["result"].get("value")

    def wait_for(self, expr, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.eval("!!(%s)" % expr):
            if time.monotonic() > deadline:
                raise BrowserError("page never got to: %s" % expr)
            time.sleep(0.05)

    @property
    def errors(self):
        """Console errors, uncaught exceptions, failed loads and any
        request that is not the page itself (file:) or data:."""
        out = []
        with self.b.cond:
            events = [e for e in self.b.events[self.mark:]
                      if e.get("sessionId") == self.sid]
        for e in events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s" % d.get("exception", {}).get(
                    "description", d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in (
                    "error", "assert", "warning"):
                out.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description")))
                    for a in p.get("args", []))))
            elif m == "Log.entryAdded" and p.get("entry", {}).get(
                    "level") in ("error", "warning"):
                out.append("log: %s" % p["entry"].get("text"))
            elif m == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if not url.startswith(("file:", "data:", "about:")):
                    out.append("network request: %s" % url)
            elif m == "Network.loadingFailed":
                out.append("load failed: %s" % p.get("errorText"))
        return out

    def rect(self, selector):
        """Page coordinates (scrolled document) of SELECTOR's box."""
        return self.eval("""(() => { const e = document.querySelector(%s);
            if (!e) return null; const r = e.getBoundingClientRect();
            return {x: r.left + scrollX, y: r.top + scrollY,
                    width: r.width, height: r.height}; })()"""
                         % json.dumps(selector))

    def view(self, selector):
        """Scroll SELECTOR into the middle of the viewport; its box in
        viewport coordinates (where a click lands)."""
        return self.eval("""(() => { const e = document.querySelector(%s);
            if (!e) return null; e.scrollIntoView({block: "center"});
            const r = e.getBoundingClientRect();
            return {x: r.left, y: r.top, width: r.width, height: r.height};
            })()""" % json.dumps(selector))

    def text(self, selector):
        return self.eval("(document.querySelector(%s) || {}).textContent"
                         % json.dumps(selector))

    def screenshot(self, clip=None, scale=1):
        params = {"format": "png", "captureBeyondViewport": True}
        if clip:
            params["clip"] = dict(clip, scale=scale)
        r = self.b.call("Page.captureScreenshot", params, session=self.sid,
                        timeout=60)
        return base64.b64decode(r["data"])

    def click(self, x, y):
        """A real mouse click at viewport coordinates X, Y."""
        for t in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.b.call("Input.dispatchMouseEvent",
                        {"type": t, "x": x, "y": y, "button": "left",
                         "clickCount": 1 if t != "mouseMoved" else 0},
                        session=self.sid)


def decode_png(data):
    """(width, height, rows): rows[y] is a bytes of RGB(A) pixels.
    8-bit RGB or RGBA, not interlaced: what Chromium writes."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, []
    width = height = channels = None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(
                ">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise ValueError("PNG kind not handled: depth %d type %d"
                                 % (depth, ctype))
            channels = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def columns_top(png, pred):
    """For each x of PNG, the smallest y whose pixel satisfies PRED (the
    top of a line drawn there), or None."""
    w, h, ch, rows = decode_png(png)
    top = [None] * w
    for y, row in enumerate(rows):
        for x in range(w):
            if top[x] is None and pred(row[x * ch], row[x * ch + 1],
                                       row[x * ch + 2]):
                top[x] = y
    return top


def count_pixels(png, pred):
    """How many pixels of PNG satisfy PRED(r, g, b)."""
    w, h, ch, rows = decode_png(png)
    n = 0
    for row in rows:
        for x in range(0, w * ch, ch):
            if pred(row[x], row[x + 1], row[x + 2]):
                n += 1
    return n, w * h
