"""`gridloop audit case` (being written)."""

from __future__ import annotations

import click


@click.command(name="case")
def case_command() -> None:
    """Not built yet."""
    raise click.ClickException("gridloop audit case is not built yet")
