"""`keyhole gateway serve`: both listeners in one process, on one event loop. SIGTERM or SIGINT
stops them together: in-flight requests finish, then the database is closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from keyhole.gateway.access import approvals as access_requests
from keyhole.gateway.access.policy_changes import apply_policy_file
from keyhole.gateway.api.app import create_agent_app, create_user_app
from keyhole.gateway.api.tls_peer import PeerCertHttpToolsProtocol
from keyhole.gateway.audit import log as audit_log
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import GatewayError
from keyhole.gateway.sessions.debug_sessions import ACCESS_EXPIRED, Expired, expire_due

SWEEP_EVERY = 1.0
_log = logging.getLogger("keyhole.gateway")


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
        http=PeerCertHttpToolsProtocol if client_certs else "httptools",
        ssl_certfile=str(context.paths.server_cert),
        ssl_keyfile=str(context.paths.server_key),
        ssl_ca_certs=str(context.paths.ca_cert) if client_certs else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if client_certs else ssl.CERT_NONE,
        log_level="info",
        # Agents' polls and uploads are constant traffic: logging each costs the loop ~12% of its CPU.
        access_log=not client_certs,
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        # Idle keep-alive connections of agents would otherwise hold a SIGTERM for the whole timeout.
        timeout_graceful_shutdown=3,
    )


def bind(listen: Listen, flag: str) -> socket.socket:
    """Bind before serving, so a taken port is one clear line rather than a log record."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: without it small answers wait ~40 ms on delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


async def _sweep(context: GatewayContext, stopping: asyncio.Event) -> None:
    """End expired sessions and probes, and wake the agents whose probe sets that changes."""
    while not stopping.is_set():
        try:
            expired = await run_in_threadpool(_expire, context)
        except SQLAlchemyError as exc:
            _log.error("could not expire sessions: %s", type(exc).__name__)
            expired = Expired()
        for service in expired.services:
            context.probe_sets.bump(service)
        for session in expired.sessions:
            context.session_events.bump(session)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), SWEEP_EVERY)


def _expire(context: GatewayContext) -> Expired:
    """Agents connected and gone, expiry, and a signed checkpoint of the audit log when it grew (so
    that a change to an entry is caught against a signature within a second of it being written)."""
    arrived, departed = context.connections.changes()
    try:
        with context.audited() as db:
            for instance in arrived:
                audit_log.append(db, f"agent:{instance}", "agent.connect", via="poll")
            for instance in departed:
                audit_log.append(db, "gateway", "agent.disconnect", instance=instance)
    except SQLAlchemyError:
        context.connections.unreport(arrived, departed)  # the next sweep records them
        raise
    with context.audited() as db:
        expired = expire_due(db, time.time())
        for session in sorted(expired.sessions):
            audit_log.append(db, "gateway", "session.expire", session=session)
        for probe in sorted(expired.probes):
            audit_log.append(db, "gateway", "probe.expire", probe=probe)
        for request in access_requests.expire_due(db, time.time()):
            ended = access_requests.end_sessions_of(db, request.id, ACCESS_EXPIRED)
            sessions = [s.id for s in ended]
            audit_log.append(db, "gateway", "access.expire", request=request.id, was=request.state, sessions=sessions)
            expired.services.update(s.service for s in ended)
            expired.sessions.update(sessions)
    try:
        with context.audited() as db:
            audit_log.checkpoint(db, context.signing_key)
    except audit_log.LogRewritten as exc:
        _log.error("%s", exc)  # said every second until someone looks: the log was tampered with
        if context.webhook is not None:
            context.webhook.alert("audit.rewritten", str(exc))
    return expired


def _reload_policy(context: GatewayContext) -> None:
    """SIGHUP: read the policy file again; a file that does not validate changes nothing."""
    path = context.policy_path
    if path is None:
        return
    try:
        apply_policy_file(context, path, "gateway")
    except GatewayError as exc:
        _log.error("%s; the policy in force stays", exc)
    except SQLAlchemyError as exc:
        _log.error("could not record the policy in %s (%s); the policy in force stays", path, type(exc).__name__)


async def _serve(context: GatewayContext, servers: list[tuple[_Server, socket.socket]]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:
        stopping.set()
        for server, _ in servers:
            server.should_exit = True
        # Long-polls would hold the graceful shutdown for their whole wait: answer them now.
        context.probe_sets.wake_all()
        context.session_events.wake_all()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # Always handled: SIGHUP's default would end the gateway, and a policy may arrive later (policy apply).
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, _reload_policy, context))
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    sweeper = asyncio.create_task(_sweep(context, stopping))
    # Tests and scripts read these two lines to find the ports (port 0 picks free ones).
    print(f"keyhole gateway: user API on https://{_address(servers[0][1])}", flush=True)
    print(f"keyhole gateway: agents on https://{_address(servers[1][1])} (client certificate required)", flush=True)
    await asyncio.gather(*tasks)
    stopping.set()
    await sweeper


def serve(context: GatewayContext, listen: Listen, agent_listen: Listen, agent_cert_ttl: float) -> None:
    try:
        user_sock = bind(listen, "--listen")
        try:
            agent_sock = bind(agent_listen, "--agent-listen")
        except GatewayError:
            user_sock.close()
            raise
        context.agent_port = agent_sock.getsockname()[1]
        context.agent_cert_ttl = agent_cert_ttl
        try:
            servers = [
                (_loaded(_config(create_user_app(context), context, client_certs=False)), user_sock),
                (_loaded(_config(create_agent_app(context), context, client_certs=True)), agent_sock),
            ]
            if context.webhook is not None:
                context.webhook.start()
            asyncio.run(_serve(context, servers))
        finally:
            if context.webhook is not None:
                context.webhook.stop()
            user_sock.close()
            agent_sock.close()
    finally:
        context.close()
