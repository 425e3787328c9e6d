"""What the design page and the tests' README name exists: every repository path, every file a
folder's row lists, every dotted ``core``/``api``/``ui``/``ops`` name (module or attribute).

These pages are where a newcomer looks a behaviour up by folder name; a moved or renamed file must
fail here instead of sending the reader to nothing."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "docs" / "design.md", ROOT / "tests" / "README.md"]
CODE = re.compile(r"`([^`\n]+)`")
# A repository path: words joined by "/", no spaces, braces, placeholders or globs.
PATH = re.compile(r"^\.?[\w.-]+(/[\w.-]+)*/?$")
DOTTED = re.compile(r"^(core|api|ui|ops)(\.[A-Za-z_]\w*)+$")
# A file listed in a folder's row of a "folder | what lives there" table, relative to that folder.
LISTED = re.compile(r"^[\w-]+(\.(py|sh|ndjson|example)|/)$")
# Named on the pages but not files of the repository: runtime files, MIME types, format names.
NOT_REPO = ("var/", "../", "image/", "text/", "churnops.")


def _tokens(page: Path) -> list[str]:
    return CODE.findall(page.read_text(encoding="utf-8"))


def _is_path(token: str) -> bool:
    """A folder (``x/``), a file with an extension, or anything under a top-level entry."""
    if "/" not in token or not PATH.match(token) or token.startswith(NOT_REPO):
        return False
    last = token.rstrip("/").rsplit("/", 1)[-1]
    return token.endswith("/") or "." in last or (ROOT / token.split("/", 1)[0]).exists()


def _row_folder(line: str) -> str | None:
    """The folder of a ``| `folder/` | ... |`` table row, else None."""
    cells = line.split("|")
    folders = [f for f in CODE.findall(cells[1]) if f.endswith("/")] if len(cells) >= 4 else []
    return folders[0] if len(folders) == 1 and _is_path(folders[0]) else None


def _missing_paths(page: Path) -> list[str]:
    """Paths that exist neither from the repository's root, nor from the page's folder, nor from
    the folder of the table row that names them."""
    missing: list[str] = []
    for line in page.read_text(encoding="utf-8").splitlines():
        folder = _row_folder(line)
        bases = [ROOT, page.parent] + ([ROOT / folder] if folder else [])
        for token in CODE.findall(line):
            if _is_path(token) and not any((base / token).exists() for base in bases):
                missing.append(token)
    return missing


def _resolves(dotted: str) -> bool:
    """True when ``dotted`` is a module, or a module followed by attributes that exist."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def _listed_files(page: Path) -> list[tuple[str, str]]:
    """(folder, file) for each file a ``| `folder/` | ... |`` table row names without its folder."""
    found: list[tuple[str, str]] = []
    for line in page.read_text(encoding="utf-8").splitlines():
        folder = _row_folder(line)
        if folder:
            found += [(folder, t) for t in CODE.findall(line.split("|")[2]) if LISTED.match(t)]
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_path_exists(page: Path) -> None:
    missing = _missing_paths(page)
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_folder_row_lists_exists(page: Path) -> None:
    listed = _listed_files(page)
    missing = [
        f"{d}{f}" for d, f in listed if not any((b / d / f).exists() for b in (ROOT, page.parent))
    ]
    assert not missing, f"{page.name} lists files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_dotted_name_resolves(page: Path) -> None:
    missing = sorted({t for t in _tokens(page) if DOTTED.match(t) and not _resolves(t)})
    assert not missing, f"{page.name} names what does not exist: {missing}"


def test_the_checks_find_what_is_missing(tmp_path: Path) -> None:
    """The three checks are not vacuous: they see the design page's names, and flag a wrong one."""
    design = PAGES[0]
    assert sum(_is_path(t) for t in _tokens(design)) > 40
    assert len(_listed_files(design)) > 40
    assert sum(bool(DOTTED.match(t)) for t in _tokens(design)) > 20
    assert _is_path("core/nowhere.py") and not _is_path("tn/fp/fn/tp")
    assert not _resolves("core.schema.no_such_rule") and _resolves("core.schema.predicted_churn")
    page = tmp_path / "page.md"
    page.write_text("| `core/` | `schema.py`, `nowhere.py`, `store/`, `core/nowhere/` |\n", "utf-8")
    assert _listed_files(page) == [
        ("core/", "schema.py"),
        ("core/", "nowhere.py"),
        ("core/", "store/"),
    ]
    assert _missing_paths(page) == ["core/nowhere/"]
