"""`gridloop export`: daily Avro files read back with fastavro and Apache Avro equal the store, byte for byte again."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import fastavro
import pytest
from avro.datafile import DataFileReader
from avro.io import DatumReader

from engine import codec
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.commands import ReportCase
from engine.errors import InvalidCommand
from ops.export import AGGREGATE_FOLDERS, export, local_day
from ops.presets import load_preset
from ops.simulator import simulate
from schemas.registry import registry
from tests.ops.test_cli import gridloop

LOCAL = ZoneInfo("Asia/Shanghai")
DAY, NEXT = date(2026, 11, 2), date(2026, 11, 3)
LATE_OCCURRED = datetime(2026, 11, 2, 16, 0, tzinfo=LOCAL)
"""The late upload: seen on the simulated day at 16:00, recorded the next morning at 09:00."""


def open_store(events: Path, clock: ManualClock | None = None) -> Gridloop:
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(events)}, clock=clock)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated Yuanqu day (2026-11-02), then one case uploaded the next morning that occurred the day before."""
    folder = tmp_path_factory.mktemp("var")
    clock = ManualClock(datetime(2026, 11, 2, tzinfo=LOCAL).astimezone(UTC))
    app = open_store(folder / "events.sqlite", clock)
    try:
        simulate(app, clock, load_preset("yuanqu"), days=1, start=DAY)
        clock.set(datetime(2026, 11, 3, 9, 0, tzinfo=LOCAL))
        app.execute(
            ReportCase(
                command_id="late-upload",
                actor="worker:late",
                source="patrol",
                category="C0101",
                grid="140827100001001",
                description="网格员补传: 井盖缺失",
                occurred_at=LATE_OCCURRED,
            )
        )
    finally:
        app.close()
    return folder


@pytest.fixture(scope="module")
def stored(data_dir: Path) -> list[tuple[int, Any]]:
    """Every stored event with its log position."""
    app = open_store(data_dir / "events.sqlite")
    try:
        head = app.recorder.max_notification_id() or 0
        return [(n.id, app.mapper.to_domain_event(n)) for n in app.recorder.select_notifications(1, head + 1)]
    finally:
        app.close()


def run_export(data_dir: Path, out: Path, first: date, last: date, **options: Any) -> Any:
    app = open_store(data_dir / "events.sqlite")
    try:
        return export(app.recorder, app.mapper, out, first, last, **options)
    finally:
        app.close()


def read_back(out: Path) -> dict[int, tuple[str, dict[str, Any]]]:
    """Every record of every exported file, by position, with the file it is in (read with fastavro)."""
    found: dict[int, tuple[str, dict[str, Any]]] = {}
    for path in sorted(out.glob("day=*/*.avro")):
        with path.open("rb") as file:
            for record in fastavro.reader(file):
                assert isinstance(record, dict)
                assert record["position"] not in found, f"position {record['position']} exported twice"
                found[record["position"]] = (path.relative_to(out).as_posix(), record)
    return found


def digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def expected_fields(event: Any) -> dict[str, Any]:
    """What an exported record of ``event`` must hold: the envelope and every payload field, as the store has it."""
    (folder, name), payload = codec.payload_of(type(event))
    fields = {f.field: getattr(event, f.attribute) for f in payload}
    return {
        "event_type": f"{folder}.{name}",
        "aggregate_id": event.originator_id,
        "aggregate_version": event.originator_version,
        "recorded_at": event.timestamp,
        **fields,
    }


def test_every_event_of_the_range_reads_back_with_fastavro_equal_to_the_store(
    data_dir: Path, stored: list[tuple[int, Any]], tmp_path: Path
) -> None:
    result = run_export(data_dir, tmp_path / "out", DAY, NEXT)
    found = read_back(tmp_path / "out")

    wanted = {position: event for position, event in stored if DAY <= local_day(event.timestamp) <= NEXT}
    assert set(found) == set(wanted), f"missing {sorted(set(wanted) - set(found))[:5]}"
    for position, event in wanted.items():
        path, record = found[position]
        expected = expected_fields(event)
        assert path == f"day={local_day(event.timestamp)}/{expected['event_type']}.avro"
        assert {k: record[k] for k in expected} == expected, f"position {position}"
        assert set(record) == {*expected, "position"}, f"position {position} has other fields"

    # The manifest tells the same story.
    manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    assert manifest["records"] == len(wanted) == result.records
    per_file = Counter(path for path, _ in found.values())
    assert {f["path"]: f["records"] for f in manifest["files"]} == dict(per_file)
    for f in manifest["files"]:
        positions = [p for p, (path, _) in found.items() if path == f["path"]]
        assert (f["first_position"], f["last_position"]) == (min(positions), max(positions))
        folder, name = f["event_type"].split(".")
        assert f["schema_fingerprint"] == registry().current[(folder, name)].fingerprint.hex()
    assert manifest["positions"]["first"] == min(wanted) and manifest["positions"]["last"] == max(wanted)


def test_the_files_read_with_apache_avro_as_with_fastavro(data_dir: Path, tmp_path: Path) -> None:
    run_export(data_dir, tmp_path / "out", DAY, DAY, aggregates=("workorder",))
    by_fastavro = read_back(tmp_path / "out")
    by_apache: dict[int, dict[str, Any]] = {}
    for path in sorted((tmp_path / "out").glob("day=*/*.avro")):
        with path.open("rb") as file, DataFileReader(file, DatumReader()) as reader:
            assert reader.get_meta("avro.codec") == b"deflate"
            for record in reader:
                assert isinstance(record, dict)
                by_apache[record["position"]] = record
    assert by_apache.keys() == by_fastavro.keys() and by_apache
    for position, record in by_apache.items():
        _, ours = by_fastavro[position]
        assert record == uuids_as_text(ours), f"position {position}"


def uuids_as_text(value: Any) -> Any:
    """Apache Avro's Python reader leaves a uuid as its text, where fastavro gives a UUID."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: uuids_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [uuids_as_text(v) for v in value]
    return value


def test_re_exporting_a_range_gives_byte_identical_files(data_dir: Path, tmp_path: Path) -> None:
    run_export(data_dir, tmp_path / "a", DAY, NEXT)
    run_export(data_dir, tmp_path / "b", DAY, NEXT)
    first = digests(tmp_path / "a")
    assert first == digests(tmp_path / "b")
    run_export(data_dir, tmp_path / "a", DAY, NEXT)  # again, over itself
    assert digests(tmp_path / "a") == first
    # The null codec too, and it differs from deflate only in the blocks.
    run_export(data_dir, tmp_path / "c", DAY, DAY, aggregates=("grid",), block_codec="null")
    run_export(data_dir, tmp_path / "d", DAY, DAY, aggregates=("grid",), block_codec="null")
    assert digests(tmp_path / "c") == digests(tmp_path / "d")


def test_empty_days_are_in_the_manifest_with_no_files(data_dir: Path, tmp_path: Path) -> None:
    result = run_export(data_dir, tmp_path / "out", date(2026, 11, 1), date(2026, 11, 5))
    days = {d["day"]: d for d in result.manifest["days"]}
    assert list(days) == ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    for empty in ("2026-11-01", "2026-11-04", "2026-11-05"):
        assert days[empty] == {"day": empty, "records": 0, "files": []}
        assert not (tmp_path / "out" / f"day={empty}").exists()
    assert days["2026-11-02"]["records"] > 0 and days["2026-11-03"]["records"] > 0

    nothing = run_export(data_dir, tmp_path / "later", date(2026, 12, 1), date(2026, 12, 3))
    assert nothing.records == 0 and nothing.files == ()
    assert sorted(p.name for p in (tmp_path / "later").iterdir()) == ["manifest-2026-12-01-2026-12-03.json"]


def test_a_late_upload_is_on_the_day_it_happened_by_occurred_time_and_the_next_by_recorded(
    data_dir: Path, stored: list[tuple[int, Any]], tmp_path: Path
) -> None:
    late = next(
        p for p, e in stored if getattr(e, "occurred_at", None) == LATE_OCCURRED and type(e).__name__ == "Reported"
    )
    run_export(data_dir, tmp_path / "recorded", DAY, NEXT, by="recorded")
    run_export(data_dir, tmp_path / "occurred", DAY, NEXT, by="occurred")
    assert read_back(tmp_path / "recorded")[late][0] == f"day={NEXT}/workorder.Reported.avro"
    assert read_back(tmp_path / "occurred")[late][0] == f"day={DAY}/workorder.Reported.avro"
    with (tmp_path / "occurred" / f"day={DAY}" / "workorder.Reported.avro").open("rb") as file:
        assert fastavro.reader(file).metadata["gridloop.by"] == "occurred"


def test_a_re_export_replaces_the_days_files_of_its_aggregates_only(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_export(data_dir, out, DAY, DAY)
    stray, other = out / f"day={DAY}" / "workorder.Gone.avro", out / f"day={DAY}" / "notes.avro"
    stray.write_bytes(b"an old file of a type the log no longer has that day")
    other.write_bytes(b"not gridloop's")
    run_export(data_dir, out, DAY, DAY, aggregates=("workorder",))
    assert not stray.exists() and other.exists()
    assert (out / f"day={DAY}" / "grid.Drawn.avro").is_file()  # not chosen this time: kept
    assert {p.name for p in out.glob("manifest-*.json")} == {
        "manifest-2026-11-02-2026-11-02.json",
        "manifest-2026-11-02-2026-11-02-workorder.json",
    }


@pytest.mark.parametrize(
    ("first", "last", "options", "words"),
    [
        (NEXT, DAY, {}, "to: 2026-11-02 is before --from 2026-11-03"),
        (date(2025, 1, 1), date(2026, 1, 2), {}, "at most 366 days"),
        (DAY, DAY, {"by": "uploaded"}, "'uploaded' is not a kind of time"),
        (DAY, DAY, {"aggregates": ("case",)}, "case chosen (expected workorder division grid worker patrol command)"),
        (DAY, DAY, {"block_codec": "snappy"}, "'snappy' is not a stock Avro codec"),
    ],
)
def test_a_bad_request_is_refused_with_what_is_allowed_and_nothing_is_written(
    data_dir: Path, tmp_path: Path, first: date, last: date, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(words)):
        run_export(data_dir, tmp_path / "out", first, last, **options)
    assert not (tmp_path / "out").exists()


def test_exports_by_the_two_kinds_of_time_never_share_a_directory(data_dir: Path, tmp_path: Path) -> None:
    run_export(data_dir, tmp_path / "out", DAY, DAY, aggregates=("grid",))
    before = digests(tmp_path / "out")
    with pytest.raises(InvalidCommand, match="holds an export by recorded time"):
        run_export(data_dir, tmp_path / "out", DAY, DAY, by="occurred")
    assert digests(tmp_path / "out") == before


def test_an_export_that_fails_midway_leaves_the_directory_as_it_was(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_export(data_dir, out, DAY, DAY, aggregates=("grid",))
    before = digests(out)

    def fail(position: int) -> None:
        raise OSError(f"disk full at position {position}")

    with pytest.raises(OSError, match="disk full"):
        run_export(data_dir, out, DAY, NEXT, progress=fail)
    assert digests(out) == before


def test_the_console_script_exports_and_refuses_a_bad_range_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = gridloop(data_dir, "export", "--from", str(DAY), "--to", str(NEXT), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == json.loads((out / "manifest-2026-11-02-2026-11-03.json").read_text(encoding="utf-8"))
    assert printed["aggregates"] == sorted(AGGREGATE_FOLDERS) and printed["records"] == len(read_back(out))

    table = gridloop(data_dir, "export", "--from", str(DAY), "--to", str(NEXT), "--out", str(out))
    assert table.returncode == 0, table.stderr
    assert f"{printed['records']} records in {len(printed['files'])} files" in table.stdout

    bad: subprocess.CompletedProcess[str] = gridloop(
        data_dir, "export", "--from", "2026-11-30", "--to", "2026-11-01", "--out", str(tmp_path / "bad")
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "error: to: 2026-11-01 is before --from 2026-11-30 (expected a day on or after 2026-11-30)"
    )
    assert not (tmp_path / "bad").exists()


def test_a_manifest_that_does_not_read_is_named_and_nothing_is_written(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest-2026-11-02-2026-11-02.json").write_text("{truncated", encoding="utf-8")
    with pytest.raises(InvalidCommand, match=r"manifest-2026-11-02-2026-11-02\.json is not a readable export manifest"):
        run_export(data_dir, out, DAY, DAY)
    assert [p.name for p in out.iterdir()] == ["manifest-2026-11-02-2026-11-02.json"]
