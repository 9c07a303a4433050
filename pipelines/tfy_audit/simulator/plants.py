"""Attack patterns planted into a quiet history, for the detection rules' tests and demos.

`quiet_history` is the simulator's history kept to what a quiet tenant's days hold: the home
team's working hours (Europe/Berlin, weekdays 08-19) and none of the incidents the rule pack
names (admin grants, identity-provider changes, deletions of tenants, clusters, secret groups,
alerting or gateway guardrails, reactivations, external identities handing out access): the
simulator draws those at random, where a real tenant has them only when something happens.
Bursts, first-seen and token rules still meet the history's full routine volume.

`plant_patterns(day)` returns one `Plant` per rule of the pack, each with its events on `day`
(a UTC midnight) and what the rule must report: the dedup key and the ids of the events in the
alert, computed here from the plant, never from the rule's SQL.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from tfy_audit.simulator.catalog import HOME_TIMEZONE, Resource, Subject, build_catalog
from tfy_audit.simulator.history import generate_history, make_event
from tfy_audit.simulator.timestamps import parse_ts

_INCIDENT_ACTIONS: Final = frozenset(
    {
        "APPLY_EXTERNAL_IDENTITY_PROVIDER",
        "DELETE_EXTERNAL_IDENTITY_PROVIDER",
        "DELETE_TENANT",
        "DELETE_ACCOUNT",
        "DELETE_CLUSTER",
        "DELETE_SECRET_GROUP",
        "DELETE_ALERT_CONFIG",
        "DELETE_ALERT_RULE",
        "DELETE_LLM_GATEWAY_RATE_LIMIT",
        "DELETE_GATEWAY_BUDGET",
        "ACTIVATE_USER",
    }
)
_ADMIN_TARGETS: Final = frozenset({"platform-admins", "tenant-admin", "gateway-controls"})
_ACCESS_ACTIONS: Final = frozenset(
    {
        "APPLY_ROLE_BINDING",
        "BULK_APPLY_ROLE_BINDING",
        "APPLY_ROLE",
        "UPDATE_USER_ROLES",
        "UPDATE_COLLABORATORS_ROLE",
        "ADD_COLLABORATORS",
        "CREATE_PAT",
        "CREATE_VIRTUAL_ACCOUNT",
        "REGENERATE_VIRTUAL_ACCOUNT_TOKEN",
    }
)


def _routine(event: dict[str, Any]) -> bool:
    local = parse_ts(event["createdAt"]).astimezone(ZoneInfo(HOME_TIMEZONE))
    if local.weekday() >= 5 or not 8 <= local.hour < 19:
        return False
    action, subject = event["action"], event["subject"]
    if action in _INCIDENT_ACTIONS:
        return False
    if event["resourceName"] in _ADMIN_TARGETS or event["resourceType"] in _ADMIN_TARGETS:
        return False
    external = subject.get("subjectType") == "external-identity" or bool(
        subject.get("subjectExternalIdentitySlug")
    )
    return not (external and action in _ACCESS_ACTIONS)


def quiet_history(count: int, *, days: float, end: datetime, seed: int) -> list[dict[str, Any]]:
    """`generate_history`'s events that a quiet tenant's days hold (see the module docstring)."""
    return [e for e in generate_history(count, days=days, end=end, seed=seed) if _routine(e)]


@dataclass(frozen=True)
class Plant:
    rule_id: str
    events: list[dict[str, Any]]
    dedup_key: dict[str, str]
    alert_event_ids: list[str]


def _resource(rtype: str, name: str) -> Resource:
    return next(r for r in build_catalog().resources[rtype] if r.name == name)


def _subject(slug: str, pat: str | None = None) -> Subject:
    return next(s for s in build_catalog().subjects if s.slug == slug and s.pat_name == pat)


def _new_subject(kind: str, slug: str, seed: int, pat: str | None = None) -> Subject:
    rng = random.Random(seed)
    sid = "c" + "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(24))
    return Subject(kind, sid, slug, slug, pat, None, None, slug, 0.0)


class _Planter:
    def __init__(self, day: datetime) -> None:
        self.day = day
        self.rng = random.Random(int(day.timestamp()))

    def event(self, at: timedelta, action: str, res: Resource, subject: Subject) -> dict[str, Any]:
        event = make_event(self.rng, self.day + at)
        event.update(
            action=action,
            resourceId=res.id,
            resourceType=res.type,
            resourceName=res.name,
            resourceFqn=res.fqn,
            parentResourceId=res.parent_id,
            parentResourceType=res.parent_type,
            clusterId=res.cluster_id,
            workspaceId=res.workspace_id,
            subject=subject.payload(legacy=False),
            message=f"{subject.who} {action.lower().replace('_', ' ')} {res.name}",
        )
        return event


def _m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def plant_patterns(day: datetime) -> list[Plant]:
    """One plant per rule of the pack, on `day` (UTC midnight of a weekday); a plant's events
    are in working hours unless off hours are its point."""
    p = _Planter(day)
    mallory = _subject("mallory@acme.com")
    plants: list[Plant] = []

    def single(rule: str, at: float, action: str, res: Resource, who: Subject) -> None:
        event = p.event(_m(at), action, res, who)
        plants.append(Plant(rule, [event], {"subject_id": who.id, "resource_id": res.id},
                            [event["id"]]))  # fmt: skip

    binding = _resource("role-binding", "platform-admins")
    single("tfy-admin-role-granted", 600, "APPLY_ROLE_BINDING", binding, mallory)

    # a PAT made for mallory, then a token of hers never seen before acts twice within the hour
    backdoor = replace(mallory, pat_name="mallory-backdoor")
    created = p.event(_m(540), "CREATE_PAT", _resource("user", "mallory@acme.com"), mallory)
    uses = [p.event(_m(560 + 20 * i), "START_NOTEBOOK", _resource("application", "eda-churn"),
                    backdoor) for i in range(2)]  # fmt: skip
    plants.append(Plant("tfy-token-created-then-used", [created, *uses],
                        {"subject_slug": "mallory@acme.com", "token_name": "mallory-backdoor"},
                        sorted(e["id"] for e in uses)))  # fmt: skip

    # terraform-sa's token went quiet days ago (catalog.py): now it rewrites twelve secrets
    terraform = _subject("terraform-sa", "terraform-sa-token")
    secrets = build_catalog().resources["secret"]
    burst = [p.event(_m(660 + 2 * i), "UPDATE_SECRET", secrets[i], terraform) for i in range(12)]
    plants.append(Plant("tfy-secrets-bulk-change", burst, {"subject_id": terraform.id},
                        sorted(e["id"] for e in burst)))  # fmt: skip

    recon = _new_subject("virtualaccount", "recon-bot", 1, "recon-bot-token")
    reads = [p.event(_m(780 + 5 * i), "READ_CLUSTER_INFRA_DEPLOY_PAYLOAD", cluster, recon)
             for i, cluster in enumerate(build_catalog().resources["cluster"])]  # fmt: skip
    plants.append(Plant("tfy-infra-payload-read-bulk", reads, {"subject_id": recon.id},
                        sorted(e["id"] for e in reads)))  # fmt: skip

    wiper = _new_subject("user", "wiper@acme.com", 2)
    apps = [a for a in build_catalog().resources["application"] if a.kind == "service"]
    wiped = [p.event(_m(840 + 5 * i), "DELETE_APPLICATION", apps[i], wiper) for i in range(6)]
    plants.append(Plant("tfy-deletion-burst", wiped, {"subject_id": wiper.id},
                        sorted(e["id"] for e in wiped)))  # fmt: skip

    alerts = _resource("alert-config", "payments-alerts")
    single("tfy-alerting-config-deleted", 880, "DELETE_ALERT_CONFIG", alerts, mallory)
    okta = _resource("external-identity-provider", "okta")
    single("tfy-identity-provider-changed", 900, "APPLY_EXTERNAL_IDENTITY_PROVIDER", okta, mallory)

    # an identity never seen before starts at 03:30 in Berlin
    stranger = _new_subject("external-identity", "night@unknown.example", 3)
    notebook = _resource("application", "gpu-notebook")
    night = [p.event(_m(150 + 10 * i), "START_NOTEBOOK", notebook, stranger) for i in range(2)]
    plants.append(Plant("tfy-new-subject-off-hours", night, {"subject_id": stranger.id},
                        [night[0]["id"]]))  # fmt: skip

    quota = _resource("policy", "gpu-quota")
    single("tfy-policy-settings-off-hours", 1350, "APPLY_POLICY", quota, mallory)

    zoe = _resource("user", "zoe@acme.com")
    off = p.event(_m(-24 * 60 + 600), "DEACTIVATE_USER", zoe, mallory)
    on = p.event(_m(630), "ACTIVATE_USER", zoe, mallory)
    plants.append(Plant("tfy-user-deactivated-reactivated", [off, on], {"resource_id": zoe.id},
                        [on["id"]]))  # fmt: skip

    account = _resource("account", "acme")
    single("tfy-tenant-or-account-deleted", 960, "DELETE_ACCOUNT", account, mallory)
    group = _resource("secret-group", "llm-keys")
    single("tfy-secret-group-deleted", 970, "DELETE_SECRET_GROUP", group, mallory)

    jane = _subject("contractor.jane@example.com")
    workspace = _resource("workspace", "payments-eu")
    added = p.event(_m(720), "ADD_COLLABORATORS", workspace, jane)
    plants.append(Plant("tfy-external-identity-grants-access", [added], {"subject_id": jane.id},
                        [added["id"]]))  # fmt: skip

    # walter's laptop token, last used twenty days ago, acts again
    laptop = replace(_subject("walter@acme.com"), pat_name="walter-laptop")
    old = p.event(_m(-20 * 24 * 60 + 600), "TRIGGER_JOB", _resource("application", "dbt-run"),
                  laptop)  # fmt: skip
    again = p.event(_m(690), "TRIGGER_JOB", _resource("application", "dbt-run"), laptop)
    key = {"subject_id": laptop.id, "token_name": "walter-laptop"}
    plants.append(Plant("tfy-dormant-token-reused", [old, again], key, [again["id"]]))

    locker = _new_subject("user", "locker@acme.com", 4)
    spaces = build_catalog().resources["workspace"]
    removed = [p.event(_m(910 + 4 * i), "REMOVE_COLLABORATORS", spaces[i], locker)
               for i in range(5)]  # fmt: skip
    plants.append(Plant("tfy-access-removal-burst", removed, {"subject_id": locker.id},
                        sorted(e["id"] for e in removed)))  # fmt: skip

    controls = _resource("gateway-controls", "pii-redaction")
    single("tfy-gateway-guardrail-removed", 940, "DELETE_GATEWAY_CONFIG", controls, mallory)
    cluster = _resource("cluster", "azure-sea-dev")
    single("tfy-cluster-deleted", 980, "DELETE_CLUSTER", cluster, mallory)
    return plants
