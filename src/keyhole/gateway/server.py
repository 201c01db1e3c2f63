"""`keyhole gateway serve`: both listeners in one process, on one event loop. SIGTERM or SIGINT
stops them together: in-flight requests finish, then the database is closed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from keyhole.gateway.app import create_agent_app, create_user_app
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import GatewayError


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, what: str) -> Listen:
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise GatewayError(f"{what} must be HOST:PORT, such as 127.0.0.1:8443 (got {text!r})")
        return cls(host, int(port))


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve`, which stops both listeners at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: object, context: GatewayContext, client_certs: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        ssl_certfile=str(context.paths.server_cert),
        ssl_keyfile=str(context.paths.server_key),
        ssl_ca_certs=str(context.paths.ca_cert) if client_certs else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if client_certs else ssl.CERT_NONE,
        log_level="info",
        access_log=True,
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
    )


def bind(listen: Listen, flag: str) -> socket.socket:
    """Bind before serving, so a taken port is one clear line rather than a log record."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise GatewayError(
            f"cannot listen on {listen.host}:{listen.port}: {exc.strerror or exc}; choose another with {flag} HOST:PORT"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _loaded(config: uvicorn.Config) -> _Server:
    """Load the TLS files now, so that a damaged key is one line before serving, not a traceback."""
    try:
        config.load()
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise GatewayError(f"cannot load the gateway's TLS certificate or key: {exc}") from None
    return _Server(config)


async def _serve(servers: list[tuple[_Server, socket.socket]]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    # Tests and scripts read these two lines to find the ports (port 0 picks free ones).
    print(f"keyhole gateway: user API on https://{_address(servers[0][1])}", flush=True)
    print(f"keyhole gateway: agents on https://{_address(servers[1][1])} (client certificate required)", flush=True)
    await asyncio.gather(*tasks)


def serve(context: GatewayContext, listen: Listen, agent_listen: Listen) -> None:
    try:
        user_sock = bind(listen, "--listen")
        try:
            agent_sock = bind(agent_listen, "--agent-listen")
        except GatewayError:
            user_sock.close()
            raise
        try:
            servers = [
                (_loaded(_config(create_user_app(context), context, client_certs=False)), user_sock),
                (_loaded(_config(create_agent_app(context), context, client_certs=True)), agent_sock),
            ]
            asyncio.run(_serve(servers))
        finally:
            user_sock.close()
            agent_sock.close()
    finally:
        context.close()
