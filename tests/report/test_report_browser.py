"""The HTML report in a real browser: headless Chromium loads the page of ``optmm report`` on the
example book with every section, from disk with no network. The page must load with no JavaScript or
console error, request nothing but itself and its ``data:`` images, show every section with its
heading, and render to a screenshot that is not blank (and the heatmap, to one in colour).

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: messages
are JSON, each ended by a NUL byte, on file descriptors 3 and 4), with the standard library only.
Chromium is required: without it these tests FAIL with a line saying how to install it (Debian /
Ubuntu: ``apt-get install -y chromium``; elsewhere set ``OPTMM_CHROMIUM`` to a Chrome or Chromium
binary). ``.ci/run`` installs it.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_pages import SECTION_IDS, example_page

WIDTH, HEIGHT = 1280, 2000
TIMEOUT_S = 20.0

INSTALL = (
    "the report's browser test needs Chromium: install it with `apt-get install -y chromium` "
    "(Debian/Ubuntu; .ci/run does this), or set OPTMM_CHROMIUM to a Chrome/Chromium binary"
)


def chromium_binary() -> str:
    """The browser to run: ``$OPTMM_CHROMIUM``, else ``chromium``, ``chromium-browser`` or
    ``google-chrome`` on the PATH. Fails the test (not a skip) when there is none."""
    given = os.environ.get("OPTMM_CHROMIUM")
    if given:
        if not (Path(given).is_file() and os.access(given, os.X_OK)):
            pytest.fail(f"OPTMM_CHROMIUM={given}: not an executable file; {INSTALL}")
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"no chromium on the PATH: {INSTALL}")


class DevTools:
    """A headless Chromium and one page of it, spoken to over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._out = os.pipe()  # Chromium reads commands on its fd 3
        self._in, from_chrome_w = os.pipe()  # and writes replies and events on its fd 4

        def fds_3_and_4() -> None:
            # Copies above 9 first, so that neither is already 3 or 4 (a dup2 onto itself would keep
            # it close-on-exec) and the first dup2 cannot overwrite the second's source.
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--hide-scrollbars", "--mute-audio", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            close_fds=False,  # keeps 3 and 4 (inheritable after dup2); this process's own fds are not
            preexec_fn=fds_3_and_4,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.deadline = time.monotonic() + TIMEOUT_S
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        pages = [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
        self.session = self.call(
            "Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True}
        )["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session=True)
        metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session=True)

    def _recv(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium did not answer within {TIMEOUT_S:g} s")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    self._gone()
                self._buf += chunk
        message, _, self._buf = self._buf.partition(b"\0")
        return json.loads(message)

    def _gone(self) -> None:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
        raise EOFError(f"Chromium closed the DevTools pipe (exit code {self.proc.poll()}): {err}")

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False) -> Any:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        try:
            os.write(self._out, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            self._gone()
        while True:
            reply = self._recv()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def load(self, url: str) -> None:
        """Navigate the page to ``url`` and wait for its load event."""
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._recv())

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, element_id: str | None = None) -> bytes:
        """A PNG of the viewport, or of the element ``element_id`` wherever it is on the page."""
        params: dict[str, Any] = {"format": "png"}
        if element_id is not None:
            box = self.evaluate(
                f"(() => {{ const r = document.getElementById({json.dumps(element_id)})"
                ".getBoundingClientRect(); return {x: r.left + window.scrollX, y: r.top + window.scrollY, "
                "width: r.width, height: r.height, scale: 1}; })()"
            )
            params.update(clip=box, captureBeyondViewport=True)
        return base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"])

    def errors(self) -> list[str]:
        """Console errors and assertions, uncaught exceptions and error log entries (a resource
        that failed to load, a blocked request) seen since the last :meth:`load`."""
        found = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(
                    "console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                )
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                found.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append("log: " + p["entry"]["text"])
        return found

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        try:
            self.deadline = time.monotonic() + 5.0
            self.call("Browser.close")
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        finally:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            os.close(self._out)
            os.close(self._in)
            if self.proc.stderr is not None:
                self.proc.stderr.close()


@dataclass
class Loaded:
    """What the browser saw of one page."""

    ready: str | None
    page_errors: str | None
    errors: list[str]
    requests: list[str]
    sections: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes = b""
    heatmap: bytes = b""


def _visit(browser: DevTools, path: Path, *, shoot: bool = True) -> Loaded:
    browser.load(path.resolve().as_uri())
    sections = browser.evaluate(
        "Array.from(document.querySelectorAll('section')).map(s => ({id: s.id, "
        "title: (s.querySelector('h2') || {}).textContent || '', height: s.getBoundingClientRect().height}))"
    )
    return Loaded(
        ready=browser.evaluate("document.body.dataset.ready || null"),
        page_errors=browser.evaluate("document.body.dataset.errors || null"),
        errors=browser.errors(),
        requests=browser.requests(),
        sections=sections,
        screenshot=browser.screenshot() if shoot else b"",
        heatmap=browser.screenshot("heatmap") if shoot else b"",
    )


def test_chromium_is_installed() -> None:
    """Fails, saying how to install it, where there is no Chromium (the tests below then error)."""
    assert Path(chromium_binary()).is_file()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    b = DevTools(chromium_binary(), tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example page of ``optmm report`` with every section (report_pages.example_args)."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    code, out, err, _ = example_page(path)
    assert (code, out, err) == (0, "", "")
    return path


@pytest.fixture(scope="module")
def report(browser: DevTools, report_path: Path) -> Loaded:
    return _visit(browser, report_path)


def test_report_loads_without_errors(report: Loaded) -> None:
    assert report.ready == "1"
    assert report.page_errors is None
    assert report.errors == []


def test_report_requests_nothing_but_itself(report: Loaded) -> None:
    assert report.requests, "the browser reported no request at all: the check would see nothing"
    assert all(url.startswith(("file://", "data:")) for url in report.requests), report.requests


def test_report_shows_every_section(report: Loaded) -> None:
    assert [s["id"] for s in report.sections] == list(SECTION_IDS)
    for s in report.sections:
        assert s["title"].strip(), s
        assert s["height"] > 50, s  # laid out, not collapsed


def _rgb(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return np.asarray(imread(io.BytesIO(png), format="png"))[..., :3].astype(np.float64)


def test_report_screenshot_is_not_blank(report: Loaded) -> None:
    rgb = _rgb(report.screenshot)
    assert rgb.shape[:2] == (HEIGHT, WIDTH)
    not_white = np.any(rgb < 0.9, axis=-1)
    assert rgb.std() > 0.05, rgb.std()
    assert not_white.mean() > 0.03, not_white.mean()  # text and tables, not an empty page


def test_report_heatmap_is_drawn_in_colour(report: Loaded) -> None:
    rgb = _rgb(report.heatmap)
    assert rgb.shape[0] > 400 and rgb.shape[1] > 600, rgb.shape
    coloured = rgb.max(axis=-1) - rgb.min(axis=-1) > 0.25  # not grey, not white
    red = coloured & (rgb[..., 0] > rgb[..., 1] + 0.1)  # the example's losses
    assert coloured.mean() > 0.2, coloured.mean()
    assert red.mean() > 0.05, red.mean()
    shades = np.unique(np.round(rgb[coloured] * 32), axis=0)
    assert len(shades) > 20, len(shades)  # a scale of colours, not one fill


def test_the_checks_catch_a_broken_page(browser: DevTools, report_path: Path, tmp_path: Path) -> None:
    """The same checks on the page with a console error, an uncaught exception and a remote image
    (blocked by the report's Content-Security-Policy) added: all of them are seen."""
    page = report_path.read_text(encoding="utf-8")
    broken = page.replace(
        "</main>",
        '<img src="https://example.invalid/x.png" alt="remote">'
        '<script>console.error("deliberate console error"); undefinedFunction();</script></main>',
    )
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    seen = _visit(browser, path, shoot=False)
    assert seen.ready == "1"
    text = "\n".join(seen.errors)
    assert "deliberate console error" in text
    assert "undefinedFunction" in text
    assert "example.invalid" in text  # refused to load: a console error
    assert seen.page_errors is not None and "undefinedFunction" in seen.page_errors
