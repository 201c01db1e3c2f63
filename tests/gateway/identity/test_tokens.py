"""The user API's door: every protected endpoint refuses missing, forged, expired and revoked tokens;
refresh tokens rotate, and one used twice ends its login."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import httpx
import jwt
import pytest

from keyhole.gateway.api.app import create_user_app
from tests.gateway.harness import ADMIN_PASSWORD, RunningGateway

# The only user API routes that take no access token: the rest are read from the app's own route
# table, so that a new route cannot be forgotten here.
PUBLIC = {
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("GET", "/v1/health"),
    ("POST", "/v1/agent/enroll"),
}


def _routes() -> list[tuple[str, str]]:
    app = create_user_app(cast(Any, None))  # the routes do not touch the context until a request comes
    found = []
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            found.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return found


PROTECTED = [route for route in _routes() if route not in PUBLIC]


def test_the_route_table_has_every_route_this_file_expects() -> None:
    routes = set(_routes())
    assert routes >= PUBLIC
    assert {("GET", "/v1/auth/me"), ("POST", "/v1/sessions"), ("GET", "/v1/agents")} <= set(PROTECTED)


def _login(gateway: RunningGateway, user: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, Any]:
    with gateway.client() as client:
        response = client.post("/v1/auth/login", json={"user": user, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _call(gateway: RunningGateway, method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with gateway.client() as client:
        return client.request(method, path, headers=headers, json=body)


def _forge(gateway: RunningGateway, claims: dict[str, Any], key: bytes | None = None) -> str:
    return jwt.encode(claims, key or (gateway.data / "token.key").read_bytes(), algorithm="HS256")


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_endpoint_refuses_bad_tokens(gateway: RunningGateway, method: str, path: str) -> None:
    good = _claims(_login(gateway)["access_token"])
    now = int(time.time())
    bad = {
        "missing": None,
        "garbage": "not-a-token",
        "forged": _forge(gateway, good, key=b"k" * 32),
        "expired": _forge(gateway, {**good, "iat": now - 3600, "exp": now - 60}),
        "unsigned": jwt.encode(good, key=None, algorithm="none"),
        "other audience": _forge(gateway, {**good, "aud": "someone-else"}),
    }
    body = {"name": "mallory", "password": "long-enough-password"} if method == "POST" else None
    for what, token in bad.items():
        response = _call(gateway, method, path, token, body)
        assert response.status_code == 401, (what, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        message = response.json()["error"]
        assert "\n" not in message and message, what
    assert "expired" in _call(gateway, "GET", "/v1/auth/me", bad["expired"]).json()["error"]
    # No attempt created the user.
    users = _call(gateway, "GET", "/v1/users", _login(gateway)["access_token"]).json()
    assert "mallory" not in [u["name"] for u in users]


def test_logout_revokes_the_access_and_the_refresh_token(gateway: RunningGateway) -> None:
    pair = _login(gateway)
    assert _call(gateway, "GET", "/v1/auth/me", pair["access_token"]).json() == {"user": "admin", "role": "admin"}
    assert _call(gateway, "POST", "/v1/auth/logout", pair["access_token"]).status_code == 204
    assert _call(gateway, "GET", "/v1/auth/me", pair["access_token"]).status_code == 401
    refreshed = _call(gateway, "POST", "/v1/auth/refresh", None, {"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401
    # Another login of the same user is untouched.
    other = _login(gateway)
    assert _call(gateway, "GET", "/v1/auth/me", other["access_token"]).status_code == 200


def test_refresh_rotates_and_a_reused_refresh_token_ends_the_login(gateway: RunningGateway) -> None:
    first = _login(gateway)
    assert first["access_expires_at"] - time.time() == pytest.approx(15 * 60, abs=5)
    second = _call(gateway, "POST", "/v1/auth/refresh", None, {"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _call(gateway, "GET", "/v1/auth/me", second["access_token"]).status_code == 200
    # The old refresh token again: someone holds a copy, so the whole login ends.
    replay = _call(gateway, "POST", "/v1/auth/refresh", None, {"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "already used" in replay.json()["error"]
    assert _call(gateway, "GET", "/v1/auth/me", second["access_token"]).status_code == 401
    again = _call(gateway, "POST", "/v1/auth/refresh", None, {"refresh_token": second["refresh_token"]})
    assert again.status_code == 401


def test_wrong_passwords_and_unknown_users_get_the_same_answer(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        wrong = client.post("/v1/auth/login", json={"user": "admin", "password": "wrong"})
        unknown = client.post("/v1/auth/login", json={"user": "nobody", "password": "wrong"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "wrong user name or password"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"user": "admin"}, "password: Field required"),
        ({"user": 7, "password": "x"}, "user: Input should be a valid string"),
        ([], "body"),
    ],
)
def test_malformed_requests_get_a_one_line_422(gateway: RunningGateway, body: Any, needle: str) -> None:
    with gateway.client() as client:
        response = client.post("/v1/auth/login", json=body)
    assert response.status_code == 422
    assert needle in response.json()["error"]


def test_only_admins_manage_users_and_bad_input_changes_nothing(gateway: RunningGateway) -> None:
    admin = _login(gateway)["access_token"]
    created = _call(gateway, "POST", "/v1/users", admin, {"name": "erin", "password": "erin-password-123"})
    assert created.status_code == 201 and created.json()["role"] == "engineer"
    erin = _login(gateway, "erin", "erin-password-123")["access_token"]
    denied = _call(gateway, "POST", "/v1/users", erin, {"name": "eve", "password": "eve-password-1234"})
    assert denied.status_code == 403 and "not an admin" in denied.json()["error"]
    assert _call(gateway, "GET", "/v1/users", erin).status_code == 403
    cases = [
        ({"name": "erin", "password": "another-password"}, 409, "already exists"),
        ({"name": "Bad Name", "password": "long-enough-password"}, 400, "not valid"),
        ({"name": "frank", "password": "short"}, 400, "12 characters"),
        ({"name": "grace", "password": "long-enough-password", "role": "root"}, 400, "role 'root'"),
    ]
    for body, status, needle in cases:
        response = _call(gateway, "POST", "/v1/users", admin, body)
        assert response.status_code == status and needle in response.json()["error"], body
    names = [u["name"] for u in _call(gateway, "GET", "/v1/users", admin).json()]
    assert names == sorted(set(names)) and "eve" not in names and "frank" not in names and "grace" not in names


def _at_once(count: int, action: Callable[[], httpx.Response]) -> list[int]:
    barrier = threading.Barrier(count)

    def run() -> int:
        barrier.wait()
        return action().status_code

    with ThreadPoolExecutor(count) as pool:
        return sorted(pool.map(lambda _: run(), range(count)))


def test_a_refresh_token_raced_by_a_copy_works_once_and_ends_the_login(gateway: RunningGateway) -> None:
    pair = _login(gateway)
    statuses = _at_once(
        6, lambda: _call(gateway, "POST", "/v1/auth/refresh", None, {"refresh_token": pair["refresh_token"]})
    )
    assert statuses == [200, 401, 401, 401, 401, 401]
    assert _call(gateway, "GET", "/v1/auth/me", pair["access_token"]).status_code == 401


def test_the_same_user_added_twice_at_once_is_one_201_and_clear_409s(gateway: RunningGateway) -> None:
    admin = _login(gateway)["access_token"]
    body = {"name": "raced", "password": "raced-password-12"}
    statuses = _at_once(4, lambda: _call(gateway, "POST", "/v1/users", admin, body))
    assert statuses == [201, 409, 409, 409]
    assert "Traceback" not in gateway.log() and "$argon2id$" not in gateway.log()
