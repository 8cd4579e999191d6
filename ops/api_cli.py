"""The API's commands: `gridloop serve` and `gridloop token add | list | revoke`."""

from __future__ import annotations

from dataclasses import replace

import click
import structlog

from engine.errors import GridloopError
from ops.config import Settings
from ops.serve import Service, serving, stop_on_signals
from projections import queries
from projections.api.access import Principal, Role, TokenBook, TokenFileError, add_token, revoke_token
from projections.divisions import divisions

log = structlog.get_logger()


@click.command(name="serve")
@click.option("--host", default=None, help="Address to listen on (default: api_host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: api_port, 8311).")
@click.option(
    "--demo-tokens",
    is_flag=True,
    help="Issue demo tokens (admin, dispatcher, supervisor, auditor, a grid worker) for the district and print them.",
)
@click.pass_obj
def serve_command(settings: Settings, host: str | None, port: int | None, demo_tokens: bool) -> None:
    """Serve the operator API (and, embedded, keep the views and the policies running) until stopped."""
    if host is not None:
        settings = replace(settings, api_host=host)
    stop = stop_on_signals()
    try:
        with serving(settings, port=settings.api_port if port is None else port) as (service, url):
            issued = issue_demo_tokens(settings, service) if demo_tokens else []
            click.echo(f"gridloop API on {url}  (OpenAPI: {url}/openapi.json, Open311: {url}/open311/v2/services.json)")
            click.echo(f"console 调度台: {url}/console/  (sign in with a token)")
            for principal, token in issued:
                click.echo(f"  {principal.role.value:<12} {principal.jurisdiction:<16} {token}")
            if issued:
                click.echo(f'try: curl -s -H "Authorization: Bearer {issued[0][1]}" "{url}/v1/board/summary"')
            click.echo("stop with Ctrl-C")
            stop.wait()
    except (GridloopError, TokenFileError) as exc:
        raise click.ClickException(str(exc)) from None


def issue_demo_tokens(settings: Settings, service: Service) -> list[tuple[Principal, str]]:
    """Demo principals over the simulated district: only their hashes go to the token file; tokens are printed."""
    views = service.rt.views
    top = divisions(views, level="district") or divisions(views, level="city")
    if not top:
        raise click.ClickException("no district in the store yet: simulate one first (gridloop simulate --fresh)")
    district = top[0].code
    principals = [
        Principal("demo-admin", Role.ADMIN, district, f"admin:{district}"),
        Principal("demo-dispatcher", Role.DISPATCHER, district, f"desk:{district}"),
        Principal("demo-supervisor", Role.SUPERVISOR, district, f"supervisor:{district}"),
        Principal("demo-auditor", Role.AUDITOR, district, f"auditor:{district}"),
    ]
    busy = [row for row in queries.board(views, now=service.clock.now(), limit=500) if row.worker]
    if busy:
        principals.append(Principal("demo-grid-worker", Role.GRID_WORKER, busy[0].grid, busy[0].worker))
    return [(p, add_token(settings.token_file, p)) for p in principals]


@click.group(name="token")
def token_group() -> None:
    """Bearer tokens of the API: only their SHA-256 hashes are stored (in api_tokens, default DATA/tokens.toml)."""


@token_group.command(name="add")
@click.option("--name", required=True, help="A unique name for the holder (replaces an older token of that name).")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--jurisdiction", required=True, help="A division or grid code: what the holder sees and acts on.")
@click.option("--actor", required=True, help="Recorded as its commands' actor (a worker's or unit's code, an id).")
@click.pass_obj
def token_add(settings: Settings, name: str, role: str, jurisdiction: str, actor: str) -> None:
    """Issue a token and print it once (it is not stored, only its hash)."""
    try:
        token = add_token(settings.token_file, Principal(name, Role(role), jurisdiction, actor))
    except TokenFileError as exc:
        raise click.ClickException(str(exc)) from None
    log.info("token_issued", name=name, role=role, jurisdiction=jurisdiction, file=str(settings.token_file))
    click.echo(token)


@token_group.command(name="list")
@click.pass_obj
def token_list(settings: Settings) -> None:
    """The principals that hold tokens (never the tokens)."""
    try:
        book = TokenBook.load(settings.token_file)
    except TokenFileError as exc:
        raise click.ClickException(str(exc)) from None
    for p in book.principals():
        click.echo(f"{p.name}\t{p.role.value}\t{p.jurisdiction}\t{p.actor}")


@token_group.command(name="revoke")
@click.argument("name")
@click.pass_obj
def token_revoke(settings: Settings, name: str) -> None:
    """Remove a holder's token; a running server refuses it from its next request."""
    try:
        revoked = revoke_token(settings.token_file, name)
    except TokenFileError as exc:
        raise click.ClickException(str(exc)) from None
    if not revoked:
        raise click.ClickException(f"no token named {name!r} in {settings.token_file}")
    log.info("token_revoked", name=name)
    click.echo(f"revoked {name}")
