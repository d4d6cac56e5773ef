"""Open a local HTML page in headless Chromium and report what happened, over the DevTools protocol.

The protocol runs over ``--remote-debugging-pipe`` (Chromium reads commands on fd 3 and writes
replies and events on fd 4, each message NUL-terminated JSON), so no websocket library is needed.
``render_page()`` returns console errors, uncaught exceptions, every network request the page made,
the result of a JavaScript probe and a full-page screenshot.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    env = os.environ.get("PAGEREPLAY_CHROMIUM")
    for c in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return shutil.which("chromium")


@dataclass
class PageReport:
    console: list[dict[str, Any]] = field(default_factory=list)  # Runtime.consoleAPICalled (type, text)
    exceptions: list[str] = field(default_factory=list)  # Runtime.exceptionThrown
    log: list[dict[str, Any]] = field(default_factory=list)  # Log.entryAdded (level, text, url)
    requests: list[str] = field(default_factory=list)  # Network.requestWillBeSent URLs
    probe: Any = None  # value of the probe expression once ready
    screenshot: bytes = b""  # the first (or only) segment
    screenshots: list[bytes] = field(default_factory=list)  # full page, top to bottom

    @property
    def errors(self) -> list[str]:
        out = [f"console.{c['type']}: {c['text']}" for c in self.console if c["type"] in ("error", "assert")]
        out += [f"exception: {e}" for e in self.exceptions]
        out += [f"log {e['level']}: {e['text']} {e.get('url', '')}" for e in self.log if e["level"] == "error"]
        return out


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], wfd: int, rfd: int) -> None:
        self.proc, self.wfd, self.rfd = proc, wfd, rfd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for m in self._read(deadline):
                if m.get("id") == self.next_id:
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error']}")
                    return m.get("result", {})
                self.events.append(m)

    def pump(self, seconds: float) -> None:
        """Collect events for up to ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                self.events.extend(self._read(deadline))
        except TimeoutError:
            pass

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            r, _, _ = select.select([self.rfd], [], [], min(left, 0.5))
            if not r:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with {self.proc.returncode}")
                continue
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        *msgs, self.buf = self.buf.split(b"\0")
        return [json.loads(m) for m in msgs if m]


def render_page(html_path: str | Path, probe_js: str, ready_js: str, *, timeout: float = 180.0,
                width: int = 1300, height: int = 900, chromium: str | None = None,
                segment: int = 0) -> PageReport:
    """Load ``html_path``, wait until ``ready_js`` is truthy, return console/exceptions/requests/probe/screenshot.

    ``segment`` > 0 splits the full-page screenshot into pieces of that many CSS pixels.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found")
    url = Path(html_path).resolve().as_uri()
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="pagereplay-chromium-")

    def child_fds() -> None:  # Chromium's pipe transport: it reads fd 3, writes fd 4
        a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)  # off 3/4 first: the pipe may already sit there
        os.dup2(a, 3)  # dup2 to another fd makes it inheritable
        os.dup2(b, 4)

    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--remote-debugging-pipe", f"--window-size={width},{height}",
            "about:blank"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=child_fds, close_fds=False)  # keep the dup2'ed fds 3 and 4
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
    rep = PageReport()
    try:
        tid = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = pipe.send("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        for dom in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            pipe.send(dom, session=sid)
        pipe.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        pipe.send("Page.navigate", {"url": url}, session=sid)
        deadline = time.monotonic() + timeout
        while True:
            r = pipe.send("Runtime.evaluate", {"expression": ready_js, "returnByValue": True}, session=sid)
            if r.get("result", {}).get("value"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: not ready after {timeout:.0f} s ({ready_js!r} stayed false); "
                                   f"console: {rep.console[-5:]}, exceptions: {rep.errors[-5:]}")
            pipe.pump(0.25)
        pipe.pump(1.5)  # late console messages (a failing chart logs after it marks itself rendered)
        r = pipe.send("Runtime.evaluate", {"expression": probe_js, "returnByValue": True}, session=sid)
        rep.probe = r.get("result", {}).get("value")
        metrics = pipe.send("Page.getLayoutMetrics", session=sid)
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        import base64

        full = min(int(size["height"]), 16000)
        step = segment or full
        for y in range(0, full, step):
            shot = pipe.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": y, "width": width, "height": min(step, full - y), "scale": 1}},
                session=sid, timeout=60)
            rep.screenshots.append(base64.b64decode(shot["data"]))
        rep.screenshot = rep.screenshots[0] if rep.screenshots else b""
        for m in pipe.events:
            meth, p = m.get("method"), m.get("params", {})
            if meth == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                rep.console.append({"type": p.get("type"), "text": text})
            elif meth == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                rep.exceptions.append(d.get("exception", {}).get("description") or d.get("text", ""))
            elif meth == "Log.entryAdded":
                e = p.get("entry", {})
                rep.log.append({"level": e.get("level"), "text": e.get("text"), "url": e.get("url", "")})
            elif meth == "Network.requestWillBeSent":
                rep.requests.append(p.get("request", {}).get("url", ""))
        try:
            pipe.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        shutil.rmtree(profile, ignore_errors=True)
    return rep
