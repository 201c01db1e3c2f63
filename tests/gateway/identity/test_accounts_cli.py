"""`keyhole login`, `logout` and `user add` as an engineer runs them: subprocesses against a real gateway."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import httpx

from tests.gateway.harness import ADMIN_PASSWORD, RunningGateway, cli_login, keyhole


def _login(gateway: RunningGateway, config: Path, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    result = cli_login(gateway.url, gateway.ca, config, user, password)
    assert result.returncode == 0, result.stderr


def _stored(config: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((config / "credentials.json").read_text())
    return data


def test_login_stores_owner_only_credentials_and_logout_revokes_them(gateway: RunningGateway, config: Path) -> None:
    _login(gateway, config)
    path = config / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = _stored(config)
    assert stored["user"] == "admin" and ADMIN_PASSWORD not in path.read_text()
    token = str(stored["access_token"])

    result = keyhole("logout", config=config)
    assert result.returncode == 0 and "both tokens are revoked" in result.stdout
    assert not path.exists()
    with gateway.client() as client:
        assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        refresh = client.post("/v1/auth/refresh", json={"refresh_token": stored["refresh_token"]})
        assert refresh.status_code == 401
    assert keyhole("logout", config=config).stdout.strip() == "not logged in"


def test_logout_after_the_login_was_revoked_elsewhere_still_forgets_it(gateway: RunningGateway, config: Path) -> None:
    _login(gateway, config)
    stored = _stored(config)
    with gateway.client() as client:  # a copy of the refresh token is used twice: the login is revoked
        for _ in range(2):
            client.post("/v1/auth/refresh", json={"refresh_token": stored["refresh_token"]})
    result = keyhole("logout", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "logged out (the login had already ended at the gateway)"
    assert not (config / "credentials.json").exists()


def test_an_access_token_near_expiry_is_refreshed_on_the_next_command(gateway: RunningGateway, config: Path) -> None:
    _login(gateway, config)
    stored = _stored(config)
    stored["access_expires_at"] = time.time() - 1  # as if fifteen minutes had passed
    (config / "credentials.json").write_text(json.dumps(stored))
    result = keyhole("user", "list", config=config)
    assert result.returncode == 0, result.stderr
    assert "admin\tadmin" in result.stdout
    after = _stored(config)
    assert after["refresh_token"] != stored["refresh_token"]
    assert float(str(after["access_expires_at"])) > time.time() + 14 * 60


def test_user_add_needs_an_admin(gateway: RunningGateway, tmp_path: Path) -> None:
    admin, ivan = tmp_path / "admin", tmp_path / "ivan"
    _login(gateway, admin)
    added = keyhole("user", "add", "ivan", "--password-stdin", config=admin, stdin="ivan-password-12\n")
    assert added.returncode == 0 and added.stdout.strip() == "user ivan created (engineer)"
    _login(gateway, ivan, "ivan", "ivan-password-12")
    denied = keyhole("user", "add", "judy", "--password-stdin", config=ivan, stdin="judy-password-12\n")
    assert denied.returncode == 1
    assert denied.stderr == "keyhole: user 'ivan' is not an admin; ask an admin to do this\n"
    taken = keyhole("user", "add", "ivan", "--password-stdin", config=admin, stdin="ivan-password-13\n")
    assert taken.returncode == 1 and "already exists" in taken.stderr


def test_bad_login_input_is_one_line_and_keeps_the_stored_login(
    gateway: RunningGateway, config: Path, tmp_path: Path
) -> None:
    _login(gateway, config)
    before = (config / "credentials.json").read_text()
    base = ["--ca", str(gateway.ca), "--user", "admin", "--password-stdin"]
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    cases = [
        (["--gateway", gateway.url, *base], "wrong-password\n", 1, "wrong user name or password"),
        (["--gateway", gateway.url.replace("https", "http"), *base], ADMIN_PASSWORD, 2, "must start with https://"),
        (
            ["--gateway", gateway.url, "--ca", str(tmp_path / "nope.pem"), "--user", "admin", "--password-stdin"],
            ADMIN_PASSWORD,
            2,
            "cannot read the CA file",
        ),
        (["--gateway", "https://127.0.0.1:1", *base], ADMIN_PASSWORD, 2, "cannot reach the gateway"),
        (["--gateway", gateway.url, *base], "\n", 2, "empty password"),
        (
            ["--gateway", gateway.url, "--ca", str(empty), "--user", "admin", "--password-stdin"],
            ADMIN_PASSWORD,
            2,
            "holds no PEM certificate",
        ),
        (["--gateway", gateway.url, "--ca", str(gateway.ca), "--user", "admin"], "", 2, "--password-stdin"),
        (["--gateway", gateway.url], "", 2, "usage: keyhole login"),
    ]
    for args, stdin, code, needle in cases:
        result = keyhole("login", *args, config=config, stdin=stdin)
        assert result.returncode == code, (args, result.stderr)
        assert needle in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)
        assert (config / "credentials.json").read_text() == before


def test_commands_that_need_a_login_say_so(tmp_path: Path) -> None:
    result = keyhole("user", "list", config=tmp_path / "nobody")
    assert result.returncode == 2
    assert result.stderr == "keyhole: not logged in; run: keyhole login --gateway URL --ca CA.pem --user NAME\n"


def test_the_openapi_spec_is_served(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        spec = client.get("/openapi.json").json()
    assert {"/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout", "/v1/users"} <= set(spec["paths"])
    assert isinstance(httpx.__version__, str)
