"""`gridloop postgres up|down|status`: the PostgreSQL server of mode distributed (local cluster or external)."""

from __future__ import annotations

import sys

import click

from ops.cli_support import fail_cleanly
from ops.config import Settings
from ops.distributed import address, connect, reason
from ops.postgres import LocalServer, PostgresUnavailable, Server, create_database


@click.group(name="postgres")
def postgres_group() -> None:
    """The PostgreSQL server of mode distributed (postgres_provisioner: local or external)."""


@postgres_group.command(name="up")
@click.pass_obj
@fail_cleanly
def postgres_up(settings: Settings) -> None:
    """Start the local cluster unless it runs (an external server must answer); create the database if missing;
    print host:port/dbname."""
    if settings.postgres_provisioner == "local":
        LocalServer(settings.postgres_dir).up()
    import psycopg

    server = settings.postgres_server()
    try:
        create_database(server, server.dbname)
    except psycopg.Error as exc:
        raise PostgresUnavailable(f"{address(server)} does not answer or refuses: {reason(exc)}") from None
    click.echo(address(server))


@postgres_group.command(name="down")
@click.pass_obj
@fail_cleanly
def postgres_down(settings: Settings) -> None:
    """Stop the local cluster (an external server is left alone)."""
    if settings.postgres_provisioner == "local":
        LocalServer(settings.postgres_dir).down()
    else:
        click.echo(f"postgres_provisioner is external: {settings.postgres_host} is left alone", err=True)


@postgres_group.command(name="status")
@click.pass_obj
@fail_cleanly
def postgres_status(settings: Settings) -> None:
    """Print host:port/dbname of the server; exit status 1 if it is not up or does not answer."""
    try:
        server = settings.postgres_server()
        _ping(server)
    except PostgresUnavailable as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(address(server))


def _ping(server: Server) -> None:
    with connect(server) as connection:
        connection.execute("SELECT 1")
