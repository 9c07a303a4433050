"""Realistic audit events: one at a time (`make_event`), a long history (`generate_history`)
and a burst in one millisecond (`dense_burst`).

`generate_history` must produce a million events in seconds, so the per-event path avoids
`random.choice`, `strftime` and datetime arithmetic: choices index precomputed lookup tables,
times are integer epoch milliseconds, and ids embed the millisecond plus random bits.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Final
from zoneinfo import ZoneInfo

from tfy_audit.simulator.actions import FUTURE_ACTIONS, FUTURE_PARENT_TYPES, FUTURE_SUBJECT_TYPE
from tfy_audit.simulator.catalog import (
    HOME_TIMEZONE,
    REMOTE_TIMEZONE,
    TENANT,
    ActionSpec,
    Catalog,
    Resource,
    Subject,
    build_catalog,
)
from tfy_audit.simulator.spec_enums import SPEC_SUBJECT_TYPES
from tfy_audit.simulator.timestamps import EPOCH, MillisFormatter, to_epoch_us

_MS_PER_HOUR: Final = 3_600_000
UNKNOWN_ENUM_RATE: Final = 0.005
# Share of the window, at its old end, written before `message` and the newer subject fields
# existed: those events lack the keys altogether.
_NO_MESSAGE_SHARE: Final = 0.03
_LEGACY_SUBJECT_SHARE: Final = 0.3
# Chance that an event lands in the same millisecond as the one before it (bulk operations).
_SAME_MS_RATE: Final = 0.01

MetaBuilder = Callable[[random.Random, Resource], dict[str, Any]]


def _local_level(weekday: int, hour: int, *, home: bool) -> float:
    """How busy a team is at a local hour: the home team works 08-19 (quieter over lunch, a
    little before and after), the remote team 09-18; a sliver works at weekends."""
    if home:
        level = 1.0 if 8 <= hour < 19 else 0.2 if hour in (7, 19, 20) else 0.0
        level *= 0.7 if hour == 12 else 1.0
    else:
        level = 0.3 if 9 <= hour < 18 else 0.05 if hour in (8, 18, 19) else 0.0
    return level * (0.08 if weekday >= 5 else 1.0)


def _hourly_accept(start_ms: int, end_ms: int) -> list[float]:
    """Relative activity for each UTC hour from start_ms's hour to end_ms's: the home team's
    and the remote team's working hours in their own time zones (daylight saving included),
    plus a steady trickle from automation at all hours."""
    home, remote = ZoneInfo(HOME_TIMEZONE), ZoneInfo(REMOTE_TIMEZONE)
    first, last = start_ms // _MS_PER_HOUR, end_ms // _MS_PER_HOUR
    weights = []
    for hour in range(first, last + 1):
        at = EPOCH + timedelta(hours=hour)
        h, r = at.astimezone(home), at.astimezone(remote)
        people = _local_level(h.weekday(), h.hour, home=True) + _local_level(
            r.weekday(), r.hour, home=False
        )
        weights.append(0.03 + min(1.0, people))
    top = max(weights)
    return [w / top for w in weights]


def _weighted_table(items: Sequence[Any], weights: Sequence[float], scale: float) -> list[Any]:
    """A list in which each item appears about weight*scale times (at least once), so a
    weighted pick is one `random()` and one index."""
    table: list[Any] = []
    for item, weight in zip(items, weights, strict=True):
        table.extend([item] * max(1, round(weight * scale)))
    return table


# -- metaData shapes ----------------------------------------------------------------------------

_IMAGES: Final = ("payments-api", "ranker", "embedder", "llm-router", "etl")
_COMMENTS: Final = (
    "hotfix for INC-2231",
    "déploiement validé ✅",
    "部署到生产环境",
    "rollback — see #incident-42",
    "تحديث الإعدادات",
    "סבב מפתחות רבעוני",
    "scale up for Black Friday 🚀🔥",
    "Ünïcödé everywhere: naïve café, Ærøskøbing",
    "requested by @zoë in #platform\nline two of the note",
)
_USER_AGENTS: Final = (
    "truefoundry-cli/0.9.3 python/3.11",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "terraform-provider-truefoundry/1.4.0",
    "argocd-application-controller/v2.11",
    "python-requests/2.32.3",
)


def _meta_empty(rng: random.Random, res: Resource) -> dict[str, Any]:
    return {}


def _meta_diff(rng: random.Random, res: Resource) -> dict[str, Any]:
    r = rng.random()
    if r < 0.4:
        old = 1 + int(rng.random() * 6)
        return {"diff": {"replicas": {"old": old, "new": old + 1 + int(rng.random() * 3)}}}
    if r < 0.7:
        image = _IMAGES[int(rng.random() * len(_IMAGES))]
        tag = int(rng.random() * 300)
        return {
            "diff": {
                "image": {"old": f"{image}:v1.{tag}.0", "new": f"{image}:v1.{tag + 1}.0"},
                "resources.cpu_limit": {"old": 1.0, "new": 1.5},
            }
        }
    return {"diff": {"env": {"old": {"LOG_LEVEL": "info"}, "new": {"LOG_LEVEL": "debug"}}}}


def _meta_changes(rng: random.Random, res: Resource) -> dict[str, Any]:
    n = 1 + int(rng.random() * 3)
    paths = ("spec.image", "spec.replicas", "spec.ports[0].port", "metadata.labels.team")
    return {
        "changes": [
            {"path": paths[(i + n) % len(paths)], "op": "replace" if i else "add"} for i in range(n)
        ],
        "changeCount": n,
    }


def _meta_request(rng: random.Random, res: Resource) -> dict[str, Any]:
    return {
        "ip": f"10.{int(rng.random() * 255)}.{int(rng.random() * 255)}.{int(rng.random() * 255)}",
        "userAgent": _USER_AGENTS[int(rng.random() * len(_USER_AGENTS))],
        "source": ("ui", "cli", "api", "gitops")[int(rng.random() * 4)],
    }


def _meta_labels(rng: random.Random, res: Resource) -> dict[str, Any]:
    return {
        "labels": {"app.kubernetes.io/name": res.name, "truefoundry.com/owner": "platform"},
        "spec.replicas": 1 + int(rng.random() * 8),
    }


def _meta_value(rng: random.Random, res: Resource) -> dict[str, Any]:
    # The same key holds a different JSON type from one event to the next, as settings do.
    r = int(rng.random() * 7)
    value: Any = (
        "enabled",
        42,
        3.5,
        True,
        None,
        ["eu-west-1", "us-east-1"],
        {"max": 10, "unit": "rps"},
    )[r]
    return {"setting": ("autopilot", "maxReplicas", "budget", "sso")[r % 4], "value": value}


def _meta_comment(rng: random.Random, res: Resource) -> dict[str, Any]:
    return {
        "comment": _COMMENTS[int(rng.random() * len(_COMMENTS))],
        "ticket": f"OPS-{1000 + int(rng.random() * 9000)}",
    }


def _meta_manifest(rng: random.Random, res: Resource) -> dict[str, Any]:
    port = (8000, 8080, 3000)[int(rng.random() * 3)]
    return {
        "manifest": {
            "type": "service",
            "name": res.name,
            "image": {"type": "image", "image_uri": f"registry.acme.com/{res.name}:latest"},
            "ports": [{"port": port, "protocol": "TCP", "expose": True, "app_protocol": "http"}],
            "resources": {"cpu_request": 0.5, "cpu_limit": 1, "memory_request": 512},
            "env": {"LOG_LEVEL": "info", "WORKERS": "4"},
        }
    }


def _meta_members(rng: random.Random, res: Resource) -> dict[str, Any]:
    n = 1 + int(rng.random() * 3)
    roles = ("workspace-editor", "workspace-viewer", "workspace-admin")
    return {
        "members": [
            {"subject": f"user:{login}@acme.com", "role": roles[i % 3]}
            for i, login in enumerate(("alice", "bob", "carol")[:n])
        ]
    }


def _meta_reason(rng: random.Random, res: Resource) -> dict[str, Any]:
    return {
        "reason": None if rng.random() < 0.5 else "scheduled maintenance",
        "durationSeconds": round(rng.random() * 120, 3),
    }


_META_SHAPES: Final[tuple[tuple[MetaBuilder, float], ...]] = (
    (_meta_empty, 15),
    (_meta_diff, 20),
    (_meta_changes, 12),
    (_meta_request, 15),
    (_meta_labels, 8),
    (_meta_value, 8),
    (_meta_comment, 6),
    (_meta_manifest, 8),
    (_meta_members, 4),
    (_meta_reason, 4),
)


class EventFactory:
    """Builds events from the catalog; one instance per process is enough."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or build_catalog()
        specs = self.catalog.actions
        # fine enough that the rarest actions (weight 0.002) are rarer than the common ones
        self.actions: list[ActionSpec] = _weighted_table(specs, [s.weight for s in specs], 500)
        subjects = self.catalog.subjects
        self.subjects: list[Subject] = _weighted_table(subjects, [s.weight for s in subjects], 10)
        self.metas: list[MetaBuilder] = _weighted_table(
            [m for m, _ in _META_SHAPES], [w for _, w in _META_SHAPES], 1
        )
        self.by_subject_type = {t: self.catalog.subjects_of_type(t) for t in SPEC_SUBJECT_TYPES}
        self.fmt = MillisFormatter()

    def coverage_plan(self) -> list[tuple[ActionSpec, Subject]]:
        """One (action, subject) pair per action/resource-type combination, cycling through
        subject types, so a long enough history shows every enum value of the spec."""
        types = SPEC_SUBJECT_TYPES
        return [
            (spec, self.by_subject_type[types[i % len(types)]][0])
            for i, spec in enumerate(self.catalog.actions)
        ]

    def event(
        self,
        rng: random.Random,
        ms: int,
        seq: int,
        *,
        spec: ActionSpec | None = None,
        subject: Subject | None = None,
        legacy: bool = False,
        with_message: bool = True,
    ) -> dict[str, Any]:
        r = rng.random
        # A pinned action (the coverage plan) must keep its spec value.
        unknown_ok = spec is None
        if spec is None:
            spec = self.actions[int(r() * len(self.actions))]
        if subject is None:
            subject = self.subjects[int(r() * len(self.subjects))]
        pool = spec.pool
        res = pool[int(r() * len(pool))]
        created = self.fmt(ms)
        updated = created if r() > 0.05 else self.fmt(ms + 1 + int(r() * 600_000))
        action, rtype, parent_type = spec.action, spec.resource_type, res.parent_type
        subj = subject.payload(legacy=legacy)
        if r() < UNKNOWN_ENUM_RATE and unknown_ok:
            action, rtype, parent_type = self._unknown_enums(rng, subj, action, rtype, parent_type)
        event: dict[str, Any] = {
            # Millisecond first, then random bits with `seq` in the low 20 so ids within one
            # batch never collide, even in one millisecond.
            "id": f"c{ms:011x}{(rng.getrandbits(32) << 20) | (seq & 0xFFFFF):013x}",
            "action": action,
            "requestPath": spec.request_path(res),
            "resourceId": res.id,
            "resourceType": rtype,
            "resourceName": res.name,
            "resourceFqn": res.fqn,
            "parentResourceId": res.parent_id,
            "parentResourceType": parent_type,
            "tenantName": TENANT,
            "clusterId": res.cluster_id,
            "workspaceId": res.workspace_id,
            "subject": subj,
            "metaData": self.metas[int(r() * len(self.metas))](rng, res),
            "message": f"{subject.who} {spec.phrase} {res.name}{res.where}",
            "createdAt": created,
            "updatedAt": updated,
        }
        if not with_message:
            del event["message"]
        return event

    def _unknown_enums(
        self,
        rng: random.Random,
        subj: dict[str, str | None],
        action: str,
        rtype: str,
        parent_type: str,
    ) -> tuple[str, str, str]:
        kind = int(rng.random() * 3)
        if kind == 0:
            action, rtype = FUTURE_ACTIONS[int(rng.random() * len(FUTURE_ACTIONS))]
        elif kind == 1:
            parent_type = FUTURE_PARENT_TYPES[int(rng.random() * len(FUTURE_PARENT_TYPES))]
        else:
            subj["subjectType"] = FUTURE_SUBJECT_TYPE
        return action, rtype, parent_type


@cache
def factory() -> EventFactory:
    return EventFactory()


def _epoch_ms(dt: datetime) -> int:
    return to_epoch_us(dt) // 1000


def make_event(rng: random.Random, created_at: datetime, **overrides: Any) -> dict[str, Any]:
    """One realistic `ActivityLog` event created at `created_at` (truncated to milliseconds).
    Keyword overrides replace top-level keys, e.g. `make_event(rng, t, action="DELETE_SECRET")`.
    """
    event = factory().event(rng, _epoch_ms(created_at), rng.getrandbits(20))
    event.update(overrides)
    return event


def generate_history(
    count: int, *, days: float = 90, end: datetime | None = None, seed: int = 7
) -> list[dict[str, Any]]:
    """`count` events with `createdAt` in `[end - days, end)`, oldest first, deterministic for a
    given seed and end. Activity follows weekday working hours in the tenant's time zones; a
    few subjects join late and a few tokens stop being used (`Subject.active_from/until`, as
    shares of the window); about 1% of events share their millisecond with the previous one;
    about 0.5% carry enum values the spec does not list."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    end_ms = _epoch_ms(end if end is not None else datetime.now(UTC))
    start_ms = end_ms - int(days * 86_400_000)
    if end_ms - start_ms < 1:
        raise ValueError("the window is shorter than one millisecond")
    rng = random.Random(seed)
    times = _draw_times(rng, count, start_ms, end_ms)
    fac = factory()
    coverage = fac.coverage_plan()
    planned = dict(zip(rng.sample(range(count), min(count, len(coverage))), coverage, strict=False))
    no_message_before = start_ms + int((end_ms - start_ms) * _NO_MESSAGE_SHARE)
    legacy_before = start_ms + int((end_ms - start_ms) * _LEGACY_SUBJECT_SHARE)
    make = fac.event
    pool = fac.subjects
    span = end_ms - start_ms
    # only subjects with a window are checked per event; the rest are always active
    windowed = {id(s) for s in pool if s.active_from > 0.0 or s.active_until < 1.0}
    r = rng.random
    out = []
    with gc_paused():
        for i, ms in enumerate(times):
            spec, subject = planned.get(i, (None, None))
            if subject is None:
                subject = pool[int(r() * len(pool))]
                while id(subject) in windowed and not subject.active_at((ms - start_ms) / span):
                    subject = pool[int(r() * len(pool))]
            out.append(
                make(
                    rng,
                    ms,
                    i,
                    spec=spec,
                    subject=subject,
                    legacy=ms < legacy_before,
                    with_message=ms >= no_message_before,
                )
            )
    return out


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic containers: it
    would otherwise rescan the growing heap again and again (about a third of the run time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _draw_times(rng: random.Random, count: int, start_ms: int, end_ms: int) -> list[int]:
    """Sorted epoch milliseconds in [start_ms, end_ms), shaped by the hourly intensity
    (rejection sampling against `_hourly_accept`)."""
    r = rng.random
    span = end_ms - start_ms
    accept = _hourly_accept(start_ms, end_ms)
    first_hour = start_ms // _MS_PER_HOUR
    times: list[int] = []
    append = times.append
    while len(times) < count:
        ms = start_ms + int(r() * span)
        if r() < accept[ms // _MS_PER_HOUR - first_hour]:
            append(ms)
    times.sort()
    for i in range(1, count):
        if r() < _SAME_MS_RATE:
            times[i] = times[i - 1]
    return times


def dense_burst(at: datetime, n: int, *, seed: int = 1) -> list[dict[str, Any]]:
    """`n` events all created in the same millisecond as `at` (e.g. a bulk role-binding)."""
    rng = random.Random(seed)
    ms = _epoch_ms(at)
    make = factory().event
    return [make(rng, ms, i) for i in range(n)]


def random_ms_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A uniformly random millisecond in [start, end] (for inserts into the past)."""
    lo, hi = _epoch_ms(start), _epoch_ms(end)
    return EPOCH + timedelta(milliseconds=lo + int(rng.random() * (hi - lo + 1)))
