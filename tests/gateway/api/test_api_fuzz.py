"""The user API under schemathesis: every operation of the gateway's OpenAPI spec, called with
generated requests (valid and invalid, plus the coverage phase's boundary values and unlisted methods)
by a logged-in admin on a real gateway over HTTPS, never answers with a server error, and every error
it gives is JSON `{"error": "<one line>"}`."""

from __future__ import annotations

import json
from typing import Any, cast

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error

from keyhole.gateway.api.app import create_user_app
from keyhole.gateway.api.routes.events import MAX_WAIT
from tests.gateway.harness import ADMIN_PASSWORD, RunningGateway

# Generated examples per operation (the fuzzing phase); the coverage phase adds its boundary cases.
MAX_EXAMPLES = 20
# An empty `GET .../events` with `wait` is held up to that many seconds (at most MAX_WAIT): a valid
# generated wait is cut to this, or a few examples would take minutes. Invalid waits go out as they are.
EVENTS_WAIT = 0.05
# Operations on a session's probes and events get the id of a live session (see `live_session`).
IN_LIVE_SESSION = ("/v1/sessions/{session_id}/probes", "/v1/sessions/{session_id}/events")
LOGOUT = "/v1/auth/logout"

# The spec is built at import, by the code that serves /openapi.json, because schemathesis makes its
# tests per operation at collection time, before the gateway runs. The lazy way to load it from the
# running gateway (`schemathesis.pytest.from_fixture`) fails on pytest 9.2 with "'Function' object has
# no attribute '_nodeid'"; `test_the_gateway_serves_the_spec_that_is_fuzzed` makes sure the two agree.
SPEC = create_user_app(cast(Any, None)).openapi()  # the routes do not touch the context until a request comes
schema = schemathesis.openapi.from_dict(SPEC)


def _login(gateway: RunningGateway) -> str:
    with gateway.client() as client:
        response = client.post("/v1/auth/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def admin_token(gateway: RunningGateway) -> str:
    return _login(gateway)


@pytest.fixture(scope="module")
def logout_token(gateway: RunningGateway) -> str:
    """Logging out revokes the login of the token it is called with: with the shared admin token, every
    operation after it would get 401. So logout gets a login of its own: the first call ends it, and
    the later ones present a revoked token (a fresh login for each would cost an argon2 hash)."""
    return _login(gateway)


@pytest.fixture(scope="module")
def live_session(gateway: RunningGateway, admin_token: str) -> str:
    """A session of the admin's, open through the whole run. A generated session id only ever gets a
    404, so the operations on a session's probes and events get this one instead, to reach the code
    behind the lookup. Show and close keep their generated ids: closing this one would end it."""
    with gateway.client() as client:
        response = client.post(
            "/v1/sessions",
            json={"service": "fuzzed", "reason": "schemathesis run", "ttl": "1h"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


def test_the_gateway_serves_the_spec_that_is_fuzzed(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.json() == SPEC


def _error_problem(body: bytes) -> str | None:
    """What is wrong with an error response's body, or None if it is `{"error": "<one line>"}`."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(parsed, dict) or set(parsed) != {"error"}:
        return 'the body is not an object with the one key "error"'
    message = parsed["error"]
    if not isinstance(message, str) or not message.strip() or "\n" in message or "\r" in message:
        return "the error is not one non-empty line of text"
    return None


def _shorter_wait(query: dict[str, Any]) -> None:
    try:
        wait = float(query["wait"])
    except (KeyError, TypeError, ValueError):
        return
    if EVENTS_WAIT < wait <= MAX_WAIT:
        query["wait"] = str(EVENTS_WAIT)


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much],
)
def test_no_operation_answers_with_a_server_error(
    case: schemathesis.Case, gateway: RunningGateway, admin_token: str, logout_token: str, live_session: str
) -> None:
    path = case.operation.path
    if path.startswith(IN_LIVE_SESSION):
        case.path_parameters["session_id"] = live_session
    if path.endswith("/events") and case.query:
        _shorter_wait(case.query)
    # As the admin, whatever Authorization header was generated: missing, forged and expired tokens
    # are test_tokens.py's.
    token = logout_token if path == LOGOUT else admin_token
    headers = {"Authorization": f"Bearer {token}"}
    response = case.call(base_url=gateway.url, headers=headers, verify=str(gateway.ca), timeout=10)
    case.validate_response(response, checks=[not_a_server_error], headers=headers)
    if response.status_code >= 400:
        problem = _error_problem(response.content)
        assert problem is None, (
            f"{case.method} {case.formatted_path} answered {response.status_code}: {problem}: "
            f"{response.content[:300]!r}\nreproduce with: {case.as_curl_command(headers=headers, verify=False)}"
        )
