"""`tfy-audit demo`: a simulated control plane, a real sync, and a few answers.

Nothing needs configuring: the simulator serves a generated 90-day history on loopback (with a
little latency, some 429s and events arriving during the sync, as a real service would), the
sync loads it into a local DuckDB file, and the demo queries it.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import textwrap
from pathlib import Path

import duckdb

from tfy_audit._cli.commands.sync import format_summary
from tfy_audit._cli.progress import ProgressReporter
from tfy_audit._core.options import DestinationOptions, SyncOptions
from tfy_audit._core.settings import DEFAULT_DATASET, SIMULATOR_API_KEY
from tfy_audit._engine.sync import run_sync
from tfy_audit._service.client import RetryPolicy
from tfy_audit._warehouse.destination import pipelines_dir
from tfy_audit._warehouse.sql_query import QueryResult, format_table
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

API_KEY = "tfy-demo-key"

QUESTIONS: list[tuple[str, str]] = [
    (
        "Top actions",
        """select action, count(*) as events from {ds}.audit_logs
           group by 1 order by 2 desc, 1 limit 5""",
    ),
    (
        "Most active subjects",
        """select coalesce(subject__subject_slug, subject__subject_id) as subject,
                  subject__subject_type as type, count(*) as events
           from {ds}.audit_logs group by 1, 2 order by 3 desc, 1 limit 5""",
    ),
    (
        "Latest sensitive actions",
        """select strftime(created_at at time zone 'UTC', '%Y-%m-%d %H:%M') as at_utc, category,
                  action, resource_name, coalesce(subject_slug, subject_id) as who
           from {ds}.sensitive_actions order by created_at desc, id limit 5""",
    ),
]


def run_demo(*, db: str, events: int, days: float, seed: int) -> int:
    db_path = Path(db)
    work = Path(pipelines_dir(DestinationOptions(db=str(db_path))))
    # A demo starts from scratch each time: a new simulated history, so an old file would mix.
    for leftover in (db_path, db_path.with_name(db_path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)

    print(f"Generating a simulated control plane: {events:,} audit events over {days:g} days ...")
    config = SimulatorConfig(
        api_key=API_KEY,
        latency_ms=5,
        rate_429=0.03,
        retry_after="0",
        insert_every=25,
        insert_batch=3,
        insert_mode="now",
    )
    sim = Simulator(config, generate_history(events, days=days, seed=seed))
    with SimulatorServer(sim) as server:
        print(f"Simulator listening at {server.url} (latency, 429s, events arriving meanwhile)")
        options = SyncOptions(
            target=DestinationOptions(db=str(db_path)),
            host=server.url,
            api_key=API_KEY,
            retry=RetryPolicy(backoff_initial=0.05),
        )
        print(f"Syncing into {db_path} ...")
        summary = run_sync(options, ProgressReporter())
        second = run_sync(options, ProgressReporter(bar=False))

    print(format_summary(summary))
    print(
        f"A second, incremental sync read {second.events_read:,} event(s) "
        f"({second.events_new:,} new, {second.events_reread:,} re-read in the lookback) "
        f"with {second.requests} request(s) in {second.seconds:.1f}s."
    )
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        for title, sql in QUESTIONS:
            print(f"\n{title}:")
            result = con.execute(sql.format(ds=DEFAULT_DATASET))
            names = [d[0] for d in result.description]
            table = format_table(QueryResult(names, result.fetchall(), False, str(db_path)))
            print(textwrap.indent(table, "  "))
    finally:
        con.close()
    tfy = _this_command()
    print(
        f"""
Try next:
  {tfy} report --db {db_path} --out report.html    # an offline dashboard
  {tfy} sql --db {db_path} \\
      "select created_at, action, resource_name from deletions order by created_at desc limit 10"
  {tfy} simulate --port 8765     # a simulator to sync by hand; then, elsewhere:
  TFY_HOST=http://127.0.0.1:8765 TFY_API_KEY={SIMULATOR_API_KEY} {tfy} sync
"""
    )
    return 0


def _this_command() -> str:
    """How to run this tfy-audit again from the current folder: `.venv/bin/tfy-audit` in the
    clone (`make demo`), `tfy-audit` where that is the one on PATH (an installed tool), else
    the script's own path, or the interpreter with `-m tfy_audit`."""
    script = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if script is None or script.name != "tfy-audit":
        on_path = shutil.which("tfy-audit")
        return "tfy-audit" if on_path else f"{shlex.quote(sys.executable)} -m tfy_audit"
    on_path = shutil.which("tfy-audit")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "tfy-audit"
    try:
        return shlex.quote(str(script.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(script))
