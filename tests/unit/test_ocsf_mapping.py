"""The OCSF mapping's tables: every action and subject type of the spec and of the simulator's
catalogue has a rule, the tables name only what exists, and docs/ocsf.md shows them."""

from __future__ import annotations

from tfy_audit._ocsf.doc import BEGIN, END, mapping_markdown
from tfy_audit._ocsf.mapping import (
    action_rules,
    activities,
    classes,
    resolve,
    user_types,
    verb_of,
)
from tfy_audit.simulator.actions import ACTIONS
from tfy_audit.simulator.spec_enums import SPEC_ACTIONS, SPEC_SUBJECT_TYPES

from scripts.ocsf_mapping_doc import DOC, documented_actions, documented_subject_types


def test_every_spec_and_catalogue_action_has_a_rule() -> None:
    actions = {*SPEC_ACTIONS, *(a[0] for a in ACTIONS)}
    unruled = {a for a in actions if a not in action_rules() and verb_of(a) is None}
    assert unruled == set()
    for action in actions:
        r = resolve(action)
        assert (r.class_uid, r.activity_id) in activities()
        assert r.rule != "no rule: Other"


def test_special_actions_are_spec_actions_of_a_known_class() -> None:
    assert set(action_rules()) <= set(SPEC_ACTIONS)
    assert {r.class_uid for r in action_rules().values()} <= set(classes())


def test_every_spec_subject_type_has_a_user_type() -> None:
    assert set(SPEC_SUBJECT_TYPES) <= set(user_types())


def test_resolve_examples() -> None:
    assert (resolve("DELETE_SECRET").class_uid, resolve("DELETE_SECRET").activity_id) == (6003, 4)
    assert resolve("CREATE_OR_UPDATE_GATEWAY_CONFIG").activity_id == 3  # the longest verb
    assert resolve("CREATE_SECRET").activity_id == 1
    assert resolve("READ_CLUSTER_INFRA_DEPLOY_PAYLOAD").activity_id == 2
    assert (resolve("DEACTIVATE_USER").class_uid, resolve("DEACTIVATE_USER").activity_id) == (
        3001,
        5,
    )
    unknown = resolve("ROTATE_SIGNING_KEY")  # not in the spec yet: API Activity, Other
    assert (unknown.class_uid, unknown.activity_id, unknown.activity_name) == (6003, 99, "Other")


def test_the_document_shows_the_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    shown = BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END
    expected = mapping_markdown(documented_actions(), documented_subject_types())
    assert shown == expected, "run: .venv/bin/python scripts/ocsf_mapping_doc.py"
