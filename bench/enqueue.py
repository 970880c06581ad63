"""Enqueue speed on its own: one client, one email at a time, ours beside raw Procrastinate's ``defer``.

``python -m bench.enqueue [--emails 300] [--rounds 15] [--own-postgres]``

Per email, what ``python -m bench --only enqueue`` times (``bench.ours.enqueue``,
``bench.baseline.enqueue``): due in five minutes, so each email defers its job,
and no worker running.

- **ours**: ``tasks.domain.validation.validate`` then ``tasks.domain.emails.schedule``,
  what the API and the CLI do per email below HTTP and argument parsing;
- **ours, idempotency key**: the same with a fresh key on each email (what an API
  client that retries safely sends);
- **raw Procrastinate defer**: ``task.configure(schedule_at=...).defer(...)`` of the
  baseline's task (bench/baseline.py) through Procrastinate's synchronous connector.

Each stack keeps one database (and connection) for the whole measurement, and
the stacks take turns: ``--rounds`` times, each times ``--emails`` emails, the
order rotated every round. On a shared, busy machine a slow moment then slows
every stack alike instead of one stack's whole run. The table gives the median
of the rounds' rates, and the ratio to raw Procrastinate of each round (median).

Databases on the server DATABASE_URL names, or with ``--own-postgres`` on a
throwaway server of its own, so other databases' load on a shared server is not
measured.

``--statements``: instead, on a throwaway server with ``pg_stat_statements``, ours
with a key for ``--emails`` emails (after 200), and each statement it ran: calls,
time and buffers per email, and PostgreSQL's CPU per email.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator

import procrastinate

from bench import baseline, drain, rig
from tasks.core import config, db, migrate
from tasks.domain import emails, validation

_keys = itertools.count()


@dataclasses.dataclass
class Stack:
    """One way to enqueue: ``one(i)`` enqueues one email."""

    name: str
    one: Callable[[int], None]
    database: str = ""
    rates: list[float] = dataclasses.field(default_factory=list)
    #: CPU per email, in ms, of this client process and (with --own-postgres) of PostgreSQL.
    client_ms: list[float] = dataclasses.field(default_factory=list)
    server_ms: list[float] = dataclasses.field(default_factory=list)

    def round(self, n: int, postmaster: int | None) -> None:
        server = drain.cpu_seconds(postmaster) if postmaster else 0.0
        client, started = time.process_time(), time.perf_counter()
        for i in range(n):
            self.one(i)
        self.rates.append(n / (time.perf_counter() - started))
        self.client_ms.append((time.process_time() - client) * 1000 / n)
        if postmaster:
            self.server_ms.append((drain.cpu_seconds(postmaster) - server) * 1000 / n)


@contextlib.contextmanager
def ours(keyed: bool) -> Iterator[Stack]:
    name = rig.unique_name("enqueue")
    url = rig.create_database(name)
    try:
        migrate.migrate(url)
        settings = config.load({"DATABASE_URL": url, "MAIL_DOMAIN": "bench.localhost"})
        with db.connect(url) as conn:
            owner = emails.ensure_user(conn, email="bench@example.com")
            due = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()

            def one(i: int) -> None:
                draft = validation.validate(
                    to="rcpt@example.com",
                    subject="bench",
                    body_text="A benchmark email.\n",
                    send_at=due,
                    idempotency_key=f"enqueue-{next(_keys)}" if keyed else None,
                )
                emails.schedule(conn, owner=owner, draft=draft, settings=settings)

            yield Stack("ours, idempotency key" if keyed else "ours", one, name)
    finally:
        rig.drop_database(name)


@contextlib.contextmanager
def raw() -> Iterator[Stack]:
    name = rig.unique_name("enqueue_raw")
    url = rig.create_database(name)
    try:
        subprocess.run(
            [rig.PYTHON, "-m", "procrastinate", "--app=bench.baseline.app", "schema", "--apply"],
            env=os.environ | {"BENCH_BASELINE_URL": url, "PYTHONPATH": str(rig.ROOT)},
            cwd=rig.ROOT,
            check=True,
            capture_output=True,
        )
        connector = procrastinate.SyncPsycopgConnector(conninfo=url)
        with baseline.app.replace_connector(connector) as app, app.open():
            due = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)

            def one(i: int) -> None:
                baseline.send.configure(schedule_at=due).defer(message_id=f"<enqueue-{i}@bench.localhost>", port=25)

            yield Stack("raw Procrastinate defer", one, name)
    finally:
        rig.drop_database(name)


def measure(*, n: int, rounds: int, postmaster: int | None = None) -> list[Stack]:
    """Each stack's figures in each round, the stacks taking turns (``postmaster``: count PostgreSQL's CPU)."""
    with ours(keyed=False) as plain, ours(keyed=True) as keyed, raw() as base:
        stacks = [plain, keyed, base]
        for stack in stacks:  # warm-up: connections, prepared statements, caches
            stack.round(min(n, 100), None)
            stack.rates.clear()
            stack.client_ms.clear()
        for r in range(rounds):
            for stack in stacks[r % 3 :] + stacks[: r % 3]:
                stack.round(n, postmaster)
        return stacks


def statements(*, n: int) -> str:
    """What ``schedule`` runs in PostgreSQL, statement by statement (a throwaway profiled server)."""
    with drain.private_postgres(*drain.PROFILING) as (server, postmaster):
        os.environ["DATABASE_URL"] = server
        with ours(keyed=True) as stack, db.connect(rig.server_url(stack.database)) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            for i in range(200):
                stack.one(i)
            drain.reset(conn)
            cpu = drain.cpu_seconds(postmaster)
            for i in range(n):
                stack.one(i)
            cpu_ms = (drain.cpu_seconds(postmaster) - cpu) * 1000 / n
            rows = conn.execute(
                "SELECT query, calls, total_exec_time AS ms, shared_blks_hit AS hit FROM pg_stat_statements"
                " WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                "   AND calls >= %s ORDER BY total_exec_time DESC",
                (n // 2,),
            ).fetchall()
    lines = [
        f"schedule with a key, {n:,} emails after 200: PostgreSQL CPU {cpu_ms:.2f} ms per email",
        "",
        "| statement | per email | ms per call | buffers per call |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        text = " ".join(line for line in row["query"].splitlines() if not line.lstrip().startswith("--"))
        text = " ".join(text.split())
        calls = row["calls"]
        lines.append(f"| `{text[:70]}` | {calls / n:.1f} | {row['ms'] / calls:.3f} | {row['hit'] / calls:.0f} |")
    return "\n".join(lines)


def table(stacks: list[Stack], *, n: int) -> str:
    """Median rate, ms per email, the rounds' range and the median per-round ratio to raw Procrastinate."""
    base = stacks[-1]
    lines = [
        f"Enqueue, one client, one email at a time: {len(base.rates)} rounds of {n:,} per stack, taking turns",
        "",
        "| | emails/s (median) | ms per email | rounds (min-max/s) | vs raw Procrastinate (median of rounds)"
        " | CPU ms per email: client, PostgreSQL |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for stack in stacks:
        median = statistics.median(stack.rates)
        ratio = statistics.median(a / b for a, b in zip(stack.rates, base.rates, strict=True))
        cpu = f"{statistics.median(stack.client_ms):.2f}, " + (
            f"{statistics.median(stack.server_ms):.2f}" if stack.server_ms else "(--own-postgres)"
        )
        lines.append(
            f"| {stack.name} | {median:,.0f} | {1000 / median:.2f} |"
            f" {min(stack.rates):,.0f}-{max(stack.rates):,.0f} | {ratio:.2f}x | {cpu} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=300, help="emails per stack per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--own-postgres", action="store_true", help="on a throwaway PostgreSQL of its own (initdb)")
    parser.add_argument("--statements", action="store_true", help="what schedule runs in PostgreSQL, per statement")
    args = parser.parse_args()
    if args.statements:
        print(statements(n=args.emails))
        return
    with contextlib.ExitStack() as stack:
        postmaster = None
        if args.own_postgres:
            server, postmaster = stack.enter_context(drain.private_postgres())
            os.environ["DATABASE_URL"] = server  # where bench.rig creates its databases
        print(table(measure(n=args.emails, rounds=args.rounds, postmaster=postmaster), n=args.emails))


if __name__ == "__main__":
    main()
