"""Domain errors: what went wrong, said in the words an operator can act on."""

from __future__ import annotations

from collections.abc import Iterable


class GridloopError(Exception):
    """Base of every error gridloop raises on purpose."""


class IllegalTransition(GridloopError):
    """An action that the case's current state does not allow."""

    def __init__(self, state: str, action: str, allowed: Iterable[str]) -> None:
        self.state = state
        self.action = action
        self.allowed = tuple(sorted(allowed))
        allowed_text = ", ".join(self.allowed) if self.allowed else "none (the case is final)"
        super().__init__(f"cannot {action} a case that is {state}; allowed from {state}: {allowed_text}")


class InvalidCommand(GridloopError):
    """A command whose fields are missing or malformed."""

    def __init__(self, field: str, problem: str, expected: str = "") -> None:
        self.field = field
        self.problem = problem
        self.expected = expected
        text = f"{field}: {problem}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class UnknownReference(GridloopError):
    """A code that names nothing gridloop knows (category, grid, worker, unit, case)."""

    def __init__(self, kind: str, value: str, allowed: Iterable[str] = ()) -> None:
        self.kind = kind
        self.value = value
        self.allowed = tuple(allowed)
        text = f"unknown {kind} {value!r}"
        if self.allowed:
            shown = ", ".join(self.allowed[:12])
            more = f" … and {len(self.allowed) - 12} more" if len(self.allowed) > 12 else ""
            text += f"; known: {shown}{more}"
        super().__init__(text)


class DuplicateCommand(GridloopError):
    """A command id that was already used for a different command."""

    def __init__(self, command_id: str, first_command: str) -> None:
        self.command_id = command_id
        self.first_command = first_command
        super().__init__(
            f"command id {command_id!r} was already used for a different command "
            f"({first_command}); use a new command id for a new command"
        )


class ConcurrencyConflict(GridloopError):
    """Another writer kept changing the same aggregate; the command was not recorded."""

    def __init__(self, aggregate: str, attempts: int) -> None:
        self.aggregate = aggregate
        self.attempts = attempts
        super().__init__(
            f"{aggregate} was changed by another writer {attempts} times while this "
            "command was applied; nothing was recorded, try again"
        )
