"""Talking to the gateway's user API over HTTPS: the gateway's own CA only, tokens refreshed as needed,
and every failure turned into the one line the user should read."""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx

from keyhole.cli import credentials
from keyhole.cli.credentials import StoredLogin
from keyhole.cli.errors import CliError

TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# Refresh a little before expiry so a request does not race the clock.
REFRESH_MARGIN = 30.0


def tls_context(ca_pem: str) -> ssl.SSLContext:
    """Trusts the gateway's CA and nothing else (not the system's CAs, even for an empty file)."""
    if "-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise CliError("the CA file holds no PEM certificate; use the gateway's ca.pem")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=ca_pem)
    except (ssl.SSLError, ValueError):
        raise CliError("the CA file is not a valid PEM certificate; use the gateway's ca.pem") from None
    return context


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"the gateway answered {response.status_code} {response.reason_phrase}"


def call(
    gateway: str,
    ca_pem: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    timeout: float | None = None,
) -> httpx.Response:
    """One request; raises CliError for anything that is not a response, returns any response."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        limits = TIMEOUT if timeout is None else httpx.Timeout(timeout, connect=5.0)
        with httpx.Client(base_url=gateway, verify=tls_context(ca_pem), timeout=limits) as client:
            return client.request(method, path, json=body, headers=headers)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise CliError(
                f"the gateway at {gateway} did not present a certificate from the given CA; "
                "check --ca (the gateway's ca.pem) and the URL's host name"
            ) from None
        raise CliError(f"cannot reach the gateway at {gateway}; is it running? ({exc})") from None
    except httpx.TimeoutException:
        raise CliError(f"the gateway at {gateway} did not answer in time") from None
    except httpx.InvalidURL as exc:
        raise CliError(f"{gateway!r} is not a gateway URL such as https://127.0.0.1:8443 ({exc})") from None
    except httpx.HTTPError as exc:
        raise CliError(f"talking to the gateway at {gateway} failed: {exc}") from None


def expect(response: httpx.Response, *ok: int) -> Any:
    if response.status_code not in (ok or (200,)):
        raise CliError(_error_text(response), exit_code=1)
    return response.json() if response.content else None


def store(gateway: str, ca_pem: str, body: dict[str, Any]) -> StoredLogin:
    login = StoredLogin(
        gateway=gateway,
        ca_pem=ca_pem,
        user=body["user"],
        role=body["role"],
        access_token=body["access_token"],
        access_expires_at=body["access_expires_at"],
        refresh_token=body["refresh_token"],
        login_expires_at=body["login_expires_at"],
    )
    credentials.save(login)
    return login


def refresh_login(login: StoredLogin) -> StoredLogin | None:
    """New tokens for a stored login; None (and the stored login forgotten) when the gateway says
    the login has ended. Any other failure raises and keeps the stored login."""
    response = call(
        login.gateway, login.ca_pem, "POST", "/v1/auth/refresh", body={"refresh_token": login.refresh_token}
    )
    if response.status_code == 401:
        credentials.forget()
        return None
    return store(login.gateway, login.ca_pem, expect(response))


def fresh_login() -> StoredLogin:
    login = credentials.load()
    if login.login_expires_at <= time.time():
        credentials.forget()
        raise CliError("the login has expired; log in again: keyhole login")
    if login.access_expires_at - REFRESH_MARGIN <= time.time():
        refreshed = refresh_login(login)
        if refreshed is None:
            raise CliError("the login has ended (logged out, revoked or expired); log in again: keyhole login", 1)
        login = refreshed
    return login


def api(method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,), timeout: float | None = None) -> Any:
    """A request as the logged-in user; refreshes the access token when it is close to expiry."""
    login = fresh_login()
    response = call(login.gateway, login.ca_pem, method, path, token=login.access_token, body=body, timeout=timeout)
    return expect(response, *ok)
