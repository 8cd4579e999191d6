"""`gridloop audit verify` (being written)."""

from __future__ import annotations

import click


@click.command(name="verify")
def verify_command() -> None:
    """Not built yet."""
    raise click.ClickException("gridloop audit verify is not built yet")
