"""`keyhole events` for the current session: read from the gateway, page by page, and with
--follow keep waiting for new ones until the session ends."""

from __future__ import annotations

from urllib.parse import urlencode

from keyhole.cli.engineer import current_session
from keyhole.cli.events_view import print_events
from keyhole.cli.gateway_client import api, fresh_login

FOLLOW_WAIT = 20.0


def show_session_events(*, as_json: bool, probe: str | None, follow: bool) -> None:
    session = current_session.load(fresh_login().gateway)
    after = 0
    while True:
        query = {"after": after, **({"probe": probe} if probe else {}), "wait": FOLLOW_WAIT if follow else 0}
        page = api("GET", f"/v1/sessions/{session.id}/events?{urlencode(query)}", timeout=FOLLOW_WAIT + 15)
        print_events(page["events"], as_json=as_json)
        after = page["last"]
        if page["ended"] and not page["events"]:
            return
        if not follow and not page["events"]:
            return
