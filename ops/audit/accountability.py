"""`gridloop audit accountability` (being written)."""

from __future__ import annotations

import click


@click.command(name="accountability")
def accountability_command() -> None:
    """Not built yet."""
    raise click.ClickException("gridloop audit accountability is not built yet")
