"""`gridloop serve` end to end: the real console script serves the district and prints its URL and demo tokens."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import DISTRICT

GRIDLOOP = Path(sys.executable).with_name("gridloop")


def test_serve_prints_its_url_and_demo_tokens_that_work_and_stops_cleanly_on_sigterm(district_dir: Path) -> None:
    process = subprocess.Popen(
        [
            str(GRIDLOOP),
            "--data-dir",
            str(district_dir),
            "--log-format",
            "json",
            "serve",
            "--port",
            "0",
            "--demo-tokens",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GRIDLOOP_SUPERVISE_EVERY": "3600"},
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while not lines or not lines[-1].startswith("stop with"):
            line = process.stdout.readline()
            assert line or process.poll() is None, f"serve exited: {process.stderr.read() if process.stderr else ''}"
            assert time.monotonic() < deadline, f"serve printed no URL in time: {lines}"
            lines.append(line.strip())
        url = re.search(r"http://[\d.]+:\d+", lines[0])
        assert url, lines[0]
        tokens = dict(re.findall(r"^(\w+)\s+\d+\s+(glt_\S+)$", "\n".join(lines), re.MULTILINE))
        assert {"admin", "dispatcher", "supervisor", "auditor", "grid_worker"} <= set(tokens)

        me = httpx.get(url.group(0) + "/v1/whoami", headers={"Authorization": f"Bearer {tokens['dispatcher']}"})
        assert me.status_code == 200
        assert (me.json()["role"], me.json()["jurisdiction"]) == ("dispatcher", DISTRICT)
        summary = httpx.get(url.group(0) + "/v1/board/summary", headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert summary.status_code == 200 and summary.json()["open"] > 0
        # Only hashes are kept: no printed token is in the token file.
        stored = (district_dir / "tokens.toml").read_text()
        assert not any(token in stored for token in tokens.values())
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert not any(token in err for token in tokens.values()), "a token reached the log"
