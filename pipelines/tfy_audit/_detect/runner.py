"""One detection pass on a pipeline's destination: run the rules over a range, keep the alerts,
then deliver every pending alert to the configured channels.

Order, and why: the alerts are committed first (`store.write_alerts`), then each channel gets
its pending alerts (this pass's and any an earlier pass could not deliver), each recorded as
delivered once the receiver confirmed it. A failed rule or delivery never raises: it is in the
returned `DetectSummary`, which the command turns into warnings and its exit code.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt

from tfy_audit._compat.dlt import persistent_sql_client, persistent_sql_client_or_refuse
from tfy_audit._core.redact import register_secret
from tfy_audit._core.settings import (
    DELIVERY_BUDGET_SECONDS,
    DELIVERY_MAX_PER_RUN,
    WEBHOOK_SECRET_ENV,
)
from tfy_audit._detect import store
from tfy_audit._detect.delivery import SLACK, WEBHOOK, Channel, ChannelResult, check_url, deliver
from tfy_audit._detect.evaluate import run_rules
from tfy_audit._detect.rules import Rule, RuleProblem
from tfy_audit._source.config import _from_dlt
from tfy_audit._warehouse.adapter import warehouse_of
from tfy_audit._warehouse.view_params import DEFAULT_PARAMS, ViewParams

logger = logging.getLogger(__name__)


def webhook_secret() -> str | None:
    """`TFY_AUDIT_WEBHOOK_SECRET`, else `webhook_secret` under `[sources.truefoundry_audit]`
    in .dlt/secrets.toml; registered so no message ever shows it."""
    value = os.environ.get(WEBHOOK_SECRET_ENV) or _from_dlt("webhook_secret", secret=True)
    register_secret(value)
    return value or None


def channels(webhook: str | None, slack: str | None) -> list[Channel]:
    """The delivery channels the flags ask for; an unsigned webhook is warned about once."""
    out = []
    if webhook:
        secret = webhook_secret()
        if secret is None:
            logger.warning(
                "--alert-webhook deliveries go unsigned: set %s (or webhook_secret in "
                ".dlt/secrets.toml) so the receiver can check them",
                WEBHOOK_SECRET_ENV,
            )
        out.append(Channel(WEBHOOK, check_url(webhook, "--alert-webhook"), secret))
    if slack:
        out.append(Channel(SLACK, check_url(slack, "--alert-slack")))
    return out


@dataclass
class DetectSummary:
    start: datetime
    end: datetime
    run_id: str
    rules_run: int = 0
    alerts_found: int = 0
    new_alerts: list[str] = field(default_factory=list)
    updated_alerts: list[str] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    deliveries: list[ChannelResult] = field(default_factory=list)
    # per configured channel: alerts still not delivered after this pass
    pending: dict[str, int] = field(default_factory=dict)
    found: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pending_total(self) -> int:
        return max(self.pending.values(), default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "run_id": self.run_id,
            "rules_run": self.rules_run,
            "alerts_found": self.alerts_found,
            "new_alerts": self.new_alerts,
            "updated_alerts": self.updated_alerts,
            "rule_problems": [p.line() for p in self.problems],
            "deliveries": [d.as_dict() for d in self.deliveries],
            "pending": self.pending,
            "alerts": self.found,
        }


def sql_client(pipeline: dlt.Pipeline) -> Any:
    return persistent_sql_client_or_refuse(
        pipeline,
        "alerts are kept in a table by SQL, which this destination cannot hold; run "
        "detection on a DuckDB, PostgreSQL or other SQL destination",
    )


def detect(
    pipeline: dlt.Pipeline,
    rules: Sequence[Rule],
    start: datetime,
    end: datetime,
    *,
    problems: Sequence[RuleProblem] = (),
    params: ViewParams = DEFAULT_PARAMS,
    to: Sequence[Channel] = (),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    after_sync: bool = False,
) -> DetectSummary:
    """Run `rules` over events created in [start, end), keep the alerts, deliver `to`.
    `after_sync`: the pass of a `sync --detect`, whose end the next one resumes from."""
    summary = DetectSummary(start, end, uuid.uuid4().hex, problems=list(problems))
    with sql_client(pipeline) as client:
        warehouse_of(pipeline).for_analysis(client)
        found = run_rules(client, rules, start, end, params)
        summary.rules_run = found.rules_run
        summary.problems.extend(found.problems)
        summary.alerts_found = len(found.alerts)
        summary.found = [a.as_dict() for a in found.alerts]
        written = store.write_alerts(client, found.alerts, summary.run_id, now())
        summary.new_alerts, summary.updated_alerts = written.new, written.updated
        store.record_pass(client, summary.run_id, start, end, after_sync=after_sync, now=now())
        deadline = time.monotonic() + DELIVERY_BUDGET_SECONDS
        for channel in to:
            waiting = store.pending(client, channel.name, DELIVERY_MAX_PER_RUN)

            def delivered(alert_id: str, name: str = channel.name) -> None:
                store.mark_delivered(client, [alert_id], name, now())

            summary.deliveries.append(
                deliver(
                    channel,
                    [a.as_dict() for a in waiting],
                    on_delivered=delivered,
                    deadline=deadline,
                )
            )
            summary.pending[channel.name] = store.count_pending(client, channel.name)
    return summary


def judged_from(pipeline: dlt.Pipeline, start: datetime) -> datetime:
    """Where a `sync --detect` pass starts: the run's own start, or earlier where the last
    such pass ended before it, so events a run loaded without judging them (it failed, was
    killed, or ran without --detect) are judged by the next pass."""
    with sql_client(pipeline) as client:
        until = store.judged_until(client)
    return start if until is None else min(start, until)


def alerts_overview(pipeline: dlt.Pipeline, recent: int = 5) -> dict[str, Any] | None:
    """Totals, pending and recent alerts for `status` and the report; None where no
    detection has run or the destination keeps no alerts. Reads only."""
    client = persistent_sql_client(pipeline)
    if client is None:
        return None
    try:
        with client:
            found = store.overview(client, recent)
    except Exception as exc:  # a status must not fail on the alerts' account
        logger.debug("cannot read the alerts: %s", exc)
        return None
    return None if found is None else found.as_dict()


def format_overview(overview: dict[str, Any]) -> str:
    """The alerts lines of `status`."""
    tiers = ", ".join(f"{k} {v}" for k, v in sorted(overview["by_severity"].items()))
    lines = [
        f"alerts: {overview['total']} ({tiers or 'none'}); pending delivery: {overview['pending']}"
    ]
    for alert in overview["recent"]:
        key = ", ".join(f"{k}={v}" for k, v in alert["dedup_key"].items())
        lines.append(f"  {alert['last_seen']}  {alert['severity']:<8} {alert['rule_id']}  {key}")
    return "\n".join(lines)
