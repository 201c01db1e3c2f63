"""Who is on the other end of an agent connection: the common name of its client certificate.

The TLS layer already refused any client without a certificate from the gateway's CA; this tells
the application which agent credential the certificate carries. uvicorn does not put the peer
certificate in the ASGI scope, so the HTTP protocol is extended to copy it into the per-connection
state that each request's scope starts from.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from starlette.requests import Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keyhole.gateway.errors import AuthError

_PEER = "keyhole_peer"


def _common_name(cert: dict[str, Any]) -> str | None:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _with_peer(state: dict[str, Any], transport: asyncio.Transport) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object")
    peer = ssl_object.getpeercert() if isinstance(ssl_object, ssl.SSLObject) else None
    # A copy: the state dict uvicorn passes in is shared by every connection of the server.
    return {**state, _PEER: _common_name(peer) if peer else None}


class PeerCertHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = _with_peer(self.app_state, transport)


async def peer_name(request: Request) -> str:  # a coroutine: it never blocks (see api_auth.gateway)
    name = request.scope.get("state", {}).get(_PEER)
    if not isinstance(name, str):
        raise AuthError("this endpoint needs the client certificate of an enrolled agent")
    return name
