"""Ed25519 signatures of receipts, with the key the environment gives.

`TFY_AUDIT_RECEIPT_KEY` holds the signing key: the path of a PEM file (PKCS#8, as
`openssl genpkey -algorithm ed25519` writes it) or the 32-byte seed in base64. Without it
receipts are written unsigned (still chained and hashed). `TFY_AUDIT_RECEIPT_PUBLIC_KEY` (the
32-byte public key in base64, as `sync` prints it) pins the key `verify --receipts` accepts;
without it, verify accepts the key the signing key gives, else the key the first receipt names,
and says which.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tfy_audit._core.errors import ConfigurationError

KEY_VARIABLE: Final = "TFY_AUDIT_RECEIPT_KEY"
PUBLIC_KEY_VARIABLE: Final = "TFY_AUDIT_RECEIPT_PUBLIC_KEY"


def signing_key() -> Ed25519PrivateKey | None:
    """The key in TFY_AUDIT_RECEIPT_KEY, None when it is unset; a ConfigurationError naming
    the variable (never its value) when it holds no Ed25519 key."""
    text = os.environ.get(KEY_VARIABLE, "").strip()
    if not text:
        return None
    path = Path(text).expanduser()
    try:
        if path.is_file():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("not an Ed25519 key")
            return key
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (OSError, ValueError, TypeError, binascii.Error) as exc:
        raise ConfigurationError(
            f"{KEY_VARIABLE} holds no Ed25519 signing key ({type(exc).__name__}); set it to "
            "the path of a PEM file (openssl genpkey -algorithm ed25519 -out key.pem) or a "
            "32-byte seed in base64"
        ) from None


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte public key in base64, as receipts name it."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def pinned_public_key() -> str | None:
    """The public key verify must find (TFY_AUDIT_RECEIPT_PUBLIC_KEY), checked to be one."""
    text = os.environ.get(PUBLIC_KEY_VARIABLE, "").strip()
    if not text:
        return None
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        raise ConfigurationError(
            f"{PUBLIC_KEY_VARIABLE} is not an Ed25519 public key; set it to the 32-byte key "
            "in base64 that `tfy-audit sync --receipts-dir` printed"
        ) from None
    return text


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def signature_valid(public_key: str, message: bytes, signature: str) -> bool:
    """Whether `signature` (base64) is `public_key`'s (base64) over `message`."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
