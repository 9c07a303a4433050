"""`tfy-audit rules validate DIR` and `tfy-audit rules list`: check rule files before they
ship, and show the rules a run would use."""

from __future__ import annotations

import argparse

from tfy_audit._cli.output import EXIT_FAILURE, EXIT_OK, Outcome


def run(args: argparse.Namespace) -> Outcome:
    from tfy_audit._detect.rules import load_rules, read_folder

    if args.rules_command == "validate":
        rules, problems = read_folder(args.folder)
        if not args.json:
            for rule in rules:
                print(f"ok      {rule.id}  ({rule.origin})")
            for problem in problems:
                print(f"broken  {problem.line()}")
            print(f"{len(rules)} rule(s) valid, {len(problems)} broken")
        fields = {
            "valid": [r.as_dict() for r in rules],
            "broken": [{"file": p.origin, "fault": p.fault} for p in problems],
        }
        return Outcome(EXIT_FAILURE if problems else EXIT_OK, fields)
    rules, problems = load_rules(args.rules)
    if not args.json:
        for rule in rules:
            window = f"{int(rule.window.total_seconds())}s"
            limit = f">={rule.threshold}/{window}" if rule.threshold > 1 else f"per {window}"
            print(
                f"{rule.id:<36} {rule.severity:<8} {','.join(rule.attack):<22} {limit:<12} "
                f"{rule.title}"
            )
        for problem in problems:
            print(f"broken  {problem.line()}")
    fields = {
        "rules": [r.as_dict() for r in rules],
        "broken": [{"file": p.origin, "fault": p.fault} for p in problems],
    }
    return Outcome(EXIT_FAILURE if problems else EXIT_OK, fields)
