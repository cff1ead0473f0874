"""Debian's headless Chromium driven over the Chrome DevTools Protocol (a websocket, no
driver to install): navigate, evaluate script, wait for a condition, take screenshots."""

from __future__ import annotations

import base64
import io
import itertools
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.api.test_docs_api import CHROMIUM, OFFLINE

WIDTH, HEIGHT = 1400, 1000


class Browser:
    """One page of a headless Chromium."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a DevTools command and return its result (events in between are dropped)."""
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == n:
                assert "error" not in message, message
                return message["result"]  # type: ignore[no-any-return]

    def js(self, expression: str) -> Any:
        """The value of a script expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 120) -> Any:
        """Wait until the expression is truthy in the page; its value."""
        return wait_for(lambda: self.js(expression), timeout, expression)

    def open(self, url: str) -> None:
        """Navigate and wait until the page has loaded."""
        self.call("Page.navigate", url=url)
        self.wait(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page, also written to `path` for people to look at."""
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png",
                                          captureBeyondViewport=True)["data"])
        path.write_bytes(data)
        return data


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a condition until it holds (the machine is slow: never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium that reaches nothing but the loopback test servers."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (.ci/run does)")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", *OFFLINE, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            wait_for(lambda: port_file.exists() and port_file.read_text().count("\n") >= 1,
                     60, "Chromium's DevTools port")
            port = port_file.read_text().split()[0]
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=30).json()
            page = next(t for t in targets if t["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=2**26) as ws:
                browser = Browser(ws)
                browser.call("Page.enable")
                browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
                             deviceScaleFactor=1, mobile=False)
                yield browser
        finally:
            proc.terminate()
            proc.wait(30)


def not_blank(png: bytes) -> tuple[float, float]:
    """(pixel standard deviation, share of pixels that are not the background) of a PNG."""
    from matplotlib import image

    pixels = image.imread(io.BytesIO(png), format="png")[..., :3]
    background = pixels[0, 0]
    share = float((abs(pixels - background).sum(axis=-1) > 0.05).mean())
    return float(pixels.std()), share
