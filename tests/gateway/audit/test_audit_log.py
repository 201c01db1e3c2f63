"""The audit log on a real gateway state: entries appended and checkpoints signed in the gateway's
own database, then every kind of tampering with the SQLite file, each caught by `keyhole audit
verify` (run as a subprocess, as an auditor runs it), which names the first bad entry."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyhole.gateway.audit import log as audit_log
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.storage.state_paths import StatePaths
from keyhole.verifier.checkpoints import open_note
from keyhole.verifier.keys import load_signing_key
from keyhole.verifier.merkle import leaf_hash, verify_consistency, verify_inclusion
from tests.gateway.harness import RunningGateway, cli_login, init_state, keyhole, start_gateway

ENTRIES = 40
CHECKPOINT_EVERY = 8


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gateway state with 40 audit entries and a signed checkpoint after every 8 (made once)."""
    root = tmp_path_factory.mktemp("audit")
    assert init_state(root / "state", root / "config").returncode == 0
    context = GatewayContext.open(StatePaths(root / "state"))
    try:
        for n in range(ENTRIES):
            with context.transaction() as db:
                audit_log.append(db, "user:alice", "session.open", session=f"s{n}", reason=f"INC-{n} ünïcode")
                if (n + 1) % CHECKPOINT_EVERY == 0:
                    audit_log.checkpoint(db, context.signing_key)
    finally:
        context.close()
    return root / "state"


@pytest.fixture
def state(pristine: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the pristine state for one test to tamper with."""
    copy = tmp_path / "state"
    copy.mkdir(mode=0o700)
    for item in pristine.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
            (copy / item.name).chmod(item.stat().st_mode & 0o777)
    yield copy


def _verify(state: Path, *extra: str) -> tuple[int, str]:
    result = keyhole("audit", "verify", "--data", str(state), *extra, config=state.parent / "config")
    assert "Traceback" not in result.stderr
    return result.returncode, (result.stdout + result.stderr).strip()


def _sql(state: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(state / "keyhole.db") as db:
        db.execute(statement, params)


def _checkpoint_file(state: Path, tmp_path: Path) -> Path:
    with sqlite3.connect(state / "keyhole.db") as db:
        note = db.execute("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1").fetchone()[0]
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(note)
    return kept


def test_an_untouched_log_verifies_with_and_without_a_kept_checkpoint(state: Path, tmp_path: Path) -> None:
    code, out = _verify(state)
    assert (
        code == 0 and out == f"audit log verified: {ENTRIES} entries, {ENTRIES // CHECKPOINT_EVERY} signed checkpoints"
    )
    code, out = _verify(state, "--checkpoint", str(_checkpoint_file(state, tmp_path)))
    assert code == 0 and f"consistent with the checkpoint you kept (size {ENTRIES})" in out


def test_a_changed_entry_is_named(state: Path) -> None:
    _sql(state, "UPDATE audit_entries SET body = replace(body, 'INC-13', 'INC-99') WHERE seq = 13")
    code, out = _verify(state)
    assert code == 1 and out.count("\n") == 0 and "entry 13 was changed" in out


def test_a_changed_entry_with_its_leaf_rewritten_breaks_the_signed_checkpoint(state: Path) -> None:
    with sqlite3.connect(state / "keyhole.db") as db:
        (body,) = db.execute("SELECT body FROM audit_entries WHERE seq = 13").fetchone()
        forged = bytes(body).replace(b"INC-13", b"INC-99")
        db.execute("UPDATE audit_entries SET body = ? WHERE seq = 13", (forged,))
        db.execute("UPDATE audit_nodes SET hash = ? WHERE level = 0 AND idx = 13", (leaf_hash(forged),))
    code, out = _verify(state)
    assert (
        code == 1
        and "does not match its signed checkpoint (size 16)" in out
        and "first entry that may be bad is 8" in out
    )


def test_a_deleted_entry_is_named(state: Path) -> None:
    _sql(state, "DELETE FROM audit_entries WHERE seq = 21")
    code, out = _verify(state)
    assert code == 1 and "entry 21 is missing" in out


def test_reordered_entries_are_named(state: Path) -> None:
    with sqlite3.connect(state / "keyhole.db") as db:
        rows = dict(db.execute("SELECT seq, body FROM audit_entries WHERE seq IN (5, 6)").fetchall())
        db.execute("UPDATE audit_entries SET body = ? WHERE seq = 5", (rows[6],))
        db.execute("UPDATE audit_entries SET body = ? WHERE seq = 6", (rows[5],))
    code, out = _verify(state)
    assert code == 1 and "entry 5 does not hold its own position" in out


def test_an_inserted_entry_is_named(state: Path) -> None:
    with sqlite3.connect(state / "keyhole.db") as db:  # make room at 30 by moving every later entry up one
        for seq in range(ENTRIES - 1, 29, -1):
            db.execute("UPDATE audit_entries SET seq = ? WHERE seq = ?", (seq + 1, seq))
        forged = audit_log.entry_body(30, 0.0, "user:mallory", "session.open", {})
        db.execute(
            "INSERT INTO audit_entries (seq, at, actor, action, body) VALUES (30, 0, 'user:mallory', 'x', ?)",
            (forged,),
        )
    code, out = _verify(state)
    assert code == 1 and "entry 30" in out


def test_a_log_cut_short_behind_a_kept_checkpoint_is_caught(state: Path, tmp_path: Path) -> None:
    kept = _checkpoint_file(state, tmp_path)
    _sql(state, "DELETE FROM audit_entries WHERE seq >= 30")
    _sql(state, "DELETE FROM audit_nodes WHERE idx * (1 << level) >= 30")
    _sql(state, "DELETE FROM audit_checkpoints WHERE size > 30")
    assert _verify(state)[0] == 0  # consistent in itself: only the kept checkpoint can tell
    code, out = _verify(state, "--checkpoint", str(kept))
    assert code == 1 and f"the log has 30 entries but the checkpoint you kept covers {ENTRIES}" in out


def test_a_rewritten_checkpoint_is_caught(state: Path) -> None:
    with sqlite3.connect(state / "keyhole.db") as db:
        (note,) = db.execute("SELECT note FROM audit_checkpoints WHERE size = 24").fetchone()
        db.execute("UPDATE audit_checkpoints SET note = ? WHERE size = 24", (note.replace("\n24\n", "\n23\n"),))
    code, out = _verify(state)
    assert code == 1 and "checkpoint 24" in out


def test_bad_input_is_one_line(state: Path, tmp_path: Path) -> None:
    code, out = _verify(state, "--checkpoint", str(tmp_path / "nothing-here"))
    assert code != 0 and out.count("\n") == 0 and "cannot read the checkpoint" in out
    junk = tmp_path / "junk"
    junk.write_text("not a note\n")
    code, out = _verify(state, "--checkpoint", str(junk))
    assert code == 1 and out.count("\n") == 0 and "not a checkpoint" in out
    code, out = _verify(tmp_path / "no-state")
    assert code == 1 and "keyhole gateway init" in out


def _actions(data: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{data / 'keyhole.db'}?mode=ro", uri=True) as db:
        return [(actor, action) for actor, action in db.execute("SELECT actor, action FROM audit_entries ORDER BY seq")]


def test_a_running_gateway_records_each_action_first_and_its_log_verifies(
    gateway: RunningGateway, config: Path, tmp_path: Path
) -> None:
    assert cli_login(gateway.url, gateway.ca, config, password="wrong-password-here").returncode == 1
    assert cli_login(gateway.url, gateway.ca, config).returncode == 0
    added = keyhole("user", "add", "dana", "--password-stdin", config=config, stdin="dana-password-long\n")
    assert added.returncode == 0, added.stderr
    assert keyhole("agent", "enroll-token", "--service", "orders", config=config).returncode == 0
    opened = keyhole("session", "open", "--service", "orders", "--reason", "INC-7 audit", config=config)
    assert opened.returncode == 0, opened.stderr
    snap = keyhole("snap", "orders.py:12", config=config)  # no agent connected: set, and reported as such
    assert "installed" not in snap.stdout
    assert keyhole("session", "close", config=config).returncode == 0
    assert keyhole("logout", config=config).returncode == 0

    actions = _actions(gateway.data)
    expected = [
        ("anonymous", "login.failed"),
        ("user:admin", "login"),
        ("user:admin", "user.add"),
        ("user:admin", "enroll_token.create"),
        ("user:admin", "session.open"),
        ("user:admin", "probe.set"),
        ("user:admin", "session.close"),
        ("user:admin", "logout"),
    ]
    it = iter(actions)
    assert all(step in it for step in expected), actions  # in this order (the sweeper may add others)
    with sqlite3.connect(f"file:{gateway.data / 'keyhole.db'}?mode=ro", uri=True) as db:
        bodies = b"".join(bytes(b) for (b,) in db.execute("SELECT body FROM audit_entries"))
    assert b"dana-password-long" not in bodies and b"wrong-password-here" not in bodies

    time.sleep(1.5)  # the gateway signs a checkpoint within a second of the log growing
    code, out = _verify(gateway.data)
    assert code == 0 and f"{len(_actions(gateway.data))} entries" in out, out


def test_admins_read_the_log_take_checkpoints_and_prove_entries_with_the_api(
    gateway: RunningGateway, config: Path, tmp_path: Path
) -> None:
    assert cli_login(gateway.url, gateway.ca, config).returncode == 0
    first = keyhole("audit", "checkpoint", config=config)
    assert first.returncode == 0 and first.stdout.count("\n") == 5  # origin, size, root, blank, signature
    kept = tmp_path / "first.checkpoint"
    kept.write_text(first.stdout)
    assert keyhole("session", "open", "--service", "orders", "--reason", "INC-8", config=config).returncode == 0
    assert keyhole("session", "close", config=config).returncode == 0
    second = keyhole("audit", "checkpoint", config=config).stdout

    logged = [json.loads(line) for line in keyhole("audit", "log", "--json", config=config).stdout.splitlines()]
    assert [e["seq"] for e in logged] == list(range(len(logged)))
    assert {"session.open", "session.close", "audit.checkpoint"} <= {e["action"] for e in logged}
    readable = keyhole("audit", "log", "--actor", "user:admin", "--since", "1h", config=config).stdout
    assert "session.open" in readable and "anonymous" not in readable
    exported = keyhole("audit", "export", "--format", "jsonl", config=config).stdout.splitlines()
    assert len(exported) >= len(logged) and all("body" in json.loads(line) for line in exported)

    key = load_signing_key(StatePaths(gateway.data).signing_key).public_key()
    one, two = open_note(kept.read_text(), key), open_note(second, key)
    token = json.loads((config / "credentials.json").read_text())["access_token"]
    with gateway.client() as client:
        headers = {"Authorization": f"Bearer {token}"}
        query = {"first": one.size, "second": two.size}
        answer = client.get("/v1/audit/proof/consistency", params=query, headers=headers).json()
        verify_consistency(one.size, two.size, [base64.b64decode(h) for h in answer["proof"]], one.root, two.root)
        entry = next(e for e in exported if json.loads(e)["action"] == "session.open")
        seq, body = json.loads(entry)["seq"], base64.b64decode(json.loads(entry)["body"])
        answer = client.get("/v1/audit/proof/inclusion", params={"index": seq, "size": two.size}, headers=headers)
        proof = [base64.b64decode(h) for h in answer.json()["proof"]]
        verify_inclusion(seq, two.size, leaf_hash(body), proof, two.root)
        too_far = client.get("/v1/audit/proof/inclusion", params={"index": 0, "size": 10**9}, headers=headers)
        assert too_far.status_code == 400 and "fewer than" in too_far.json()["error"]
    assert _verify(gateway.data, "--checkpoint", str(kept))[0] == 0

    password = "erin-password-long"
    assert keyhole("user", "add", "erin", "--password-stdin", config=config, stdin=password + "\n").returncode == 0
    engineer = tmp_path / "erin"
    assert cli_login(gateway.url, gateway.ca, engineer, user="erin", password=password).returncode == 0
    refused = keyhole("audit", "log", config=engineer)
    assert refused.returncode == 1 and "not an admin" in refused.stderr and refused.stderr.count("\n") == 1
    refused = keyhole("audit", "verify", config=engineer)
    assert refused.returncode == 1 and "not an admin" in refused.stderr and refused.stderr.count("\n") == 1


def test_an_entry_holds_any_details_a_request_can_bring() -> None:
    body = audit_log.entry_body(
        3, 0.0, "user:a", "probe.set", {"line": 2**62, "rate": float("inf"), "labels": {1: (2,)}}
    )
    assert json.loads(body)["details"] == {"labels": {"1": [2]}, "line": str(2**62), "rate": "inf"}
    assert body.endswith(b'"seq":3}')  # what verify relies on: canonical JSON puts the position last


def test_a_rewritten_log_fails_against_a_kept_checkpoint_of_the_same_size(state: Path, tmp_path: Path) -> None:
    kept = _checkpoint_file(state, tmp_path)  # size 40, also stored
    _sql(state, "DELETE FROM audit_entries WHERE seq >= 1")
    _sql(state, "DELETE FROM audit_nodes WHERE idx * (1 << level) + (1 << level) > 1")
    _sql(state, "DELETE FROM audit_checkpoints")
    context = GatewayContext.open(StatePaths(state))
    try:
        with context.audited() as db:  # forged entries, and the gateway signs what it finds
            for n in range(1, ENTRIES):
                audit_log.append(db, "user:mallory", "session.open", session=f"forged{n}")
            audit_log.checkpoint(db, context.signing_key)
    finally:
        context.close()
    assert _verify(state)[0] == 0  # consistent in itself: only the kept checkpoint can tell
    code, out = _verify(state, "--checkpoint", str(kept))
    assert code == 1 and "differs from the one you kept" in out


def test_the_gateway_will_not_sign_a_log_that_no_longer_extends_its_last_checkpoint(state: Path) -> None:
    _sql(state, "DELETE FROM audit_entries WHERE seq >= 30")
    _sql(state, "DELETE FROM audit_nodes WHERE idx * (1 << level) + (1 << level) > 30")
    context = GatewayContext.open(StatePaths(state))
    try:
        with context.audited() as db, pytest.raises(audit_log.LogRewritten, match="size 40"):
            audit_log.append(db, "user:mallory", "session.open")
            audit_log.checkpoint(db, context.signing_key)
    finally:
        context.close()


def test_changed_columns_are_caught_though_the_text_is_intact(state: Path) -> None:
    _sql(state, "UPDATE audit_entries SET actor = 'user:eve' WHERE seq = 3")
    code, out = _verify(state)
    assert code == 1 and "entry 3's action, actor or time columns were changed" in out


def test_text_a_request_can_carry_is_recorded_never_refused() -> None:
    body = audit_log.entry_body(1, 0.0, "user:a", "x", {"name": "\ud800 lone", "\udfff": 1})
    assert json.loads(body)["details"] == {"name": "\\ud800 lone", "\\udfff": 1}


def test_a_login_with_a_lone_surrogate_gets_a_clear_refusal_not_an_error(gateway: RunningGateway) -> None:
    with gateway.client() as client:
        raw = b'{"user": "\\ud800admin", "password": "not-the-password"}'
        answer = client.post("/v1/auth/login", content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code in (401, 422) and "\n" not in answer.json()["error"]


def test_verify_through_the_api_holds_the_served_log_to_a_kept_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "state"
    assert init_state(data, tmp_path / "init").returncode == 0
    running = start_gateway(data)
    config = tmp_path / "config"
    try:
        assert cli_login(running.url, running.ca, config).returncode == 0
        for n in range(3):
            assert (
                keyhole("session", "open", "--service", "orders", "--reason", f"INC-{n}", config=config).returncode == 0
            )
        kept = tmp_path / "kept.note"
        kept.write_text(keyhole("audit", "checkpoint", config=config).stdout)
        assert keyhole("session", "close", config=config).returncode == 0

        verified = keyhole("audit", "verify", "--checkpoint", str(kept), config=config)
        assert verified.returncode == 0, verified.stderr
        assert (
            "verified through the API" in verified.stdout
            and "consistent with the checkpoint you kept" in verified.stdout
        )

        # Someone with the database rewrites a session's reason, leaving the stored tree alone: the gateway
        # still signs (its stored hashes extend its checkpoints), but the entries it serves no longer make
        # the tree the kept checkpoint holds.
        with sqlite3.connect(data / "keyhole.db") as db:
            seq, body = db.execute(
                "SELECT seq, body FROM audit_entries WHERE action = 'session.open' LIMIT 1"
            ).fetchone()
            db.execute("UPDATE audit_entries SET body = ? WHERE seq = ?", (body.replace(b"INC-0", b"INC-9"), seq))
        refused = keyhole("audit", "verify", "--checkpoint", str(kept), config=config)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert "does NOT verify" in refused.stderr and "the checkpoint you kept" in refused.stderr
    finally:
        running.stop()
