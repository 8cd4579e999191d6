"""Command receipts: a client command id recorded in the same transaction as the command's events."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from engine.base import GridloopAggregate, name_id


class CommandReceipt(GridloopAggregate):
    """Proof that a command id was used, for what, and with which result (idempotency)."""

    @staticmethod
    def create_id(command_id: str, **_: object) -> UUID:
        return name_id("command", command_id)

    @event("Received")
    def __init__(
        self,
        *,
        command_id: str,
        command: str,
        fingerprint: str,
        aggregate_id: UUID,
        occurred_at: datetime,
    ) -> None:
        self.command_id = command_id
        self.command = command
        self.fingerprint = fingerprint
        self.aggregate_id = aggregate_id
