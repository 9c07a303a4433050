"""The export's store turns a file system's failure into one line that names --out and what
to check (a bucket out of reach, a folder not writable), not pyarrow's raw text."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow as pa
import pytest
from tfy_audit._core.errors import DestinationError
from tfy_audit._export.mark import read_marks
from tfy_audit._export.store import open_store


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_bucket_out_of_reach_is_one_line_with_what_to_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # credentials given, so nothing asks an instance-metadata service; the endpoint refuses
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret-key")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    store = open_store("s3://my-security-lake/ext")
    with pytest.raises(DestinationError) as caught:
        read_marks(store)
    message = str(caught.value)
    assert message.startswith("cannot read the export in s3://my-security-lake/ext (")
    assert "NETWORK_CONNECTION" in message
    assert message.endswith(
        "check the folder or bucket and its credentials (for s3://: the AWS credentials, "
        "AWS_REGION and AWS_ENDPOINT_URL)"
    )
    assert "Details" not in message and "\n" not in message
    assert "example-secret-key" not in message


def test_a_folder_that_cannot_hold_the_files_is_one_line_with_what_to_check(
    tmp_path: Path,
) -> None:
    out = tmp_path / "ocsf"
    store = open_store(str(out))
    (out / "c").write_text("a file where a class folder goes")
    with pytest.raises(DestinationError) as caught:
        store.write_parquet("c/d/x.parquet", pa.table({"a": [1]}))
    message = str(caught.value)
    assert message.startswith(f"cannot write the export in {out} (")
    assert message.endswith(
        "); check the folder or bucket and its credentials (for s3://: the AWS credentials, "
        "AWS_REGION and AWS_ENDPOINT_URL)"
    )
    assert "\n" not in message
