"""One SQL for both view stores: the views' SQLite statements, translated once each for PostgreSQL, and a cursor
that runs them there and answers the way sqlite3 does (rows by position and by name, numbers as int or float)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
from eventsourcing import persistence
from psycopg import ClientCursor, Connection, Cursor
from psycopg.adapt import Dumper, Loader
from psycopg.rows import RowMaker

TRANSLATED = 1024
"""Distinct statements whose translation is kept: every statement the views and queries use, with room to spare."""

_LITERAL = re.compile(r"('(?:[^']|'')*'|\"[^\"]*\")")
"""Quoted literals and identifiers, left as they are."""
_PLACEHOLDER = re.compile(r"%|\?|(?<![:\w]):([A-Za-z_]\w*)")
"""What psycopg reads differently from sqlite3: a literal %, a ? placeholder, a :name placeholder (not a ::cast)."""
_INSERT_OR_IGNORE = re.compile(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", re.I)
_WITHOUT_ROWID = re.compile(r"\s*\bWITHOUT\s+ROWID\b", re.I)
_CREATE = re.compile(r"\bCREATE\s+(?:UNIQUE\s+)?(?:TABLE|VIEW|INDEX)\b", re.I)
_CREATE_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}
_TYPE = re.compile(r"\b(INTEGER|REAL|BLOB)\b", re.I)
_CAST_TYPE = re.compile(r"\bAS\s+(INTEGER|REAL)\s*\)", re.I)
_SCALAR = re.compile(r"\b(MAX|MIN)\s*\(", re.I)


@functools.lru_cache(maxsize=TRANSLATED)
def translate(sql: str) -> str:
    """The PostgreSQL form of one statement the views write for SQLite (cached: each is translated once).

    Placeholders become psycopg's (``?`` → ``%s``, ``:name`` → ``%(name)s``, a literal ``%`` → ``%%``);
    ``INSERT OR IGNORE`` becomes ``ON CONFLICT DO NOTHING``; ``WITHOUT ROWID`` goes; column types in CREATE
    statements and in casts take PostgreSQL's names (64-bit integers, as SQLite's are); a scalar two-argument
    ``MAX(a, b)``/``MIN(a, b)`` becomes ``GREATEST``/``LEAST`` (an aggregate ``MAX(x)`` stays).
    """
    parts = _LITERAL.split(sql)
    create = bool(_CREATE.search(sql))
    for i, part in enumerate(parts):  # the even parts are outside quotes; psycopg reads % even inside them
        parts[i] = _outside_quotes(part, create=create) if i % 2 == 0 else part.replace("%", "%%")
    translated = "".join(parts)
    if _INSERT_OR_IGNORE.search(translated):
        translated = _INSERT_OR_IGNORE.sub("INSERT INTO", translated).rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return translated


def _outside_quotes(text: str, *, create: bool) -> str:
    text = _PLACEHOLDER.sub(_placeholder, text)
    text = _WITHOUT_ROWID.sub("", text)
    if create:
        text = _TYPE.sub(lambda m: _CREATE_TYPES[m[1].upper()], text)
    text = _CAST_TYPE.sub(lambda m: f"AS {_CREATE_TYPES[m[1].upper()]})", text)
    return _scalar_max_min(text)


def _placeholder(match: re.Match[str]) -> str:
    if match[0] == "%":
        return "%%"
    if match[0] == "?":
        return "%s"
    return f"%({match[1]})s"


def _scalar_max_min(text: str) -> str:
    """``MAX(a, b)`` → ``GREATEST(a, b)`` and ``MIN(a, b)`` → ``LEAST(a, b)``: a comma at the call's own depth."""
    out: list[str] = []
    last = 0
    for match in _SCALAR.finditer(text):
        depth, commas = 0, 0
        for char in text[match.end() - 1 :]:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    break
            elif char == "," and depth == 1:
                commas += 1
        if commas:
            out.append(text[last : match.start()])
            out.append("GREATEST(" if match[1].upper() == "MAX" else "LEAST(")
            last = match.end()
    out.append(text[last:])
    return "".join(out)


class Row(tuple[Any, ...]):
    """A row as sqlite3.Row reads: by position and by column name, with ``keys()``; equal to the tuple of its values."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=TRANSLATED)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {name: i for i, name in enumerate(names)}})


def row_factory(cursor: Cursor[Any]) -> RowMaker[Row]:
    """psycopg's row factory for Row: one class per column list, made once."""
    names = tuple(column.name for column in cursor.description or ())
    made = _row_class(names)
    return lambda values: made(values)


class NumericLoader(Loader):
    """``numeric`` (what SUM and AVG give over 64-bit integers) as sqlite3 gives it: int if integral, else float."""

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        return float(text) if b"." in text or b"e" in text.lower() or b"N" in text else int(text)


class BoolAsIntDumper(Dumper):
    """A Python bool as the 0 or 1 sqlite3 stores, so an INTEGER column (and SUM over it) takes it."""

    oid = 20  # int8

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: Any) -> bytes:
        return self.dump(obj)


def adapt(connection: Connection[Any]) -> None:
    """Teach one connection sqlite3's conversions (bool in as int, numeric out as int or float)."""
    connection.adapters.register_dumper(bool, BoolAsIntDumper)
    connection.adapters.register_loader("numeric", NumericLoader)


_ERRORS: tuple[tuple[type[psycopg.Error], type[persistence.PersistenceError]], ...] = (
    (psycopg.InterfaceError, persistence.InterfaceError),
    (psycopg.OperationalError, persistence.OperationalError),
    (psycopg.DataError, persistence.DataError),
    (psycopg.IntegrityError, persistence.IntegrityError),
    (psycopg.InternalError, persistence.InternalError),
    (psycopg.ProgrammingError, persistence.ProgrammingError),
    (psycopg.NotSupportedError, persistence.NotSupportedError),
    (psycopg.DatabaseError, persistence.DatabaseError),
    (psycopg.Error, persistence.PersistenceError),
)


@contextmanager
def _as_library_errors() -> Iterator[None]:
    """psycopg's errors as the library's, where they happen: a runner tells a transient store error (a deadlock,
    a lost connection: OperationalError) from a record's own failure while still inside its transaction."""
    try:
        yield
    except psycopg.Error as exc:
        kind = next(ours for theirs, ours in _ERRORS if isinstance(exc, theirs))
        raise kind(str(exc)) from exc


class PgCursor:
    """The view store's cursor on PostgreSQL: takes the views' SQLite statements and answers as sqlite3 does.

    Client-side binding (psycopg's ClientCursor): the values go into the statement as literals, so PostgreSQL
    infers their types from where they stand, as SQLite does (``? IS NULL``, a text compared with a text column).
    """

    def __init__(self, connection: Connection[Any], *, writing: bool = True) -> None:
        self.connection = connection
        self.writing = writing
        """Whether the cursor's transaction writes (and so may lock rows it reads)."""
        self.pg_cursor: ClientCursor[Row] = ClientCursor(connection, row_factory=row_factory)

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        # Always with parameters, even none: psycopg then reads every statement's %% alike.
        with _as_library_errors():
            self.pg_cursor.execute(translate(sql), params)
        return self

    def executemany(self, sql: str, params: Sequence[Sequence[Any] | dict[str, Any]]) -> None:
        with _as_library_errors():
            self.pg_cursor.executemany(translate(sql), params)

    def fetchone(self) -> Row | None:
        return self.pg_cursor.fetchone() if self.pg_cursor.description is not None else None

    def fetchall(self) -> list[Row]:
        return self.pg_cursor.fetchall() if self.pg_cursor.description is not None else []

    def fetchmany(self, size: int) -> list[Row]:
        return self.pg_cursor.fetchmany(size) if self.pg_cursor.description is not None else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        """Rows the last INSERT, UPDATE or DELETE changed."""
        return self.pg_cursor.rowcount

    @property
    def description(self) -> Any:
        return self.pg_cursor.description

    def close(self) -> None:
        self.pg_cursor.close()
