"""What the events said of each subject: per page, the attributes of its latest event and the
span of createdAt over its events; folded over a sync; and as `subjects` rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa

from tfy_audit._service.columns import SUBJECT_FIELDS, SUBJECTS_SCHEMA, TIMESTAMP, string_array
from tfy_audit._service.json_text import as_text, key_text, utf8_safe


@dataclass(frozen=True, slots=True)
class SubjectObservation:
    """What one batch (or the accumulated sync) saw of one subject."""

    subject_id: str
    subject_type: str | None
    subject_slug: str | None
    subject_display_name: str | None
    subject_pat_name: str | None
    subject_controller_name: str | None
    subject_external_identity_slug: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None


# Sorts before every real timestamp, so an event without createdAt never wins "latest".
_NEVER: Final = datetime.min.replace(tzinfo=UTC)


def observe_subjects(
    ids: list[str], subjects: list[Mapping[str, Any] | None], created: list[datetime | None]
) -> dict[str, SubjectObservation]:
    """Per subjectId: the attributes of its latest event (ties: greatest event id) and the
    span of createdAt over its events."""
    # subject id -> [subject of the latest event, its rank, first_seen_at, last_seen_at]
    states: dict[str, list[Any]] = {}
    for event_id, subject, created_at in zip(ids, subjects, created, strict=True):
        if subject is None:
            continue
        subject_id = subject.get("subjectId")
        if type(subject_id) is not str or not subject_id:
            subject_id = key_text(subject_id)
            if subject_id is None:
                continue
        rank = (created_at or _NEVER, event_id)
        state = states.get(subject_id)
        if state is None:
            states[subject_id] = [subject, rank, created_at, created_at]
            continue
        if rank >= state[1]:
            state[0] = subject
            state[1] = rank
        if created_at is not None:
            if state[2] is None or created_at < state[2]:
                state[2] = created_at
            if state[3] is None or created_at > state[3]:
                state[3] = created_at
    return {
        subject_id: _observation(subject_id, subject, first, last)
        for subject_id, (subject, _, first, last) in states.items()
    }


def _observation(
    subject_id: str,
    subject: Mapping[str, Any],
    first_seen_at: datetime | None,
    last_seen_at: datetime | None,
) -> SubjectObservation:
    def text(key: str) -> str | None:
        return utf8_safe(as_text(subject.get(key)))

    return SubjectObservation(
        subject_id=subject_id,
        subject_type=text("subjectType"),
        subject_slug=text("subjectSlug"),
        subject_display_name=text("subjectDisplayName"),
        subject_pat_name=text("subjectPatName"),
        subject_controller_name=text("subjectControllerName"),
        subject_external_identity_slug=text("subjectExternalIdentitySlug"),
        first_seen_at=first_seen_at,
        last_seen_at=last_seen_at,
    )


def _bound(
    a: datetime | None, b: datetime | None, pick: Callable[[datetime, datetime], datetime]
) -> datetime | None:
    """`pick` (min or max) of two times either of which may be unknown (None)."""
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


def _spanning(
    base: SubjectObservation, first: datetime | None, last: datetime | None
) -> SubjectObservation:
    """`base` seen from `first` to `last`, built directly: dataclasses.replace() costs several
    times as much on this path, run for every subject of every page (docs/performance.md)."""
    return SubjectObservation(
        subject_id=base.subject_id,
        subject_type=base.subject_type,
        subject_slug=base.subject_slug,
        subject_display_name=base.subject_display_name,
        subject_pat_name=base.subject_pat_name,
        subject_controller_name=base.subject_controller_name,
        subject_external_identity_slug=base.subject_external_identity_slug,
        first_seen_at=first,
        last_seen_at=last,
    )


def merge_subject_observations(
    current: dict[str, SubjectObservation], new: Mapping[str, SubjectObservation]
) -> list[SubjectObservation]:
    """Fold `new` into `current` in place; return the observations that changed.

    The attributes come from whichever side was seen last (ties go to `new`), so a batch of
    older events arriving after a newer one widens first_seen_at but cannot roll the
    attributes back.
    """
    changed: list[SubjectObservation] = []
    for observation in new.values():
        subject_id = observation.subject_id
        held = current.get(subject_id)
        if held is None:
            merged = observation
        else:
            # Runs for every subject of every page, so nothing is built unless it changes.
            first = _bound(held.first_seen_at, observation.first_seen_at, min)
            last = _bound(held.last_seen_at, observation.last_seen_at, max)
            newer = (observation.last_seen_at or _NEVER) >= (held.last_seen_at or _NEVER)
            base = observation if newer else held
            if first == base.first_seen_at and last == base.last_seen_at:
                merged = base
            else:
                merged = _spanning(base, first, last)
            if merged is held or merged == held:
                continue
        current[subject_id] = merged
        changed.append(merged)
    return changed


def subjects_table(observations: Iterable[SubjectObservation]) -> pa.Table:
    """The `subjects` rows of `observations`, in SUBJECTS_SCHEMA."""
    rows = list(observations)
    arrays: list[pa.Array] = [string_array([o.subject_id for o in rows])]
    for attr, _ in SUBJECT_FIELDS:
        arrays.append(string_array([getattr(o, attr) for o in rows]))
    arrays.append(pa.array([o.first_seen_at for o in rows], type=TIMESTAMP))
    arrays.append(pa.array([o.last_seen_at for o in rows], type=TIMESTAMP))
    return pa.Table.from_arrays(arrays, schema=SUBJECTS_SCHEMA)
