"""``python -m tasks recurrence``: create, list, preview, pause, resume, delete, and exit 2 on bad input."""

from __future__ import annotations

from tasks.core.db import Conn
from tasks.domain import audit, emails, orgs
from tests.support.procs import run_cli


def test_create_list_pause_resume_delete(env: dict[str, str], conn: Conn) -> None:
    created = run_cli(
        env,
        "recurrence", "create", "--to", "ann@example.com", "--subject", "Weekly {{occurrence_date}}",
        "--body", "Hi", "--preset", '{"kind": "weekly", "days": ["mon"], "time": "09:00"}', "--tz", "Europe/Paris",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    rid, summary, *nexts = created.stdout.splitlines()
    assert summary == "Every week on Monday at 09:00, Europe/Paris"
    assert len(nexts) == 5 and all("T09:00:00+0" in line for line in nexts)
    listed = run_cli(env, "recurrence", "list")
    assert rid in listed.stdout and "active" in listed.stdout
    assert run_cli(env, "recurrence", "pause", rid).stdout.strip() == f"{rid} paused"
    assert conn.execute("SELECT status FROM recurrences").fetchone()["status"] == "paused"
    assert run_cli(env, "recurrence", "resume", rid).stdout.strip() == f"{rid} active"
    preview = run_cli(env, "recurrence", "preview", rid, "-n", "2")
    assert preview.stdout.splitlines()[1:] == nexts[:2]
    assert run_cli(env, "recurrence", "delete", rid).returncode == 0
    assert run_cli(env, "recurrence", "pause", rid).returncode == 1  # gone


def test_preview_of_a_rule_shows_the_dst_gap_and_stores_nothing(env: dict[str, str], conn: Conn) -> None:
    out = run_cli(
        env, "recurrence", "preview", "--cron", "30 2 * * *", "--tz", "Europe/Paris",
        "--starts-at", "2027-03-27T12:00:00+01:00", "-n", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == ["  2027-03-28T03:00:00+02:00", "  2027-03-29T02:30:00+02:00"]
    assert conn.execute("SELECT count(*) AS n FROM recurrences").fetchone()["n"] == 0


def test_bad_input_exits_2_naming_the_field_and_stores_nothing(env: dict[str, str], conn: Conn) -> None:
    for args, message in (
        (["--cron", "0 9 30 2 *"], "cron: '0 9 30 2 *' never fires"),
        (["--cron", "0 9 * * *", "--tz", "Nowhere/Land"], "time_zone: must be an IANA time zone"),
        (["--preset", "{"], "preset: must be JSON"),
        (
            ["--cron", "0 9 * * *", "--starts-at", "2030-01-02T00:00:00Z", "--ends-at", "2030-01-01T00:00:00Z"],
            "ends_at",
        ),
    ):
        out = run_cli(env, "recurrence", "create", "--to", "ann@example.com", "--subject", "S", "--body", "B", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, out.stderr
    assert conn.execute("SELECT count(*) AS n FROM recurrences").fetchone()["n"] == 0


def test_create_in_an_organization_the_owner_belongs_to_and_audited_as_an_operators(
    env: dict[str, str], conn: Conn
) -> None:
    ann = emails.ensure_user(conn, email="ann@example.com")
    team = orgs.create(conn, "Support team", ann)
    args = ["recurrence", "create", "--to", "x@example.com", "--subject", "S", "--body", "B", "--cron", "0 9 * * *"]

    created = run_cli(env, *args, "--owner", "ann@example.com", "--org", "Support team")
    refused = run_cli(env, *args, "--owner", "ben@example.com", "--org", "Support team")

    assert created.returncode == 0, created.stderr
    row = conn.execute("SELECT id, org_id, owner_id FROM recurrences").fetchone()
    assert (str(row["id"]), row["org_id"], row["owner_id"]) == (created.stdout.split()[0], team.id, ann.id)
    line = audit.entries(conn, team.id)[0]
    assert (line.action, line.target, line.actor_id) == ("recurrence.create", str(row["id"]), None)
    assert refused.returncode == 2 and "org: ben@example.com is not a member" in refused.stderr
    assert conn.execute("SELECT count(*) AS n FROM recurrences").fetchone()["n"] == 1
