"""A small, time-bounded driver for headless Chromium over the DevTools protocol (tests only).

Starts Debian's `chromium` with `--remote-debugging-port=0` in a throw-away profile, finds the
port in the profile's DevToolsActivePort file, and speaks CDP to the first page over a WebSocket
(websocket-client). Every event is kept in `events`, so a test can check console messages,
exceptions and network requests after a navigation. Each call has a deadline; the browser's
process group is ended on exit.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

CHROMIUM_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-allow-origins=*",
)


class CdpError(RuntimeError):
    pass


class Chromium:
    """`with Chromium(binary) as page:` a headless page; `page.call(method, **params)`."""

    def __init__(self, binary: str, *, width: int = 1366, height: int = 900, timeout_s: float = 30.0) -> None:
        self.binary = binary
        self.width = width
        self.height = height
        self.timeout_s = timeout_s
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: websocket.WebSocket | None = None

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="harness-chromium-")
        profile = Path(self._profile.name)
        log = (profile / "chromium.log").open("wb")
        self._proc = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            port = self._wait_port(profile / "DevToolsActivePort")
            url = self._page_ws_url(port)
            self._ws = websocket.create_connection(url, timeout=self.timeout_s, suppress_origin=True)
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except OSError:
                pass
            self._ws = None
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGTERM)
                    self._proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(self._proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self._proc.wait(timeout=10)
            self._proc = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    def log_tail(self) -> str:
        if self._profile is None:
            return ""
        path = Path(self._profile.name) / "chromium.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _wait_port(self, path: Path) -> int:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise CdpError(f"chromium exited with status {self._proc.returncode}: {self.log_tail()}")
            if path.exists():
                first = path.read_text().splitlines()[:1]
                if first and first[0].strip().isdigit():
                    return int(first[0])
            time.sleep(0.05)
        raise CdpError(f"chromium did not open its DevTools port within {self.timeout_s:.0f} s: {self.log_tail()}")

    def _page_ws_url(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
                targets = json.load(resp)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.05)
        raise CdpError("chromium opened no page target")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events received meanwhile go to `events`."""
        assert self._ws is not None, "use Chromium as a context manager"
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while True:
            message = self._receive(deadline, f"the reply to {method}")
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        assert self._ws is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise CdpError(f"timed out waiting for {what}")
        self._ws.settimeout(left)
        try:
            message = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            raise CdpError(f"timed out waiting for {what}") from None
        if "method" in message:
            self.events.append(message)
        return dict(message)

    def wait_event(self, method: str, *, after: int = 0, timeout_s: float | None = None) -> dict[str, Any]:
        """The first event `method` at index >= `after` in `events`, waiting for it if needed."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            for event in self.events[after:]:
                if event["method"] == method:
                    return event
            self._receive(deadline, f"event {method}")

    def drain(self, seconds: float) -> None:
        """Collect events for `seconds` (late requests or errors after the load event)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._receive(deadline, "events")
            except CdpError:
                return

    def navigate(self, url: str) -> None:
        """Open `url` and wait for its load event."""
        start = len(self.events)
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", after=start)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the centre of the element `selector`."""
        box = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        if box is None:
            raise CdpError(f"no element matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def screenshot(self, path: Path, *, full_page: bool = False, clip: dict[str, float] | None = None) -> Path:
        """A PNG of the viewport (the top of the page after a fresh load); `full_page`: the whole
        page, however long; `clip`: that part of the page (x, y, width, height in CSS px)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
        if clip is not None:
            params.update(clip={**clip, "scale": 1}, captureBeyondViewport=True)
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
