"""A stand-in TrueFoundry control plane serving `GET /api/svc/v1/audit-logs`.

Faithful to the published contract and deliberately unkind: configurable order and bound
inclusivity, deep-offset refusal, rate limits, 5xx, dropped/slow/truncated connections,
garbled bodies, and events that arrive while a client pages. One handler (`Simulator`),
served over loopback HTTP (`SimulatorServer`) or in-process (`Simulator.transport()`).
"""

from tfy_audit.simulator.config import FAULTS, SimulatorConfig
from tfy_audit.simulator.handler import (
    AUDIT_LOGS_PATH,
    LoggedRequest,
    SimResponse,
    Simulator,
    SimulatorStats,
)
from tfy_audit.simulator.history import dense_burst, generate_history, make_event
from tfy_audit.simulator.odd import odd_events
from tfy_audit.simulator.server import SimulatorServer
from tfy_audit.simulator.timestamps import format_ts, parse_ts

__all__ = [
    "AUDIT_LOGS_PATH",
    "FAULTS",
    "LoggedRequest",
    "SimResponse",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorStats",
    "dense_burst",
    "format_ts",
    "generate_history",
    "make_event",
    "odd_events",
    "parse_ts",
]
