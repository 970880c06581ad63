"""A committed migration's text never changes: sql/migrations/CHECKSUMS holds the
sha256 of each one, and lines are only added (sql/migrations/README.md)."""

from __future__ import annotations

import collections
import pathlib
import shutil

import pytest

from scripts import migrations as tool
from tasks.core import errors, migrate

FOLDER = migrate.MIGRATIONS_DIR
FILES = {path.name: path for path in migrate.our_files()}
RECORDED = migrate.recorded()


def test_every_migration_has_the_text_its_checksum_records() -> None:
    applies = {e.name: e.checksum for e in RECORDED if e.state == "applies"}

    unrecorded = sorted(set(FILES) - set(applies))
    changed = sorted(
        name
        for name, path in FILES.items()
        if name in applies and migrate.checksum(path.read_text(encoding="utf-8")) != applies[name]
    )

    assert not unrecorded, f"{unrecorded}: not in CHECKSUMS; run `make checksums`"
    assert not changed, (
        f"{changed} changed after they were committed: restore them (git checkout) and make the change "
        "in a new migration (sql/migrations/README.md)"
    )


def test_every_recorded_migration_is_in_the_folder_unless_retired() -> None:
    states = collections.defaultdict(list)
    for entry in RECORDED:
        states[entry.name].append(entry.state)

    for name, kinds in states.items():
        if name in FILES:
            # One text applies; any other is an earlier one.
            assert sorted(kinds) == ["applies"] + ["earlier"] * (len(kinds) - 1), (name, kinds)
        else:
            assert kinds == ["retired"], f"{name} is gone from the folder: its line must say `retired`, once"
    assert len({(e.name, e.checksum) for e in RECORDED}) == len(RECORDED), "a line is recorded twice"


def test_a_number_is_never_used_twice_not_even_after_retirement() -> None:
    numbers = collections.Counter(name[:4] for name in {e.name for e in RECORDED} | set(FILES))

    assert [n for n, count in numbers.items() if count > 1] == []


def test_the_checksums_file_refuses_a_malformed_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "CHECKSUMS").write_text("0001_core.sql  abc  applies\n")

    with pytest.raises(errors.ReachError, match="line 1: expected NAME SHA256 STATE"):
        migrate.recorded(tmp_path)


def test_make_checksums_appends_a_new_migration_and_refuses_an_edited_one(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(FOLDER, folder)
    assert tool.new_checksum_lines(folder) == []

    (folder / "0100_next.sql").write_text("SELECT 1;\n")
    assert tool.new_checksum_lines(folder) == [f"0100_next.sql  {migrate.checksum('SELECT 1;' + chr(10))}  applies"]

    (folder / "0008_again.sql").write_text("SELECT 1;\n")
    with pytest.raises(SystemExit, match="number 0008 belonged to a retired migration"):
        tool.new_checksum_lines(folder)
    (folder / "0008_again.sql").unlink()

    first = sorted(FILES)[0]
    (folder / first).write_text((folder / first).read_text() + "-- a comment\n")
    with pytest.raises(SystemExit, match=f"{first} changed after it was committed"):
        tool.new_checksum_lines(folder)
