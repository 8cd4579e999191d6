"""Access control: bearer tokens → principals, each with a role and a jurisdiction (a node of the five-level tree)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

from engine.commands import COMMANDS, CaseCommand


class Role(StrEnum):
    """What a principal does in the command centre; each role has its own reads and its own commands."""

    DISPATCHER = "dispatcher"  # 派遣员: registers, dispatches, verifies, closes inside its jurisdiction
    GRID_WORKER = "grid_worker"  # 网格员: signs for, handles and reports on the cases assigned to it; patrols
    DEPARTMENT = "department"  # 职能部门: signs for, handles and reports on the cases assigned to its unit
    SUPERVISOR = "supervisor"  # 督办: escalates, decides extensions, reopens
    AUDITOR = "auditor"  # 审计: reads everything in its jurisdiction, writes nothing
    ANALYST = "analyst"  # 分析: reads the board and the numbers, not the cases' histories, writes nothing
    ADMIN = "admin"  # 管理员: everything in its jurisdiction, the reference model included
    REPORTER = "reporter"  # 受理渠道 (12345 hotline, resident app, an Open311 client): reports cases only


class Read(StrEnum):
    """The things a principal may read."""

    BOARD = "board"  # the case board, its summary, the overdue-and-escalation board, one case
    TIMELINE = "timeline"  # a case's history: who did what, when and why (names, notes, photos)
    QUEUE = "queue"  # a worker's queue
    REFERENCE = "reference"  # the division tree and the grids
    CALLBACKS = "callbacks"  # the call-back queue (回访任务): residents' closed cases and their phone numbers


_CASE_WORK = frozenset({"accept", "return", "request_extension", "report_handling"})
_PATROL = frozenset({"start_patrol", "visit_checkpoint", "report_finding", "end_patrol"})
_DESK = frozenset(
    {
        "report", "register", "reject", "merge", "dispatch", "reassign", "suspend", "resume", "verify",
        "recategorise", "hand_over", "call_back", "miss_call_back", "reopen", "escalate", "grant_extension",
        "deny_extension",
    }
)  # fmt: skip
_SUPERVISION = frozenset({"escalate", "warn_deadline", "grant_extension", "deny_extension", "reopen"})

COMMANDS_BY_ROLE: Mapping[Role, frozenset[str]] = {
    Role.DISPATCHER: _DESK,
    Role.GRID_WORKER: _CASE_WORK | _PATROL | {"report", "set_duty"},
    Role.DEPARTMENT: _CASE_WORK | {"report"},
    Role.SUPERVISOR: _SUPERVISION,
    Role.AUDITOR: frozenset(),
    Role.ANALYST: frozenset(),
    Role.ADMIN: frozenset(COMMANDS),
    Role.REPORTER: frozenset({"report"}),
}
"""The commands each role may issue (by command name); anything else is refused before the engine sees it."""

READS_BY_ROLE: Mapping[Role, frozenset[Read]] = {
    Role.DISPATCHER: frozenset(Read),
    Role.GRID_WORKER: frozenset({Read.BOARD, Read.TIMELINE, Read.QUEUE, Read.REFERENCE}),
    Role.DEPARTMENT: frozenset({Read.BOARD, Read.TIMELINE, Read.QUEUE, Read.REFERENCE}),
    Role.SUPERVISOR: frozenset(Read),
    Role.AUDITOR: frozenset(Read),
    Role.ANALYST: frozenset({Read.BOARD, Read.REFERENCE}),
    Role.ADMIN: frozenset(Read),
    Role.REPORTER: frozenset({Read.REFERENCE}),
}
"""What each role may read. Grid workers and departments read only the cases assigned to them (see Principal)."""

CASE_COMMANDS = frozenset(name for name, command in COMMANDS.items() if issubclass(command, CaseCommand))
"""Commands on one existing case: the case must be inside the principal's reach."""

TOKEN_PREFIX = "glt_"

log = structlog.get_logger()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named token's holder, its role, its jurisdiction and the actor its commands are recorded as."""

    name: str
    role: Role
    jurisdiction: str
    """A division or grid code: the principal sees and acts only on cases inside it."""
    actor: str
    """Recorded as the actor of every command it issues: a worker's code, a unit's code, an operator's id."""

    @property
    def assigned_only(self) -> bool:
        """Grid workers and departments see and act only on the cases assigned to them (their actor)."""
        return self.role in (Role.GRID_WORKER, Role.DEPARTMENT)

    def may_issue(self, command: str) -> bool:
        return command in COMMANDS_BY_ROLE[self.role]

    def may_read(self, what: Read) -> bool:
        return what in READS_BY_ROLE[self.role]

    def commands(self) -> list[str]:
        """The commands this principal may issue, in the engine's order."""
        return [name for name in COMMANDS if self.may_issue(name)]


def fingerprint(token: str) -> str:
    """What the token file keeps instead of a token: its SHA-256, hex. Tokens are random, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh bearer token (256 random bits, URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenFileError(ValueError):
    """A token file gridloop cannot use; the message names the file, the entry and what is allowed."""


@dataclass(frozen=True)
class TokenEntry:
    """One entry of the token file: the token's hash and the principal it stands for."""

    sha256: str
    principal: Principal


class TokenBook:
    """The principals, by the hashes of their tokens, as read from the token file (``[[token]]`` entries)."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self._by_hash = {entry.sha256: entry.principal for entry in entries}

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        """Read ``path``; a missing file is an empty book (nobody may call), a malformed one an error."""
        return cls(_entries(path))

    def __len__(self) -> int:
        return len(self._by_hash)

    def principals(self) -> list[Principal]:
        return sorted(self._by_hash.values(), key=lambda p: p.name)

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding ``token``, or None. The lookup is by hash, so timing says nothing of the token."""
        digest = fingerprint(token)
        principal = self._by_hash.get(digest)
        # A dict lookup compares hashes, not tokens; compare_digest keeps the final check constant-time too.
        if principal is not None and hmac.compare_digest(digest, fingerprint(token)):
            return principal
        return None


def _entry(path: Path, number: int, raw: object) -> TokenEntry:
    where = f"{path}: token entry {number}"
    if not isinstance(raw, Mapping):
        raise TokenFileError(f"{where}: not a table (entries are [[token]] tables)")
    missing = [key for key in ("name", "sha256", "role", "jurisdiction", "actor") if not raw.get(key)]
    if missing:
        raise TokenFileError(f"{where}: {missing[0]} is missing (entries have name, sha256, role, jurisdiction, actor)")
    digest = str(raw["sha256"]).lower()
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise TokenFileError(f"{where}: sha256 is not a SHA-256 hex digest (64 hex digits; never the token itself)")
    try:
        role = Role(str(raw["role"]))
    except ValueError:
        raise TokenFileError(f"{where}: role {raw['role']!r}; allowed: {', '.join(Role)}") from None
    principal = Principal(str(raw["name"]), role, str(raw["jurisdiction"]), str(raw["actor"]))
    return TokenEntry(digest, principal)


def token_entry_toml(entry: TokenEntry) -> str:
    """One ``[[token]]`` entry of the token file, as TOML text."""
    p = entry.principal
    lines = [
        "[[token]]",
        f"name = {_quoted(p.name)}",
        f"sha256 = {_quoted(entry.sha256)}",
        f"role = {_quoted(p.role.value)}",
        f"jurisdiction = {_quoted(p.jurisdiction)}",
        f"actor = {_quoted(p.actor)}",
    ]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_token(path: Path, principal: Principal) -> str:
    """Create a token for ``principal``, append its hash to the token file, and return the token (shown once).

    A principal's name is unique in a file: adding a name again replaces the old entry (a rotated token).
    """
    token = new_token()
    kept = [e for e in _entries(path) if e.principal.name != principal.name]
    entries = [*kept, TokenEntry(fingerprint(token), principal)]
    _write(path, entries)
    return token


def revoke_token(path: Path, name: str) -> bool:
    """Remove the named principal's token from the file; False when there was none."""
    entries = _entries(path)
    kept = [e for e in entries if e.principal.name != name]
    if len(kept) == len(entries):
        return False
    _write(path, kept)
    return True


def _entries(path: Path) -> list[TokenEntry]:
    """The entries of the token file ([] when there is none); TokenFileError naming the file and the entry."""
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TokenFileError(f"{path}: not valid TOML ({exc})") from None
    raws = data.get("token", [])
    if not isinstance(raws, list):
        raise TokenFileError(f"{path}: token is not a list of [[token]] tables")
    return [_entry(path, number, raw) for number, raw in enumerate(raws, start=1)]


def _write(path: Path, entries: list[TokenEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# gridloop bearer tokens: only their SHA-256 hashes are kept here (`gridloop token add` prints a token once)\n"
    )
    text = header + "\n".join(token_entry_toml(e) for e in entries)
    partial = path.with_suffix(path.suffix + ".partial")
    # Owner-only before the first byte is written, not after.
    partial.touch(mode=0o600)
    partial.chmod(0o600)
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


class TokenFile:
    """The token file, read again whenever it changes: a token added or revoked counts without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._book = TokenBook()
        self._reload()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        # The inode too: a rotated token leaves the size as it was, and two writes can share a coarse mtime;
        # every write replaces the file, so a new one always has another inode than the one last read.
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _reload(self) -> None:
        stamp = self._stamp()
        if stamp != self._seen:
            # Marked seen first: a malformed file is reported once, not on every request until it is mended.
            self._seen = stamp
            # A malformed file raises here: at start-up that stops the server; later the old book stays in force.
            self._book = TokenBook.load(self.path)

    def authenticate(self, token: str) -> Principal | None:
        try:
            self._reload()
        except TokenFileError as exc:
            # A broken edit keeps the tokens of the last good file in force rather than lock everyone out.
            log.error("token_file_unusable", error=str(exc), kept=len(self._book))
        return self._book.authenticate(token)

    def principals(self) -> list[Principal]:
        return self._book.principals()
