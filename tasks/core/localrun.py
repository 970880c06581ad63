"""The servers ``make run`` uses, for the commands typed in another terminal.

``make run`` (scripts/run.py) uses PostgreSQL and Redis at DATABASE_URL / REDIS_URL
when they answer, and otherwise starts private ones on ports of its own. While it
runs it keeps the two URLs it uses in ``.data/run.json`` (and removes the file when
it stops); ``python -m tasks`` takes each variable its environment leaves unset
from there, so ``python -m tasks schedule …`` reaches the servers the running
worker uses instead of the defaults. A variable set in the environment always wins.

A file left behind by a ``make run`` that was killed is still read (its private
PostgreSQL may have outlived it), but the CLI says so, and says so again, with what
to do, when those servers do not answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: The variables ``make run`` records.
VARIABLES = ("DATABASE_URL", "REDIS_URL")
#: Overrides ``.data/`` in the checkout (where ``make run`` and ``make test`` keep their private servers).
DATA_DIR_VARIABLE = "REACHDBOX_DATA_DIR"


def data_dir(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """Return the directory of the private servers' data, ports and the ``run.json`` record."""
    env = os.environ if environ is None else environ
    return pathlib.Path(env.get(DATA_DIR_VARIABLE) or ROOT / ".data")


def record_path(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    return data_dir(environ) / "run.json"


@dataclasses.dataclass(frozen=True)
class Record:
    """What a ``make run`` wrote: the URLs it uses, and its process id."""

    path: pathlib.Path
    urls: dict[str, str]
    pid: int

    @property
    def running(self) -> bool:
        """Tell whether the ``make run`` that wrote it is still running."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, and someone else's
        return True


def write(path: pathlib.Path, urls: Mapping[str, str], pid: int) -> None:
    """Record the URLs, atomically; 0600, since a URL from the environment may hold a password."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{pid}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"pid": pid, **{name: urls[name] for name in VARIABLES}}, f)
    os.replace(tmp, path)


def remove(path: pathlib.Path, pid: int) -> None:
    """Remove the record if it is still this run's (a second ``make run`` may have replaced it)."""
    record = read(path)
    if record is not None and record.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read(path: pathlib.Path) -> Record | None:
    """Return the record, or None if there is none (or it is not one: it is then ignored)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    urls = {name: data[name] for name in VARIABLES if isinstance(data.get(name), str) and data[name]}
    return Record(path=path, urls=urls, pid=data["pid"])


@dataclasses.dataclass(frozen=True)
class Resolved:
    """The environment a command runs with, and which variables came from ``make run``'s record."""

    environ: dict[str, str]
    taken: tuple[str, ...] = ()
    record: Record | None = None

    def note(self) -> str | None:
        """Say that the URLs come from a ``make run`` that is gone, if they do."""
        if not self.taken or self.record is None or self.record.running:
            return None
        return (
            f"note: {' and '.join(self.taken)} from {self.record.path}, left by a `make run` that is no longer "
            f"running (pid {self.record.pid})"
        )

    def hint(self, variable: str) -> str | None:
        """Explain where the URL of a server that does not answer came from, and what to do."""
        if variable not in self.taken or self.record is None:
            return None
        if self.record.running:
            return (
                f"{variable} is from {self.record.path}, written by the running `make run` (pid {self.record.pid}); "
                "its servers should answer: look at its terminal"
            )
        return (
            f"{variable} is from {self.record.path}, left by a `make run` that is no longer running "
            f"(pid {self.record.pid}) and whose servers are gone: start `make run` again, "
            f"or set {variable} (the file is then ignored), or delete the file"
        )


def resolve(environ: Mapping[str, str]) -> Resolved:
    """Fill each of DATABASE_URL and REDIS_URL the environment leaves unset (or empty) from the record."""
    env = dict(environ)
    missing = [name for name in VARIABLES if not env.get(name, "").strip()]
    if not missing:
        return Resolved(environ=env)
    record = read(record_path(env))
    if record is None:
        return Resolved(environ=env)
    taken = tuple(name for name in missing if name in record.urls)
    env.update({name: record.urls[name] for name in taken})
    return Resolved(environ=env, taken=taken, record=record)
