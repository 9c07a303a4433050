"""The actions the simulated tenant performs: each with its resource type, how often it
happens and what kind of application it touches, and how the service words and routes it (the
event's `message` phrase and `requestPath`). Data for the catalog (catalog.py), kept apart from
the tenant it is drawn over.
"""

from __future__ import annotations

from typing import Final

# Application kinds, so that notebook actions touch notebooks and job actions touch jobs.
SERVICE, JOB, NOTEBOOK, CODESERVER, SSH, RSTUDIO, WORKFLOW = (
    "service",
    "job",
    "notebook",
    "codeserver",
    "ssh-server",
    "rstudio",
    "workflow",
)

# (action, resource type, relative frequency, application kind or ""). What a security lead
# would call critical (deleting a tenant, a cluster, a secret group, a role; changing the
# identity providers) is rare, as in a real tenant.
ACTIONS: Final[tuple[tuple[str, str, float, str], ...]] = (
    ("APPLY_ACCOUNT", "account", 0.3, ""),
    ("DELETE_ACCOUNT", "account", 0.005, ""),
    ("CREATE_DEPLOYMENT", "deployment", 60, ""),
    ("CANCEL_DEPLOYMENT", "deployment", 4, ""),
    ("DELETE_APPLICATION", "application", 5, SERVICE),
    ("PAUSE_APPLICATION", "application", 6, SERVICE),
    ("RESUME_APPLICATION", "application", 6, SERVICE),
    ("START_NOTEBOOK", "application", 18, NOTEBOOK),
    ("STOP_NOTEBOOK", "application", 16, NOTEBOOK),
    ("START_CODESERVER", "application", 8, CODESERVER),
    ("STOP_CODESERVER", "application", 7, CODESERVER),
    ("START_SSH_SERVER", "application", 4, SSH),
    ("STOP_SSH_SERVER", "application", 4, SSH),
    ("START_RSTUDIO", "application", 2, RSTUDIO),
    ("STOP_RSTUDIO", "application", 2, RSTUDIO),
    ("CREATE_CLUSTER", "cluster", 0.1, ""),
    ("UPDATE_CLUSTER", "cluster", 1, ""),
    ("DELETE_CLUSTER", "cluster", 0.01, ""),
    ("CREATE_CLUSTER_INFRA", "cluster", 0.1, ""),
    ("UPDATE_CLUSTER_INFRA", "cluster", 0.5, ""),
    ("READ_CLUSTER_INFRA_DEPLOY_PAYLOAD", "cluster", 0.5, ""),
    ("CORDON_NODE", "cluster", 1, ""),
    ("UNCORDON_NODE", "cluster", 1, ""),
    ("TOGGLE_AUTOPILOT", "application", 1, SERVICE),
    ("TRIGGER_JOB", "application", 30, JOB),
    ("TERMINATE_JOB", "application", 4, JOB),
    ("APPLY_RECOMMENDATION", "application", 2, SERVICE),
    ("UPGRADE_ADDON", "cluster", 0.5, ""),
    ("APPLY_TEAM", "team", 1.5, ""),
    ("DELETE_ROLE", "role", 0.02, ""),
    ("APPLY_ROLE", "role", 0.5, ""),
    ("DELETE_TEAM", "team", 0.2, ""),
    ("APPLY_ML_REPO", "mlf-project", 2, ""),
    ("APPLY_ML_REPO", "repository", 0.5, ""),
    ("DELETE_ML_REPO", "mlf-project", 0.3, ""),
    ("DELETE_ML_REPO", "repository", 0.1, ""),
    ("APPLY_PROVIDER_ACCOUNT", "provider-account", 1, ""),
    ("DELETE_PROVIDER_ACCOUNT", "provider-account", 0.1, ""),
    ("APPLY_PROVIDER_INTEGRATION", "provider-integration", 1.5, ""),
    ("APPLY_PROVIDER_INTEGRATION", "docker-registry", 0.5, ""),
    ("DELETE_PROVIDER_INTEGRATION", "provider-integration", 0.2, ""),
    ("DELETE_PROVIDER_INTEGRATION", "docker-registry", 0.1, ""),
    ("CREATE_SECRET_GROUP", "secret-group", 0.5, ""),
    ("UPDATE_SECRET_GROUP", "secret-group", 2, ""),
    ("DELETE_SECRET_GROUP", "secret-group", 0.03, ""),
    ("CREATE_SECRET", "secret", 6, ""),
    ("UPDATE_SECRET", "secret", 10, ""),
    ("DELETE_SECRET", "secret", 2, ""),
    ("EXECUTE_WORKFLOW", "application", 10, WORKFLOW),
    ("TERMINATE_WORKFLOW", "application", 1.5, WORKFLOW),
    ("RECOVER_WORKFLOW", "application", 0.5, WORKFLOW),
    ("APPROVE_WORKFLOW_SIGNAL", "application", 1, WORKFLOW),
    ("DENY_WORKFLOW_SIGNAL", "application", 0.3, WORKFLOW),
    ("SET_WORKFLOW_SIGNAL", "application", 0.5, WORKFLOW),
    ("APPLY_WORKSPACE", "workspace", 4, ""),
    ("DELETE_WORKSPACE", "workspace", 0.2, ""),
    ("APPLY_INTERCEPT", "application", 1, SERVICE),
    ("ADD_COLLABORATORS", "workspace", 3, ""),
    ("UPDATE_COLLABORATORS_ROLE", "workspace", 1, ""),
    ("REMOVE_COLLABORATORS", "workspace", 1, ""),
    ("CREATE_ENVIRONMENT", "environment", 0.1, ""),
    ("UPDATE_ENVIRONMENT", "environment", 0.3, ""),
    ("DELETE_ENVIRONMENT", "environment", 0.05, ""),
    ("APPLY_ENVIRONMENT", "environment", 0.3, ""),
    ("CREATE_APPLICATION_SET", "application", 0.5, SERVICE),
    ("CREATE_PAT", "user", 3, ""),
    ("DELETE_PAT", "user", 1.5, ""),
    ("CREATE_VIRTUAL_ACCOUNT", "virtual-account", 0.3, ""),
    ("CREATE_VIRTUAL_ACCOUNT", "service-account", 0.1, ""),
    ("APPLY_VIRTUAL_ACCOUNT", "virtual-account", 1, ""),
    ("APPLY_VIRTUAL_ACCOUNT", "service-account", 0.2, ""),
    ("DELETE_VIRTUAL_ACCOUNT", "virtual-account", 0.1, ""),
    ("REGENERATE_VIRTUAL_ACCOUNT_TOKEN", "virtual-account", 0.5, ""),
    ("SYNC_VIRTUAL_ACCOUNT_TOKEN_TO_SECRET_STORE", "virtual-account", 0.5, ""),
    ("CLONE_APPLICATION", "application", 1, SERVICE),
    ("PROMOTE_APPLICATION", "application", 3, SERVICE),
    ("PROMOTE_APPLICATION_ROLLOUT", "application", 2, SERVICE),
    ("TOGGLE_AUTOPILOT_FOR_CLUSTER", "cluster", 0.2, ""),
    ("CREATE_LLM_GATEWAY_RATE_LIMIT", "llm-gateway", 0.5, ""),
    ("UPDATE_LLM_GATEWAY_RATE_LIMIT", "llm-gateway", 1, ""),
    ("DELETE_LLM_GATEWAY_RATE_LIMIT", "llm-gateway", 0.2, ""),
    ("ADD_TRUEFOUNDRY_HOSTED_MODEL", "llm-gateway", 0.3, ""),
    ("DELETE_POD", "application", 3, SERVICE),
    ("APPLY_VCS_INTEGRATION", "vcs-integration", 0.2, ""),
    ("DELETE_VCS_INTEGRATION", "vcs-integration", 0.05, ""),
    ("DELETE_JOB_RUN", "application", 1, JOB),
    ("SYNC_METADATA_FOR_CLUSTER", "cluster", 0.5, ""),
    ("APPLY_POLICY", "policy", 0.8, ""),
    ("DELETE_POLICY", "policy", 0.1, ""),
    ("APPLY_SETTINGS", "settings", 0.5, ""),
    ("DELETE_SETTINGS", "settings", 0.05, ""),
    ("UPDATE_USER_ROLES", "user", 1, ""),
    ("INVITE_USER", "user", 1, ""),
    ("REGISTER_USER", "user", 0.8, ""),
    ("REGISTER_USER", "sso-based-identity", 0.3, ""),
    ("RESEND_USER_INVITE", "user", 0.3, ""),
    ("PRE_REGISTER_USERS", "user", 0.1, ""),
    ("ACTIVATE_USER", "user", 0.3, ""),
    ("ADD_USERS_TO_ACCOUNT", "account", 0.2, ""),
    ("DEACTIVATE_USER", "user", 0.2, ""),
    ("DELETE_USER", "user", 0.1, ""),
    ("SYNC_USERS_TO_AUTH_SERVER", "sso-based-identity", 0.2, ""),
    ("CHANGE_PASSWORD", "user", 0.3, ""),
    ("FORGOT_PASSWORD", "user", 0.2, ""),
    ("APPLY_ALERT_CONFIG", "alert-config", 0.8, ""),
    ("DELETE_ALERT_CONFIG", "alert-config", 0.1, ""),
    ("APPLY_ALERT_RULE", "alert-rule", 1, ""),
    ("DELETE_ALERT_RULE", "alert-rule", 0.2, ""),
    ("CREATE_OR_UPDATE_GATEWAY_CONFIG", "gateway-config", 1, ""),
    ("CREATE_OR_UPDATE_GATEWAY_CONFIG", "gateway-controls", 0.5, ""),
    ("DELETE_GATEWAY_CONFIG", "gateway-config", 0.1, ""),
    ("DELETE_GATEWAY_CONFIG", "gateway-controls", 0.05, ""),
    ("APPLY_GATEWAY_BUDGET", "gateway-budget", 0.5, ""),
    ("DELETE_GATEWAY_BUDGET", "gateway-budget", 0.1, ""),
    ("CREATE_TRACING_PROJECT", "tracing-project", 0.2, ""),
    ("UPDATE_TRACING_PROJECT", "tracing-project", 0.3, ""),
    ("DELETE_TRACING_PROJECT", "tracing-project", 0.05, ""),
    ("CREATE_TRACING_APPLICATION", "tracing-application", 0.3, ""),
    ("UPDATE_TRACING_APPLICATION", "tracing-application", 0.3, ""),
    ("DELETE_TRACING_APPLICATION", "tracing-application", 0.05, ""),
    ("DRAIN_NODE", "cluster", 0.5, ""),
    ("DELETE_NODE", "cluster", 0.3, ""),
    ("APPLY_AGENT", "agent", 1, ""),
    ("DELETE_AGENT", "agent", 0.1, ""),
    ("APPLY_AGENT_APP", "agent-app", 0.8, ""),
    ("DELETE_AGENT_APP", "agent-app", 0.1, ""),
    ("CREATE_AGENT_SESSION", "agent", 4, ""),
    ("UPDATE_AGENT_SESSION", "agent", 3, ""),
    ("CREATE_OR_UPDATE_GATEWAY_INSTALLATION", "gateway-installation", 0.2, ""),
    ("DELETE_GATEWAY_INSTALLATION", "gateway-installation", 0.05, ""),
    ("SYNC_APPLICATION", "application", 3, SERVICE),
    ("APPLY_EXTERNAL_IDENTITY", "external-identity", 0.5, ""),
    ("DELETE_EXTERNAL_IDENTITY", "external-identity", 0.1, ""),
    ("APPLY_AGENT_IDENTITY", "agent-identity", 0.3, ""),
    ("DELETE_AGENT_IDENTITY", "agent-identity", 0.05, ""),
    ("APPLY_EXTERNAL_IDENTITY_PROVIDER", "external-identity-provider", 0.02, ""),
    ("DELETE_EXTERNAL_IDENTITY_PROVIDER", "external-identity-provider", 0.005, ""),
    ("SHUTDOWN_CLUSTER", "cluster", 0.1, ""),
    ("RESUME_CLUSTER", "cluster", 0.1, ""),
    ("DELETE_TENANT", "tenant", 0.002, ""),
    ("APPLY_ROLE_BINDING", "role-binding", 3, ""),
    ("BULK_APPLY_ROLE_BINDING", "role-binding", 0.5, ""),
    ("DELETE_ROLE_BINDING", "role-binding", 0.5, ""),
    ("APPLY_MCP_SERVER", "mcp-server", 1, ""),
    ("DELETE_MCP_SERVER", "mcp-server", 0.1, ""),
    ("APPLY_MCP_USER_AUTH", "mcp-server", 1, ""),
    ("DELETE_MCP_USER_AUTH", "mcp-server", 0.2, ""),
)

# Actions the spec does not list yet, with resource types it does not list either: what a
# client meets when the service ships a feature before the published contract catches up.
FUTURE_ACTIONS: Final[tuple[tuple[str, str], ...]] = (
    ("ROTATE_SIGNING_KEY", "signing-key"),
    ("APPLY_PROMPT", "prompt-registry"),
    ("APPLY_GUARDRAIL_CONFIG", "guardrail-config"),
)
FUTURE_PARENT_TYPES: Final = ("prompt-registry", "model-catalog")
FUTURE_SUBJECT_TYPE: Final = "bot-identity"

_VERBS: Final = {
    "APPLY": "applied",
    "DELETE": "deleted",
    "CREATE": "created",
    "UPDATE": "updated",
    "CANCEL": "cancelled",
    "PAUSE": "paused",
    "RESUME": "resumed",
    "START": "started",
    "STOP": "stopped",
    "TRIGGER": "triggered",
    "TERMINATE": "terminated",
    "EXECUTE": "executed",
    "RECOVER": "recovered",
    "CLONE": "cloned",
    "PROMOTE": "promoted",
    "INVITE": "invited",
    "REGISTER": "registered",
    "ACTIVATE": "activated",
    "DEACTIVATE": "deactivated",
    "SHUTDOWN": "shut down",
    "SYNC": "synced",
}

# Actions whose wording does not follow "<verb> <resource type>".
_PHRASES: Final = {
    "CREATE_DEPLOYMENT": "deployed",
    "CANCEL_DEPLOYMENT": "cancelled a deployment of",
    "READ_CLUSTER_INFRA_DEPLOY_PAYLOAD": "read the infra deploy payload of cluster",
    "CREATE_CLUSTER_INFRA": "created infrastructure for cluster",
    "UPDATE_CLUSTER_INFRA": "updated infrastructure of cluster",
    "CORDON_NODE": "cordoned a node of cluster",
    "UNCORDON_NODE": "uncordoned a node of cluster",
    "DRAIN_NODE": "drained a node of cluster",
    "DELETE_NODE": "deleted a node of cluster",
    "TOGGLE_AUTOPILOT": "toggled autopilot for",
    "TOGGLE_AUTOPILOT_FOR_CLUSTER": "toggled autopilot for cluster",
    "APPLY_RECOMMENDATION": "applied a resource recommendation to",
    "UPGRADE_ADDON": "upgraded an add-on on cluster",
    "APPROVE_WORKFLOW_SIGNAL": "approved a signal of workflow",
    "DENY_WORKFLOW_SIGNAL": "denied a signal of workflow",
    "SET_WORKFLOW_SIGNAL": "set a signal on workflow",
    "APPLY_INTERCEPT": "applied an intercept to",
    "ADD_COLLABORATORS": "added collaborators to workspace",
    "UPDATE_COLLABORATORS_ROLE": "changed collaborator roles on workspace",
    "REMOVE_COLLABORATORS": "removed collaborators from workspace",
    "CREATE_APPLICATION_SET": "created an application set from",
    "CREATE_PAT": "created a personal access token for",
    "DELETE_PAT": "revoked a personal access token of",
    "REGENERATE_VIRTUAL_ACCOUNT_TOKEN": "regenerated the token of virtual account",
    "SYNC_VIRTUAL_ACCOUNT_TOKEN_TO_SECRET_STORE": "synced to the secret store the token of",
    "PROMOTE_APPLICATION_ROLLOUT": "promoted the rollout of",
    "CREATE_LLM_GATEWAY_RATE_LIMIT": "created a rate limit on LLM gateway",
    "UPDATE_LLM_GATEWAY_RATE_LIMIT": "updated a rate limit on LLM gateway",
    "DELETE_LLM_GATEWAY_RATE_LIMIT": "deleted a rate limit on LLM gateway",
    "ADD_TRUEFOUNDRY_HOSTED_MODEL": "added a TrueFoundry-hosted model to LLM gateway",
    "DELETE_POD": "deleted a pod of",
    "DELETE_JOB_RUN": "deleted a run of job",
    "SYNC_METADATA_FOR_CLUSTER": "synced metadata for cluster",
    "UPDATE_USER_ROLES": "changed the roles of user",
    "RESEND_USER_INVITE": "resent the invitation to",
    "PRE_REGISTER_USERS": "pre-registered user",
    "ADD_USERS_TO_ACCOUNT": "added users to account",
    "SYNC_USERS_TO_AUTH_SERVER": "synced users to the auth server for",
    "CHANGE_PASSWORD": "changed the password of",
    "FORGOT_PASSWORD": "requested a password reset for",
    "CREATE_OR_UPDATE_GATEWAY_CONFIG": "saved gateway configuration",
    "DELETE_GATEWAY_CONFIG": "deleted gateway configuration",
    "CREATE_OR_UPDATE_GATEWAY_INSTALLATION": "installed gateway",
    "CREATE_AGENT_SESSION": "started a session with agent",
    "UPDATE_AGENT_SESSION": "updated a session with agent",
    "SYNC_APPLICATION": "synced",
    "BULK_APPLY_ROLE_BINDING": "bulk-applied role binding",
    "APPLY_MCP_USER_AUTH": "connected their account to MCP server",
    "DELETE_MCP_USER_AUTH": "disconnected their account from MCP server",
    "DELETE_TENANT": "requested deletion of tenant",
}

_TYPE_LABELS: Final = {
    "mlf-project": "ML repo",
    "llm-gateway": "LLM gateway",
    "mcp-server": "MCP server",
    "vcs-integration": "VCS integration",
    "sso-based-identity": "SSO identity",
}

# URL segment per resource type, for `requestPath`.
_PATH_SEGMENTS: Final = {
    "application": "apps",
    "deployment": "deployments",
    "mlf-project": "ml-repos",
    "repository": "ml-repos",
    "llm-gateway": "llm-gateway/rate-limits",
    "settings": "settings",
    "sso-based-identity": "users/sso",
}


def type_label(resource_type: str) -> str:
    return _TYPE_LABELS.get(resource_type, resource_type.replace("-", " "))


def action_phrase(action: str, resource_type: str, kind: str) -> str:
    if action in _PHRASES:
        return _PHRASES[action]
    verb = _VERBS.get(action.split("_", 1)[0], action.lower().replace("_", " "))
    noun = kind.replace("-", " ") if kind and kind != SERVICE else type_label(resource_type)
    return f"{verb} {noun}"


def action_path(action: str, resource_type: str) -> tuple[str, str]:
    verb = action.partition("_")[0]
    if verb == "APPLY" or action.startswith("CREATE_OR_UPDATE"):
        # Manifests go through the generic apply endpoint; the resource id is not in the URL.
        return "/api/svc/v1/apply", ""
    segment = _PATH_SEGMENTS.get(resource_type, f"{resource_type}s")
    prefix = f"/api/svc/v1/{segment}/"
    if verb in {"CREATE", "UPDATE", "DELETE"}:
        return prefix, ""
    return prefix, "/" + action.lower().replace("_", "-")
