"""Vendored front-end files (webapp/static/vendor/) are exactly the released ones they claim to be.

Each vendored directory is named <package>-<version> and lists its files' SHA-256 in
SHA256SUMS, taken from the package as published; a file edited by hand or by a fixer
(a newline added at the end, say) fails here.
"""

from __future__ import annotations

import hashlib
import pathlib

import pytest

from webapp.api import docs

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENDOR = ROOT / "webapp" / "static" / "vendor"
DIRECTORIES = sorted(p for p in VENDOR.iterdir() if p.is_dir())
#: The charts' library (webapp/templates/_charts_assets.html).
UPLOT = "vendor/uplot-1.6.32"


@pytest.mark.parametrize("directory", DIRECTORIES, ids=lambda p: p.name)
def test_every_vendored_file_matches_its_published_checksum(directory: pathlib.Path) -> None:
    listed = {}
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*")] = digest
    present = {p.name for p in directory.iterdir()} - {"SHA256SUMS", "README.md"}

    assert set(listed) == present
    actual = {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in listed}
    assert actual == listed
    assert "LICENSE" in listed


def test_the_reference_page_uses_a_vendored_directory_that_exists() -> None:
    assert (VENDOR.parent / docs.SWAGGER_UI / "swagger-ui-bundle.js").is_file()
    assert [p.name for p in DIRECTORIES] == sorted(pathlib.PurePath(d).name for d in (docs.SWAGGER_UI, UPLOT))


def test_the_charts_load_the_vendored_uplot() -> None:
    assets = (ROOT / "webapp" / "templates" / "_charts_assets.html").read_text()
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        assert f"{UPLOT}/{name}" in assets
    library = (VENDOR.parent / UPLOT / "uPlot.iife.min.js").read_text()
    assert library.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
