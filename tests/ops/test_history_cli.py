"""`gridloop replay` and `gridloop rebuild` through the real console script, and `--views` on the reading commands."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from engine import commands as c
from engine.clock import ManualClock
from ops.config import load_settings
from ops.runtime import open_runtime
from ops.sample import set_up_district
from tests.ops.test_cli import gridloop

MORNING = datetime.fromisoformat("2026-11-23T09:00+08:00")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A district; case A reported at 09:05, B at 10:00; C, seen yesterday at 16:00, uploaded at 11:00 (local)."""
    folder = tmp_path_factory.mktemp("var")
    clock = ManualClock(MORNING)
    rt = open_runtime(load_settings({}, data_dir=folder), clock)
    try:
        grid = set_up_district(rt.app)

        def report(name: str, at: str, **fields: object) -> None:
            clock.set(datetime.fromisoformat(f"2026-11-23T{at}+08:00"))
            rt.app.execute(
                c.ReportCase(
                    command_id=name, actor="resident:1", source="resident", category="C0101", grid=grid,
                    description=name, **fields,  # type: ignore[arg-type]
                )
            )  # fmt: skip

        report("A", "09:05")
        report("B", "10:00")
        report("C", "11:00", occurred_at=datetime.fromisoformat("2026-11-22T16:00+08:00"))
        rt.catch_up()
    finally:
        rt.close()
    return folder


def live_files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("views.sqlite*"))}


def described(folder: Path, views: Path | None = None) -> list[str]:
    done = gridloop(folder, "board", "--json", *(("--views", str(views)) if views else ()))
    assert done.returncode == 0, done.stderr
    return sorted(row["description"] for row in json.loads(done.stdout))


def test_a_replay_by_recorded_time_shows_what_was_known_and_leaves_the_live_views_alone(data_dir: Path) -> None:
    before = live_files(data_dir)
    done = gridloop(data_dir, "replay", "--as-of", "2026-11-23T09:30", "--json")
    assert done.returncode == 0, done.stderr
    replay = json.loads(done.stdout)
    path = data_dir / "replay" / "2026-11-23T093000-recorded.sqlite"
    assert Path(replay["path"]) == path and replay["by"] == "recorded" and replay["late_stamped"] == []
    assert {v["name"]: v["rows"] for v in replay["views"]}["case_board"]["board_case"] == 1
    assert live_files(data_dir) == before  # not opened, let alone written

    assert described(data_dir, path) == ["A"]
    assert described(data_dir) == ["A", "B", "C"]


def test_a_replay_by_occurred_time_has_the_late_upload_in_its_day(data_dir: Path) -> None:
    out = data_dir / "yesterday.sqlite"
    done = gridloop(data_dir, "replay", "--as-of", "2026-11-22T23:59", "--by", "occurred", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "by occurred time" in done.stdout and f"gridloop board --views {out}" in done.stdout
    assert described(data_dir, out) == ["C"]
    case = json.loads(gridloop(data_dir, "board", "--json", "--views", str(out)).stdout)[0]["case_id"]
    shown = gridloop(data_dir, "case", case[:8], "--views", str(out), "--json")
    assert shown.returncode == 0 and [s["event_type"] for s in json.loads(shown.stdout)["timeline"]] == ["Reported"]


def test_a_rebuild_of_every_view_equals_the_live_views(data_dir: Path) -> None:
    done = gridloop(data_dir, "rebuild", "all", "--json")
    assert done.returncode == 0, done.stderr
    views = json.loads(done.stdout)["views"]
    assert views and all(v["equal"] and v["live"] == v["rebuilt"] for v in views)


def test_a_wrong_live_view_fails_the_check_and_is_replaced_by_the_rebuild(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / "views.sqlite") as spoiling:
        spoiling.execute("UPDATE board_case SET description = 'spoilt' WHERE description = 'B'")
    checked = gridloop(data_dir, "rebuild", "case_board", "--check-only")
    assert checked.returncode == 1, checked.stderr
    assert "CHECKSUMS DIFFER for case_board" in checked.stdout and "it is kept (--check-only)" in checked.stdout
    assert described(data_dir) == ["A", "C", "spoilt"]

    rebuilt = gridloop(data_dir, "rebuild", "case_board", "--processes", "1")
    assert rebuilt.returncode == 1, rebuilt.stderr
    assert "the rebuilt view has replaced it" in rebuilt.stdout
    assert described(data_dir) == ["A", "B", "C"]
    assert gridloop(data_dir, "rebuild", "case_board").returncode == 0


def test_in_mode_kafka_a_rebuild_is_refused_with_the_command_that_does_it(data_dir: Path) -> None:
    done = gridloop(data_dir, "rebuild", "all", env={"GRIDLOOP_MODE": "kafka"})
    assert done.returncode == 2
    assert "gridloop project --rebuild" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("replay", "--as-of", "last tuesday"), "as_of: 'last tuesday' is not an ISO 8601 time"),
        (("replay", "--as-of", "2026-11-23T10:00", "--by", "written"), "'written' is not one of"),
        (("replay", "--as-of", "2026-11-23T10:00", "--view", "nope"), "unknown view 'nope'"),
        (("rebuild", "nope"), "unknown view 'nope'"),
        (("board", "--views", "events.sqlite"), "is not a view store"),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_status_2(data_dir: Path, args: tuple[str, ...], words: str) -> None:
    args = tuple(str(data_dir / a) if a == "events.sqlite" else a for a in args)
    done = gridloop(data_dir, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert words in done.stderr and "Traceback" not in done.stderr
