"""Logs of a full run: one JSON line per attempt, and never a password, a token or a body."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models
from tasks.domain.models import User
from tests.support.procs import run_cli, wait_until
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow

PASSWORD = "Sm7p-pa55word-never-logged"
OPS_TOKEN = "ops-token-never-logged-0123456789"
SECRET_KEY = "secret-key-never-logged-0123456789abcdef"
BODY = "BODY-MARKER the confidential body text"


def test_a_full_run_logs_one_json_line_per_attempt_and_no_secret_or_body(
    conn: Conn,
    env: dict[str, str],
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    tmp_path: pathlib.Path,
    workers: Any,
) -> None:
    """Sent, refused for now, failed, breaker open, printed to the console, logged offline,
    replayed; the CLI's commands too; all at DEBUG."""
    sink = Sink(auth=("mailer", PASSWORD)).start()
    run_env = env | {
        "MAIL_TRANSPORTS": f"primary=smtp://mailer:{PASSWORD}@127.0.0.1:{sink.port} console:// "
        f"jsonl://{tmp_path}/offline.jsonl",
        "BREAKER_THRESHOLD": "1",
        "BREAKER_COOLDOWN": "1",
        "LOG_LEVEL": "DEBUG",
        "OPS_TOKEN": OPS_TOKEN,
        "SECRET_KEY": SECRET_KEY,
    }
    try:
        worker = workers(extra_env=run_env)

        def send(**fields: Any) -> models.Email:
            draft = make_draft(send_at=dt.datetime.now(dt.UTC), body_text=BODY, **fields)
            email = emails.schedule(conn, owner=owner, draft=draft, settings=settings)[0]
            return wait_until(
                lambda: (e := emails.get(conn, models.OPERATOR, email.id)).status in models.TERMINAL and e,
                timeout=30,
                what="a final status",
            )

        sink.rcpt_replies.append("451 4.7.1 Try again later")
        retried = send(subject="retried")
        sink.data_replies.append("550 5.7.1 Rejected")
        failed = send(subject="failed")
        sink.stop()
        printed = send(subject="printed")  # primary refused: breaker opens, console:// takes it
        cli = [run_cli(run_env, *args) for args in (["status"], ["inspect", str(retried.id)], ["prune"])]
    finally:
        sink.stop()
    worker.stop()

    output = worker.output() + "".join(r.stdout + r.stderr for r in cli)
    assert (retried.status, failed.status, printed.status) == ("sent", "failed", "sent")
    assert printed.transport == "console" and sink.logins >= 2  # the password was used, over AUTH
    assert "(body: " in output and "Subject: printed" in output  # the console transport did print
    for secret in (PASSWORD, OPS_TOKEN, SECRET_KEY, BODY, "BODY-MARKER"):
        assert secret not in output, f"{secret!r} leaked into the logs"
    lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    attempts = [line for line in lines if line.get("event") == "attempt"]
    assert {(a["email_id"], a["outcome"]) for a in attempts} >= {
        (str(retried.id), "scheduled"),
        (str(retried.id), "sent"),
        (str(failed.id), "failed"),
        (str(printed.id), "sent"),
    }
    for line in attempts:
        assert {"email_id", "job_id", "attempt", "transport", "outcome", "duration_ms", "timestamp"} <= set(line)
    assert any(line.get("event") == "circuit breaker opened" for line in lines)
