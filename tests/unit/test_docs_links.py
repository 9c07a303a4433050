"""Every relative link in README.md and docs/ resolves: to a file or folder of the repository
and, with an anchor, to a heading of that file (as GitHub makes the anchor of a heading)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    body = prose(text)
    return _LINK.findall(body) + _REFERENCE.findall(body)


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a document's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated one numbered."""
    seen: dict[str, int] = {}
    made: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", plain.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        made.add(slug if count == 0 else f"{slug}-{count}")
    return made


def relative(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) is None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in filter(relative, links(document.read_text(encoding="utf-8"))):
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists() or not resolved.is_relative_to(REPO):
            broken.append(f"{target} (no {os.path.relpath(resolved, REPO)})")
            continue
        markdown = resolved.is_file() and resolved.suffix == ".md"
        headings = anchors(resolved.read_text(encoding="utf-8")) if markdown else set()
        if anchor and markdown and anchor.lower() not in headings:
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert broken == [], f"{document.relative_to(REPO)}: broken links: {broken}"


def test_the_link_check_finds_links_and_anchors() -> None:
    """The check itself: it sees inline, image and reference links, skips code, and makes
    GitHub's anchors."""
    text = (
        "# Run it: `sync` & more\n## Tables (and views)\n## Tables (and views)\n"
        "[a](docs/x.md#y) ![b](img.png) `[c](code.md)`\n```\n[d](fenced.md)\n```\n"
        "[e]: other.md\n"
    )
    assert links(text) == ["docs/x.md#y", "img.png", "other.md"]
    assert anchors(text) == {"run-it-sync--more", "tables-and-views", "tables-and-views-1"}
    assert links(REPO.joinpath("README.md").read_text(encoding="utf-8"))  # README has links
