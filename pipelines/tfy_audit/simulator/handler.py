"""The simulated `GET /api/svc/v1/audit-logs`: one protocol-agnostic handler.

`Simulator.handle` turns (method, target, headers) into a `SimResponse`; `SimulatorServer`
serves it over loopback HTTP and `Simulator.transport()` as an `httpx.MockTransport`.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from tfy_audit.simulator.config import FAULTS, SimulatorConfig
from tfy_audit.simulator.history import make_event, random_ms_between
from tfy_audit.simulator.mock import mock_transport
from tfy_audit.simulator.store import FILTER_FIELDS, EventStore, Query
from tfy_audit.simulator.timestamps import from_epoch_us, parse_ts, to_epoch_us

logger = logging.getLogger(__name__)

AUDIT_LOGS_PATH: Final = "/api/svc/v1/audit-logs"
_JSON: Final = "application/json; charset=utf-8"
_HTML: Final = "text/html"
# The service is JavaScript: integers beyond this are not exact, so it refuses them.
_MAX_SAFE_INTEGER: Final = 2**53 - 1
_STRING_PARAMS: Final = (*FILTER_FIELDS, "search", "subjectSlug", "start", "end")
_SINGLE_PARAMS: Final = ("limit", "offset", "metric", *_STRING_PARAMS)
_NOT_FOUND_HTML: Final = (
    b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_UNAVAILABLE_HTML: Final = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
# What a single-page app behind a misrouted proxy answers to any path, with 200.
_SPA_HTML: Final = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>TrueFoundry</title>'
    b'</head><body><div id="root"></div><script src="/static/js/main.3f9c1a.js"></script>'
    b"</body></html>"
)
# A JSON body cut short by a proxy that buffered only part of it.
_NOT_JSON: Final = b'{"data":[{"id":"c19df21a1f97de70b2d100064","action":"CREATE_DEPLOY'


@dataclass
class SimResponse:
    """One answer. `fault` is None, or how the wire misbehaves: "reset" (drop the connection
    without a response; `status` is 0), "slow" (answer only after `slow_seconds`), "truncate"
    (announce a longer body than is sent, then close). `delay` is the configured latency in
    seconds, which the HTTP server waits and the MockTransport skips."""

    status: int
    headers: dict[str, str]
    body: bytes
    fault: str | None = None
    delay: float = 0.0


@dataclass
class SimulatorStats:
    """Counters since construction or `reset_stats()`. `by_metric` counts requests to the
    audit-logs path by their `metric` parameter; status 0 is a dropped connection."""

    requests: int = 0
    by_metric: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rows_served: int = 0

    @property
    def total(self) -> int:
        return self.requests

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_metric": dict(self.by_metric),
            "by_status": dict(self.by_status),
            "faults": dict(self.faults),
            "rows_served": self.rows_served,
        }


class LoggedRequest(NamedTuple):
    metric: str | None
    params: dict[str, str]
    status: int  # 0 when the connection was dropped without an answer


class _BadRequest(Exception):
    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


RequestHook = Callable[["Simulator", dict[str, str]], None]


class Simulator:
    """A TrueFoundry control plane's audit-log endpoint, faithful to the spec and unkind."""

    def __init__(
        self, config: SimulatorConfig | None = None, events: Iterable[Mapping[str, Any]] = ()
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.store = EventStore()
        self.store.add(events)
        self.on_request: RequestHook | None = None
        self._lock = threading.Lock()
        self._injected: deque[str] = deque()
        self._stats = SimulatorStats()
        self._log: deque[LoggedRequest] = deque(maxlen=self.config.request_log_size)
        self._inserted: list[str] = []
        self._audit_requests = 0
        self._request_ids = itertools.count(1)
        self._seeded_with: int | None = None
        self._fault_rng = random.Random()
        self._insert_rng = random.Random()

    # -- test-facing API ----------------------------------------------------------------------

    def now(self) -> datetime:
        """The service's clock: this machine's, moved by `clock_offset_seconds`."""
        return datetime.now(UTC) + timedelta(seconds=self.config.clock_offset_seconds)

    def http_date(self) -> str:
        """The `Date` header the service sends (RFC 9110: whole seconds, GMT)."""
        return email.utils.format_datetime(self.now().replace(microsecond=0), usegmt=True)

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Add (or replace, by id) events; safe at any time, also while a sync runs."""
        return self.store.add(events)

    def remove_events(self, ids: Iterable[str]) -> list[str]:
        """Stop serving these events, as a service that expires (or loses) events does; with
        `add_events` on the same day, a day's count stays while its ids change."""
        return self.store.remove(ids)

    def add_raw_event(self, event_id: str, created_at: datetime | None, blob: bytes) -> None:
        """Serve `blob` as one event's bytes, exactly (see `EventStore.add_raw`): what a
        service with a bug or a bad row sends, which no JSON encoder here would write."""
        self.store.add_raw(event_id, created_at, blob)

    def serve_twice(self, event_id: str) -> None:
        """From now on serve the stored event `event_id` twice in every answer that holds it,
        and count it twice: a service that repeats one id in a window."""
        self.store.add_twin(event_id)

    def events(self) -> list[dict[str, Any]]:
        return self.store.events()

    def ids(self) -> set[str]:
        return self.store.ids()

    @property
    def stats(self) -> SimulatorStats:
        return self._stats

    @property
    def request_log(self) -> list[LoggedRequest]:
        return list(self._log)

    @property
    def inserted_ids(self) -> list[str]:
        """Ids of events the simulator inserted by itself (`insert_every`), in order."""
        with self._lock:
            return list(self._inserted)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = SimulatorStats()
            self._log = deque(maxlen=self.config.request_log_size)

    def inject(self, *faults: str) -> None:
        """Queue faults for the next authenticated audit-logs requests, one each, in order."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._injected.extend(faults)

    def transport(self) -> httpx.MockTransport:
        """The handler as an httpx transport: `httpx.Client(transport=sim.transport())`."""
        return mock_transport(self)

    # -- the endpoint ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str]) -> SimResponse:
        cfg = self.config
        delay = max(0.0, cfg.latency_ms / 1000)
        split = urlsplit(target)
        raw = parse_qs(split.query, keep_blank_values=True)
        params = {k: v[-1] for k, v in raw.items()}
        metric = params.get("metric")
        # Express routes ignore one trailing slash.
        path = split.path[:-1] if split.path.endswith("/") else split.path
        if path != AUDIT_LOGS_PATH:
            resp = SimResponse(404, {"Content-Type": _HTML}, _NOT_FOUND_HTML, delay=delay)
            return self._finish(resp, None, params)
        if method.upper() != "GET":
            resp = _json(405, {"statusCode": 405, "message": "Method Not Allowed"}, delay)
            resp.headers["Allow"] = "GET"
            return self._finish(resp, metric, params)
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token != cfg.api_key:
            resp = _json(401, {"statusCode": 401, "message": "Unauthorized"}, delay)
            return self._finish(resp, metric, params)

        self._before_answer(cfg, params)
        fault = self._next_fault(cfg)
        if fault == "reset":
            resp = SimResponse(0, {}, b"", fault="reset", delay=delay)
        elif fault in {"429", "503", "500", "nonjson", "html200"}:
            resp = _fault_response(fault, cfg, delay)
        else:
            resp = self._answer(cfg, raw, delay)
            resp.fault = fault
        return self._finish(resp, metric, params, fault=fault)

    def _answer(self, cfg: SimulatorConfig, raw: dict[str, list[str]], delay: float) -> SimResponse:
        try:
            metric, limit, offset, query = _parse(raw, cfg)
        except _BadRequest as exc:
            return _bad_request(exc.messages, delay)
        if metric == "count":
            total = self.store.count(query)
            return _raw_json(200, b'{"data":[],"pagination":{"total":%d}}' % total, delay)
        if cfg.max_offset is not None and offset + limit > cfg.max_offset:
            message = f"Result window is too large: offset + limit must be <= {cfg.max_offset}"
            return _bad_request(message, delay)
        total, blobs = self.store.page(query, cfg.order, offset, limit, cfg.shuffle_salt)
        page = b"".join(
            (
                b'{"data":[',
                b",".join(blobs),
                b'],"pagination":{"total":%d,"offset":%d,"limit":%d}}' % (total, offset, limit),
            )
        )
        resp = _raw_json(200, page, delay)
        with self._lock:
            self._stats.rows_served += len(blobs)
        return resp

    def _before_answer(self, cfg: SimulatorConfig, params: dict[str, str]) -> None:
        with self._lock:
            self._audit_requests += 1
            due = cfg.insert_every > 0 and self._audit_requests % cfg.insert_every == 0
        if due:
            self._insert(cfg)
        hook = self.on_request
        if hook is not None:
            hook(self, dict(params))

    def _reseed_if_needed(self, cfg: SimulatorConfig) -> None:
        if self._seeded_with != cfg.fault_seed:
            self._fault_rng.seed(cfg.fault_seed)
            self._insert_rng.seed(cfg.fault_seed + 1)
            self._seeded_with = cfg.fault_seed

    def _insert(self, cfg: SimulatorConfig) -> None:
        now = self.now()
        span = self.store.key_range()
        with self._lock:
            self._reseed_if_needed(cfg)
            rng = self._insert_rng
            batch = []
            for _ in range(cfg.insert_batch):
                if cfg.insert_mode == "late":
                    created = now - timedelta(seconds=rng.random() * cfg.late_seconds)
                elif cfg.insert_mode == "past" and span is not None:
                    first, last = (from_epoch_us(k) for k in span)
                    created = random_ms_between(rng, first, last)
                else:
                    created = now
                batch.append(make_event(rng, created))
        ids = self.store.add(batch)
        with self._lock:
            self._inserted.extend(ids)
        logger.debug("inserted %d events (%s)", len(ids), cfg.insert_mode)

    def _next_fault(self, cfg: SimulatorConfig) -> str | None:
        with self._lock:
            if self._injected:
                return self._injected.popleft()
            self._reseed_if_needed(cfg)
            draw = self._fault_rng.random()
        threshold = 0.0
        for name, rate in (
            ("429", cfg.rate_429),
            ("503", cfg.rate_503),
            ("500", cfg.rate_500),
            ("reset", cfg.rate_reset),
            ("slow", cfg.rate_slow),
            ("truncate", cfg.rate_truncate),
            ("nonjson", cfg.rate_nonjson),
            ("html200", cfg.rate_html200),
        ):
            threshold += rate
            if draw < threshold:
                return name
        return None

    def _finish(
        self,
        resp: SimResponse,
        metric: str | None,
        params: dict[str, str],
        *,
        fault: str | None = None,
    ) -> SimResponse:
        resp.headers["x-request-id"] = f"sim-{next(self._request_ids)}"
        resp.headers["Date"] = self.http_date()
        status = resp.status
        with self._lock:
            stats = self._stats
            stats.requests += 1
            stats.by_status[status] += 1
            if metric is not None:
                stats.by_metric[metric] += 1
            if fault is not None:
                stats.faults[fault] += 1
            self._log.append(LoggedRequest(metric, params, status))
        logger.debug("%s %s -> %s %s", metric, params, status, fault or "")
        return resp


def _json(status: int, payload: Any, delay: float) -> SimResponse:
    return _raw_json(status, orjson.dumps(payload), delay)


def _bad_request(message: str | list[str], delay: float) -> SimResponse:
    return _json(400, {"statusCode": 400, "message": message, "error": "Bad Request"}, delay)


def _raw_json(status: int, body: bytes, delay: float) -> SimResponse:
    return SimResponse(status, {"Content-Type": _JSON}, body, delay=delay)


def _fault_response(fault: str, cfg: SimulatorConfig, delay: float) -> SimResponse:
    if fault == "429":
        resp = _json(
            429, {"statusCode": 429, "message": "ThrottlerException: Too Many Requests"}, delay
        )
        resp.headers["Retry-After"] = cfg.retry_after
        return resp
    if fault == "500":
        return _json(500, {"statusCode": 500, "message": "Internal server error"}, delay)
    if fault == "503":
        return SimResponse(503, {"Content-Type": _HTML}, _UNAVAILABLE_HTML, delay=delay)
    if fault == "nonjson":
        return SimResponse(200, {"Content-Type": _JSON}, _NOT_JSON, delay=delay)
    return SimResponse(200, {"Content-Type": "text/html; charset=utf-8"}, _SPA_HTML, delay=delay)


def _parse(raw: dict[str, list[str]], cfg: SimulatorConfig) -> tuple[str, int, int, Query]:
    """Validate the query string the way the service's NestJS DTO does; collect every
    problem into one 400, as class-validator would."""
    errors: list[str] = []
    for name in _SINGLE_PARAMS:
        if len(raw.get(name, ())) > 1:
            errors.append(f"{name} must be a single value")
    params = {k: v[-1] for k, v in raw.items()}

    metric = params.get("metric", "")
    if metric not in ("list", "count"):
        errors.append("metric must be one of the following values: list, count")
    limit = _integer(params, "limit", 100, 1, 1000, errors)
    offset = _integer(params, "offset", 0, 0, _MAX_SAFE_INTEGER, errors)
    bounds: list[int | None] = []
    for name in ("start", "end"):
        value = params.get(name) or None
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(to_epoch_us(parse_ts(value)))
        except ValueError:
            errors.append(f"{name} must be a valid ISO 8601 date string")
            bounds.append(None)
    if errors:
        raise _BadRequest(errors)
    # Empty strings are falsy in the service's `if (query.x)` checks: no filter.
    filters = tuple((name, params[name]) for name in FILTER_FIELDS if params.get(name))
    slugs = params.get("subjectSlug")
    query = Query(
        filters=filters,
        search=params.get("search") or None,
        subject_slugs=frozenset(s.strip() for s in slugs.split(",")) - {""} if slugs else None,
        start_us=bounds[0],
        end_us=bounds[1],
        start_inclusive=cfg.start_inclusive,
        end_inclusive=cfg.end_inclusive,
    )
    return metric, limit, offset, query


def _integer(
    params: dict[str, str],
    name: str,
    default: int,
    minimum: int,
    maximum: int,
    errors: list[str],
) -> int:
    text = params.get(name)
    if text is None:
        return default
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        errors.append(f"{name} must be an integer number")
        return default
    # Bounded before int(): Python refuses to parse more than 4300 digits.
    value = int(text) if len(digits) <= 20 else (maximum + 1) * (-1 if text[0] == "-" else 1)
    if value < minimum:
        errors.append(f"{name} must not be less than {minimum}")
    elif value > maximum:
        errors.append(f"{name} must not be greater than {maximum}")
    return value
