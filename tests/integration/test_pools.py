"""The pools check a connection with a round trip only after it sat idle (tasks/core/db.py, ``_IdleCheck``)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg_pool
import pytest

from tasks.core import db


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every round-trip check the pools make (the real check runs; it is only counted)."""
    made: list[str] = []
    sync_check = psycopg_pool.ConnectionPool.check_connection
    async_check = psycopg_pool.AsyncConnectionPool.check_connection

    def counted(conn: Any) -> None:
        made.append("sync")
        sync_check(conn)

    async def counted_async(conn: Any) -> None:
        made.append("async")
        await async_check(conn)

    monkeypatch.setattr(psycopg_pool.ConnectionPool, "check_connection", staticmethod(counted))
    monkeypatch.setattr(psycopg_pool.AsyncConnectionPool, "check_connection", staticmethod(counted_async))
    return made


def test_the_web_pool_checks_a_connection_only_after_it_sat_idle(database_url: str, checks: list[str]) -> None:
    busy = db.pool(database_url, max_size=1, check_idle_after=60.0)
    always = db.pool(database_url, max_size=1, check_idle_after=0.0)  # any pause is "idle"
    try:
        for pool in (busy, always):
            pool.wait()
            for _ in range(5):  # one request after another
                with pool.connection() as conn:
                    conn.execute("SELECT 1")
        # The busy pool checked its connection once (its first take: never taken before);
        # the one for which every pause counts checked every take.
        assert checks == ["sync"] + ["sync"] * 5
    finally:
        busy.close()
        always.close()


def test_the_worker_pool_does_the_same(database_url: str, checks: list[str]) -> None:
    async def run() -> None:
        for idle_after, expected in ((60.0, 1), (0.0, 5)):
            checks.clear()
            pool = db.async_pool(database_url, size=1, check_idle_after=idle_after)
            await pool.open(wait=True)
            try:
                for _ in range(5):
                    async with pool.connection() as conn:
                        await conn.execute("SELECT 1")
            finally:
                await pool.close()
            assert checks == ["async"] * expected, idle_after

    asyncio.run(run())
