"""Analytics exports (分析导出): the event log as daily Avro container files, one per event type, and a manifest."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from io import BytesIO, RawIOBase
from pathlib import Path
from typing import IO, Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo

import structlog
from eventsourcing.persistence import ApplicationRecorder, Mapper
from eventsourcing.utils import get_topic
from fastavro import parse_schema, schemaless_reader
from fastavro.write import Writer

from engine import codec
from engine.errors import InvalidCommand
from projections.replay import BY, CLOCK_WINDOW, RECORDED, occurred_at
from schemas.registry import EventSchema, current_schema, schema_fingerprint

log = structlog.get_logger()

LOCAL = ZoneInfo("Asia/Shanghai")
"""The zone of an export's days: a day is a local day of Asia/Shanghai (UTC+8, no daylight saving)."""

CODECS = ("deflate", "null")
"""Block codecs every Avro reader has (the specification requires both); snappy is not stock everywhere."""

MAX_DAYS = 366
BATCH = 2000
"""Log positions read per query."""

EXPORT_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "event_type", "type": "string", "doc": "aggregate folder and event name, e.g. workorder.Dispatched"},
    {"name": "position", "type": "long", "doc": "global position in the event store's notification log"},
)
"""The fields an exported record has before the event's own (envelope, then payload): what the Kafka headers say."""

AGGREGATE_FOLDERS = tuple(codec.AGGREGATES.values())

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportedFile:
    """One file an export wrote: where, what and how much."""

    path: str  # relative to the export directory, with / separators
    day: str
    event_type: str
    records: int
    first_position: int
    last_position: int
    schema_fingerprint: str  # the event's writer schema, as in the Kafka header (16 hex digits)
    schema_version: str  # the schemas/ version it comes from ("current" or a released version)
    file_schema_fingerprint: str  # the file's own schema (the event's plus EXPORT_FIELDS)
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Export:
    """What an export wrote, and its manifest (a JSON file beside the data)."""

    directory: Path
    manifest_path: Path
    manifest: dict[str, Any]
    files: tuple[ExportedFile, ...]

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)


def file_schema(schema: EventSchema) -> dict[str, Any]:
    """An exported file's schema: the registry's full schema of the event type with EXPORT_FIELDS first."""
    full = copy.deepcopy(dict(schema.schema))
    full["fields"] = [*copy.deepcopy(list(EXPORT_FIELDS)), *full["fields"]]
    return full


def _parsed_file_schema(schema: EventSchema) -> tuple[Any, bytes]:
    full = file_schema(schema)
    return parse_schema(copy.deepcopy(full)), schema_fingerprint(full)


def check_range(first: date, last: date, by: str) -> None:
    """Refuse an empty or overlong range, or an unknown kind of time, saying what is allowed."""
    if by not in BY:
        raise InvalidCommand("by", f"{by!r} is not a kind of time", " or ".join(BY))
    if last < first:
        raise InvalidCommand("to", f"{last} is before --from {first}", f"a day on or after {first}")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidCommand(
            "to", f"{first}..{last} is {(last - first).days + 1} days", f"at most {MAX_DAYS} days in one export"
        )


def local_day(moment: datetime) -> date:
    return moment.astimezone(LOCAL).date()


def day_start(day: date) -> datetime:
    """The UTC instant a local day begins."""
    return datetime.combine(day, time(), LOCAL).astimezone(UTC)


def event_topics(aggregates: Iterable[str]) -> list[str]:
    """The store's topics (event class names) of the event types of ``aggregates`` that have a schema."""
    wanted = set(aggregates)
    return sorted(
        get_topic(cls)
        for aggregate, folder in codec.AGGREGATES.items()
        if folder in wanted
        for cls in codec.event_classes(aggregate).values()
    )


def record_of(event: Any, position: int) -> tuple[EventSchema, dict[str, Any]]:
    """An event as an exported record: exactly what the relay puts on Kafka, decoded with its writer schema."""
    folder, name = codec.event_type(event)
    schema = current_schema(folder, name)
    body = BytesIO(codec.encode(event))
    body.seek(codec.HEADER_SIZE)
    fields = schemaless_reader(body, schema.parsed, None)
    assert isinstance(fields, dict)  # a record schema reads as a dict
    return schema, {"event_type": f"{folder}.{name}", "position": position, **fields}


class _Appending(RawIOBase):
    """A file opened for each write and closed after: thousands of daily files open at once hold no descriptor."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with self.path.open("ab") as file:
            return file.write(data)


class ExportFile:
    """One day's Avro object container file of one event type, written block by block into ``path``.

    Deterministic: the sync marker comes from the file's identity, and nothing in the header depends
    on when it was written, so the same records give the same bytes.
    """

    def __init__(self, path: Path, schema: EventSchema, day: date, by: str, block_codec: str = "deflate") -> None:
        parsed, self.file_fingerprint = _parsed_file_schema(schema)
        self.path = path
        self.schema = schema
        self.event_type = f"{schema.aggregate}.{schema.event}"
        self.day = day
        self.records = 0
        self.first_position = self.last_position = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        identity = f"gridloop export {self.event_type} {day.isoformat()} {by}"
        metadata = {
            "gridloop.event_type": self.event_type,
            "gridloop.day": day.isoformat(),
            "gridloop.time_zone": str(LOCAL),
            "gridloop.by": by,
            "gridloop.schema_fingerprint": schema.fingerprint.hex(),
            "gridloop.schema_version": schema.version,
        }
        self._writer = Writer(
            cast(IO[bytes], _Appending(path)),
            parsed,
            codec=block_codec,
            metadata=metadata,
            sync_marker=hashlib.sha256(identity.encode()).digest()[:16],
        )

    def write(self, record: Mapping[str, Any]) -> None:
        self._writer.write(dict(record))
        position = int(record["position"])
        self.first_position = self.first_position or position
        self.last_position = position
        self.records += 1

    def close(self, relative_to: Path) -> ExportedFile:
        self._writer.flush()
        data = self.path.read_bytes()
        return ExportedFile(
            path=self.path.relative_to(relative_to).as_posix(),
            day=self.day.isoformat(),
            event_type=self.event_type,
            records=self.records,
            first_position=self.first_position,
            last_position=self.last_position,
            schema_fingerprint=self.schema.fingerprint.hex(),
            schema_version=self.schema.version,
            file_schema_fingerprint=self.file_fingerprint.hex(),
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )


def file_name(day: date, event_type: str) -> str:
    """Where a day's file of an event type lives in an export directory: ``day=YYYY-MM-DD/<event type>.avro``."""
    return f"day={day.isoformat()}/{event_type}.avro"


def manifest_name(first: date, last: date, aggregates: Sequence[str]) -> str:
    chosen = "" if set(aggregates) == set(AGGREGATE_FOLDERS) else "-" + "+".join(sorted(aggregates))
    return f"manifest-{first.isoformat()}-{last.isoformat()}{chosen}.json"


@dataclass
class _Scan:
    """What the scan of the log saw: the files being written and the positions read."""

    files: dict[tuple[date, str], ExportFile] = field(default_factory=dict)
    first_read: int = 0
    last_read: int = 0


def export(
    recorder: ApplicationRecorder,
    mapper: Mapper[UUID],
    out: Path,
    first: date,
    last: date,
    by: str = RECORDED,
    aggregates: Sequence[str] = AGGREGATE_FOLDERS,
    block_codec: str = "deflate",
    progress: Progress | None = None,
) -> Export:
    """Export the events of the local days ``first``..``last`` (by recorded or occurred time) into ``out``.

    Files are built in a staging folder and moved in when all are complete, with the manifest last; a
    failed export leaves the directory as it was. Re-exporting a range replaces its days' files of the
    chosen aggregates (removing those the new export has no events for).
    """
    check_range(first, last, by)
    unknown = sorted(set(aggregates) - set(AGGREGATE_FOLDERS))
    if unknown or not aggregates:
        raise InvalidCommand("aggregate", f"{', '.join(unknown) or 'none'} chosen", " ".join(AGGREGATE_FOLDERS))
    if block_codec not in CODECS:
        raise InvalidCommand("codec", f"{block_codec!r} is not a stock Avro codec", " or ".join(CODECS))
    _check_directory(out, by)
    staging = out / ".export-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        scan = _scan(recorder, mapper, staging, first, last, by, aggregates, block_codec, progress)
        files = tuple(f.close(staging) for _, f in sorted(scan.files.items()))
        head = recorder.max_notification_id() or 0
        manifest = _manifest(first, last, by, aggregates, block_codec, files, scan, head)
        _move_in(staging, out, files, first, last, aggregates)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest_path = out / manifest_name(first, last, aggregates)
    partial = manifest_path.with_name(manifest_path.name + ".partial")
    partial.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    partial.replace(manifest_path)
    log.info("events_exported", first=str(first), last=str(last), by=by, files=len(files), out=str(out))
    return Export(out, manifest_path, manifest, files)


def _check_directory(out: Path, by: str) -> None:
    """The directory must be one (or not exist yet), and hold exports by the same kind of time only."""
    if out.exists() and not out.is_dir():
        raise InvalidCommand("out", f"{out} is a file", "a directory (created if missing)")
    for path in sorted(out.glob("manifest-*.json")) if out.is_dir() else ():
        try:
            found = json.loads(path.read_text(encoding="utf-8")).get("by")
        except (OSError, ValueError, AttributeError) as exc:
            raise InvalidCommand(
                "out", f"{path} is not a readable export manifest ({exc})", "fix or remove it"
            ) from exc
        if found != by:
            raise InvalidCommand(
                "out", f"{out} holds an export by {found} time ({path.name})", f"a directory of exports by {by} time"
            )


def _scan(
    recorder: ApplicationRecorder,
    mapper: Mapper[UUID],
    staging: Path,
    first: date,
    last: date,
    by: str,
    aggregates: Sequence[str],
    block_codec: str,
    progress: Progress | None,
) -> _Scan:
    """Read the log in position order and write each chosen event into its day's file.

    By recorded time the log is a nearly sorted sequence (an event is stamped just before its commit),
    so the scan ends at the first event stamped a clock window past the range. By occurred time a late
    upload can come at any later position: the scan reads the whole log.
    """
    end = day_start(last + timedelta(days=1))
    scan = _Scan()
    topics = event_topics(aggregates)
    start = 1
    while page := recorder.select_notifications(start, BATCH, topics=topics):
        for notification in page:
            event: Any = mapper.to_domain_event(notification)
            if by == RECORDED and event.timestamp >= end + CLOCK_WINDOW:
                return scan
            scan.first_read = scan.first_read or notification.id
            scan.last_read = notification.id
            day = local_day(event.timestamp if by == RECORDED else occurred_at(event))
            if not first <= day <= last:
                continue
            schema, record = record_of(event, notification.id)
            key = (day, record["event_type"])
            file = scan.files.get(key)
            if file is None:
                file = scan.files[key] = ExportFile(staging / file_name(*key), schema, day, by, block_codec)
            file.write(record)
        start = page[-1].id + 1
        if progress is not None:
            progress(page[-1].id)
    return scan


def _manifest(
    first: date,
    last: date,
    by: str,
    aggregates: Sequence[str],
    block_codec: str,
    files: Sequence[ExportedFile],
    scan: _Scan,
    head: int,
) -> dict[str, Any]:
    per_day: dict[str, list[ExportedFile]] = {d.isoformat(): [] for d in _days(first, last)}
    for f in files:
        per_day[f.day].append(f)
    return {
        "format": "gridloop-export/1",
        "from": first.isoformat(),
        "to": last.isoformat(),
        "by": by,
        "time_zone": str(LOCAL),
        "aggregates": sorted(aggregates),
        "codec": block_codec,
        "records": sum(f.records for f in files),
        "positions": {
            "first": min((f.first_position for f in files), default=0),
            "last": max((f.last_position for f in files), default=0),
            "read_from": scan.first_read,
            "read_to": scan.last_read,
            "log_head": head,
        },
        "days": [
            {"day": day, "records": sum(f.records for f in found), "files": [f.path for f in found]}
            for day, found in per_day.items()
        ],
        "files": [vars(f) for f in files],
    }


def _days(first: date, last: date) -> Iterator[date]:
    for n in range((last - first).days + 1):
        yield first + timedelta(days=n)


def _move_in(
    staging: Path, out: Path, files: Sequence[ExportedFile], first: date, last: date, aggregates: Sequence[str]
) -> None:
    """Put the new files in place, removing the range's old files of the chosen aggregates that were not rewritten."""
    written = {f.path for f in files}
    for day in _days(first, last):
        folder = out / f"day={day.isoformat()}"
        for old in sorted(folder.glob("*.avro")):
            relative = old.relative_to(out).as_posix()
            if old.stem.split(".")[0] in aggregates and relative not in written:
                old.unlink()
    for f in files:
        target = out / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / f.path).replace(target)
