"""`gridloop replay` and `gridloop rebuild` (being written)."""

from __future__ import annotations

import click


@click.command(name="replay")
def replay_command() -> None:
    """Not built yet."""
    raise click.ClickException("gridloop replay is not built yet")


@click.command(name="rebuild")
def rebuild_command() -> None:
    """Not built yet."""
    raise click.ClickException("gridloop rebuild is not built yet")
