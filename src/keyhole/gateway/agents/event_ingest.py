"""Events from agents: probe status updates each instance's row for the probe; data events of live
sessions are redacted again (defence in depth: the agent already did) and stored until their session
ends. Anything else (an unknown probe, an ended session, a malformed or oversized event) is dropped
and counted, never an error: one bad event must not cost the batch."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from keyhole.gateway.storage.models import DebugSession, EventRecord, ProbeRecord, ProbeStatus
from keyhole.protocol import events as ev
from keyhole.protocol.redaction import DEFAULT_RULES, cut_text, redact_plain, redact_text
from keyhole.protocol.redaction_check import needs_redaction

MAX_EVENT_BYTES = 256 * 1024
# An agent's capture nests a handful of levels. Deeper, and reading the event back (json.loads in
# `keyhole events`) could fail for the whole page.
MAX_EVENT_DEPTH = 100
# Written by the agent itself, never application data.
_FIXED = frozenset({"probe", "kind", "ts", "thread", "pid", "instance"})
# Trees that came out of json.loads hold no cycles; compact, as every byte is kept until the session ends.
_encode = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
_REFUSED = "refused: "  # how the agent words a refused probe command (GatewayLink._apply)
_log = logging.getLogger("keyhole.gateway")
_STATUS_DETAIL = {ev.ERROR: "error", ev.DISABLED: "reason", ev.PENDING: "reason"}


@dataclass
class Ingested:
    stored: int = 0
    statuses: int = 0
    dropped: int = 0  # events of this batch the gateway did not keep
    agent_dropped: int = 0  # events the agent reports it could not send (its buffer was full)
    received: list[tuple[str, str]] = field(default_factory=list)  # (probe, SHA-256 of what was stored)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # events, ready to insert
    status_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    sessions: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Uploader:
    """The instance a batch comes from, already checked against the calling certificate."""

    id: str
    service: str


@dataclass(frozen=True)
class _Target:
    session: str
    live: bool
    reveal: frozenset[str]


# Built once: a status upload per agent per probe change makes building statements a real share of
# the gateway's CPU.
_TARGETS = (
    select(ProbeRecord.id, ProbeRecord.spec, DebugSession.id, DebugSession.ended_at, DebugSession.expires_at)
    .join(DebugSession, DebugSession.id == ProbeRecord.session_id)
    .where(
        ProbeRecord.id.in_(bindparam("probe_ids", expanding=True)),
        DebugSession.service == bindparam("service"),
        (ProbeRecord.instance_id.is_(None)) | (ProbeRecord.instance_id == bindparam("instance")),
    )
)
_UPSERT_STATUS = sqlite_insert(cast(Table, ProbeStatus.__table__))
_UPSERT_STATUS = _UPSERT_STATUS.on_conflict_do_update(
    index_elements=["probe_id", "instance_id"],
    set_={
        "state": _UPSERT_STATUS.excluded.state,
        "detail": _UPSERT_STATUS.excluded.detail,
        "updated_at": _UPSERT_STATUS.excluded.updated_at,
    },
)
_INSERT_EVENTS = insert(cast(Table, EventRecord.__table__))


def _targets(db: Session, instance: Uploader, probe_ids: set[str], now: float) -> dict[str, _Target]:
    """The probes this instance may report on: of its own service, and aimed at it or at all."""
    if not probe_ids:
        return {}
    params = {"probe_ids": sorted(probe_ids), "service": instance.service, "instance": instance.id}
    rows = db.execute(_TARGETS, params).all()
    out = {}
    for probe_id, spec, session_id, ended_at, expires_at in rows:
        reveal = frozenset(json.loads(spec).get("reveal", ()))
        out[probe_id] = _Target(session_id, ended_at is None and expires_at > now, reveal)
    return out


def _too_deep(body: str, event: dict[str, Any]) -> bool:
    if body.count("{") + body.count("[") <= MAX_EVENT_DEPTH:
        return False  # decided in C for nearly every event
    stack: list[tuple[Any, int]] = [(event, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_EVENT_DEPTH:
            return True
        if type(value) is dict:
            stack.extend((item, depth + 1) for item in value.values())
        elif type(value) is list:
            stack.extend((item, depth + 1) for item in value)
    return False


def _detail(event: dict[str, Any]) -> str:
    """What the instance says about the probe, redacted: an error can quote the application's values."""
    if event["kind"] == ev.INSTALLED:
        text = ", ".join(str(place) for place in event.get("locations") or [])
    else:
        text = str(event.get(_STATUS_DETAIL.get(event["kind"], ""), ""))
    return cut_text(redact_text(text[:4000])[0], 2000)


def redact_again(event: dict[str, Any], reveal: frozenset[str]) -> dict[str, Any]:
    if not needs_redaction([v for k, v in event.items() if k not in _FIXED], DEFAULT_RULES, reveal):
        return event  # the usual case: the agent did its job, and reading is much cheaper than rebuilding
    return {k: (v if k in _FIXED else redact_plain(v, DEFAULT_RULES, reveal)) for k, v in event.items()}


def _save_statuses(db: Session, rows: list[dict[str, Any]]) -> None:
    latest = {(row["probe_id"], row["instance_id"]): row for row in rows}  # the last word of the batch wins
    db.execute(_UPSERT_STATUS, list(latest.values()))


def save(db: Session, result: Ingested) -> None:
    """Write what `prepare` made: short, so it can run inside the audited transaction."""
    if result.status_rows:
        _save_statuses(db, result.status_rows)
    if result.rows:
        # Core, not the ORM's bulk insert: the same statement at half the cost per row.
        db.execute(_INSERT_EVENTS, result.rows)


def prepare(db: Session, instance: Uploader, events: list[Any]) -> Ingested:
    """Read which probes the events may be for, and redact and encode them: the work of an upload,
    done before the audited transaction that stores it (which holds the log's lock)."""
    now = time.time()
    result = Ingested()
    wellformed = [e for e in events if isinstance(e, dict) and isinstance(e.get("kind"), str)]
    result.dropped += len(events) - len(wellformed)
    targets = _targets(db, instance, {e["probe"] for e in wellformed if isinstance(e.get("probe"), str)}, now)
    rows, statuses = result.rows, result.status_rows
    for event in wellformed:
        kind, probe_id = event["kind"], event.get("probe")
        if probe_id is None:
            count = event.get("count")
            if kind == ev.DROPPED and type(count) is int and 0 < count <= MAX_EVENT_BYTES * 1000:
                result.agent_dropped += count
            continue
        target = targets.get(probe_id) if isinstance(probe_id, str) else None
        if target is None:
            result.dropped += 1
        elif kind in (ev.INSTALLED, ev.PENDING, ev.ERROR, ev.DISABLED, ev.REMOVED):
            detail = _detail(event)
            if kind == ev.ERROR and detail.startswith(_REFUSED):
                # The agent would not take a command the gateway signed: a key or clock problem the
                # operator must see, not only the engineer who set the probe. (%r: one line, whatever
                # the agent sent.)
                refusal = detail[len(_REFUSED) :][:300]
                _log.warning("agent instance %s refused probe %s: %r", instance.id, probe_id, refusal)
            statuses.append(
                {
                    "probe_id": probe_id,
                    "instance_id": instance.id,
                    "state": kind,
                    "detail": detail,
                    "updated_at": now,
                }
            )
        elif kind in ev.DATA_KINDS and target.live:
            try:
                kept = {**redact_again(event, target.reveal), "instance": instance.id}
                body = _encode(kept)
            except RecursionError:  # nested deeper than redaction goes: dropped, not the whole batch
                body = ""
            if not body or len(body) > MAX_EVENT_BYTES or _too_deep(body, kept):
                result.dropped += 1
                continue
            rows.append(
                {
                    "session_id": target.session,
                    "probe_id": probe_id,
                    "instance_id": instance.id,
                    "received_at": now,
                    "body": body,
                }
            )
            result.sessions.add(target.session)
            result.received.append((probe_id, hashlib.sha256(body.encode()).hexdigest()))
        elif kind not in (ev.STATS,):
            result.dropped += 1
    result.statuses = len(statuses)
    result.stored = len(rows)
    return result
