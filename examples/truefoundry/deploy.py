"""Deploy tfy-audit to TrueFoundry as a scheduled Job, with TrueFoundry's Python SDK.

Every 10 minutes the Job runs `tfy-audit sync` into PostgreSQL. TrueFoundry builds the image
from this repository (`uv sync --frozen --no-dev` from `uv.lock`), injects the API key and the
database credentials from a TrueFoundry secret group, never starts a run while one is going,
stops a run at the timeout, and alerts when a run fails.

    pip install -r examples/truefoundry/requirements.txt    # TrueFoundry's CLI and SDK
    tfy login --host https://your-org.truefoundry.cloud
    python examples/truefoundry/deploy.py --workspace-fqn your-cluster:tfy-audit \\
        --tenant your-org --control-plane https://your-org.truefoundry.cloud \\
        --alert-channel <notification channel FQN> --alert-email secops@your-org.com
    python examples/truefoundry/deploy.py --print    # the Job as YAML; nothing is deployed

Before the first deploy, create the secret group (default `tfy-audit`) with two keys:
`TFY_API_KEY`, a virtual-account token allowed to read audit logs, and
`DESTINATION__POSTGRES__CREDENTIALS`, `postgresql://user:password@host:5432/database`.

`truefoundry.yaml` beside this file is the same Job for `tfy deploy`; the test suite checks
that the two agree and that both pass the SDK's own models.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml
from truefoundry.deploy import (
    UV,
    Build,
    Email,
    Job,
    JobAlert,
    LocalSource,
    PythonBuild,
    Resources,
    Schedule,
)

REPO = Path(__file__).resolve().parents[2]

# the values truefoundry.yaml carries; `--print` without arguments shows the same Job
PLACEHOLDERS: dict[str, str] = {
    "tenant": "your-org",
    "secret_group": "tfy-audit",
    "control_plane": "https://your-org.truefoundry.cloud",
    "alert_channel": "your-org:email-notifications",
    "alert_email": "platform-team@your-org.com",
}

# `--workers 2`: tfy-audit counts the node's CPUs, not the container's limit, so the number of
# page decoders (one process each) is fixed here to match cpu_limit.
COMMAND = (
    "tfy-audit sync --destination postgres --dataset truefoundry_audit"
    " --pipelines-dir /tmp/tfy-audit --workers 2 --no-progress --json"
)


def secret(tenant: str, group: str, key: str) -> str:
    """A reference to a TrueFoundry secret; the platform injects its value at run time."""
    return f"tfy-secret://{tenant}:{group}:{key}"


def build_job(
    *, tenant: str, secret_group: str, control_plane: str, alert_channel: str, alert_email: str
) -> Job:
    return Job(
        name="tfy-audit-sync",
        image=Build(
            # the repository root; main() runs from there, `tfy deploy` is run from there
            build_source=LocalSource(project_root_path="./"),
            build_spec=PythonBuild(
                python_version="3.11",
                python_dependencies=UV(uv_version="0.13.9", sync_options="--frozen --no-dev"),
                command=COMMAND,
            ),
        ),
        # a run that finds nothing new makes 2 requests; a missed or failed run is caught up by
        # the next, which continues from the high-water mark kept in PostgreSQL
        trigger=Schedule(schedule="*/10 * * * *", concurrency_policy="Forbid"),
        env={
            "TFY_HOST": control_plane,
            "TFY_API_KEY": secret(tenant, secret_group, "TFY_API_KEY"),
            "DESTINATION__POSTGRES__CREDENTIALS": secret(
                tenant, secret_group, "DESTINATION__POSTGRES__CREDENTIALS"
            ),
        },
        # memory in MB, for the whole container: the main process and 2 decoder processes. The
        # README's Performance section measures the main process's peak RSS flat at about
        # 310-370 MiB from 100,000 to 1,000,000 events (a backfill loads in bounded chunks), and
        # the process tree at 510-580 MiB; the limit leaves room above that.
        resources=Resources(
            cpu_request=0.5,
            cpu_limit=2,
            memory_request=768,
            memory_limit=1024,
            ephemeral_storage_request=1000,
            ephemeral_storage_limit=2000,
        ),
        # an hour: a scheduled run takes seconds; a first backfill cut off here keeps every
        # chunk it committed, and the next run carries on from there
        timeout=3600,
        retries=0,  # the next scheduled run is the retry
        alerts=[
            JobAlert(
                notification_target=Email(
                    notification_channel=alert_channel, to_emails=[alert_email]
                ),
                on_failure=True,
            )
        ],
    )


def as_yaml(job: Job) -> str:
    spec: dict[str, Any] = json.loads(job.json(exclude_none=True))  # enums as their values
    return yaml.safe_dump(spec, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace-fqn", help="where the Job runs, e.g. your-cluster:tfy-audit")
    parser.add_argument("--tenant", default=PLACEHOLDERS["tenant"])
    parser.add_argument("--secret-group", default=PLACEHOLDERS["secret_group"])
    parser.add_argument("--control-plane", default=PLACEHOLDERS["control_plane"])
    parser.add_argument("--alert-channel", default=PLACEHOLDERS["alert_channel"])
    parser.add_argument("--alert-email", default=PLACEHOLDERS["alert_email"])
    parser.add_argument("--print", action="store_true", help="print the Job as YAML and stop")
    args = parser.parse_args(argv)

    job = build_job(
        tenant=args.tenant,
        secret_group=args.secret_group,
        control_plane=args.control_plane,
        alert_channel=args.alert_channel,
        alert_email=args.alert_email,
    )
    if args.print:
        print(as_yaml(job), end="")
        return
    if not args.workspace_fqn:
        parser.error("--workspace-fqn is required to deploy")
    placeholders = {
        name for name, value in PLACEHOLDERS.items() if getattr(args, name) == value
    } - {"secret_group"}
    if placeholders:
        parser.error(f"set {', '.join(sorted(placeholders))} for your organisation")
    os.chdir(REPO)  # the build source is the repository, wherever this is run from
    job.deploy(workspace_fqn=args.workspace_fqn, wait=False)


if __name__ == "__main__":
    main()
