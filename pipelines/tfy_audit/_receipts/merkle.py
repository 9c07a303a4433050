"""The Merkle tree hash of a day's events: RFC 6962's (Certificate Transparency), over the
events' SHA-256 hashes in ascending order, so the root depends on which events a day holds and
on nothing else (not the order a destination returns them in).

A leaf is `SHA-256(0x00 || event hash)`, a node `SHA-256(0x01 || left || right)`: the prefixes
keep a leaf from passing for a node. The tree is built a level at a time, an unpaired last node
carried up unchanged, which is RFC 6962's split at the largest power of two, without recursion.
An empty day's root is SHA-256 of nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def merkle_root(event_hashes: Iterable[str]) -> str:
    """The root (hex) over hex event hashes, sorted here."""
    level = [hashlib.sha256(b"\x00" + bytes.fromhex(h)).digest() for h in sorted(event_hashes)]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()
