"""The real web app (gunicorn) on a fault test's private database, and an API client for it."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
from collections.abc import Iterator
from typing import Any

import psycopg
import requests

from tasks.domain import tokens
from tasks.domain.models import User
from tests.support import procs
from tests.support.web import Server


def workers_of(server: Server) -> list[int]:
    """The pids of gunicorn's worker processes (children of its master)."""
    master = server.proc.pid
    children = pathlib.Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def kill_workers(server: Server) -> list[int]:
    """SIGKILL every gunicorn worker, as a crash would; the master starts new ones."""
    killed = workers_of(server)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return killed


def wait_answering(server: Server, timeout: float = 30) -> None:
    """Wait until a (new) worker answers."""

    def answers() -> bool:
        try:
            return requests.get(f"{server.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    procs.wait_until(answers, timeout=timeout, what="gunicorn to answer again")


class Api:
    """Call ``/api/v1`` over HTTP as one user, with a personal access token."""

    def __init__(self, server: Server, token: str):
        self.base = f"{server.url}/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.session = requests.Session()

    def post(self, path: str, json: Any = None, *, headers: dict[str, str] | None = None, timeout: float = 30):
        return self.session.post(self.base + path, json=json, headers=self.headers | (headers or {}), timeout=timeout)

    def patch(self, path: str, json: Any, *, timeout: float = 30) -> requests.Response:
        return self.session.patch(self.base + path, json=json, headers=self.headers, timeout=timeout)

    def get(self, path: str, *, timeout: float = 30) -> requests.Response:
        return self.session.get(self.base + path, headers=self.headers, timeout=timeout)

    def clone(self) -> Api:
        """Another client (its own HTTP connection) for another thread."""
        other = Api.__new__(Api)
        other.base, other.headers, other.session = self.base, self.headers, requests.Session()
        return other


def token_for(conn: psycopg.Connection[Any], user: User) -> str:
    return tokens.create(conn, user, "fault tests")[1]


@contextlib.contextmanager
def running_web(env: dict[str, str], log_dir: pathlib.Path) -> Iterator[Server]:
    """A real gunicorn (one worker process, 8 threads) on the test's private database."""
    server = Server(env | {"API_RATE_LIMIT": "100000/minute"}, log_dir)
    try:
        yield server
    finally:
        server.stop()
