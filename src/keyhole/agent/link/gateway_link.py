"""The agent's link to its gateway: it dials out (the service opens no port), enrolls, says hello,
long-polls for its probe set, uploads events in batches, renews its certificate, and drops every
probe when the gateway has been away longer than the dead-man grace.

Two threads of its own: one polls (and does everything else that talks to the gateway), one
uploads. The agent's thread hands events over through a bounded buffer; no application thread
ever waits on the network.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from keyhole.agent.core.sinks import Sink
from keyhole.agent.errors import AgentError, ProbeIdTaken
from keyhole.agent.link import identity as ident
from keyhole.agent.link.config import LinkConfig
from keyhole.agent.link.https_client import JsonClient, LinkDown, LinkRefused
from keyhole.agent.link.signed_probes import CommandRefused, check_command
from keyhole.agent.link.upload_buffer import UploadBuffer
from keyhole.protocol import events as ev
from keyhole.protocol.events import format_timestamp
from keyhole.protocol.link import EVENTS_PATH, HELLO_PATH, MAX_BATCH_EVENTS, PROBES_PATH
from keyhole.version import __version__

if TYPE_CHECKING:
    from keyhole.agent.core.agent import Agent

_log = logging.getLogger("keyhole.agent")
# How long fork() waits for an enrollment in flight to finish.
ENROLL_WAIT = 5.0
BACKOFF_START = 0.5
BACKOFF_CAP = 30.0

_active: GatewayLink | None = None


class Backoff:
    """Exponential with full jitter, so that agents that lost the gateway together do not return
    together."""

    def __init__(self) -> None:
        self.attempt = 0

    def next(self) -> float:
        delay = min(BACKOFF_CAP, BACKOFF_START * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 16)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


def _instance_id() -> str:
    return "i-" + secrets.token_hex(6)


class GatewayLink(Sink):
    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.instance = _instance_id()
        self.state = "starting"
        self.last_error = ""
        self.buffer = UploadBuffer()
        self._agent: Agent | None = None
        self._identity: ident.Identity | None = None
        self._identity_version = 0
        self._hello_version = -1  # the identity version the current instance said hello with
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._poll_client: JsonClient | None = None
        self._held: dict[str, str] = {}  # probe id -> signature of the command it came from
        self._refused: dict[str, str] = {}  # probe id -> signature already reported as refused
        self._digest = ""
        self._last_contact = time.monotonic()
        self._logged = ""
        self._paused = False
        self._closed = False
        self._run = 0  # each start() is a new run; threads of an older one leave at their next turn

    # --- lifecycle ---------------------------------------------------------------------------
    def attach(self, agent: Agent) -> None:
        self._agent = agent

    def start(self) -> None:
        global _active
        _active = self
        self._stop.clear()
        self._run += 1
        run = self._run
        self._threads = [
            threading.Thread(target=self._guard, args=(self._poll_loop, run), name="keyhole-link", daemon=True),
            threading.Thread(target=self._guard, args=(self._upload_loop, run), name="keyhole-upload", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _halt(self, timeout: float) -> None:
        self._stop.set()
        client = self._poll_client
        if client is not None:
            client.interrupt()
        self.buffer.wake()
        current = threading.current_thread()
        # An enrollment in flight cannot be interrupted; let it finish (bounded), so that a process
        # forking now hands its children a certificate rather than a used-up token.
        enrolling = self.state == "enrolling"
        for thread in self._threads:
            if thread is not current and thread.is_alive():
                thread.join(max(timeout, ENROLL_WAIT) if enrolling else timeout)

    def close(self) -> None:
        """Stop both threads, send what is left (briefly), close the connections. Called by the agent's stop()."""
        global _active
        if self._closed:
            return
        self._closed = True
        self._halt(5.0)
        self._final_flush()
        if self._poll_client is not None:
            self._poll_client.close()
        self.state = "stopped"
        if _active is self:
            _active = None

    def _guard(self, loop: Any, run: int) -> None:
        try:
            loop(run)
        except BaseException as exc:  # a link thread must never die with a traceback in someone else's process
            self._note(f"keyhole link stopped by an internal error: {type(exc).__name__}")
            if not self._stop.is_set():
                # Without its thread the dead-man switch cannot run: nothing may stay installed.
                self.state = "failed"
                self._stop.set()
                self.buffer.wake()
                try:
                    self._drop_all("the gateway link stopped on an internal error")
                except Exception:
                    pass

    # --- Sink: finished events from the agent's thread --------------------------------------
    def write(self, events: list[dict[str, Any]]) -> None:
        if self._paused:
            self._revive()
        self.buffer.put(events)

    # --- talking to the gateway --------------------------------------------------------------
    def _note(self, message: str, level: int = logging.WARNING) -> None:
        """Log a change of situation once, not every retry."""
        self.last_error = message if level >= logging.WARNING else ""
        if message != self._logged:
            self._logged = message
            _log.log(level, "%s", message)

    def _client(self) -> JsonClient:
        identity = self._identity
        assert identity is not None
        return JsonClient(self.config.host, identity.agent_port, identity.context)

    def _ensure_identity(self) -> None:
        identity = self._identity
        now = time.time()
        if identity is not None and identity.expires_at <= now:
            # Its token was used up when it enrolled: only a new one can bring it back.
            raise LinkRefused(
                401,
                "this agent's certificate expired while the gateway was out of reach; "
                "restart the service with a new enrollment token",
            )
        if identity is None:
            self.state = "enrolling"
            self._identity = ident.enroll(self.config)
        elif identity.renew_due(now):
            assert self._poll_client is not None
            self._identity = ident.renew(self.config, identity, self._poll_client)
        else:
            return
        self._identity_version += 1
        if self._poll_client is not None:
            self._poll_client.close()
        self._poll_client = self._client()

    def _ensure_hello(self) -> None:
        if self._hello_version == self._identity_version:
            return
        assert self._poll_client is not None
        self._poll_client.request(
            "POST",
            HELLO_PATH,
            {
                "instance": self.instance,
                "service": self.config.service,
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "python": platform.python_version(),
                "keyhole": __version__,
                "labels": self.config.labels,
            },
        )
        self._hello_version = self._identity_version
        self.state = "connected"
        self._note(f"keyhole agent connected to {self.config.host} as {self.instance}", logging.INFO)

    def _contact(self) -> None:
        self._last_contact = time.monotonic()

    def _running(self, run: int) -> bool:
        return not self._stop.is_set() and run == self._run

    def _poll_loop(self, run: int) -> None:
        backoff = Backoff()
        while self._running(run):
            delay = 0.0
            try:
                self._ensure_identity()
                if not self._running(run):
                    break
                self._ensure_hello()
                assert self._poll_client is not None and self._identity is not None
                # Never hold a poll past the time to renew the certificate.
                wait = max(1.0, min(self.config.poll_wait, self._identity.renew_at - time.time()))
                query = urlencode({"instance": self.instance, "have": self._digest, "wait": f"{wait:g}"})
                timeout = wait + min(10.0, self.config.deadman_grace / 3)
                if self._held:  # a silent gateway must not hold the dead-man switch past its time
                    left = self.config.deadman_grace - (time.monotonic() - self._last_contact)
                    timeout = max(0.5, min(timeout, left + 0.1))
                answer = self._poll_client.request("GET", f"{PROBES_PATH}?{query}", timeout=timeout)
                self._contact()
                self._apply(answer)
                backoff.reset()
            except LinkRefused as exc:
                if exc.status == 401:
                    # The token or the enrollment is not valid: retrying cannot help.
                    self.state = "refused"
                    self._note(f"keyhole agent refused by the gateway: {exc}")
                    self._drop_all("the gateway refused this agent")
                    self._stop.set()
                    self.buffer.wake()
                    return
                self._hello_version = -1  # e.g. a gateway whose state was reset: introduce ourselves again
                self._note(f"keyhole gateway refused a request: {exc}")
                delay = backoff.next()
            except LinkDown as exc:
                if not self._stop.is_set():
                    self.state = "disconnected"
                    self._note(f"keyhole agent lost its gateway: {exc}")
                delay = backoff.next()
            except (AgentError, OSError, ValueError, KeyError, TypeError) as exc:
                self._note(f"keyhole link error: {type(exc).__name__}: {exc}")
                delay = backoff.next()
            self._check_deadman()
            if delay:
                until_deadman = self.config.deadman_grace - (time.monotonic() - self._last_contact)
                self._stop.wait(max(0.05, min(delay, until_deadman + 0.05) if self._held else delay))

    def _apply(self, answer: Any) -> None:
        agent = self._agent
        identity = self._identity
        if agent is None or identity is None or not isinstance(answer, dict):
            return
        envelopes = answer.get("probes")
        if not isinstance(envelopes, list):
            raise ValueError("probe set without probes")
        wanted: dict[str, str] = {}
        complete = True
        for envelope in envelopes:
            probe_id, sig = (envelope.get("id"), envelope.get("sig")) if isinstance(envelope, dict) else (None, None)
            if not isinstance(probe_id, str) or not isinstance(sig, str):
                continue
            if self._held.get(probe_id) == sig:
                wanted[probe_id] = sig
                continue
            if self._refused.get(probe_id) == sig:
                continue
            try:
                accepted = check_command(
                    envelope,
                    signing_key=identity.signing_key,
                    service=self.config.service,
                    instance=self.instance,
                    rules=agent.rules,
                )
            except CommandRefused as exc:
                self._refused[probe_id] = sig
                agent.report(probe_id, ev.ERROR, error=f"refused: {exc}")
                continue
            if accepted is None:
                continue
            if probe_id in self._held:
                agent.remove_probe(probe_id)
            try:
                agent.add_probe(accepted.spec)
            except ProbeIdTaken:  # its removal has not finished yet: next round
                complete = False
                continue
            except AgentError as exc:
                self._refused[probe_id] = sig
                agent.report(probe_id, ev.ERROR, error=str(exc))
                continue
            wanted[probe_id] = sig
        for probe_id in set(self._held) - set(wanted):
            agent.remove_probe(probe_id)
        self._held = wanted
        self._digest = str(answer.get("digest", "")) if complete else ""
        if not complete:
            self._stop.wait(0.1)

    def _drop_all(self, reason: str) -> None:
        agent = self._agent
        if agent is not None and self._held:
            for probe_id in list(self._held):
                agent.remove_probe(probe_id)
            agent.report(None, ev.AGENT, event="probes dropped", reason=reason)
        self._held = {}
        self._digest = ""

    def _check_deadman(self) -> None:
        if self._held and time.monotonic() - self._last_contact > self.config.deadman_grace:
            self._drop_all(f"no contact with the gateway for {self.config.deadman_grace:g} s (dead-man switch)")
            self._note("keyhole agent dropped its probes: the gateway has been away longer than the grace")

    # --- uploads -------------------------------------------------------------------------------
    def _ready(self) -> bool:
        return self._identity is not None and self._hello_version == self._identity_version >= 0

    def _batch(self) -> list[dict[str, Any]]:
        batch = self.buffer.take(MAX_BATCH_EVENTS, timeout=1.0)
        dropped = self.buffer.take_dropped()
        if dropped:
            batch.append(
                {
                    "probe": None,
                    "kind": ev.DROPPED,
                    "ts": format_timestamp(time.time()),
                    "thread": "keyhole-upload",
                    "pid": os.getpid(),
                    "count": dropped,
                }
            )
        return batch

    def _upload_loop(self, run: int) -> None:
        backoff = Backoff()
        client: JsonClient | None = None
        version = -1
        while self._running(run):
            batch = self._batch()
            if not batch:
                continue
            if not self._ready():
                self.buffer.put_back(batch)
                self._stop.wait(0.2)
                continue
            if client is None or version != self._identity_version:
                if client is not None:
                    client.close()
                client, version = self._client(), self._identity_version
            try:
                client.request("POST", EVENTS_PATH, {"instance": self.instance, "events": batch})
                backoff.reset()  # not a contact for the dead-man switch: only a probe set answer is
            except LinkRefused as exc:
                if exc.status in (400, 413, 422):  # this batch can never be accepted: do not retry it
                    self.buffer.dropped += len(batch)
                else:
                    self.buffer.put_back(batch)
                    self._stop.wait(backoff.next())
            except LinkDown:
                self.buffer.put_back(batch)
                self._stop.wait(backoff.next())
        if client is not None:
            client.close()

    def _final_flush(self) -> None:
        if not self._ready() or not len(self.buffer):
            return
        client = self._client()
        client.timeout = 2.0
        try:
            while len(self.buffer):
                batch = self.buffer.take(MAX_BATCH_EVENTS, timeout=0)
                client.request("POST", EVENTS_PATH, {"instance": self.instance, "events": batch})
        except AgentError:
            pass
        finally:
            client.close()

    # --- fork ----------------------------------------------------------------------------------
    def pause(self) -> None:
        if self._threads and not self._closed:
            self._halt(1.0)

    def resume_in_parent(self) -> None:
        """Restart at once on every version: a parent without its link would keep probes of closed
        sessions and lose its dead-man switch. (On 3.13 CPython then counts the new threads in its
        fork-with-threads DeprecationWarning.)"""
        if self._closed or not self._threads:
            return
        self._paused = True
        self._revive()

    def _revive(self) -> None:
        if self._paused and not self._closed and self.state not in ("refused", "failed"):
            self._paused = False
            if self._poll_client is not None:
                self._poll_client.close()  # pause() shut its socket down
            self.start()

    def after_fork_in_child(self) -> None:
        if self._closed or not self._threads:
            return
        if self._poll_client is not None:
            self._poll_client.abandon()
        self._poll_client = None
        self.instance = _instance_id()
        self._hello_version = -1
        self.buffer.reset_after_fork()
        self._stop = threading.Event()
        self._paused = False
        if self._identity is None:
            # The parent's token is used (or being used): this process cannot enroll with it.
            self.state = "refused"
            self._note("keyhole agent: this process was forked before its parent's agent had enrolled; it has no link")
            self._drop_all("forked before the agent enrolled")
            return
        self._poll_client = self._client()
        self.start()


def active_link() -> GatewayLink | None:
    return _active


def _before_fork() -> None:
    if _active is not None:
        _active.pause()


def _after_fork_in_parent() -> None:
    if _active is not None:
        _active.resume_in_parent()


def _after_fork_in_child() -> None:
    if _active is not None:
        _active.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
