"""How the simulated control plane behaves: its answers' order and bounds, and its faults."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final, Literal

from tfy_audit._core.settings import SIMULATOR_API_KEY

Order = Literal["desc", "asc", "shuffled"]
InsertMode = Literal["now", "late", "past"]

# Faults `Simulator.inject` accepts. The first group are HTTP answers; "reset", "slow" and
# "truncate" happen on the wire (see `SimResponse.fault`).
FAULTS: Final = ("429", "503", "500", "reset", "slow", "truncate", "nonjson", "html200")
ORDERS: Final = ("desc", "asc", "shuffled")
INSERT_MODES: Final = ("now", "late", "past")


@dataclass
class SimulatorConfig:
    """Every field has a default; tests change fields at runtime between requests."""

    api_key: str = SIMULATOR_API_KEY
    # Order of `metric=list` results; the client must not rely on any.
    order: Order = "desc"
    # Whether `start`/`end` include events exactly at the bound (undocumented by the service).
    start_inclusive: bool = True
    end_inclusive: bool = True
    # `offset + limit` beyond this is refused with 400; None pages without limit.
    max_offset: int | None = 10_000

    # Every request waits this long before it is answered (not in the MockTransport).
    latency_ms: float = 0
    # Probabilistic faults, each the chance per authenticated audit-logs request.
    rate_429: float = 0
    retry_after: str = "1"
    rate_503: float = 0
    rate_500: float = 0
    rate_reset: float = 0
    rate_slow: float = 0
    slow_seconds: float = 5
    rate_truncate: float = 0
    rate_nonjson: float = 0
    rate_html200: float = 0
    # Seeds the fault and insert draws; changing it at runtime reseeds them.
    fault_seed: int = 0

    # Every Nth authenticated audit-logs request inserts `insert_batch` new events first.
    insert_every: int = 0
    insert_batch: int = 5
    insert_mode: InsertMode = "now"
    late_seconds: float = 300

    # Seconds the service's clock is ahead of this machine's (negative: behind). Its `Date`
    # header and the createdAt of events it inserts follow its own clock.
    clock_offset_seconds: float = 0

    # Salt of the stable pseudo-random `shuffled` order.
    shuffle_salt: str = "tfy-sim"
    # The HTTP server closes keep-alive connections idle this long, like Node's 5 s default.
    keepalive_timeout: float = 5.0
    request_log_size: int = 100_000

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {self.order!r}")
        if self.insert_mode not in INSERT_MODES:
            raise ValueError(
                f"insert_mode must be one of {', '.join(INSERT_MODES)}; got {self.insert_mode!r}"
            )
        rates = {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("rate_")}
        for name, rate in rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be within [0, 1]; got {rate}")
        if sum(rates.values()) > 1:
            raise ValueError(f"fault rates add up to more than 1: {rates}")
        if self.max_offset is not None and self.max_offset < 1:
            raise ValueError(f"max_offset must be >= 1 or None; got {self.max_offset}")
        if self.insert_every < 0 or self.insert_batch < 0:
            raise ValueError("insert_every and insert_batch must be >= 0")
        if self.request_log_size < 0 or self.request_log_size > 100_000:
            raise ValueError("request_log_size must be within [0, 100000]")
