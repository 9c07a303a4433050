"""The OCSF mapping's tables, read from the CSV files beside this module, and the one rule that
applies them to an action.

The tables are the mapping (docs/ocsf.md is generated from them):

- `classes.csv`: the OCSF classes events go to, their category, the Security Lake custom
  source each is exported as, and the objects (beyond the base event's) each carries.
- `activities.csv`: each class's `activity_id` values and their captions (`activity_name`).
- `verbs.csv`: an action's verb (the longest listed prefix of its name, e.g. `CREATE_OR_UPDATE`
  before `CREATE`) -> API Activity's `activity_id`.
- `actions.csv`: the actions that go to another class than API Activity, with their activity.
- `user_types.csv`: a subject type (or an account's resource type) -> OCSF User `type_id`.

An action no table names (one the service ships before the spec lists it) is API Activity with
`activity_id` 99 (Other); a subject type none names is User `type_id` 99 with its own name as
`type`. The view (`_warehouse/sql/ocsf_api_activity.sql`) applies the same rule in SQL, from
these tables put in as VALUES (`values_sql`), so the export and the view cannot disagree.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources
from typing import Final

OCSF_VERSION: Final = "1.1.0"
API_ACTIVITY: Final = 6003
OTHER: Final = 99
PRODUCT_NAME: Final = "TrueFoundry"
VENDOR_NAME: Final = "TrueFoundry"

_PACKAGE: Final = "tfy_audit._ocsf"


@dataclass(frozen=True)
class OcsfClass:
    uid: int
    name: str
    category_uid: int
    category_name: str
    source: str  # the Security Lake custom source's folder under the export's root
    objects: tuple[str, ...]  # top-level objects it carries beyond the base event's


@dataclass(frozen=True)
class ActionRule:
    action: str
    class_uid: int
    activity_id: int
    reason: str


@dataclass(frozen=True)
class VerbRule:
    verb: str
    activity_id: int
    reason: str


@dataclass(frozen=True)
class UserType:
    name: str
    type_id: int
    type: str
    reason: str


@dataclass(frozen=True)
class Resolved:
    """Where one action goes: its class and activity."""

    class_uid: int
    activity_id: int
    activity_name: str
    rule: str  # which table row decided it, for the documentation


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@functools.cache
def classes() -> dict[int, OcsfClass]:
    return {
        int(r["class_uid"]): OcsfClass(
            int(r["class_uid"]),
            r["class_name"],
            int(r["category_uid"]),
            r["category_name"],
            r["source"],
            tuple(r["objects"].split()),
        )
        for r in _rows("classes.csv")
    }


@functools.cache
def activities() -> dict[tuple[int, int], str]:
    return {
        (int(r["class_uid"]), int(r["activity_id"])): r["activity_name"]
        for r in _rows("activities.csv")
    }


@functools.cache
def action_rules() -> dict[str, ActionRule]:
    return {
        r["action"]: ActionRule(
            r["action"], int(r["class_uid"]), int(r["activity_id"]), r["reason"]
        )
        for r in _rows("actions.csv")
    }


@functools.cache
def verb_rules() -> dict[str, VerbRule]:
    return {
        r["verb"]: VerbRule(r["verb"], int(r["activity_id"]), r["reason"])
        for r in _rows("verbs.csv")
    }


@functools.cache
def user_types() -> dict[str, UserType]:
    return {
        r["name"]: UserType(r["name"], int(r["type_id"]), r["type"], r["reason"])
        for r in _rows("user_types.csv")
    }


def verb_of(action: str) -> VerbRule | None:
    """The longest listed verb the action starts with (`CREATE_OR_UPDATE_X` is
    `CREATE_OR_UPDATE`, not `CREATE`), compared case-blind as the view compares it."""
    name = action.upper()
    found = [
        rule for verb, rule in verb_rules().items() if name == verb or name.startswith(verb + "_")
    ]
    return max(found, key=lambda rule: len(rule.verb)) if found else None


def resolve(action: str) -> Resolved:
    """The class and activity of an action, by the rule the module docstring states."""
    special = action_rules().get(action.upper())
    if special is not None:
        class_uid, activity_id, rule = special.class_uid, special.activity_id, "actions.csv"
    else:
        verb = verb_of(action)
        class_uid = API_ACTIVITY
        activity_id = verb.activity_id if verb else OTHER
        rule = f"verbs.csv: {verb.verb}" if verb else "no rule: Other"
    return Resolved(class_uid, activity_id, activities()[(class_uid, activity_id)], rule)


def _literal(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _values(rows: list[tuple[str | int, ...]]) -> str:
    return ",\n        ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)


def values_sql() -> dict[str, str]:
    """The tables as the rows of SQL `VALUES` lists, by the view's placeholder name."""
    return {
        "ocsf_actions": _values(
            [(r.action, r.class_uid, r.activity_id) for r in action_rules().values()]
        ),
        "ocsf_verbs": _values([(r.verb, r.activity_id) for r in verb_rules().values()]),
        "ocsf_activities": _values([(c, a, n) for (c, a), n in activities().items()]),
        "ocsf_classes": _values(
            [(c.uid, c.name, c.category_uid, c.category_name) for c in classes().values()]
        ),
        "ocsf_user_types": _values([(t.name, t.type_id, t.type) for t in user_types().values()]),
        "ocsf_version": _literal(OCSF_VERSION),
        "ocsf_product": _literal(PRODUCT_NAME),
        "ocsf_vendor": _literal(VENDOR_NAME),
    }
