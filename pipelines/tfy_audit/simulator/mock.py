"""The simulator as an `httpx.MockTransport`: no sockets, no latency, wire faults as the
exceptions httpx raises for them over a real connection."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tfy_audit.simulator.handler import Simulator


def mock_transport(sim: Simulator) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode("ascii")
        resp = sim.handle(request.method, target, dict(request.headers))
        if resp.fault == "reset":
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if resp.fault == "slow":
            # A client with any sane timeout gives up before a slow answer arrives.
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        if resp.fault == "truncate":
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {len(resp.body) // 2} bytes, expected {len(resp.body) * 2})",
                request=request,
            )
        return httpx.Response(resp.status, headers=resp.headers, content=resp.body)

    return httpx.MockTransport(handle)
