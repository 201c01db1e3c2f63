"""JSON over one HTTPS connection, for the agent link (standard library http.client only)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
from typing import Any

from keyhole.agent.errors import AgentError


class LinkDown(AgentError):
    """The gateway could not be reached or the connection broke: try again later."""


class LinkRefused(AgentError):
    """The gateway answered with an error; the message is its one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class JsonClient:
    """A kept-alive connection that reconnects on the next request after any failure."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float = 15.0) -> None:
        self.host, self.port, self.context, self.timeout = host, port, context, timeout
        self._connection: http.client.HTTPSConnection | None = None

    def request(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        connection = self._connection
        if connection is None:
            connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)
            self._connection = connection
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        try:
            if connection.sock is not None:
                connection.sock.settimeout(timeout or self.timeout)
            else:
                connection.timeout = timeout or self.timeout
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise LinkDown(f"gateway {self.host}:{self.port} unreachable: {exc or type(exc).__name__}") from None
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            self.close()
            raise LinkDown(f"gateway {self.host}:{self.port} sent something that is not JSON") from None
        if response.status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise LinkRefused(response.status, str(message or f"HTTP {response.status}"))
        return answer

    def interrupt(self) -> None:
        """From another thread: make a blocked request return at once (it fails with LinkDown)."""
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def abandon(self) -> None:
        """After fork(), in the child: let go of the parent's connection without touching it."""
        connection, self._connection = self._connection, None
        sock = connection.sock if connection is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                # The child's copy of the descriptor only; the parent's connection carries on.
                fd = sock.detach()
                if fd >= 0:
                    os.close(fd)
