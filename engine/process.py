"""Process managers (流程管理): policies that read the log and answer with commands, resumable after a crash."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.persistence import ProcessRecorder, Tracking

from engine.commands import Command
from engine.errors import GridloopError

if TYPE_CHECKING:  # the runner drives the application; the managers never see it
    from engine.application import Gridloop


class ProcessManager(ABC):
    """A policy over the log: it folds every event into its own state and may answer with commands.

    ``observe`` folds; ``react`` decides what a *new* event calls for; ``due`` decides what the time
    calls for. Both return commands whose ids depend only on the log and the time, so a repeat is
    answered from its receipt and a replay on the same log and clock decides the same.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    @property
    def actor(self) -> str:
        """Who the log names as the author of this policy's commands."""
        return f"policy:{self.name}"

    @abstractmethod
    def observe(self, event: Any, position: int) -> None:
        """Fold one event of the log into the policy's state."""

    def react(self, event: Any, position: int) -> list[Command]:
        """Commands a new event calls for (after ``observe`` has folded it)."""
        return []

    def due(self, now: datetime) -> list[Command]:
        """Commands the passing of time calls for, at ``now``."""
        return []

    def command_id(self, *parts: object) -> str:
        """A command id that names the policy, its version and what the decision was about."""
        return ":".join((self.name, self.version, *(str(p) for p in parts)))


@dataclass(frozen=True)
class Refusal:
    """A policy command the engine refused (the case had moved on): logged, never retried in a loop."""

    manager: str
    command: Command | None  # None: the manager could not decide at all
    error: str


class Processes:
    """Runs process managers over an application's log: fold every event, react to new ones, act when due.

    Each manager's progress is a tracking record (``policy:<name>``) written in the same transaction
    as the last command it issued for an event, so a manager killed mid-way resumes after the last
    event whose commands are all recorded; the commands of that event are repeated and answered from
    their receipts. On start every manager folds the whole log again (its state is not stored).
    """

    def __init__(self, app: Gridloop, managers: Sequence[ProcessManager], *, batch: int = 500) -> None:
        if not isinstance(app.recorder, ProcessRecorder):  # pragma: no cover - Gridloop always has one
            raise TypeError(f"{type(app.recorder).__name__} cannot record tracking with events")
        self.app = app
        self.managers = tuple(managers)
        self.batch = batch
        self.position = 0
        self.refusals: list[Refusal] = []
        self.issued = 0
        recorder: ProcessRecorder = app.recorder
        self._recorder = recorder
        self.tracked = {m.name: recorder.max_tracking_id(tracking_name(m)) or 0 for m in self.managers}

    def catch_up(self) -> int:
        """Fold and react to every event not yet seen, including those the reactions record; the events read."""
        read = 0
        while True:
            notifications = self.app.recorder.select_notifications(self.position + 1, self.batch)
            if not notifications:
                return read
            for notification in notifications:
                event = self.app.mapper.to_domain_event(notification)
                position = notification.id
                for manager in self.managers:
                    manager.observe(event, position)
                    if position > self.tracked[manager.name]:
                        tracking = Tracking(tracking_name(manager), position)
                        self._issue(manager, self._decide(manager, manager.react, event, position), tracking)
                        self.tracked[manager.name] = position
                self.position = position
                read += 1

    def tick(self, now: datetime) -> int:
        """Let every manager act on the time ``now`` (after catching up); the commands issued."""
        self.catch_up()
        before = self.issued
        for manager in self.managers:
            self._issue(manager, self._decide(manager, manager.due, now), None)
            self.catch_up()
        return self.issued - before

    def _decide(self, manager: ProcessManager, decide: Any, *args: Any) -> list[Command]:
        """A manager's decision; one it cannot make (a rule leaves no answer) is kept as a refusal, not a crash."""
        try:
            commands: list[Command] = decide(*args)
        except GridloopError as exc:
            self.refusals.append(Refusal(manager.name, None, str(exc)))
            return []
        return commands

    def _issue(self, manager: ProcessManager, commands: list[Command], tracking: Tracking | None) -> None:
        for index, command in enumerate(commands):
            last = index == len(commands) - 1
            try:
                self.app.execute(command, tracking=tracking if last else None)
            except GridloopError as exc:
                self.refusals.append(Refusal(manager.name, command, str(exc)))
                if last and tracking is not None:
                    # The refusal is the answer to this event: a restart must not ask again.
                    self._recorder.insert_tracking(tracking)
            else:
                self.issued += 1


def tracking_name(manager: ProcessManager) -> str:
    """The tracking record of a manager in the event store."""
    return f"policy:{manager.name}"
