"""The console in a real browser: a simulated district served by a real `gridloop serve`, Debian's Chromium
driven by Playwright (its own browser download does not work here: it launches /usr/bin/chromium)."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from projections.api.access import Principal, Role, add_token
from tests.conftest import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

GRIDLOOP = Path(sys.executable).with_name("gridloop")
CHROMIUM = Path(os.environ.get("GRIDLOOP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Where the board's screenshot is saved (gitignored); GRIDLOOP_SCREENSHOT_DIR names a second place."""
VIEWPORT: ViewportSize = {"width": 1600, "height": 1000}
GUARD_MS = 20_000
"""How long the browser waits for something that must happen before calling it hung (a guard, not a measure)."""
HANG_GUARD = 120.0
LOCAL = re.compile(r"^(http://127\.0\.0\.1:\d+/|blob:http://127\.0\.0\.1:\d+/|data:)")
DISTRICT = "140827"
"""Yuanqu (垣曲县), the district `gridloop simulate --preset yuanqu` draws."""


@dataclass
class Served:
    """A `gridloop serve` process on a simulated district: its base URL and a way to mint tokens."""

    url: str
    data_dir: Path
    clients: list[httpx.Client] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def token(self, role: Role | str, jurisdiction: str = DISTRICT, actor: str = "") -> str:
        """A token for a fresh principal (what `gridloop token add` writes; the server reads the file again)."""
        role = Role(role)
        name = f"e2e-{role.value}-{jurisdiction}-{next(self._numbers)}"
        principal = Principal(name, role, jurisdiction, actor or f"{role.value}:{jurisdiction}")
        return add_token(self.data_dir / "tokens.toml", principal)

    def client(self, token: str) -> httpx.Client:
        client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.clients.append(client)
        return client


def run_gridloop(data_dir: Path, *args: str) -> None:
    done = subprocess.run(
        [str(GRIDLOOP), "--data-dir", str(data_dir), "--log-level", "warning", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert done.returncode == 0, f"gridloop {' '.join(args)} failed:\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`make run` in small: one simulated day of Yuanqu (yesterday, the preset's seed) and `gridloop serve` on a
    free port. Nobody dispatches by policy (dispatch_policy none), so a case registered here waits for the desk;
    the supervisor does not look at the clock during the tests (supervise_every 3600)."""
    data_dir = tmp_path_factory.mktemp("console") / "var"
    run_gridloop(data_dir, "simulate", "--preset", "yuanqu", "--days", "1", "--fresh")
    log = data_dir / "serve.log"
    env = {**os.environ, "GRIDLOOP_DISPATCH_POLICY": "none", "GRIDLOOP_SUPERVISE_EVERY": "3600"}
    command = [str(GRIDLOOP), "--data-dir", str(data_dir), "--log-format", "json", "serve", "--port", "0"]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    hung = threading.Timer(HANG_GUARD, process.kill)  # a server that never says it listens is hung
    hung.start()
    server = Served("", data_dir)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("stop with"):
            line = process.stdout.readline()  # printed once it listens
            assert line, f"serve exited ({process.poll()}) or hung: {lines} {log.read_text()[-3000:]}"
            lines.append(line.strip())
        hung.cancel()
        url = re.search(r"http://[\d.]+:\d+", lines[0])
        assert url, lines
        server.url = url.group(0)
        yield server
    finally:
        hung.cancel()
        for client in server.clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium under Playwright (a fresh profile: Playwright's own temporary user-data-dir)."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        unavailable(f"Playwright for Python is not installed ({exc}): pip install -e '.[dev]'")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium (make system-deps)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Error as exc:
            unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A tab of its own (its own sessionStorage, so signed out) at 1600x1000; a script error in any of the
    context's tabs, or a request to anywhere but the served console, fails the test."""
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(GUARD_MS)
    errors: list[str] = []
    elsewhere: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    # The console loads nothing from anywhere but its own server (no CDN, fonts or tiles: no internet here).
    context.on("request", lambda request: None if LOCAL.match(request.url) else elsewhere.append(request.url))
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"a page raised: {errors}"
    assert not elsewhere, f"a page asked for something elsewhere: {elsewhere}"


def json_of(response: httpx.Response) -> Any:
    assert response.status_code < 400, response.text
    return response.json()
