"""`tfy-audit detect`: run the detection rules over a range, keep the alerts, deliver them; and
the same pass after a sync (`tfy-audit sync --detect`)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tfy_audit._cli.args import existing_pipeline
from tfy_audit._cli.output import EXIT_OK, Outcome, say


@dataclass
class DetectPlan:
    """The rules, channels and working hours of a pass, checked before anything runs."""

    rules: list[Any]
    problems: list[Any]
    channels: list[Any]
    params: Any


def plan_from_args(args: argparse.Namespace) -> DetectPlan:
    """A usage error here (a missing rules folder, a bad URL or time zone) stops the command
    before it syncs or reads anything."""
    from tfy_audit._detect.options import DetectOptions
    from tfy_audit._detect.rules import load_rules
    from tfy_audit._detect.runner import channels
    from tfy_audit._warehouse.view_params import ViewParams, parse_work_hours

    defaults = DetectOptions()
    work = (
        parse_work_hours(args.detect_work_hours)
        if args.detect_work_hours
        else (defaults.work_start, defaults.work_end)
    )
    params = ViewParams(timezone=args.detect_timezone or defaults.timezone, work_start=work[0],
                        work_end=work[1])  # fmt: skip
    rules, problems = load_rules(args.detect_rules)
    for problem in problems:
        say(f"tfy-audit: rule skipped: {problem.line()}", logging.WARNING, event="rule_problem")
    return DetectPlan(rules, problems, channels(args.detect_alert_webhook, args.detect_alert_slack),
                      params)  # fmt: skip


def run_pass(
    pipeline: Any, plan: DetectPlan, start: datetime, end: datetime, *, after_sync: bool = False
) -> Any:
    from tfy_audit._detect.runner import detect

    summary = detect(
        pipeline,
        plan.rules,
        start,
        end,
        problems=plan.problems,
        params=plan.params,
        to=plan.channels,
        after_sync=after_sync,
    )
    for problem in summary.problems[len(plan.problems) :]:
        say(f"tfy-audit: rule skipped: {problem.line()}", logging.WARNING, event="rule_problem")
    for result in summary.deliveries:
        if result.failed:
            say(
                f"tfy-audit: alerts not delivered: {result.failed}; "
                f"{summary.pending.get(result.channel, 0)} alert(s) stay pending and go with the "
                "next run",
                logging.WARNING,
                event="delivery_failed",
            )
    return summary


def format_detection(summary: Any) -> str:
    lines = [
        f"detection {summary.start.isoformat()} .. {summary.end.isoformat()}: "
        f"{summary.rules_run} rule(s) run, {summary.alerts_found} alert(s) found, "
        f"{len(summary.new_alerts)} new"
    ]
    new = set(summary.new_alerts)
    for alert in summary.found:
        if alert["alert_id"] in new:
            key = ", ".join(f"{k}={v}" for k, v in alert["dedup_key"].items())
            lines.append(
                f"  {alert['severity']:<8} {alert['rule_id']}  {key}  "
                f"({alert['event_count']} event(s), {alert['alert_id']})"
            )
    for result in summary.deliveries:
        lines.append(
            f"  delivered to {result.channel} {result.target}: {len(result.delivered)}; "
            f"pending: {summary.pending.get(result.channel, 0)}"
        )
    if summary.problems:
        lines.append(f"  rules skipped: {len(summary.problems)} (see the warnings above)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> Outcome:
    from tfy_audit._core.settings import DEFAULT_DETECT_RANGE
    from tfy_audit._core.timeparse import parse_user_time

    plan = plan_from_args(args)
    now = datetime.now(UTC)
    end = parse_user_time(args.end, "end") if args.end else now
    start = parse_user_time(args.start, "start") if args.start else end - DEFAULT_DETECT_RANGE
    if end <= start:
        from tfy_audit._core.errors import UsageError

        raise UsageError(f"--end ({end.isoformat()}) is not after --start ({start.isoformat()})")
    summary = run_pass(existing_pipeline(args), plan, start, end)
    if not args.json:
        print(format_detection(summary))
    return Outcome(EXIT_OK, summary.as_dict())
