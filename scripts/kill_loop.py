"""kill -9 at random moments, then one sync; repeated. Prints whether each round ended exact.

    .venv/bin/python -m scripts.kill_loop --rounds 10 --events 20000

Each round: a fresh simulator and warehouse; `tfy-audit sync` is started and SIGKILLed after a
random delay, a few times over; then one plain `tfy-audit sync` must leave the warehouse holding
exactly the simulator's events, each once.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

API_KEY = "kill-loop-key"


def sync_cmd(url: str, db: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tfy_audit._cli.main",
        "-q",
        "sync",
        "--host",
        url,
        "--db",
        str(db),
        "--no-progress",
        "--chunk-events",
        "3000",
        "--max-offset",
        "2000",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--kills", type=int, default=3, help="kills per round")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--max-delay", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    env = {**os.environ, "TFY_API_KEY": API_KEY}
    all_exact = True
    for round_no in range(1, args.rounds + 1):
        sim = Simulator(
            SimulatorConfig(api_key=API_KEY, latency_ms=2, order="shuffled"),
            generate_history(args.events, days=60, seed=round_no),
        )
        with tempfile.TemporaryDirectory() as tmp, SimulatorServer(sim) as server:
            db = Path(tmp) / "audit.duckdb"
            delays = []
            for _ in range(args.kills):
                delay = rng.uniform(0.3, args.max_delay)
                proc = subprocess.Popen(
                    sync_cmd(server.url, db),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    proc.wait(timeout=delay)
                    delays.append(f"{delay:.2f}s (finished first)")
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    delays.append(f"{delay:.2f}s")
            started = time.monotonic()
            final = subprocess.run(
                sync_cmd(server.url, db), env=env, capture_output=True, text=True
            )
            con = duckdb.connect(str(db), read_only=True)
            rows = con.execute("select id from truefoundry_audit.audit_logs").fetchall()
            con.close()
            loaded = [r[0] for r in rows]
            exact = final.returncode == 0 and sorted(loaded) == sorted(sim.ids())
            all_exact &= exact
            print(
                f"round {round_no}: killed at {', '.join(delays)}; one sync "
                f"({time.monotonic() - started:.1f}s, exit {final.returncode}): "
                f"{len(loaded)} rows, {len(set(loaded))} distinct, simulator {len(sim.ids())} "
                f"-> {'exact' if exact else 'NOT EXACT'}",
                flush=True,
            )
    print("all rounds exact" if all_exact else "SOME ROUNDS NOT EXACT")
    return 0 if all_exact else 1


if __name__ == "__main__":
    sys.exit(main())
