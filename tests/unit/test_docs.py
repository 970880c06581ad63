"""The documentation: the site builds strictly, the README stays short, links lead somewhere.

The site (mkdocs.yml, docs/) is built here with ``mkdocs build --strict``, as
``make docs`` does, so CI fails on a broken link or anchor. The README and
CONTRIBUTING.md are read on GitHub rather than on the site: their relative links
are checked against the files. docs/layout.md must name every module.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Files the site includes from outside docs/ (pymdownx.snippets; mkdocs.yml).
INCLUDED = ("README.md", "CONTRIBUTING.md", "bench/RESULTS.md", "sql/migrations/README.md")
#: A relative Markdown link or image: [text](target) or ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def build(project: pathlib.Path, out: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``project`` into ``out``, run from ``project`` (as ``make docs`` is)."""
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_site_sources(dest: pathlib.Path) -> pathlib.Path:
    """What the site is built from, copied so a test may break it."""
    dest.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", dest / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", dest / "docs")
    for name in INCLUDED:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, dest / name)
    return dest


def test_the_site_builds_strictly(tmp_path: pathlib.Path) -> None:
    result = build(ROOT, tmp_path / "site")

    assert result.returncode == 0, result.stderr
    html = (tmp_path / "site" / "index.html").read_text()
    # The home page includes the README's sections (the two commands, the tour).
    assert "make run" in html and "A five-minute tour" in html
    # The benchmark results page shows bench/RESULTS.md itself.
    assert "Benchmark results" in (tmp_path / "site" / "results" / "index.html").read_text()
    # No web fonts: the site asks nothing of another host to render.
    assert "fonts.googleapis.com" not in html


@pytest.mark.parametrize(
    ("link", "complaint"),
    [
        ("[Supervision](deploying.md#no-such-heading)", "does not contain an anchor"),
        ("[Deploying](no-such-page.md)", "not found among documentation files"),
    ],
)
def test_a_broken_link_fails_the_build(tmp_path: pathlib.Path, link: str, complaint: str) -> None:
    project = copy_of_the_site_sources(tmp_path / "project")
    page = project / "docs" / "guarantees.md"
    page.write_text(page.read_text() + f"\nSee {link}.\n")

    result = build(project, tmp_path / "site")

    assert result.returncode != 0
    assert complaint in result.stderr


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()

    assert len(lines) <= 200
    first_block = readme.index("```sh")
    assert readme.index("make run", first_block) < readme.index("make test", first_block)
    assert readme.index("make test", first_block) < readme.index("## Configuration")
    assert "docs/configuration.md" in readme


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md"])
def test_relative_links_lead_to_files_in_the_repository(name: str) -> None:
    text = (ROOT / name).read_text()
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]

    assert targets or name != "README.md"
    missing = [t for t in targets if not (ROOT / name).parent.joinpath(t.split("#")[0]).exists()]
    assert missing == []


def modules() -> set[str]:
    """Every Python module and Lua script of the code, as a path from the root."""
    found = set()
    for package in ("tasks", "webapp", "scripts", "bench"):
        for path in (ROOT / package).rglob("*"):
            if path.suffix in (".py", ".lua") and "__pycache__" not in path.parts:
                if path.name == "__init__.py" and path.stat().st_size == 0:
                    continue  # an empty package marker says nothing
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_every_module_has_its_line_in_the_layout() -> None:
    layout = (ROOT / "docs" / "layout.md").read_text()
    named = set(re.findall(r"^\| `([^`]+)`", layout, flags=re.MULTILINE))

    assert sorted(modules() - named) == []
    # ...and every path the layout names exists.
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
