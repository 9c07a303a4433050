"""Where an export writes: a local folder or `s3://bucket/prefix`, through pyarrow's file
systems (Parquet is written by pyarrow, so one library does both).

S3 takes AWS's usual environment: the credentials chain (`AWS_ACCESS_KEY_ID`, a profile, an
instance role), `AWS_REGION` or `AWS_DEFAULT_REGION` for the bucket's region (default
us-east-1), and `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` for an S3-compatible server (MinIO,
R2). Nothing else is read, and no region is looked up over the network.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tfy_audit._core.errors import DestinationError, UsageError, one_line
from tfy_audit._core.redact import clean


@dataclass(frozen=True)
class Store:
    fs: pafs.FileSystem
    root: str  # the export's root in `fs`, without a trailing '/'
    shown: str  # the root as the user named it, for messages

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    @contextmanager
    def _io(self, doing: str) -> Iterator[None]:
        """Turn a file system's OSError (a bucket out of reach, credentials refused, a folder
        not writable) into one line naming `--out` and what to check. pyarrow's S3 messages
        append a "; Details: ..." tail of curl's that repeats the cause; it is left out."""
        try:
            yield
        except OSError as exc:
            cause = exc.strerror or one_line(exc).split("; Details:")[0]
            raise DestinationError(
                f"cannot {doing} the export in {self.shown} ({clean(cause, 200)}); check the "
                "folder or bucket and its credentials (for s3://: the AWS credentials, "
                "AWS_REGION and AWS_ENDPOINT_URL)"
            ) from None

    def read_text(self, relative: str) -> str | None:
        """The file's text, or None when it does not exist."""
        path = self.path(relative)
        with self._io("read"):
            if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
                return None
            with self.fs.open_input_stream(path) as fh:
                data: bytes = fh.read()
        return data.decode("utf-8")

    def write_text(self, relative: str, text: str) -> None:
        """Write a small file whole: an S3 PUT replaces it at once; locally, a new file is
        renamed over it, so a reader never sees half of it."""
        path = self.path(relative)
        with self._io("write"):
            self.fs.create_dir(posixpath.dirname(path), recursive=True)
            if isinstance(self.fs, pafs.LocalFileSystem):
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                with self.fs.open_output_stream(tmp) as fh:
                    fh.write(text.encode("utf-8"))
                self.fs.move(tmp, path)
                return
            with self.fs.open_output_stream(path) as fh:
                fh.write(text.encode("utf-8"))

    def files_in(self, relative: str) -> list[str]:
        """The files directly in a folder (none when it does not exist)."""
        selector = pafs.FileSelector(self.path(relative), allow_not_found=True)
        with self._io("list"):
            infos = self.fs.get_file_info(selector)
        return sorted(info.path for info in infos if info.type == pafs.FileType.File)

    def write_parquet(self, relative: str, table: pa.Table) -> str:
        path = self.path(relative)
        with self._io("write"):
            self.fs.create_dir(posixpath.dirname(path), recursive=True)
            pq.write_table(table, path, filesystem=self.fs, compression="zstd")
        return path

    def delete(self, path: str) -> None:
        with self._io("delete from"):
            self.fs.delete_file(path)


def open_store(out: str) -> Store:
    """The store `--out` names: `s3://bucket/prefix`, or a local folder (created)."""
    if "://" not in out:
        folder = Path(out).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return Store(pafs.LocalFileSystem(), folder.as_posix(), out)
    parts = urlsplit(out)
    if parts.scheme != "s3" or not parts.netloc:
        raise UsageError(
            f"--out {clean(out, 80)!r} is neither a folder nor s3://bucket/prefix; pass one of them"
        )
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    scheme = urlsplit(endpoint).scheme if endpoint else "https"
    fs = pafs.S3FileSystem(
        region=region,
        endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
        scheme=scheme or "https",
    )
    root = posixpath.join(parts.netloc, parts.path.strip("/")).rstrip("/")
    return Store(fs, root, out)
