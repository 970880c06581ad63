"""Checks every test can make against the database: the row is the truth, the job its trigger."""

from __future__ import annotations

from typing import Any

import psycopg


def jobs_without_email(conn: psycopg.Connection[Any]) -> list[Any]:
    """Live send jobs whose email does not exist (must be empty)."""
    return conn.execute(
        """
        SELECT j.id FROM procrastinate_jobs j
         WHERE j.task_name = 'send_email' AND j.status IN ('todo', 'doing')
           AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.id = (j.args->>'email_id')::uuid)
        """
    ).fetchall()


def waiting_without_job(conn: psycopg.Connection[Any], horizon_seconds: float) -> list[Any]:
    """Scheduled emails due within the horizon with no live job (must be empty)."""
    return conn.execute(
        """
        SELECT e.id FROM emails e LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
         WHERE e.status = 'scheduled' AND e.next_attempt_at <= now() + make_interval(secs => %s)
           AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing'))
        """,
        (horizon_seconds,),
    ).fetchall()


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Emails by status."""
    return {r["status"]: r["n"] for r in conn.execute("SELECT status, count(*) AS n FROM emails GROUP BY 1")}


def sending_without_job(conn: psycopg.Connection[Any]) -> list[Any]:
    """Emails in ``sending`` whose job is not running (must be empty once recovery had its chance)."""
    return conn.execute(
        """
        SELECT e.id FROM emails e LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
         WHERE e.status = 'sending' AND (j.id IS NULL OR j.status <> 'doing')
        """
    ).fetchall()
