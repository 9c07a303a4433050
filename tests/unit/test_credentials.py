"""`tfy login`'s credentials file as the last source of host and key: the precedence of every
source, the expiry check on a JWT, a token that is never sent to another host, and the
one-line errors of a file that is not what `tfy login` writes."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tfy_audit._cli.output import exit_code_for
from tfy_audit._core.errors import ConfigurationError
from tfy_audit._service.credentials import jwt_expiry, read_login_credentials
from tfy_audit._source.config import resolve_api_key, resolve_host

FILE_HOST = "https://file.example.truefoundry.cloud"


def make_jwt(expires: datetime | None, **claims: Any) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    if expires is not None:
        claims["exp"] = int(expires.timestamp())
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def write_credentials(home: Path, content: object) -> Path:
    path = home / ".truefoundry" / "credentials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of its own, and no host or key from the environment or dlt."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(os.environ):
        if name in ("TFY_HOST", "TFY_API_KEY") or name.startswith("SOURCES__TRUEFOUNDRY_AUDIT__"):
            monkeypatch.delenv(name)
    return tmp_path


VALID = make_jwt(datetime.now(UTC) + timedelta(hours=1), sub="alice", tenantName="acme")


# the four sources of each setting, strongest first; each case removes the stronger ones
HOST_LAYERS = ["flag", "dlt", "env", "file"]


@pytest.mark.parametrize("strongest", HOST_LAYERS)
def test_host_precedence(home: Path, monkeypatch: pytest.MonkeyPatch, strongest: str) -> None:
    present = HOST_LAYERS[HOST_LAYERS.index(strongest) :]
    if "dlt" in present:
        monkeypatch.setenv("SOURCES__TRUEFOUNDRY_AUDIT__HOST", "https://dlt.example")
    if "env" in present:
        monkeypatch.setenv("TFY_HOST", "https://env.example")
    write_credentials(home, {"host": FILE_HOST, "access_token": VALID, "refresh_token": "r"})
    flag = "https://flag.example" if "flag" in present else None
    expected = {
        "flag": "https://flag.example",
        "dlt": "https://dlt.example",
        "env": "https://env.example",
        "file": FILE_HOST,
    }[strongest]
    assert resolve_host(flag) == expected


@pytest.mark.parametrize("strongest", HOST_LAYERS)
def test_api_key_precedence(home: Path, monkeypatch: pytest.MonkeyPatch, strongest: str) -> None:
    present = HOST_LAYERS[HOST_LAYERS.index(strongest) :]
    if "dlt" in present:
        monkeypatch.setenv("SOURCES__TRUEFOUNDRY_AUDIT__API_KEY", "key-from-dlt")
    if "env" in present:
        monkeypatch.setenv("TFY_API_KEY", "key-from-env")
    write_credentials(home, {"host": FILE_HOST, "access_token": VALID, "refresh_token": "r"})
    explicit = "key-from-caller" if "flag" in present else None
    expected = {
        "flag": "key-from-caller",
        "dlt": "key-from-dlt",
        "env": "key-from-env",
        "file": VALID,
    }[strongest]
    assert resolve_api_key(explicit, FILE_HOST) == expected


def test_stronger_sources_win_over_an_expired_or_broken_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is not even read while another source gives the setting."""
    write_credentials(home, "{not json")
    monkeypatch.setenv("TFY_HOST", "https://env.example")
    monkeypatch.setenv("TFY_API_KEY", "key-from-env")
    assert resolve_host(None) == "https://env.example"
    assert resolve_api_key(None, "https://env.example") == "key-from-env"
    expired = make_jwt(datetime.now(UTC) - timedelta(days=1))
    write_credentials(home, {"host": FILE_HOST, "access_token": expired})
    assert resolve_api_key(None, FILE_HOST) == "key-from-env"


def test_without_a_file_the_errors_are_unchanged(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="no TrueFoundry host: set TFY_HOST"):
        resolve_host(None)
    with pytest.raises(ConfigurationError, match="no TrueFoundry API key: set TFY_API_KEY"):
        resolve_api_key(None, "https://x.example")


def test_expired_jwt_stops_with_one_line(home: Path) -> None:
    expired_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    token = make_jwt(expired_at, sub="alice")
    write_credentials(home, {"host": FILE_HOST, "access_token": token, "refresh_token": "r"})
    assert resolve_host(None) == FILE_HOST
    with pytest.raises(ConfigurationError) as err:
        resolve_api_key(None, FILE_HOST)
    message = str(err.value)
    assert message == (
        "the `tfy login` token in ~/.truefoundry/credentials.json expired at "
        "2026-01-02T03:04:05Z: run `tfy login` again, or set a PAT or virtual-account token in "
        "TFY_API_KEY for scheduled runs"
    )
    assert exit_code_for(err.value) == 2


def test_token_is_never_sent_to_another_host(home: Path) -> None:
    write_credentials(home, {"host": FILE_HOST + "/", "access_token": VALID})
    # the same control plane, written differently: the token is used
    assert resolve_api_key(None, "HTTPS://FILE.example.truefoundry.cloud") == VALID
    with pytest.raises(ConfigurationError) as err:
        resolve_api_key(None, "https://other.example")
    message = str(err.value)
    assert "https://other.example" in message and FILE_HOST in message
    assert "tfy login --host https://other.example" in message and "TFY_API_KEY" in message
    assert VALID not in message and "\n" not in message


@pytest.mark.parametrize(
    "token",
    [
        "tfy-pat-0123456789abcdef",  # a PAT: not a JWT, never expires by itself
        make_jwt(None, sub="alice"),  # a JWT without exp
        "a.b.c",  # three parts that decode to no JSON
        make_jwt(None, exp="tomorrow"),
    ],
)
def test_tokens_without_a_readable_expiry_are_used_as_they_are(home: Path, token: str) -> None:
    write_credentials(home, {"host": FILE_HOST, "access_token": token})
    assert resolve_api_key(None, FILE_HOST) == token


def test_jwt_expiry_reads_exp() -> None:
    at = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert jwt_expiry(make_jwt(at)) == at
    assert jwt_expiry("not-a-jwt") is None


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"host": FILE_HOST}),
        json.dumps({"host": "", "access_token": "t"}),
        json.dumps({"host": FILE_HOST, "access_token": 12}),
    ],
)
def test_a_file_that_is_not_what_tfy_login_writes(home: Path, content: str) -> None:
    write_credentials(home, content)
    with pytest.raises(ConfigurationError) as err:
        resolve_host(None)
    message = str(err.value)
    assert message.startswith("~/.truefoundry/credentials.json is not what `tfy login` writes")
    assert "run `tfy login` again" in message and "\n" not in message


def test_unreadable_file(home: Path) -> None:
    """A path that cannot be read as a file (here a folder: unreadable even for root)."""
    (home / ".truefoundry" / "credentials.json").mkdir(parents=True)
    with pytest.raises(ConfigurationError) as err:
        read_login_credentials()
    message = str(err.value)
    assert message.startswith("cannot read ~/.truefoundry/credentials.json (")
    assert "run `tfy login` again" in message and "\n" not in message


def test_no_file_is_no_credentials(home: Path) -> None:
    assert read_login_credentials() is None


def test_no_home_directory_is_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert read_login_credentials() is None
