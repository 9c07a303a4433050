"""A fictional TrueFoundry tenant: clusters, workspaces, resources, subjects and the actions
that touch them. History generation draws from it.

Everything here is built once from a fixed seed, so the same resource keeps the same id in
every history (as it would in one real control plane); the history seed only decides which
events happen when.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from tfy_audit.simulator.actions import (
    ACTIONS,
    CODESERVER,
    JOB,
    NOTEBOOK,
    RSTUDIO,
    SERVICE,
    SSH,
    WORKFLOW,
    action_path,
    action_phrase,
    type_label,
)

TENANT: Final = "acme"
# Where the tenant's people work: most in Berlin, a smaller team in New York (IANA zones, so
# daylight saving moves the rhythm as it moves real working days).
HOME_TIMEZONE: Final = "Europe/Berlin"
REMOTE_TIMEZONE: Final = "America/New_York"
_CATALOG_SEED: Final = 20260801
_B36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class Resource:
    type: str
    id: str
    name: str
    fqn: str
    parent_id: str
    parent_type: str
    # The spec makes these required strings; account-level resources carry "".
    cluster_id: str
    workspace_id: str
    # Tail of the human message, e.g. " in workspace prod-eu".
    where: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Subject:
    type: str
    id: str
    slug: str | None
    display_name: str | None
    pat_name: str | None
    controller_name: str | None
    external_identity_slug: str | None
    # How messages name the actor ("alice@acme.com", "virtual account ci-deployer").
    who: str
    weight: float
    # The share of a history's window in which the subject acts: a subject that joins late is
    # first seen near the end; a token that stops early is dormant at the end.
    active_from: float = 0.0
    active_until: float = 1.0

    def active_at(self, fraction: float) -> bool:
        return self.active_from <= fraction < self.active_until

    def payload(self, *, legacy: bool) -> dict[str, str | None]:
        """The `subject` object. `legacy` events predate the controller / external-identity
        fields: the keys are absent, not null, as in rows written before a column existed."""
        out: dict[str, str | None] = {
            "subjectId": self.id,
            "subjectType": self.type,
            "subjectSlug": self.slug,
            "subjectDisplayName": self.display_name,
            "subjectPatName": self.pat_name,
        }
        if not legacy:
            out["subjectControllerName"] = self.controller_name
            out["subjectExternalIdentitySlug"] = self.external_identity_slug
        return out


@dataclass(frozen=True, slots=True)
class ActionSpec:
    action: str
    resource_type: str
    weight: float
    kind: str
    phrase: str
    path_prefix: str
    path_suffix: str
    pool: tuple[Resource, ...] = field(default=(), compare=False)

    def request_path(self, res: Resource) -> str:
        if not self.path_prefix.endswith("/"):
            return self.path_prefix  # the generic apply endpoint: no id in the URL
        return f"{self.path_prefix}{res.id}{self.path_suffix}"


def cuid(rng: random.Random) -> str:
    """A 25-character cuid-looking id ("c" + 24 base-36 characters)."""
    return "c" + "".join(_B36[rng.randrange(36)] for _ in range(24))


@dataclass(frozen=True, slots=True)
class Catalog:
    resources: dict[str, tuple[Resource, ...]]
    subjects: tuple[Subject, ...]
    actions: tuple[ActionSpec, ...]

    def subjects_of_type(self, subject_type: str) -> list[Subject]:
        return [s for s in self.subjects if s.type == subject_type]


class _Builder:
    def __init__(self) -> None:
        self.rng = random.Random(_CATALOG_SEED)
        self.by_type: dict[str, list[Resource]] = {}

    def add(
        self,
        rtype: str,
        name: str,
        parent: Resource | None,
        *,
        fqn: str | None = None,
        kind: str = "",
        cluster_id: str | None = None,
        workspace_id: str | None = None,
        where: str | None = None,
    ) -> Resource:
        if parent is None:
            parent_id, parent_type, parent_fqn, parent_where = "", "tenant", TENANT, ""
            inherited_cluster, inherited_ws = "", ""
        else:
            parent_id, parent_type, parent_fqn = parent.id, parent.type, parent.fqn
            parent_where = (
                ""
                if parent.type in {"tenant", "account"}
                else f" in {type_label(parent.type)} {parent.name}"
            )
            inherited_cluster, inherited_ws = parent.cluster_id, parent.workspace_id
        res = Resource(
            type=rtype,
            id=cuid(self.rng),
            name=name,
            fqn=fqn if fqn is not None else f"{parent_fqn}:{name}",
            parent_id=parent_id,
            parent_type=parent_type,
            cluster_id=inherited_cluster if cluster_id is None else cluster_id,
            workspace_id=inherited_ws if workspace_id is None else workspace_id,
            where=parent_where if where is None else where,
            kind=kind,
        )
        self.by_type.setdefault(rtype, []).append(res)
        return res

    def many(self, rtype: str, names: Sequence[str], parents: Sequence[Resource]) -> None:
        for i, name in enumerate(names):
            self.add(rtype, name, parents[i % len(parents)])


_CLUSTERS: Final = ("aws-euwe1-prod", "aws-use1-prod", "gcp-usc1-staging", "azure-sea-dev")
_WORKSPACES: Final = (
    ("prod-eu", 0),
    ("payments-eu", 0),
    ("search-eu", 0),
    ("ml-serving-eu", 0),
    ("data-eng-eu", 0),
    ("prod-us", 1),
    ("payments-us", 1),
    ("recsys-us", 1),
    ("ml-serving-us", 1),
    ("llm-platform", 1),
    ("staging", 2),
    ("qa", 2),
    ("ml-research", 2),
    ("data-science", 2),
    ("perf-lab", 2),
    ("dev-shared", 3),
    ("dev-alice", 3),
    ("dev-bob", 3),
    ("sandbox", 3),
    ("interns-2026", 3),
)
_SERVICES: Final = (
    "payments-api",
    "checkout-web",
    "fraud-scorer",
    "search-gateway",
    "embedder",
    "ranker",
    "llm-router",
    "feature-store",
    "auth-proxy",
    "notifications",
)
_JOBS: Final = ("nightly-etl", "retrain-fraud", "backfill-events", "eval-llm", "dbt-run")
_NOTEBOOKS: Final = ("jupyter-alice", "jupyter-bob", "eda-churn", "gpu-notebook")
_WORKFLOWS: Final = ("finetune-llama", "batch-inference", "data-quality-wf")
_USERS: Final = (
    ("alice", "Alice Martin"),
    ("bob", "Bob Chen"),
    ("carol", "Carol Okafor"),
    ("dave", "Dave Kowalski"),
    ("erin", "Erin O'Brien"),
    ("frank", "Frank Müller"),
    ("grace", "Grace Hopper-Lee"),
    ("heidi", "Heidi Schäfer"),
    ("ivan", "Ivan Petrov"),
    ("judy", "Judy Nakamura"),
    ("mallory", "Mallory Brown"),
    ("niaj", "Niaj Hassan"),
    ("olivia", "Olivia Rossi"),
    ("peggy", "Peggy Dubois"),
    ("rupert", "Rupert Singh"),
    ("sybil", "Sybil Andersen"),
    ("trent", "Trent Walker"),
    ("victor", "Víctor García"),
    ("walter", "Walter Nowak"),
    ("zoe", "Zoë Ødegaard"),
    ("li.na", "李娜"),
    ("wei.zhang", "张伟"),
    ("yuki", "佐藤 由紀"),
    ("omar", "عمر الفاروق"),
    ("noa", "נועה כהן"),
    ("priya", "Priya Raghunathan"),
    ("kwame", "Kwame Mensah"),
    ("sven", "Sven Lindqvist"),
    ("ana", "Ana Luísa Ferreira"),
    ("dmitri", "Дмитрий Иванов"),
)


@cache
def build_catalog() -> Catalog:
    b = _Builder()
    tenant = b.add("tenant", TENANT, None, fqn=TENANT)
    b.add("account", TENANT, tenant, fqn=TENANT)
    clusters = [b.add("cluster", c, tenant, fqn=c, cluster_id=c) for c in _CLUSTERS]
    workspaces = []
    for name, ci in _WORKSPACES:
        ws = b.add("workspace", name, clusters[ci], fqn=f"{_CLUSTERS[ci]}:{name}")
        # A workspace's own events carry its id as workspaceId, and so do its children's.
        ws = dataclasses.replace(ws, workspace_id=ws.id)
        b.by_type["workspace"][-1] = ws
        workspaces.append(ws)
    for i, ws in enumerate(workspaces):
        # Every workspace runs a few services; the rest are spread so each kind has a pool.
        for j in range(3):
            name = _SERVICES[(i * 3 + j) % len(_SERVICES)]
            b.add("application", name, ws, kind=SERVICE)
        b.add("application", _JOBS[i % len(_JOBS)], ws, kind=JOB)
        extra = (
            (_NOTEBOOKS[i % len(_NOTEBOOKS)], NOTEBOOK),
            (f"vscode-{_USERS[i][0]}", CODESERVER),
            (f"ssh-{_USERS[i][0]}", SSH),
            (f"rstudio-{_USERS[i][0]}", RSTUDIO),
            (_WORKFLOWS[i % len(_WORKFLOWS)], WORKFLOW),
        )[i % 5]
        b.add("application", extra[0], ws, kind=extra[1])
        if i % 2 == 0:
            b.add("application", _NOTEBOOKS[(i + 1) % len(_NOTEBOOKS)], ws, kind=NOTEBOOK)
    for app in list(b.by_type["application"]):
        if app.kind in {SERVICE, JOB}:
            for version in (b.rng.randint(1, 40), b.rng.randint(41, 120)):
                b.add("deployment", app.name, app, fqn=f"{app.fqn}:{version}", where=app.where)
    groups = [
        b.add("secret-group", g, tenant)
        for g in ("payments", "ml-platform", "data-eng", "llm-keys", "ci", "observability")
    ]
    secret_names = (
        "STRIPE_API_KEY",
        "DB_PASSWORD",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "HF_TOKEN",
        "GITHUB_TOKEN",
        "DATADOG_API_KEY",
        "SNOWFLAKE_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "SLACK_WEBHOOK_URL",
        "REDIS_URL",
        "WANDB_API_KEY",
    )
    for i in range(36):
        group = groups[i % len(groups)]
        b.add("secret", secret_names[(i * 5) % len(secret_names)], group)
    b.many("environment", ("production", "staging", "development"), [tenant])
    providers = [
        b.add("provider-account", n, tenant)
        for n in ("aws-prod", "gcp-ml", "azure-dev", "openai-main", "anthropic-main")
    ]
    b.many(
        "provider-integration",
        ("s3-artifacts", "gcs-datasets", "blob-logs", "gpt-4o", "claude-sonnet", "bedrock"),
        [providers[0], providers[1], providers[2], providers[3], providers[4], providers[0]],
    )
    b.many("docker-registry", ("ecr-prod", "gar-ml", "acr-dev"), providers[:3])
    b.many("vcs-integration", ("github-acme", "gitlab-data"), [tenant])
    b.many("mlf-project", ("fraud-models", "llm-evals", "recsys-experiments", "churn"), [tenant])
    b.many("repository", ("shared-datasets", "prompt-artifacts"), [tenant])
    teams = ["platform", "ml-research", "payments", "data-eng", "sre", "security"]
    b.many("team", teams, [tenant])
    b.many("service-account", ("gitops-sa", "terraform-sa"), [tenant])
    b.many("virtual-account", ("ci-deployer", "airflow", "grafana-reader", "llm-batch"), [tenant])
    for login, _ in _USERS:
        email = f"{login}@acme.com"
        b.add("user", email, tenant, fqn=email)
    b.many(
        "role",
        ("tenant-admin", "workspace-admin", "workspace-editor", "viewer", "llm-user"),
        [tenant],
    )
    b.many(
        "role-binding",
        ("platform-admins", "ml-editors", "payments-viewers", "sre-oncall", "llm-users"),
        [tenant],
    )
    b.many("policy", ("require-resource-limits", "no-public-endpoints", "gpu-quota"), [tenant])
    b.many("settings", ("tenant-settings", "sso-settings", "gateway-settings"), [tenant])
    b.many("llm-gateway", ("default-rate-limits", "batch-rate-limits"), [tenant])
    alert_configs = [
        b.add("alert-config", n, workspaces[i])
        for i, n in enumerate(("payments-alerts", "search-alerts", "ml-alerts"))
    ]
    b.many(
        "alert-rule",
        ("high-error-rate", "p99-latency", "pod-restarts", "gpu-idle"),
        alert_configs,
    )
    b.many("gateway-config", ("routing", "fallbacks", "guardrails"), [tenant])
    b.many("gateway-controls", ("model-access", "pii-redaction"), [tenant])
    b.many("gateway-budget", ("team-ml-monthly", "team-payments-monthly"), [tenant])
    projects = [b.add("tracing-project", n, tenant) for n in ("support-bot", "search-rag")]
    b.many("tracing-application", ("support-bot-web", "support-bot-slack", "rag-api"), projects)
    agents = [b.add("agent", n, tenant) for n in ("support-agent", "sql-copilot", "triage-bot")]
    b.many("agent-app", ("support-widget", "sql-copilot-slack"), agents)
    b.many("gateway-installation", ("gw-eu", "gw-us"), clusters[:2])
    idps = [b.add("external-identity-provider", n, tenant) for n in ("okta", "azure-ad")]
    b.many("external-identity", ("okta-contractors", "azure-ad-partners", "github-oidc"), idps)
    b.many("sso-based-identity", ("okta-sso", "azure-ad-sso"), idps)
    b.many("agent-identity", ("support-agent-id", "sql-copilot-id"), agents[:2])
    b.many("mcp-server", ("github-mcp", "jira-mcp", "postgres-mcp", "slack-mcp"), [tenant])

    resources = {k: tuple(v) for k, v in b.by_type.items()}
    return Catalog(resources=resources, subjects=_subjects(b.rng), actions=_action_specs(resources))


# Admin roles and bindings are granted far less often than the others.
_RARE_TARGETS: Final = frozenset({"platform-admins", "tenant-admin"})
_COMMON_TARGET_WEIGHT: Final = 8


def _action_specs(resources: dict[str, tuple[Resource, ...]]) -> tuple[ActionSpec, ...]:
    specs = []
    for action, rtype, weight, kind in ACTIONS:
        pool = resources[rtype]
        if kind:
            pool = tuple(r for r in pool if r.kind == kind)
        if any(r.name in _RARE_TARGETS for r in pool):
            # a pick is uniform over the pool: the others appear several times
            pool = tuple(
                r
                for r in pool
                for _ in range(1 if r.name in _RARE_TARGETS else _COMMON_TARGET_WEIGHT)
            )
        prefix, suffix = action_path(action, rtype)
        specs.append(
            ActionSpec(
                action=action,
                resource_type=rtype,
                weight=weight,
                kind=kind,
                phrase=action_phrase(action, rtype, kind),
                path_prefix=prefix,
                path_suffix=suffix,
                pool=pool,
            )
        )
    return tuple(specs)


def _subjects(rng: random.Random) -> tuple[Subject, ...]:
    out: list[Subject] = []
    for i, (login, display) in enumerate(_USERS):
        uid = cuid(rng)
        email = f"{login}@acme.com"
        # Busy engineers first: activity is skewed, as in any real tenant.
        weight = 6.0 / (1 + i * 0.25)
        out.append(Subject("user", uid, email, display, None, None, None, email, weight))
        if i % 3 == 0:
            pat = f"{login.split('.')[0]}-cli"
            # judy's PAT, left on an old laptop, stops being used halfway through
            until = 0.45 if login == "judy" else 1.0
            out.append(
                Subject(
                    "user", uid, email, display, pat, None, None, email, weight * 0.4, 0.0, until
                )
            )
    for name, display in (
        ("platform", "Platform"),
        ("ml-research", "ML Research"),
        ("sre", "SRE"),
        ("data-eng", "Data Engineering"),
        ("payments", "Payments"),
        ("security", "Security"),
    ):
        out.append(Subject("team", cuid(rng), name, display, None, None, None, f"team {name}", 0.3))
    # grafana-reader's dashboards were retired: its token goes quiet after half the window
    for name, pat, controller, until in (
        ("ci-deployer", "ci-deployer-token", None, 1.0),
        ("airflow", "airflow-token", None, 1.0),
        ("grafana-reader", "grafana-token", None, 0.5),
        ("llm-batch", "llm-batch-token", None, 1.0),
        ("argo-sync", "argo-sync-token", "argocd", 1.0),
        ("flux-sync", "flux-token", "flux", 1.0),
    ):
        out.append(
            Subject(
                "virtualaccount",
                cuid(rng),
                name,
                name,
                pat,
                controller,
                None,
                f"virtual account {name}",
                2.5,
                active_until=until,
            )
        )
    # terraform moved to the gitops controller: terraform-sa's token stops at 60%
    for name, controller, until in (
        ("gitops-sa", "tfy-gitops-controller", 1.0),
        ("terraform-sa", "terraform-provider-truefoundry", 0.6),
        ("autopilot", "tfy-autopilot", 1.0),
        ("cluster-agent", "tfy-agent", 1.0),
    ):
        out.append(
            Subject(
                "serviceaccount",
                cuid(rng),
                name,
                name,
                f"{name}-token",
                controller,
                None,
                f"service account {name}",
                2.0,
                active_until=until,
            )
        )
    for idp, email in (
        ("idp-1", "alice@example.com"),
        ("idp-1", "contractor.jane@example.com"),
        ("idp-1", "partner-bot@example.org"),
        ("idp-2", "auditor@bigfour.example"),
        ("idp-2", "vendor.sam@example.net"),
        ("idp-3", "gh-actions@github.example"),
    ):
        slug = f"{idp}:sub:{email}"
        out.append(
            Subject(
                "external-identity",
                cuid(rng),
                email,
                email,
                None,
                None,
                slug,
                f"external identity {email}",
                0.4,
            )
        )
    for name, controller in (
        ("support-agent", "agent-gateway"),
        ("sql-copilot", "agent-gateway"),
        ("triage-bot", "mcp-gateway"),
        ("release-bot", None),
    ):
        out.append(
            Subject(
                "agent-identity",
                cuid(rng),
                name,
                name.replace("-", " ").title(),
                None,
                controller,
                None,
                f"agent {name}",
                0.8,
            )
        )
    for name in ("tenant-admin", "cluster-reconciler"):
        out.append(Subject("role", cuid(rng), name, name, None, None, None, f"role {name}", 0.15))
    # Subjects that appear late in the window (new hires, a contractor, an auditor's identity,
    # a new automation account), last so that everything above keeps its id.
    for login, display, start in (
        ("nina.berg", "Nina Berg", 0.78),
        ("tomasz", "Tomasz Wiśniewski", 0.86),
        ("ext.contractor", "Contractor (Red Team)", 0.93),
    ):
        email = f"{login}@acme.com"
        out.append(Subject("user", cuid(rng), email, display, None, None, None, email, 1.2, start))
    ext = "pentest@redteam.example"
    out.append(
        Subject(
            "external-identity",
            cuid(rng),
            ext,
            ext,
            None,
            None,
            f"idp-2:sub:{ext}",
            f"external identity {ext}",
            0.6,
            0.9,
        )
    )
    out.append(
        Subject(
            "virtualaccount",
            cuid(rng),
            "eval-runner",
            "eval-runner",
            "eval-runner-token",
            None,
            None,
            "virtual account eval-runner",
            1.5,
            0.82,
        )
    )
    return tuple(out)
