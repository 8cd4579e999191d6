"""Bearer tokens: `gridloop token add | list | revoke`, a token file of hashes only, revocation without a restart."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result
from structlog.testing import capture_logs

from ops.cli import main
from projections.api.access import Principal, Role, TokenBook, TokenFileError, add_token, fingerprint
from tests.api.conftest import DISTRICT, Api

CLEAN_ENV: dict[str, str | None] = {"GRIDLOOP_CONFIG": None, "GRIDLOOP_API_TOKENS": None, "GRIDLOOP_DATA_DIR": None}
"""The token file is DATA/tokens.toml whatever the environment running the tests says."""


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """`gridloop` configures structlog for the process (cached loggers and all); later tests expect it unconfigured."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def gridloop(data_dir: Path, *args: str) -> Result:
    """Run the console script's ``main`` on ``data_dir``, as `gridloop --data-dir DATA ...` would."""
    saved = structlog.get_config()
    try:
        return CliRunner(env=CLEAN_ENV).invoke(main, ["--data-dir", str(data_dir), "--log-format", "json", *args])
    finally:
        structlog.configure(**saved)


def add(data_dir: Path, name: str, role: str = "dispatcher", jurisdiction: str = DISTRICT, actor: str = "") -> str:
    """`gridloop token add`: the token it prints (once)."""
    done = gridloop(
        data_dir, "token", "add", "--name", name, "--role", role, "--jurisdiction", jurisdiction,
        "--actor", actor or f"desk:{name}",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    token = done.stdout.strip()
    assert token.startswith("glt_")
    assert token not in done.stderr, "the token reached a log line"
    return token


def test_the_token_file_keeps_hashes_never_the_tokens(tmp_path: Path) -> None:
    tokens = [add(tmp_path, "desk-1"), add(tmp_path, "desk-2", role="auditor")]
    text = (tmp_path / "tokens.toml").read_text(encoding="utf-8")
    for token in tokens:
        assert token not in text
        assert token.removeprefix("glt_") not in text
        assert f'sha256 = "{fingerprint(token)}"' in text
    assert [p.name for p in TokenBook.load(tmp_path / "tokens.toml").principals()] == ["desk-1", "desk-2"]


def test_token_add_list_and_revoke_on_the_command_line(tmp_path: Path) -> None:
    token = add(tmp_path, "hotline", role="reporter", jurisdiction="140827100", actor="12345")
    add(tmp_path, "supervisor", role="supervisor")

    listed = gridloop(tmp_path, "token", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines() == [
        "hotline\treporter\t140827100\t12345",
        f"supervisor\tsupervisor\t{DISTRICT}\tdesk:supervisor",
    ]
    assert token not in listed.output

    revoked = gridloop(tmp_path, "token", "revoke", "hotline")
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.strip() == "revoked hotline"
    assert gridloop(tmp_path, "token", "list").stdout.splitlines() == [
        f"supervisor\tsupervisor\t{DISTRICT}\tdesk:supervisor"
    ]

    again = gridloop(tmp_path, "token", "revoke", "hotline")
    assert again.exit_code != 0
    assert "no token named 'hotline'" in again.output
    assert str(tmp_path / "tokens.toml") in again.output


def test_a_token_given_an_unknown_role_is_refused_by_the_command_line(tmp_path: Path) -> None:
    done = gridloop(tmp_path, "token", "add", "--name", "x", "--role", "mayor", "--jurisdiction", "1", "--actor", "x")
    assert done.exit_code == 2
    assert "'mayor' is not one of" in done.output
    assert not (tmp_path / "tokens.toml").exists()


def test_a_revoked_token_is_refused_on_the_next_request_without_a_restart(api: Api) -> None:
    data_dir = api.settings.data_dir
    token = add(data_dir, "night-desk")
    client = api.client(token)
    assert client.get("/v1/whoami").json()["name"] == "night-desk"

    assert gridloop(data_dir, "token", "revoke", "night-desk").exit_code == 0

    refused = client.get("/v1/whoami")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "revoked" in refused.json()["detail"]


def test_a_token_issued_again_under_its_name_replaces_the_old_one_at_once(api: Api) -> None:
    data_dir = api.settings.data_dir
    old = add(data_dir, "day-desk")
    assert api.client(old).get("/v1/whoami").status_code == 200
    new = add(data_dir, "day-desk")  # the same name, so the file keeps its size
    assert api.client(new).get("/v1/whoami").status_code == 200
    assert api.client(old).get("/v1/whoami").status_code == 401


VALID_HASH = "0" * 64

MALFORMED = [
    pytest.param("[[token]\nname = 'a'\n", "not valid TOML", id="not TOML"),
    pytest.param(
        f"[[token]]\nname = 'a'\nsha256 = '{VALID_HASH}'\nrole = 'admin'\njurisdiction = '1'\nactor = 'a'\n"
        f"[[token]]\nname = 'b'\nsha256 = '{VALID_HASH}'\njurisdiction = '1'\nactor = 'b'\n",
        "token entry 2: role is missing",
        id="an entry without a role",
    ),
    pytest.param(
        "[[token]]\nname = 'a'\nsha256 = 'glt_secret'\nrole = 'admin'\njurisdiction = '1'\nactor = 'a'\n",
        "token entry 1: sha256 is not a SHA-256 hex digest",
        id="a token where its hash belongs",
    ),
    pytest.param(
        f"[[token]]\nname = 'a'\nsha256 = '{VALID_HASH}'\nrole = 'mayor'\njurisdiction = '1'\nactor = 'a'\n",
        "token entry 1: role 'mayor'; allowed: dispatcher, grid_worker",
        id="an unknown role",
    ),
    pytest.param("token = ['a']\n", "token entry 1: not a table", id="an entry that is not a table"),
    pytest.param("token = 'a'\n", "token is not a list", id="token not a list"),
]


@pytest.mark.parametrize(("text", "says"), MALFORMED)
def test_a_malformed_token_file_is_named_with_its_entry_and_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text, encoding="utf-8")

    listed = gridloop(tmp_path, "token", "list")
    assert listed.exit_code == 1
    assert f"Error: {path}: " in listed.output
    assert says in listed.output
    assert "glt_secret" not in listed.output

    with pytest.raises(TokenFileError, match=str(path)):
        add_token(path, Principal("c", Role.ADMIN, DISTRICT, "c"))
    assert path.read_text(encoding="utf-8") == text


def test_a_token_file_broken_while_serving_keeps_the_last_good_tokens_and_says_so(api: Api) -> None:
    token = api.token("dispatcher")
    client = api.client(token)
    assert client.get("/v1/whoami").status_code == 200
    path = api.settings.token_file
    with capture_logs() as logs:
        path.write_text(path.read_text(encoding="utf-8") + "[[token]]\nname = 'half-written'\n", encoding="utf-8")
        assert client.get("/v1/whoami").status_code == 200
        assert client.get("/v1/whoami").status_code == 200
    reported = [line for line in logs if line["event"] == "token_file_unusable"]
    assert len(reported) == 1, "reported once, not on every request"
    assert f"{path}: token entry 2: sha256 is missing" in reported[0]["error"]
    assert reported[0]["kept"] == 1


def test_the_token_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    add(tmp_path, "desk-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    add(tmp_path, "desk-2")
    assert gridloop(tmp_path, "token", "revoke", "desk-1").exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
