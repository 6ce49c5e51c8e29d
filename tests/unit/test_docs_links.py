"""The user-facing Markdown links only to files inside the repository, and every link resolves."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "server" / "README.md", ROOT / "benchmarks" / "README.md",
               *(ROOT / "docs").glob("*.md"), *(ROOT / "roles").glob("*/README.md")])
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path):
    """GitHub's anchors for the headings of a Markdown file."""
    found = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def local_links(path):
    for target in LINK_RE.findall(path.read_text(encoding="utf-8")):
        if not re.match(r"^[a-z]+:", target):
            yield target


def test_the_docs_exist():
    assert (ROOT / "docs" / "architecture.md").is_file()
    assert (ROOT / "docs" / "api.md").is_file()
    assert len(DOCS) >= 8


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(doc):
    for target in local_links(doc):
        file_part, anchor = (target.split("#", 1) + [""])[:2]
        dest = (doc.parent / file_part).resolve() if file_part else doc
        assert dest.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert dest.exists(), f"{doc.name} links a missing file: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{doc.name} links a missing heading: {target}"


def test_no_document_names_the_team_folder():
    for doc in DOCS:
        assert "../shared" not in doc.read_text(encoding="utf-8"), doc
