"""Circuit breakers and the transport chain, against real PostgreSQL (where their state lives).

Each ``Mailer`` here stands for one worker process; two of them share the breakers
exactly as two processes do. Cool-downs are passed by moving ``retry_at`` into the
past rather than by sleeping.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tasks.core import config, db
from tasks.core.config import Settings
from tasks.core.db import AsyncConn
from tasks.delivery import transports
from tasks.delivery.mailer import Choice, Mailer, NoTransport

AConn = AsyncConn
FAULT = transports.Transient("cannot connect to smtp://127.0.0.1:1: Connection refused", provider_fault=True)


@pytest.fixture
def chain(env: dict[str, str], tmp_path: pathlib.Path) -> Settings:
    """primary, backup, then the offline log; 3 failures open a breaker for 60 s."""
    return config.load(
        env
        | {
            "MAIL_TRANSPORTS": f"primary=smtp://127.0.0.1:1 backup=smtp://127.0.0.1:2 jsonl://{tmp_path}/offline.jsonl",
            "BREAKER_THRESHOLD": "3",
            "BREAKER_COOLDOWN": "60",
        }
    )


def drive(settings: Settings, database_url: str, scenario: Callable[..., Awaitable[Any]], processes: int = 1) -> Any:
    """Run ``scenario(conn, mailer, ...)`` with one Mailer per simulated worker process."""

    async def main() -> Any:
        pool = db.async_pool(database_url, size=2)
        await pool.open(wait=True)
        chain = [transports.build(spec, settings) for spec in settings.mail_transports]
        mailers = [Mailer(chain, settings, f"worker-{i}") for i in range(processes)]
        try:
            async with pool.connection() as conn:
                return await scenario(conn, *mailers)
        finally:
            await pool.close()

    return asyncio.run(main())


async def fail(conn: AConn, mailer: Mailer, choice: Choice, times: int = 1) -> None:
    for _ in range(times):
        await mailer.record(conn, choice, FAULT)


async def open_breaker(conn: AConn, mailer: Mailer, label: str) -> None:
    transport = next(t for t in mailer.real if t.label == label)
    await fail(conn, mailer, Choice(transport=transport), mailer.settings.breaker_threshold)


async def cool_down_passes(conn: AConn, label: str, *mailers: Mailer) -> None:
    """Move the end of the cool-down into the past (and let the processes see it, as they would within 1 s)."""
    await conn.execute("UPDATE transport_breakers SET retry_at = now() - interval '1 s' WHERE label = %s", (label,))
    for mailer in mailers:
        await mailer.breakers(conn, fresh=True)


async def state(conn: AConn, label: str) -> dict[str, Any]:
    cursor = await conn.execute("SELECT * FROM transport_breakers WHERE label = %s", (label,))
    row = await cursor.fetchone()
    assert row is not None
    return row


def test_the_breaker_opens_after_threshold_provider_failures_in_a_row(chain: Settings, database_url: str) -> None:
    async def scenario(conn: AConn, mailer: Mailer) -> tuple[Any, ...]:
        first = await mailer.pick(conn)
        await fail(conn, mailer, first, 2)
        await mailer.record(conn, first, None)  # a success in between starts the count again
        await fail(conn, mailer, first, 2)
        still_primary = (await mailer.pick(conn)).transport.label
        await fail(conn, mailer, first, 1)
        after = (await mailer.pick(conn)).transport.label
        return first.transport.label, still_primary, after, await state(conn, "primary")

    first, still_primary, after, row = drive(chain, database_url, scenario)

    assert (first, still_primary, after) == ("primary", "primary", "backup")
    assert row["state"] == "open" and row["failures"] == 3 and row["opened_count"] == 1
    assert "Connection refused" in row["last_error"]


@pytest.mark.parametrize(
    "error",
    [
        transports.Transient("recipient(s) refused for now: 451 4.7.1 Greylisted", code=451),
        transports.Transient("recipient(s) refused for now: 452 4.2.2 Mailbox full", code=452),
        transports.Permanent("DATA refused: 550 5.7.1 Rejected", code=550),
        transports.Aborted("the email changed before DATA"),
    ],
    ids=["451", "452", "550", "aborted"],
)
def test_replies_about_one_message_never_count_against_the_breaker(
    chain: Settings, database_url: str, error: transports.SendError
) -> None:
    async def scenario(conn: AConn, mailer: Mailer) -> tuple[str, dict[str, Any]]:
        choice = await mailer.pick(conn)
        for _ in range(10):
            await mailer.record(conn, choice, error)
        return (await mailer.pick(conn)).transport.label, await state(conn, "primary")

    label, row = drive(chain, database_url, scenario)

    assert label == "primary"
    assert row["state"] == "closed" and row["failures"] == 0


def test_with_every_real_breaker_open_the_chain_ends_in_the_offline_log(chain: Settings, database_url: str) -> None:
    async def scenario(conn: AConn, mailer: Mailer) -> tuple[Choice, NoTransport]:
        await open_breaker(conn, mailer, "primary")
        await open_breaker(conn, mailer, "backup")
        choice = await mailer.pick(conn)
        with pytest.raises(NoTransport) as waited:
            await mailer.pick(conn, offline_ok=False)  # an email already logged offline once
        return choice, waited.value

    choice, waited = drive(chain, database_url, scenario)

    assert choice.offline and choice.transport.label == "jsonl"
    assert 55 < waited.retry_in <= 60


def test_without_an_offline_log_the_email_is_told_when_to_come_back(env: dict[str, str], database_url: str) -> None:
    settings = config.load(env | {"MAIL_TRANSPORTS": "smtp://127.0.0.1:1", "BREAKER_THRESHOLD": "1"})

    async def scenario(conn: AConn, mailer: Mailer) -> float:
        await open_breaker(conn, mailer, "smtp")
        with pytest.raises(NoTransport) as waited:
            await mailer.pick(conn)
        return waited.value.retry_in

    assert 55 < drive(settings, database_url, scenario) <= 60


def test_after_the_cool_down_exactly_one_process_gets_the_trial(chain: Settings, database_url: str) -> None:
    async def scenario(conn: AConn, one: Mailer, two: Mailer) -> tuple[Choice, Choice, dict[str, Any]]:
        await open_breaker(conn, one, "primary")
        await cool_down_passes(conn, "primary", one, two)
        first = await one.pick(conn)
        second = await two.pick(conn)
        return first, second, await state(conn, "primary")

    first, second, row = drive(chain, database_url, scenario, processes=2)

    assert first.transport.label == "primary" and first.trial is not None
    assert second.transport.label == "backup" and second.trial is None
    assert row["state"] == "half_open" and row["trial_by"] == "worker-0"


def test_a_successful_trial_closes_the_breaker(chain: Settings, database_url: str) -> None:
    async def scenario(conn: AConn, mailer: Mailer) -> tuple[dict[str, Any], str]:
        await open_breaker(conn, mailer, "primary")
        await cool_down_passes(conn, "primary", mailer)
        trial = await mailer.pick(conn)
        await mailer.record(conn, trial, None)
        return await state(conn, "primary"), (await mailer.pick(conn)).transport.label

    row, next_label = drive(chain, database_url, scenario)

    assert row["state"] == "closed" and row["failures"] == 0 and row["trial_token"] is None
    assert next_label == "primary"


def test_a_failed_trial_opens_the_breaker_for_another_cool_down(chain: Settings, database_url: str) -> None:
    async def scenario(conn: AConn, mailer: Mailer) -> tuple[dict[str, Any], str, float]:
        await open_breaker(conn, mailer, "primary")
        await cool_down_passes(conn, "primary", mailer)
        trial = await mailer.pick(conn)
        await mailer.record(conn, trial, FAULT)
        cursor = await conn.execute(
            "SELECT extract(epoch FROM retry_at - now())::float8 AS s FROM transport_breakers WHERE label = 'primary'"
        )
        row = await cursor.fetchone()
        assert row is not None
        return await state(conn, "primary"), (await mailer.pick(conn)).transport.label, row["s"]

    row, next_label, retry_in = drive(chain, database_url, scenario)

    assert row["state"] == "open" and row["opened_count"] == 2
    assert 55 < retry_in <= 60
    assert next_label == "backup"


def test_only_the_trial_decides_a_half_open_breaker(chain: Settings, database_url: str) -> None:
    """A send that started before the breaker opened and fails late does not re-open it."""

    async def scenario(conn: AConn, mailer: Mailer) -> dict[str, Any]:
        straggler = await mailer.pick(conn)
        await open_breaker(conn, mailer, "primary")
        await cool_down_passes(conn, "primary", mailer)
        await mailer.pick(conn)  # the trial, still in flight
        await mailer.record(conn, straggler, FAULT)
        return await state(conn, "primary")

    row = drive(chain, database_url, scenario)

    assert row["state"] == "half_open"


def test_a_trial_abandoned_by_a_dead_worker_is_taken_over(chain: Settings, database_url: str) -> None:
    async def scenario(conn: AConn, one: Mailer, two: Mailer) -> Choice:
        await open_breaker(conn, one, "primary")
        await cool_down_passes(conn, "primary", one)
        await one.pick(conn)  # ...and the process dies before recording it
        await conn.execute("UPDATE transport_breakers SET trial_started_at = now() - interval '1 hour'")
        await two.breakers(conn, fresh=True)
        return await two.pick(conn)

    taken = drive(chain, database_url, scenario, processes=2)

    assert taken.transport.label == "primary" and taken.trial is not None


def test_a_released_trial_can_be_taken_at_once(chain: Settings, database_url: str) -> None:
    """A trial picked but not used (the send had to wait) goes back to the next send."""

    async def scenario(conn: AConn, one: Mailer, two: Mailer) -> Choice:
        await open_breaker(conn, one, "primary")
        await cool_down_passes(conn, "primary", one)
        trial = await one.pick(conn)
        await one.release(conn, trial)
        await two.breakers(conn, fresh=True)
        return await two.pick(conn)

    taken = drive(chain, database_url, scenario, processes=2)

    assert taken.transport.label == "primary" and taken.trial is not None
