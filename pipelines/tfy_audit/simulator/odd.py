"""Awkward but valid events: the ones that break pipelines written against the happy path."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, Final

from tfy_audit.simulator.actions import FUTURE_SUBJECT_TYPE
from tfy_audit.simulator.history import factory
from tfy_audit.simulator.spec_enums import SUBJECT_NULLABLE_FIELDS
from tfy_audit.simulator.timestamps import to_epoch_us

# Characters that trip up encoders, terminals and SQL engines, but are valid JSON strings
# (no NUL: PostgreSQL, where the service keeps its audit log, cannot store it).
_UNICODE_SOUP: Final = (
    "naïve café ✅ 部署完成 🚀🔥 👩\u200d💻 مرحبا بالعالم שלום עולם Ελληνικά "
    "e\u0301 \ufeffBOM \u2028line-sep\u2029para-sep tab\there \u001b[31mred\u001b[0m "
    "back\\slash \"quotes\" 'single'"
)
_TWO_MB: Final = 2 * 1024 * 1024

POLYMORPHIC_KEY: Final = "value"
_POLYMORPHIC_VALUES: Final[tuple[Any, ...]] = (
    "a string",
    12345,
    {"an": "object", "with": [1, 2]},
    ["a", "list", 3],
    True,
    None,
)


def _manifest_yaml(size: int) -> str:
    """A multi-megabyte value shaped like what services attach: a rendered manifest."""
    block = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: payments-api\n"
        "  labels: {app.kubernetes.io/name: payments-api, tier: backend}\n"
        "spec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n"
        "        - name: app\n          image: registry.acme.com/payments-api:v1.42.0\n"
        "          env: [{name: LOG_LEVEL, value: info}, {name: MOTTO, value: 'ünïcödé ✓'}]\n"
        "---\n"
    )
    text = block * (size // len(block) + 1)
    return text[:size]


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": "bottom", "n": depth}
    for level in range(depth, 0, -1):
        if level % 2:
            node = {f"level{level}": [{"i": 0, "child": node}, {"i": 1, "child": None}]}
        else:
            node = {f"level{level}": node}
    return node


def odd_events(at: datetime, *, seed: int = 2) -> list[dict[str, Any]]:
    """About twenty valid-but-awkward events created at `at` (most in its very millisecond,
    a few one millisecond or one second either side). Every `id` is unique."""
    rng = random.Random(seed)
    ms = to_epoch_us(at) // 1000
    fac = factory()
    seq = iter(range(1_000))

    def event(offset_ms: int = 0, **overrides: Any) -> dict[str, Any]:
        ev = fac.event(rng, ms + offset_ms, next(seq))
        ev.update(overrides)
        return ev

    minimal_subject = {"subjectId": "cbot00000000000000000000x", "subjectType": "virtualaccount"}
    events = [
        # Every enum-typed field outside the spec at once, then the subject type alone.
        event(
            action="ROTATE_SIGNING_KEY",
            resourceType="signing-key",
            parentResourceType="prompt-registry",
            requestPath="/api/svc/v1/signing-keys/rotate",
            subject={
                "subjectId": "cbotidentity0000000000001",
                "subjectType": FUTURE_SUBJECT_TYPE,
                "subjectSlug": "release-bot",
                "subjectDisplayName": "Release Bot 🤖",
                "subjectPatName": None,
                "subjectControllerName": "bot-controller",
                "subjectExternalIdentitySlug": None,
            },
            message="release-bot rotated the signing key",
        ),
        event(
            action="APPLY_PROMPT",
            resourceType="prompt-registry",
            parentResourceType="prompt-registry",
        ),
        # Unicode in names, messages, metaData keys and values, and the subject.
        event(
            resourceName="支付-api-🚀",
            resourceFqn="aws-euwe1-prod:prod-eu:支付-api-🚀",
            message=f"zoë@acme.com déployé 支付-api-🚀 — {_UNICODE_SOUP}",
            metaData={
                "名前": "値",
                "מפתח": "ערך",
                "ключ": "значение",
                "emoji 🔑": "🗝️",
                "soup": _UNICODE_SOUP,
            },
            subject={
                "subjectId": "cunicode00000000000000001",
                "subjectType": "user",
                "subjectSlug": "zoë.ødegaard@acme.com",
                "subjectDisplayName": "עמית לוי · 李娜 · Zoë",
                "subjectPatName": "ключ-🔑",
                "subjectControllerName": None,
                "subjectExternalIdentitySlug": None,
            },
        ),
        # Keys that are paths, contain separators and quotes, or collide once lower-cased.
        event(
            metaData={
                "spec.replicas": 3,
                "a b": "space",
                'it\'s "quoted"': True,
                "[0]": "bracket",
                "labels[app]": "payments",
                "key/with/slash": 1,
                "$ref": "#/components/schemas/X",
                "Replicas": 1,
                "replicas": 2,
                "": "empty key",
            }
        ),
        # metaData keys shadowing the event's own columns.
        event(
            metaData={
                "id": "not-the-event-id",
                "createdAt": "1999-01-01T00:00:00.000Z",
                "metaData": {"nested": True},
                "subject": "a string, not an object",
            }
        ),
    ]
    # One key, six JSON types across six events.
    events += [event(metaData={POLYMORPHIC_KEY: v}) for v in _POLYMORPHIC_VALUES]
    events += [
        event(metaData={}),
        event(metaData={"tree": _deep(8), "list": [[[{"a": [{"b": [{"c": 1}]}]}]]]}),
        event(metaData={"manifestYaml": _manifest_yaml(_TWO_MB), "truncated": False}),
        # Numbers at the edges of what JSON parsers and JavaScript represent exactly.
        event(
            metaData={
                "beyondJsSafe": 9_007_199_254_740_993,
                "int64Max": 2**63 - 1,
                "int64Min": -(2**63),
                "uint64Max": 2**64 - 1,
                # What JavaScript prints for 2**64: exceeds unsigned 64 bits.
                "jsTwoTo64": 18_446_744_073_709_552_000,
                "pi": 3.141592653589793,
                "tiny": 5e-324,
                "huge": 1.7976931348623157e308,
                "negativeZero": -0.0,
                "exp": 1e21,
            }
        ),
        event(subject={**minimal_subject, **dict.fromkeys(SUBJECT_NULLABLE_FIELDS)}),
        event(subject=dict(minimal_subject)),
        # `message` is optional in the spec.
        _without(event(), "message"),
        event(
            resourceName="n" * 253,
            message="very long message: " + "lorem ipsum dolor sit amet " * 200,
        ),
        # Neighbours of `at`: the bounds of a window are where off-by-one errors live.
        event(-1),
        event(1),
        event(-1000),
        event(1000),
    ]
    # Updated days after creation.
    late_update = event()
    late_update["updatedAt"] = fac.fmt(ms + 3 * 86_400_000 + 123)
    events.append(late_update)
    return events


def _without(event: dict[str, Any], key: str) -> dict[str, Any]:
    event.pop(key, None)
    return event
