"""Section references in code and docs point at sections that exist in the repository's own documents.

Comments cite `architecture §N` (docs/architecture.md) and `azure-notes §N[.M]` (docs/azure-notes.md);
documents outside the repository (an old DESIGN file, shared notes) must not be cited.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"(architecture|azure-notes) (§[\d.]+(?:\s*,\s*§[\d.]+)*)")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    suffixes = {".py", ".md", ".yaml", ".yml", ".json", ".toml", ".conf", ".sh", ""}
    return [REPO / name for name in listed.stdout.split() if Path(name).suffix in suffixes]


def _sections(document: str) -> set[str]:
    return set(HEADING.findall((REPO / "docs" / document).read_text()))


def test_every_cited_section_exists() -> None:
    sections = {"architecture": _sections("architecture.md"), "azure-notes": _sections("azure-notes.md")}
    missing, checked = [], 0
    for path in _tracked_text_files():
        if not path.is_file():
            continue
        for match in CITATION.finditer(path.read_text(errors="replace")):
            for number in re.findall(r"§([\d.]+)", match.group(2)):
                number, checked = number.rstrip("."), checked + 1
                if number not in sections[match.group(1)]:
                    missing.append(f"{path.relative_to(REPO)}: {match.group(1)} §{number}")
    assert checked > 50 and not missing, (checked, missing)


def test_no_citation_of_documents_outside_the_repository() -> None:
    stale = re.compile(r"DESIGN(\.md| §)|(?<![-\w])notes §")
    this_file = Path(__file__).name
    found = [
        str(path.relative_to(REPO))
        for path in _tracked_text_files()
        if path.is_file() and path.name != this_file and stale.search(path.read_text(errors="replace"))
    ]
    assert not found, found
