"""The JSON log format: one ASCII line per record, fields as keys, secrets redacted everywhere;
the text format ignores the fields."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from tfy_audit._cli.logjson import RUN_ID, fields, requested_format
from tfy_audit._cli.progress import LogHandler, ProgressReporter
from tfy_audit._core.redact import install_log_filter, register_secret


def logged(json_logs: bool, emit: Any) -> str:
    stream = io.StringIO()
    handler = LogHandler(stream, json=json_logs)
    log = logging.getLogger("tfy_audit.test_logjson")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    install_log_filter(log)
    try:
        emit(log)
    finally:
        log.removeHandler(handler)
    return stream.getvalue()


def test_a_record_is_one_json_line_with_its_fields() -> None:
    def emit(log: logging.Logger) -> None:
        log.warning("two\nlines \u2028 and %s", "more", extra=fields("x", count=3, level="no"))

    out = logged(True, emit)
    assert out.endswith("\n") and out.count("\n") == 1 and out.isascii()
    record = json.loads(out)
    assert record["message"] == "two\nlines \u2028 and more"
    assert (record["level"], record["logger"]) == ("WARNING", "tfy_audit.test_logjson")
    assert (record["run_id"], record["event"], record["count"]) == (RUN_ID, "x", 3)
    assert record["time"].endswith("Z")


def test_the_text_format_is_unchanged_by_fields() -> None:
    out = logged(False, lambda log: log.info("hello %d", 5, extra=fields("x", count=3)))
    assert out.rstrip("\n").endswith(" INFO tfy_audit.test_logjson: hello 5")
    assert "count" not in out


def test_a_secret_is_redacted_from_the_message_the_fields_and_the_traceback() -> None:
    secret = "tfy-unit-json-secret-42"
    register_secret(secret)

    def emit(log: logging.Logger) -> None:
        log.info("said %s", f"Bearer {secret}", extra=fields("x", echoed={"k": [secret]}))
        log.info("plain", extra=fields("x", header=f"Bearer {secret}"))
        try:
            raise ValueError(secret)
        except ValueError:
            log.exception("failed")

    out = logged(True, emit)
    assert secret not in out
    first, second, third = (json.loads(line) for line in out.splitlines())
    assert first["message"] == "said Bearer [redacted]"
    assert first["echoed"] == {"k": ["[redacted]"]}
    assert second["header"] == "Bearer [redacted]"
    assert "[redacted]" in third["message"] + third.get("traceback", "")


def test_progress_records_carry_their_figures() -> None:
    stream = io.StringIO()
    handler = LogHandler(stream, json=True)
    log = logging.getLogger("tfy_audit._cli.progress")
    log.addHandler(handler)
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        progress = ProgressReporter(io.StringIO(), bar=False)
        progress.on_plan(4, 1_000, 2)
        progress.on_events(250)  # the first events are logged at once
        progress.on_chunk_loaded(1, 2)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
    plan, moved, chunk = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: plan[k] for k in ("event", "windows_total", "events_total", "chunks")} == {
        "event": "plan",
        "windows_total": 4,
        "events_total": 1_000,
        "chunks": 2,
    }
    for record, event in ((moved, "progress"), (chunk, "chunk")):
        assert record["event"] == event
        assert (record["events_done"], record["events_total"]) == (250, 1_000)
        assert (record["windows_done"], record["windows_total"]) == (0, 4)
        assert record["events_per_second"] > 0 and record["elapsed_seconds"] >= 0
        assert record["eta_seconds"] is None  # too early, like the text's `ETA -`
    assert (chunk["chunk"], chunk["chunks"]) == (1, 2)
    assert chunk["message"].startswith("chunk 1/2 loaded: windows 0/4  events 250/1,000")


def test_the_requested_format_reads_the_flag_over_the_environment() -> None:
    env = {"TFY_AUDIT_LOG_FORMAT": "json"}
    assert requested_format([], env) == "json"
    assert requested_format(["--log-format", "text", "sync"], env) == "text"
    assert requested_format(["--log-format=json", "sync"], {}) == "json"
    assert requested_format(["sync"], {}) == "text"
