"""The processes of a fault trial: its relay and two projection workers, killed, restarted and stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

GRIDLOOP = shutil.which("gridloop", path=str(Path(sys.executable).parent)) or "gridloop"
"""The console script beside this interpreter: the children run the same installation as the harness."""


class Children:
    """The trial's relay and two projection workers as real `gridloop` processes, logs in the trial folder."""

    def __init__(self, folder: Path, values: dict[str, Any]) -> None:
        self.folder = folder
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDLOOP_")}
        self.env.update({f"GRIDLOOP_{k.upper()}": str(v) for k, v in values.items()})
        self.env.update(GRIDLOOP_LOG_FORMAT="json", GRIDLOOP_LOG_LEVEL="info")
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts = 0

    def start(self, role: str, number: str = "") -> None:
        name = f"{role}-{number}" if number else role
        args = ["relay", "--follow"] if role == "relay" else ["project", "--follow"]
        with (self.folder / f"{name}.log").open("ab") as log:
            self.running[name] = subprocess.Popen(
                [GRIDLOOP, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def kill_and_restart(self, name: str) -> None:
        process = self.running[name]
        process.send_signal(signal.SIGKILL)
        process.wait()
        self._restart(name)

    def revive(self) -> None:
        """Restart any child that exited (as a supervisor would): a relay may give up while the broker is away."""
        for name, process in list(self.running.items()):
            if process.poll() is not None:
                self._restart(name)

    def _restart(self, name: str) -> None:
        self.restarts += 1
        if self.restarts > 20:
            raise RuntimeError(f"the trial's processes keep exiting; {self.tails()}")
        role, _, number = name.partition("-")
        self.start(role, number)

    def stop(self) -> None:
        for process in self.running.values():
            process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    def tails(self) -> str:
        return " | ".join(
            f"{log.name}: {log.read_text(errors='replace').splitlines()[-1:]}" for log in self.folder.glob("*.log")
        )
