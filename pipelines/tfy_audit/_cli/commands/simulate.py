"""`tfy-audit simulate`: serve the built-in TrueFoundry simulator on loopback."""

from __future__ import annotations

import argparse
import contextlib
import logging

from tfy_audit._cli.output import EXIT_OK
from tfy_audit._core.errors import UsageError

logger = logging.getLogger("tfy_audit")


def run(args: argparse.Namespace) -> int:
    from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port")
    config = SimulatorConfig(
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        rate_429=args.rate_429,
        rate_503=args.rate_503,
        retry_after=args.retry_after,
        max_offset=args.max_offset or None,
        order=args.order,
        insert_every=args.insert_every,
        clock_offset_seconds=args.clock_offset,
    )
    logger.info("generating %d events over %g days", args.events, args.days)
    sim = Simulator(config)
    # the history ends at the service's own now
    sim.add_events(generate_history(args.events, days=args.days, seed=args.seed, end=sim.now()))
    try:
        server = SimulatorServer(sim, host=args.bind, port=args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.bind}:{args.port} ({exc}); pick another --port"
        ) from exc
    with server:
        print(f"simulator serving {args.events:,} events at {server.url}", flush=True)
        print(f"  export TFY_HOST={server.url} TFY_API_KEY={args.api_key}", flush=True)
        print(
            "  then: tfy-audit sync    (into ./tfy_audit.duckdb; Ctrl-C stops the simulator)",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return EXIT_OK
