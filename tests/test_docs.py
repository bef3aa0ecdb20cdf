"""The guides' links and pictures: every relative link and image in README.md,
docs/*.md and docs/id/*.md names a file that exists (and, for a Markdown file, a
heading that exists, by GitHub's anchors), and the Indonesian guides show the
officer's and the technician's screens."""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GUIDES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((DOCS / "id").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target), with an optional "title"
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, code spans removed."""
    lines, fenced = [], None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            if fenced is None:
                fenced = fence.group(1)
            elif fence.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            lines.append((number, CODE_SPAN.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers (duplicates numbered as GitHub does)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    fenced = None
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence:
            if fenced is None:
                fenced = fence.group(1)
            elif fence.group(1) == fenced:
                fenced = None
            continue
        if fenced is not None:
            continue
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, bool, str]]:
    """(line, is an image, target) of every link in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [
        (number, bang == "!", target)
        for number, line in prose_lines(text)
        for bang, _, target in LINK.findall(line)
    ]


def broken(path: Path, root: Path = ROOT) -> list[str]:
    """One line per link whose file, or whose heading, is not there."""
    problems = []
    for number, _, target in links(path):
        if SCHEME.match(target):  # https:, mailto:, file: ...
            continue
        name, _, anchor = target.partition("#")
        name = urllib.parse.unquote(name)
        if not name:
            where = path
        elif name.startswith("/"):
            where = root / name.lstrip("/")
        else:
            where = (path.parent / name).resolve()
        here = f"{path.relative_to(root)}:{number}: {target}"
        if not where.exists():
            problems.append(f"{here}: no such file {os.path.relpath(where, root)}")
        elif (
            anchor
            and where.suffix == ".md"
            and where.is_file()
            and urllib.parse.unquote(anchor).lower() not in anchors(where)
        ):
            problems.append(f"{here}: no heading with the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("path", GUIDES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(path: Path):
    assert broken(path) == []


def test_the_guides_are_found():
    names = {str(path.relative_to(ROOT)) for path in GUIDES}
    assert {
        "README.md",
        "docs/operator.md",
        "docs/technician.md",
        "docs/id/panduan-petugas.md",
        "docs/id/panduan-teknisi.md",
    } <= names


def test_slugs_follow_github():
    assert slug('"Mohon tunggu petugas" / "Please wait for the officer"') == (
        "mohon-tunggu-petugas--please-wait-for-the-officer"
    )
    assert slug("`kiosk provision` on the command line") == "kiosk-provision-on-the-command-line"
    assert slug("The officers' PINs") == "the-officers-pins"
    assert slug("5. Memulihkan stasiun") == "5-memulihkan-stasiun"


def test_a_broken_link_is_found(tmp_path: Path):
    (tmp_path / "shot.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Part two\n\n"
        "![ok](shot.png) [ok](#part-two) [ok](page.md#title) [web](https://example.org/x)\n"
        "![gone](missing.png) [gone](#part-three)\n"
        "```\n[in code](nowhere.md)\n```\n"
        "`[in a span](nowhere.md)`\n",
        encoding="utf-8",
    )
    assert broken(page, root=tmp_path) == [
        "page.md:6: missing.png: no such file missing.png",
        "page.md:6: #part-three: no heading with the anchor #part-three",
    ]


def images(path: Path) -> set[str]:
    return {Path(target).name for _, image, target in links(path) if image}


OFFICER_SCREENS = {
    "16-no-operator.png",
    "17-operator-login.png",
    "18-operator-console.png",
    "19-operator-today.png",
    "20-operator-attention.png",
    "13-operator.png",
    "21-operator-face.png",
    "15-module-down.png",
    "11-camera-fault.png",
}
TECHNICIAN_SCREENS = {
    "tech-01-provision.png",
    "tech-02-diagnostics-modules.png",
    "tech-03-diagnostics-touch.png",
}


@pytest.mark.parametrize(
    ("guide", "screens"),
    [("panduan-petugas.md", OFFICER_SCREENS), ("panduan-teknisi.md", TECHNICIAN_SCREENS)],
)
def test_the_indonesian_guides_show_the_indonesian_screens(guide: str, screens: set[str]):
    shown = images(DOCS / "id" / guide)
    assert screens - shown == set()
    # the English screens are linked at most, never shown in place of the Indonesian ones
    assert {name for name in shown if name.startswith("en-")} == set()


@pytest.mark.parametrize(
    ("english", "indonesian"),
    [("operator.md", "id/panduan-petugas.md"), ("technician.md", "id/panduan-teknisi.md")],
)
def test_each_guide_links_its_translation(english: str, indonesian: str):
    assert indonesian in {target for _, _, target in links(DOCS / english)}
    assert f"../{english}" in {target for _, _, target in links(DOCS / indonesian)}
