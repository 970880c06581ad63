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

VENDOR = pathlib.Path(__file__).resolve().parents[2] / "webapp" / "static" / "vendor"
DIRECTORIES = sorted(p for p in VENDOR.iterdir() if p.is_dir())


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
    assert [p.name for p in DIRECTORIES] == [pathlib.PurePath(docs.SWAGGER_UI).name]
