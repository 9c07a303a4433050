"""`verify --ids` over httpx's MockTransport: what a day that cannot be read completely, an
event without a usable createdAt, and a long list of ids come to."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest
from tfy_audit._engine import verify_ids
from tfy_audit._engine.verify_ids import summarize, verify_ids_range
from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit.simulator import Simulator, SimulatorConfig, generate_history, make_event
from tfy_audit.simulator.timestamps import parse_ts

END = datetime(2026, 8, 1, tzinfo=UTC)
START = END - timedelta(days=4)


def client_of(sim: Simulator, edit: Any = None) -> AuditLogClient:
    inner = sim.transport()

    def handle(request: httpx.Request) -> httpx.Response:
        response = inner.handle_request(request)
        if edit is None or request.url.params.get("metric") != "list":
            return response
        body = json.loads(response.read())
        edit(body, request)
        return httpx.Response(response.status_code, json=body)

    return AuditLogClient(
        "http://control-plane.test",
        sim.config.api_key,
        transport=httpx.MockTransport(handle),
        allow_insecure_http=True,  # a mock host: nothing leaves the process
    )


def holding(monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]) -> None:
    """The warehouse holds `events` (as the reader returns them: id and created_at)."""
    table = pa.table(
        {
            "id": [e["id"] for e in events],
            "created_at": pa.array(
                [parse_ts(e["createdAt"]) for e in events], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    monkeypatch.setattr(verify_ids, "read_warehouse_events", lambda *a, **k: table)


def check(client: AuditLogClient) -> verify_ids.IdsResult:
    with client:
        return verify_ids_range(
            client, None, AuditLogFilters(), START, END, concurrency=4, max_offset=10_000
        )


def test_days_the_service_will_not_serve_whole_are_unread_and_claim_nothing_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event counted but never listed leaves its window short after every read: the days of
    that window are unread (verify fails), and an id only the warehouse holds there is not
    claimed gone, as it is once the window reads whole."""
    events = generate_history(400, days=4, end=END, seed=5)
    sim = Simulator(SimulatorConfig(), events)
    ids = sorted(e["id"] for e in events)
    hidden, lost = ids[0], ids[-1]
    extra = make_event(random.Random("extra"), END - timedelta(days=1))
    holding(monkeypatch, [e for e in events if e["id"] != lost] + [extra])

    def hide(body: dict[str, Any], request: httpx.Request) -> None:  # counted, never listed
        body["data"] = [e for e in body["data"] if e["id"] != hidden]

    result = check(client_of(sim, hide))
    # one planned window holds all four days (400 events): all of them are unread
    days = sorted({parse_ts(e["createdAt"]).date() for e in [*events, extra]})
    assert [d.day for d in result.days if not d.complete] == days
    assert [d.day for d in result.failing] == days
    assert [i for d in result.days for i in d.missing] == [lost]
    assert [i for d in result.days for i in d.gone_from_service] == []

    whole = check(client_of(sim))
    assert all(d.complete for d in whole.days)
    assert [i for d in whole.days for i in d.missing] == [lost]
    assert [i for d in whole.days for i in d.gone_from_service] == [extra["id"]]
    assert [d.day for d in whole.failing] == [parse_ts(sim_event(sim, lost)["createdAt"]).date()]


def sim_event(sim: Simulator, event_id: str) -> dict[str, Any]:
    return next(e for e in sim.events() if e["id"] == event_id)


def test_events_without_a_usable_created_at_are_named_not_placed_on_a_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = generate_history(200, days=4, end=END, seed=6)
    odd = make_event(random.Random("odd"), END - timedelta(days=1))
    sim = Simulator(SimulatorConfig(), [*events, odd])
    holding(monkeypatch, events)

    def garble(body: dict[str, Any], request: httpx.Request) -> None:
        for e in body["data"]:
            if e["id"] == odd["id"]:
                e["createdAt"] = "yesterday-ish"

    result = check(client_of(sim, garble))
    assert result.undated == [odd["id"]]
    assert result.failing == [] and result.differing == []
    assert sum(d.service for d in result.days) == len(events)


def test_the_service_ids_equal_to_the_warehouse_match_with_one_page_per_1000_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = generate_history(2_500, days=4, end=END, seed=7)
    sim = Simulator(SimulatorConfig(), events)
    holding(monkeypatch, events)
    result = check(client_of(sim))
    assert result.differing == []
    assert sum(d.service for d in result.days) == sum(d.warehouse for d in result.days) == 2_500
    # one page per 1,000 events of each planned window, and the counts that plan them
    assert result.pages == 3
    assert result.requests == sim.stats.total


def test_a_long_list_is_one_line_with_the_first_few_and_a_count() -> None:
    ids = [f"id{i}" for i in range(2_345)]
    assert summarize(ids) == "id0, id1, id2, id3, id4 (+2,340 more; --json lists them all)"
    assert summarize(ids[:5]) == "id0, id1, id2, id3, id4"
    assert summarize([]) == ""


def test_an_id_two_events_share_is_held_once_and_not_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service serves two events with one id on two days; the warehouse keeps one row per
    id. The other day's copy is listed as held on another day, not missing (a re-sync could
    never settle it), and verify does not fail."""
    events = generate_history(300, days=4, end=END, seed=8)
    sim = Simulator(SimulatorConfig(), events)
    holding(monkeypatch, events)
    original = min(events, key=lambda e: e["createdAt"])
    twin_at = END - timedelta(hours=5)
    twin = {**original, "createdAt": twin_at.isoformat().replace("+00:00", "Z")}
    served: list[bool] = []

    def add_twin(body: dict[str, Any], request: httpx.Request) -> None:
        lo, hi = (parse_ts(request.url.params[k]) for k in ("start", "end"))
        if lo <= twin_at <= hi and int(request.url.params["offset"]) == 0:
            body["data"].append(twin)
            served.append(True)

    result = check(client_of(sim, add_twin))
    assert served
    assert result.failing == [] and result.missing == 0
    (day,) = result.differing
    assert (day.day, day.elsewhere) == (
        twin_at.date(),
        [(original["id"], parse_ts(original["createdAt"]).date())],
    )


def test_an_event_whose_created_at_moved_is_missing_on_its_new_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service moved an event to another day: missing there (a re-sync merges its row
    onto the new day) and gone from the old one."""
    events = generate_history(300, days=4, end=END, seed=9)
    holding(monkeypatch, events)
    moved = min(events, key=lambda e: e["createdAt"])
    new_at = END - timedelta(hours=5)
    sim = Simulator(SimulatorConfig(), events)
    sim.add_events([{**moved, "createdAt": new_at.isoformat().replace("+00:00", "Z")}])
    result = check(client_of(sim))
    old_day = parse_ts(moved["createdAt"]).date()
    assert [(d.day, d.missing, d.gone_from_service, d.elsewhere) for d in result.differing] == [
        (old_day, [], [moved["id"]], []),
        (new_at.date(), [moved["id"]], [], []),
    ]


def test_an_empty_range_compares_nothing_and_asks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--end` at or before where verify starts (the first sync's start): no day, no request."""
    sim = Simulator(SimulatorConfig(), generate_history(50, days=2, end=END, seed=4))
    holding(monkeypatch, [])
    with client_of(sim) as client:
        result = verify_ids_range(
            client, None, AuditLogFilters(), END, END, concurrency=2, max_offset=10_000
        )
    assert (result.days, result.requests) == ([], 0)
    assert sim.stats.total == 0
