"""The operator's CLI: a real process, its output and exit codes."""

from __future__ import annotations

import json

from tasks.core.db import Conn
from tests.support import invariants
from tests.support.procs import run_cli


def test_schedule_status_inspect_cancel(env: dict[str, str], conn: Conn) -> None:
    scheduled = run_cli(env, "schedule", "--to", "bob@example.com", "--subject", "Hi", "--body", "Body", "--in", "1h")
    email_id = scheduled.stdout.strip()

    status = run_cli(env, "status", "--json")
    inspected = run_cli(env, "inspect", email_id)
    cancelled = run_cli(env, "cancel", email_id)

    assert scheduled.returncode == 0, scheduled.stderr
    assert json.loads(status.stdout)["emails"]["scheduled"] == 1
    data = json.loads(inspected.stdout)
    assert data["email"]["id"] == email_id and "body_text" not in data["email"]
    assert [e["kind"] for e in data["events"]] == ["scheduled"]
    assert cancelled.returncode == 0 and cancelled.stdout.split() == [email_id, "cancelled"]
    owner = conn.execute("SELECT email FROM users").fetchone()
    assert owner == {"email": "dev@localhost"}


def test_bad_arguments_exit_2_with_a_message_and_store_nothing(env: dict[str, str], conn: Conn) -> None:
    base = ["schedule", "--subject", "Hi", "--body", "x"]
    cases = {
        "missing --to": [*base, "--in", "1m"],
        "bad duration": [*base, "--to", "b@example.com", "--in", "soon"],
        "bad address": [*base, "--to", "nobody", "--in", "1m"],
        "naive time": [*base, "--to", "b@example.com", "--at", "2030-01-01T09:00:00"],
        "past time": [*base, "--to", "b@example.com", "--at", "2001-01-01T09:00:00Z"],
        "header injection": [
            "schedule",
            "--to",
            "b@example.com",
            "--subject",
            "a\r\nBcc: x@evil.test",
            "--body",
            "x",
            "--in",
            "1m",
        ],
        "unknown command": ["explode"],
    }

    results = {name: run_cli(env, *args) for name, args in cases.items()}

    for name, result in results.items():
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.strip(), name
    assert "is not a valid email address" in results["bad address"].stderr
    assert "time zone offset" in results["naive time"].stderr
    assert "line break" in results["header injection"].stderr
    assert invariants.counts(conn) == {}


def test_an_unknown_email_exits_1(env: dict[str, str]) -> None:
    result = run_cli(env, "inspect", "00000000-0000-0000-0000-000000000000")

    assert result.returncode == 1
    assert "no email with id" in result.stderr


def test_an_invalid_setting_stops_the_cli_naming_it(env: dict[str, str]) -> None:
    result = run_cli(env | {"WORKER_CONCURRENCY": "lots"}, "worker")

    assert result.returncode == 2
    assert "WORKER_CONCURRENCY" in result.stderr
