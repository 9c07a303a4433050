"""The simulated audit-logs endpoint, driven through `Simulator.transport()` with httpx."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tfy_audit.simulator import (
    FAULTS,
    Simulator,
    SimulatorConfig,
    dense_burst,
    format_ts,
    generate_history,
    make_event,
    odd_events,
    parse_ts,
)
from tfy_audit.simulator.config import Order

PATH = "/api/svc/v1/audit-logs"
AUTH = {"Authorization": "Bearer tfy-sim-key"}
END = datetime(2026, 8, 1, 12, tzinfo=UTC)
BURST_AT = datetime(2026, 7, 20, 9, 15, 30, 250_000, tzinfo=UTC)
Event = dict[str, Any]


@pytest.fixture(scope="module")
def corpus() -> list[Event]:
    return (
        generate_history(3_000, days=30, end=END)
        + dense_burst(BURST_AT, 40)
        + odd_events(END - timedelta(days=5))
    )


@pytest.fixture
def sim(corpus: list[Event]) -> Simulator:
    return Simulator(events=corpus)


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test", headers=AUTH) as c:
        yield c


def get(client: httpx.Client, **params: Any) -> httpx.Response:
    return client.get(PATH, params=params)


def fetch_ids(client: httpx.Client, *, page_size: int = 97, **params: Any) -> list[str]:
    """Page through everything matching `params`; returns ids in served order."""
    ids: list[str] = []
    offset = 0
    while True:
        resp = get(client, metric="list", limit=page_size, offset=offset, **params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["pagination"]["offset"] == offset
        assert body["pagination"]["limit"] == page_size
        ids += [e["id"] for e in body["data"]]
        offset += page_size
        if offset >= body["pagination"]["total"]:
            return ids


def count(client: httpx.Client, **params: Any) -> int:
    resp = get(client, metric="count", **params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["data"] == []
    assert set(body["pagination"]) == {"total"}
    total: int = body["pagination"]["total"]
    return total


def ids_where(sim: Simulator, pred: Callable[[Event], bool]) -> set[str]:
    return {e["id"] for e in sim.events() if pred(e)}


def created(event: Event) -> datetime:
    return parse_ts(event["createdAt"])


# -- auth, routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGZ5OnNpbQ=="}],
)
def test_requests_without_the_key_get_401(sim: Simulator, headers: dict[str, str]) -> None:
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test") as c:
        resp = c.get(PATH, params={"metric": "count"}, headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"statusCode": 401, "message": "Unauthorized"}


def test_api_key_is_configurable(sim: Simulator, client: httpx.Client) -> None:
    sim.config.api_key = "other"
    assert get(client, metric="count").status_code == 401
    resp = client.get(PATH, params={"metric": "count"}, headers={"Authorization": "bearer other"})
    assert resp.status_code == 200


def test_other_paths_are_404_html_even_without_auth(sim: Simulator) -> None:
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test") as c:
        for path in ("/", "/api/svc/v1/audit-log", "/api/svc/v2/audit-logs"):
            resp = c.get(path, params={"metric": "count"})
            assert resp.status_code == 404
            assert resp.headers["content-type"].startswith("text/html")
            assert b"<html>" in resp.content


def test_other_methods_are_405(client: httpx.Client) -> None:
    resp = client.post(PATH, params={"metric": "count"})
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET"


def test_every_response_has_a_request_id(client: httpx.Client) -> None:
    first = get(client, metric="count").headers["x-request-id"]
    assert first != get(client, metric="count").headers["x-request-id"]


# -- filters -----------------------------------------------------------------------------------


def _sample(corpus: list[Event], key: str, index: int = 1234) -> str:
    value: str = corpus[index][key]
    return value


FILTER_CASES: list[tuple[str, Callable[[list[Event]], str], Callable[[Event, str], bool]]] = [
    ("action", lambda c: "CREATE_DEPLOYMENT", lambda e, v: e["action"] == v),
    ("resourceId", lambda c: _sample(c, "resourceId"), lambda e, v: e["resourceId"] == v),
    ("resourceType", lambda c: "secret", lambda e, v: e["resourceType"] == v),
    ("resourceName", lambda c: "payments-api", lambda e, v: e["resourceName"] == v),
    ("resourceFqn", lambda c: _sample(c, "resourceFqn"), lambda e, v: e["resourceFqn"] == v),
    ("clusterId", lambda c: "aws-euwe1-prod", lambda e, v: e["clusterId"] == v),
    ("workspaceId", lambda c: _sample(c, "workspaceId", 7), lambda e, v: e["workspaceId"] == v),
    (
        "subjectSlug",
        lambda c: "alice@acme.com,ci-deployer,nobody",
        lambda e, v: e["subject"].get("subjectSlug") in v.split(","),
    ),
    (
        "search",
        lambda c: "PayMents",
        lambda e, v: any(
            v.lower() in (e.get(k) or "").lower()
            for k in ("message", "action", "resourceName", "resourceFqn")
        ),
    ),
    ("search", lambda c: "支付", lambda e, v: any(v in (e.get(k) or "") for k in e)),
]


@pytest.mark.parametrize(
    ("param", "value_of", "pred"),
    FILTER_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(FILTER_CASES)],
)
def test_each_filter_returns_exactly_the_matching_ids(
    sim: Simulator,
    client: httpx.Client,
    corpus: list[Event],
    param: str,
    value_of: Callable[[list[Event]], str],
    pred: Callable[[Event, str], bool],
) -> None:
    value = value_of(corpus)
    expected = ids_where(sim, lambda e: pred(e, value))
    assert expected, "the case must select something"
    served = fetch_ids(client, page_size=500, **{param: value})
    assert len(served) == len(set(served))
    assert set(served) == expected
    assert count(client, **{param: value}) == len(expected)


def test_filters_combine_with_a_time_range(sim: Simulator, client: httpx.Client) -> None:
    start, end = END - timedelta(days=20), END - timedelta(days=3)
    expected = ids_where(
        sim,
        lambda e: (
            e["clusterId"] == "aws-use1-prod"
            and e["resourceType"] == "application"
            and start <= created(e) <= end
        ),
    )
    params: dict[str, Any] = {
        "clusterId": "aws-use1-prod",
        "resourceType": "application",
        "start": format_ts(start),
        "end": format_ts(end),
    }
    assert set(fetch_ids(client, **params)) == expected
    assert count(client, **params) == len(expected)


def test_empty_filters_are_ignored(client: httpx.Client, sim: Simulator) -> None:
    assert count(client, action="", search="", start="") == len(sim.ids())


def test_list_total_counts_all_matches_not_the_page(sim: Simulator, client: httpx.Client) -> None:
    body = get(client, metric="list", limit=5, action="TRIGGER_JOB").json()
    assert len(body["data"]) == 5
    assert body["pagination"]["total"] == count(client, action="TRIGGER_JOB")
    assert body["pagination"]["total"] == len(
        ids_where(sim, lambda e: e["action"] == "TRIGGER_JOB")
    )


def test_defaults_are_limit_100_offset_0(client: httpx.Client) -> None:
    body = get(client, metric="list").json()
    assert len(body["data"]) == 100
    assert body["pagination"]["offset"] == 0
    assert body["pagination"]["limit"] == 100


def test_served_events_are_the_stored_events(sim: Simulator, client: httpx.Client) -> None:
    by_id = {e["id"]: e for e in sim.events()}
    for event in get(client, metric="list", limit=1000).json()["data"]:
        assert event == by_id[event["id"]]


# -- order and paging ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["desc", "asc", "shuffled"])
def test_paging_covers_every_id_once_in_each_order(
    sim: Simulator, client: httpx.Client, order: Order
) -> None:
    sim.config.order = order
    served = fetch_ids(client, page_size=97)
    assert len(served) == len(set(served)) == len(sim.ids())
    assert set(served) == sim.ids()
    assert fetch_ids(client, page_size=97) == served  # stable while nothing changes
    filtered = fetch_ids(client, page_size=13, resourceType="secret")
    assert set(filtered) == ids_where(sim, lambda e: e["resourceType"] == "secret")
    assert len(filtered) == len(set(filtered))


def test_orders_differ_as_documented(sim: Simulator, client: httpx.Client) -> None:
    by_id = {e["id"]: e for e in sim.events()}
    orders: dict[str, list[str]] = {}
    order: Order
    for order in ("asc", "desc", "shuffled"):
        sim.config.order = order
        orders[order] = fetch_ids(client, page_size=1000)
    times = [created(by_id[i]) for i in orders["asc"]]
    assert times == sorted(times)
    assert orders["desc"] == orders["asc"][::-1]
    shuffled_times = [created(by_id[i]) for i in orders["shuffled"]]
    assert shuffled_times != sorted(shuffled_times)
    assert shuffled_times != sorted(shuffled_times, reverse=True)


# -- time bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize("start_inclusive", [True, False])
@pytest.mark.parametrize("end_inclusive", [True, False])
def test_bounds_inclusivity_is_configurable(
    sim: Simulator, client: httpx.Client, start_inclusive: bool, end_inclusive: bool
) -> None:
    sim.config.start_inclusive = start_inclusive
    sim.config.end_inclusive = end_inclusive
    start, end = BURST_AT, BURST_AT + timedelta(hours=6)
    sim.add_events(dense_burst(end, 3, seed=9))

    def inside(e: Event) -> bool:
        t = created(e)
        after = t >= start if start_inclusive else t > start
        before = t <= end if end_inclusive else t < end
        return after and before

    expected = ids_where(sim, inside)
    params: dict[str, Any] = {"start": format_ts(start), "end": format_ts(end)}
    assert set(fetch_ids(client, **params)) == expected
    assert count(client, **params) == len(expected)
    burst = {e["id"] for e in dense_burst(BURST_AT, 40)}
    assert (burst <= expected) is start_inclusive
    assert not (burst & expected) or start_inclusive


def test_bounds_compare_at_microsecond_precision(sim: Simulator, client: httpx.Client) -> None:
    burst = {e["id"] for e in dense_burst(BURST_AT, 40)}
    at = "2026-07-20T09:15:30.250000Z"
    just_after = "2026-07-20T09:15:30.250001Z"
    assert burst <= set(fetch_ids(client, start=at, end=at))
    assert not burst & set(fetch_ids(client, start=just_after, end="2026-07-20T10:00:00Z"))
    assert not burst & set(
        fetch_ids(client, start="2026-07-20T09:00:00Z", end="2026-07-20T09:15:30.249999Z")
    )


def test_bounds_accept_offsets(client: httpx.Client) -> None:
    utc = count(client, start="2026-07-20T09:15:30.250Z", end="2026-07-20T12:00:00Z")
    ist = count(client, start="2026-07-20T14:45:30.250+05:30", end="2026-07-20T17:30:00+05:30")
    assert utc == ist > 0


def test_start_after_end_is_empty_not_an_error(client: httpx.Client) -> None:
    assert count(client, start="2026-07-25T00:00:00Z", end="2026-07-20T00:00:00Z") == 0


def test_count_with_only_bounds_does_not_scan(sim: Simulator, client: httpx.Client) -> None:
    # A filter-free count is two bisects, and so is a desc/asc page.
    count(client, start="2026-07-10T00:00:00Z", end="2026-07-20T00:00:00Z")
    get(client, metric="list", start="2026-07-10T00:00:00Z", offset=500)
    assert sim.store.scans == 0


@pytest.mark.parametrize("order", ["desc", "shuffled"])
def test_paging_a_window_scans_it_once(sim: Simulator, client: httpx.Client, order: Order) -> None:
    sim.config.order = order
    window = {"start": "2026-07-05T00:00:00Z", "end": "2026-07-25T00:00:00Z"}
    total = count(client, clusterId="aws-use1-prod", **window)
    fetch_ids(client, page_size=50, clusterId="aws-use1-prod", **window)
    assert total > 250  # several pages
    assert sim.store.scans == (1 if order == "desc" else 2)  # match, then shuffle
    sim.add_events(dense_burst(BURST_AT, 1, seed=77))  # a new store version rescans
    count(client, clusterId="aws-use1-prod", **window)
    assert sim.store.scans == (2 if order == "desc" else 3)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"metric": "list", "limit": 0}, "limit must not be less than 1"),
        ({"metric": "list", "limit": 1001}, "limit must not be greater than 1000"),
        ({"metric": "list", "limit": "ten"}, "limit must be an integer number"),
        ({"metric": "list", "limit": "1.5"}, "limit must be an integer number"),
        ({"metric": "list", "limit": ""}, "limit must be an integer number"),
        ({"metric": "list", "offset": -1}, "offset must not be less than 0"),
        ({"metric": "list", "offset": "x"}, "offset must be an integer number"),
        ({"metric": "list", "offset": "9" * 5000}, "offset must not be greater than"),
        ({}, "metric must be one of the following values: list, count"),
        ({"metric": "sum"}, "metric must be one of the following values: list, count"),
        ({"metric": "count", "start": "yesterday"}, "start must be a valid ISO 8601 date string"),
        ({"metric": "count", "end": "2026-08-01"}, "end must be a valid ISO 8601 date string"),
        ({"metric": "count", "end": "2026-08-01T00:00:00"}, "end must be a valid ISO 8601"),
        ({"metric": ["list", "count"]}, "metric must be a single value"),
    ],
)
def test_invalid_queries_get_nestjs_400(
    client: httpx.Client, params: dict[str, Any], fragment: str
) -> None:
    resp = client.get(PATH, params=params)
    assert resp.status_code == 400
    body = resp.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert isinstance(body["message"], list)
    assert any(fragment in m for m in body["message"]), body


def test_all_problems_are_reported_at_once(client: httpx.Client) -> None:
    body = get(client, metric="nope", limit=0, start="x").json()
    assert len(body["message"]) == 3


@pytest.mark.parametrize("limit", [1, 1000])
def test_limit_bounds_are_inclusive(client: httpx.Client, limit: int) -> None:
    assert len(get(client, metric="list", limit=limit).json()["data"]) == limit


# -- deep offsets --------------------------------------------------------------------------------


def test_deep_offsets_are_refused(sim: Simulator, client: httpx.Client) -> None:
    sim.config.max_offset = 2_000
    assert get(client, metric="list", limit=1000, offset=1000).status_code == 200
    resp = get(client, metric="list", limit=1000, offset=1001)
    assert resp.status_code == 400
    assert resp.json() == {
        "statusCode": 400,
        "message": "Result window is too large: offset + limit must be <= 2000",
        "error": "Bad Request",
    }
    assert get(client, metric="count", offset=999_999).status_code == 200
    sim.config.max_offset = None
    body = get(client, metric="list", limit=1000, offset=3000).json()
    assert len(body["data"]) == len(sim.ids()) - 3000


def test_default_max_offset_is_10000(client: httpx.Client) -> None:
    assert get(client, metric="list", limit=1000, offset=9000).status_code == 200
    resp = get(client, metric="list", limit=100, offset=9901)
    assert resp.status_code == 400
    assert "<= 10000" in resp.json()["message"]


# -- faults --------------------------------------------------------------------------------------


def test_injected_faults_apply_in_order(sim: Simulator, client: httpx.Client) -> None:
    sim.config.retry_after = "0"
    sim.inject("429", "503", "500", "nonjson", "html200")
    r429 = get(client, metric="count")
    assert r429.status_code == 429
    assert r429.headers["retry-after"] == "0"
    r503 = get(client, metric="count")
    assert r503.status_code == 503
    assert r503.headers["content-type"].startswith("text/html")
    r500 = get(client, metric="count")
    assert r500.status_code == 500
    assert r500.json()["statusCode"] == 500
    nonjson = get(client, metric="list")
    assert nonjson.status_code == 200
    with pytest.raises(ValueError):
        nonjson.json()
    html = get(client, metric="list")
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert get(client, metric="count").status_code == 200
    assert sim.stats.faults == {"429": 1, "503": 1, "500": 1, "nonjson": 1, "html200": 1}
    assert sim.stats.faults_injected == 5


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("reset", httpx.ReadError),
        ("slow", httpx.ReadTimeout),
        ("truncate", httpx.RemoteProtocolError),
    ],
)
def test_wire_faults_raise_transport_errors(
    sim: Simulator, client: httpx.Client, fault: str, error: type[Exception]
) -> None:
    sim.inject(fault)
    with pytest.raises(error):
        get(client, metric="list")
    assert get(client, metric="count").status_code == 200
    assert sim.stats.faults[fault] == 1


def test_unknown_faults_are_rejected(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="known: 429"):
        sim.inject("418")
    assert "truncate" in FAULTS


def test_faults_never_hit_401_or_404(sim: Simulator) -> None:
    sim.config = SimulatorConfig(rate_500=1.0)
    sim.inject("429")
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test") as c:
        assert c.get(PATH, params={"metric": "count"}).status_code == 401
        assert c.get("/elsewhere").status_code == 404
        # The queue waited for the first authenticated audit-logs request.
        assert c.get(PATH, params={"metric": "count"}, headers=AUTH).status_code == 429
        assert c.get(PATH, params={"metric": "count"}, headers=AUTH).status_code == 500


def _statuses(sim: Simulator, n: int) -> list[int | str]:
    out: list[int | str] = []
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test", headers=AUTH) as c:
        for _ in range(n):
            try:
                out.append(c.get(PATH, params={"metric": "count"}).status_code)
            except httpx.TransportError as exc:
                out.append(type(exc).__name__)
    return out


def test_probabilistic_faults_are_seeded(corpus: list[Event]) -> None:
    def config() -> SimulatorConfig:
        return SimulatorConfig(rate_429=0.2, rate_503=0.1, rate_reset=0.1, fault_seed=42)

    first = _statuses(Simulator(config(), corpus[:100]), 300)
    assert first == _statuses(Simulator(config(), corpus[:100]), 300)
    assert 30 < first.count(429) < 90
    assert 10 < first.count(503) < 50
    assert 10 < first.count("ReadError") < 50
    assert first.count(200) > 120


def test_changing_fault_seed_reseeds(sim: Simulator) -> None:
    sim.config.rate_500 = 0.5
    sim.config.fault_seed = 1
    a = _statuses(sim, 50)
    sim.config.fault_seed = 2
    b = _statuses(sim, 50)
    sim.config.fault_seed = 1
    assert _statuses(sim, 50) == a != b


# -- events arriving during a sync --------------------------------------------------------------


def test_insert_every_now(sim: Simulator, client: httpx.Client) -> None:
    sim.config.insert_every = 2
    sim.config.insert_batch = 3
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    total_before = len(sim.ids())
    for _ in range(4):
        get(client, metric="count")
    after = datetime.now(UTC)
    inserted = sim.inserted_ids
    assert len(inserted) == 6
    assert len(sim.ids()) == total_before + 6
    by_id = {e["id"]: e for e in sim.events()}
    for event_id in inserted:
        assert before <= created(by_id[event_id]) <= after


def test_inserted_events_are_visible_to_the_request_that_triggered_them(
    sim: Simulator, client: httpx.Client
) -> None:
    sim.config.insert_every = 1
    sim.config.insert_batch = 2
    total = count(client)
    assert total == len(sim.ids())


def test_insert_late(sim: Simulator, client: httpx.Client) -> None:
    sim.config = SimulatorConfig(
        insert_every=1, insert_batch=20, insert_mode="late", late_seconds=60
    )
    now = datetime.now(UTC)
    get(client, metric="count")
    by_id = {e["id"]: e for e in sim.events()}
    times = [created(by_id[i]) for i in sim.inserted_ids]
    assert len(times) == 20
    assert all(now - timedelta(seconds=61) <= t <= datetime.now(UTC) for t in times)
    assert max(times) - min(times) > timedelta(seconds=1)


def test_insert_past(sim: Simulator, client: httpx.Client, corpus: list[Event]) -> None:
    first = min(created(e) for e in corpus)
    last = max(created(e) for e in corpus)
    sim.config = SimulatorConfig(insert_every=1, insert_batch=20, insert_mode="past")
    get(client, metric="count")
    by_id = {e["id"]: e for e in sim.events()}
    times = [created(by_id[i]) for i in sim.inserted_ids]
    assert len(times) == 20
    assert all(first <= t <= last for t in times)


def test_on_request_hook_sees_authenticated_audit_requests(
    sim: Simulator, client: httpx.Client
) -> None:
    seen: list[dict[str, str]] = []
    extra = [make_event(random.Random(5), END - timedelta(days=1))]

    def hook(s: Simulator, params: dict[str, str]) -> None:
        seen.append(params)
        if len(seen) == 2:
            s.add_events(extra)

    sim.on_request = hook
    total = count(client)
    assert count(client) == total + 1
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test") as anon:
        anon.get(PATH, params={"metric": "count"})
    client.get("/other")
    assert seen == [{"metric": "count"}, {"metric": "count"}]
    assert extra[0]["id"] in sim.ids()


def test_events_added_while_paging_do_not_break_it(sim: Simulator, client: httpx.Client) -> None:
    stop = threading.Event()
    added: list[str] = []

    def writer() -> None:
        rng = random.Random(3)
        while not stop.is_set() and len(added) < 2_000:
            batch = [make_event(rng, END - timedelta(days=40)) for _ in range(5)]
            added.extend(sim.add_events(batch))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # Events land before the window, so the window's pages stay exact.
        window = {"start": format_ts(END - timedelta(days=30))}
        served = fetch_ids(client, page_size=200, **window)
    finally:
        stop.set()
        thread.join(10)
    assert len(served) == len(set(served))
    assert set(served) == ids_where(sim, lambda e: created(e) >= END - timedelta(days=30))
    assert set(added) <= sim.ids()


def test_adding_an_existing_id_replaces_the_event(sim: Simulator, client: httpx.Client) -> None:
    event = dict(sim.events()[10])
    event["updatedAt"] = format_ts(END)
    event["message"] = "edited"
    n = len(sim.ids())
    sim.add_events([event])
    assert len(sim.ids()) == n
    assert {e["id"]: e for e in sim.events()}[event["id"]]["message"] == "edited"
    assert count(client, search="edited") >= 1


# -- bookkeeping ---------------------------------------------------------------------------------


def test_subject_slugs_are_trimmed(sim: Simulator, client: httpx.Client) -> None:
    expected = ids_where(
        sim, lambda e: e["subject"].get("subjectSlug") in {"alice@acme.com", "ci-deployer"}
    )
    assert set(fetch_ids(client, subjectSlug=" alice@acme.com , ci-deployer,")) == expected


def test_a_reset_is_logged_with_status_0(sim: Simulator, client: httpx.Client) -> None:
    sim.inject("reset")
    with pytest.raises(httpx.TransportError):
        get(client, metric="list")
    assert sim.request_log[-1].status == 0
    assert sim.stats.by_status == {0: 1}
    assert sim.stats.rows_served == 0


def test_stats_and_request_log(sim: Simulator, client: httpx.Client) -> None:
    get(client, metric="count")
    get(client, metric="list", limit=7)
    get(client, metric="list", limit=0)
    client.get("/nope")
    stats = sim.stats
    assert stats.total == 4
    assert stats.by_metric == {"count": 1, "list": 2}
    assert stats.by_status == {200: 2, 400: 1, 404: 1}
    assert stats.rows_served == 7
    log = sim.request_log
    assert [entry.status for entry in log] == [200, 200, 400, 404]
    assert log[1] == ("list", {"metric": "list", "limit": "7"}, 200)
    sim.reset_stats()
    assert sim.stats.total == 0
    assert sim.request_log == []


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="order"):
        SimulatorConfig(order="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate_429"):
        SimulatorConfig(rate_429=1.5)
    with pytest.raises(ValueError, match="more than 1"):
        SimulatorConfig(rate_429=0.6, rate_500=0.6)


def test_add_events_rejects_events_it_cannot_order(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="createdAt"):
        sim.add_events([{"id": "x", "createdAt": "not a time"}])
    with pytest.raises(ValueError, match="id"):
        sim.add_events([{"createdAt": "2026-08-01T00:00:00.000Z"}])


def test_a_removed_event_is_gone_from_counts_and_pages_and_another_can_take_its_day(
    sim: Simulator, client: httpx.Client
) -> None:
    """A service that expires (or loses) an event while another arrives the same day: the
    day's count is unchanged, its ids are not."""
    day_start = END - timedelta(days=3)
    window = {"start": format_ts(day_start), "end": format_ts(day_start + timedelta(days=1))}
    before = fetch_ids(client, **window)
    count = get(client, metric="count", **window).json()["data"]
    victim = sorted(before)[0]
    newcomer = make_event(random.Random("newcomer"), day_start + timedelta(hours=5))
    assert sim.remove_events([victim, "never-stored"]) == [victim]
    sim.add_events([newcomer])
    after = fetch_ids(client, **window)
    assert sorted(after) == sorted((set(before) - {victim}) | {newcomer["id"]})
    assert get(client, metric="count", **window).json()["data"] == count
    assert victim not in sim.ids()


def test_raw_events_are_served_byte_for_byte_and_unplaced_ones_by_every_query() -> None:
    sim = Simulator(events=generate_history(30, days=1, end=END))
    placed = b'{"id":"raw","createdAt":"%b","message":"caf\xe9"}' % format_ts(END).encode()
    sim.add_raw_event("raw", END - timedelta(hours=1), placed)
    sim.add_raw_event("nowhere", None, b'{"id":"nowhere","createdAt":"not a time"}')
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test", headers=AUTH) as c:
        start, end = format_ts(END - timedelta(hours=2)), format_ts(END)
        # (events() leaves out the raw event no JSON parser reads: it is counted apart)
        in_window = ids_where(sim, lambda e: END - timedelta(hours=2) <= created(e) <= END)
        assert count(c, start=start, end=end) == len(in_window) + 2
        bodies: list[bytes] = []
        for offset in range(0, len(in_window) + 2, 4):
            resp = get(c, metric="list", limit=4, offset=offset, start=start, end=end)
            assert resp.status_code == 200
            bodies.append(resp.content)
        # bytes that are not UTF-8 go out as they were stored
        assert sum(placed in body for body in bodies) == 1
        # the unplaced event comes last, after every placed one
        assert bodies[-1].endswith(
            b'{"id":"nowhere","createdAt":"not a time"}],"pagination"'
            b':{"total":%d,"offset":%d,"limit":4}}' % (len(in_window) + 2, 4 * (len(bodies) - 1))
        )
        # a window that holds none of the placed ones still returns it
        far = format_ts(END - timedelta(days=400))
        assert count(c, start=far, end=format_ts(END - timedelta(days=399))) == 1
