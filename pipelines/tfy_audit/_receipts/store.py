"""Where receipt files live: a local folder, or a bucket (`s3://bucket/prefix` and the other
URLs fsspec reads, with the credentials its backend finds). One JSON file per receipt, written
once: a file already there is never replaced (a re-issue is a new file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tfy_audit._core.errors import DestinationError
from tfy_audit._core.redact import clean, redact
from tfy_audit._receipts.receipt import Receipt


def shown_location(location: str) -> str:
    """A location as messages show it: no user, password or query (a signed URL's secret)."""
    parts = urlsplit(location)
    if parts.scheme and parts.netloc:
        host = parts.netloc.rpartition("@")[2]
        location = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return clean(redact(location), 200)


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


class ReceiptStore:
    """The receipt files of one chain."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.shown = shown_location(location)
        self._fs: Any = None
        if _is_url(location):
            try:
                import fsspec

                self._fs, self._root = fsspec.core.url_to_fs(location)
            except (ImportError, ValueError) as exc:
                raise DestinationError(
                    f"cannot open the receipts location {self.shown} ({exc}); install the "
                    "filesystem's fsspec backend (s3fs for s3://, e.g. the delta extra)"
                ) from None
        else:
            self._path = Path(location.removeprefix("file://")).expanduser()

    def names(self) -> list[str]:
        """The receipt files' names, sorted."""
        try:
            if self._fs is None:
                if not self._path.is_dir():
                    return []
                return sorted(p.name for p in self._path.glob("*.json"))
            if not self._fs.exists(self._root):
                return []
            return sorted(
                p.rsplit("/", 1)[-1]
                for p in self._fs.ls(self._root, detail=False)
                if p.endswith(".json")
            )
        except OSError as exc:
            raise self._error("list", exc) from None

    def read(self, name: str) -> Any:
        """A file's JSON; ValueError when it is not JSON."""
        try:
            if self._fs is None:
                text = (self._path / name).read_bytes()
            else:
                with self._fs.open(f"{self._root}/{name}", "rb") as f:
                    text = f.read()
        except OSError as exc:
            raise self._error("read", exc) from None
        return json.loads(text)

    def write(self, receipt: Receipt) -> None:
        body = json.dumps(receipt.file_json(), ensure_ascii=False, indent=1).encode()
        name = receipt.file_name
        try:
            if self._fs is None:
                self._path.mkdir(parents=True, exist_ok=True)
                path = self._path / name
                tmp = self._path / f".{name}.tmp"
                tmp.write_bytes(body)
                # link, not rename: it fails where the name is taken, so none is replaced
                os.link(tmp, path)
                tmp.unlink()
            else:
                path_text = f"{self._root}/{name}"
                if self._fs.exists(path_text):
                    raise FileExistsError(path_text)
                with self._fs.open(path_text, "wb") as f:
                    f.write(body)
        except FileExistsError:
            raise DestinationError(
                f"the receipt {name} already exists in {self.shown}: another chain writes "
                "there; give each dataset its own --receipts-dir"
            ) from None
        except OSError as exc:
            raise self._error("write", exc) from None

    def _error(self, doing: str, exc: OSError) -> DestinationError:
        return DestinationError(
            f"cannot {doing} receipts in {self.shown} ({type(exc).__name__}: "
            f"{exc.strerror or exc}); check the folder or bucket and its credentials"
        )
