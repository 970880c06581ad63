"""``python -m tasks``: the worker, migrations and the operator's commands.

Bad arguments and invalid input exit 2 with a message; an email (or a recurrence)
that does not exist or cannot change any more exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

from tasks.core import config, db, errors, localrun, logs
from tasks.core.config import Settings
from tasks.domain import emails, models, orgs, present, recurrence_rules, validation
from tasks.domain.models import Status
from tasks.queue import procrastinate_boundary

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> dt.timedelta:
    """Parse ``90s``, ``5m``, ``2h`` or ``1d``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 5m, 2h or 1d")
    return dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.core import migrate

    applied = migrate.migrate(settings.database_url)
    print("applied: " + ", ".join(applied) if applied else "up to date")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from tasks.queue import worker

    # uvloop: the worker is all asyncio I/O (PostgreSQL, SMTP, Redis); libuv's loop
    # costs less CPU per email than the standard one (bench/RESULTS.md).
    uvloop.run(worker.run(settings, concurrency=args.concurrency))
    return 0


def cmd_devmail(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.delivery import devmail

    asyncio.run(devmail.serve(settings))
    return 0


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.ops import monitor

    monitor.run(settings)
    return 0


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    if args.body_file == "-":
        body = sys.stdin.read()
    elif args.body_file is not None:
        try:
            with open(args.body_file, encoding="utf-8") as f:
                body = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise errors.ValidationError(f"cannot read {args.body_file}: {exc}", field="body-file") from None
    else:
        body = args.body
    send_at: Any = args.at
    if args.in_ is not None:
        send_at = dt.datetime.now(dt.UTC) + args.in_
    draft = validation.validate(
        to=args.to,
        cc=args.cc,
        bcc=args.bcc,
        subject=args.subject,
        body_text=body,
        send_at=send_at,
        send_tz=args.tz,
        send_now=args.now,
        idempotency_key=args.idempotency_key,
    )
    with db.connect(settings.database_url) as conn:
        owner = emails.ensure_user(conn, email=args.owner or settings.dev_user_email)
        org_id = _member_org(conn, args.org, owner) if args.org else None
        email, _created = emails.schedule(conn, owner=owner, draft=draft, settings=settings, org_id=org_id)
    print(email.id)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.ops import overview as ops

    with db.connect(settings.database_url) as conn:
        data = ops.overview(conn, settings)
    if args.json:
        _print_json(data)
        return 0
    for status, n in data["emails"].items():
        print(f"{status:<10} {n:>8}")
    print(f"next due   {data['next_due'] or '-'}")
    print("transports (in the order they are tried)")
    for t in data["transports"]:
        if t["offline_log"]:
            print(f"  {t['label']:<12} {'offline log':<11} {t['name']}")
            continue
        line = f"  {t['label']:<12} {t['state']:<11} {t['name']}"
        if t["state"] == "open":
            line += f"  trial in {t['retry_in_seconds']}s"
        if t["failures"]:
            line += f"  failures in a row: {t['failures']}"
        if t["state"] != "closed" and t["last_error"]:
            line += f"  last error: {t['last_error']}"
        print(line)
    workers = data["workers"]
    print(
        f"workers    {len(workers)} alive" + (f" (ids {', '.join(str(w['id']) for w in workers)})" if workers else "")
    )
    return 0


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    with db.connect(settings.database_url) as conn:
        email = emails.get(conn, models.OPERATOR, args.id)
        events = emails.timeline(conn, models.OPERATOR, args.id)
    # The API's shape, plus the columns only an operator needs (owner, job, rate-limit slot).
    shown = present.email_json(email, with_body=args.body, internals=True)
    _print_json({"email": shown, "events": [e.as_dict() for e in events]})
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    with db.connect(settings.database_url) as conn:
        email = emails.cancel(conn, models.OPERATOR, args.id)
    print(f"{email.id} {email.status}")
    return 0


def cmd_reschedule(args: argparse.Namespace, settings: Settings) -> int:
    send_at: Any = args.at if args.in_ is None else dt.datetime.now(dt.UTC) + args.in_
    with db.connect(settings.database_url) as conn:
        email = emails.reschedule(conn, models.OPERATOR, args.id, send_at=send_at, send_tz=args.tz, settings=settings)
    print(f"{email.id} {email.status} {email.send_at.isoformat()}")
    return 0


def cmd_send_now(args: argparse.Namespace, settings: Settings) -> int:
    with db.connect(settings.database_url) as conn:
        email = emails.send_now(conn, models.OPERATOR, args.id, settings=settings)
    print(f"{email.id} {email.status} {email.next_attempt_at.isoformat()}")
    return 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    with db.connect(settings.database_url) as conn:
        email = emails.retry(conn, models.OPERATOR, args.id, settings=settings)
    print(f"{email.id} {email.status} {email.next_attempt_at.isoformat()}")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.domain import tokens

    with db.connect(settings.database_url) as conn:
        if args.token_command == "create":
            address = _token_user(args.user, settings)
            # In a given organization the user must exist already (a member); else they are created.
            user = _user(conn, address) if args.org else emails.ensure_user(conn, email=address)
            org_id = _member_org(conn, args.org, user) if args.org else orgs.personal_org_id(conn, user.id)
            found = orgs.membership(conn, org_id, user.id)
            assert found is not None
            try:
                scopes = orgs.check_scopes(args.scope, found.role, field="scope")
            except errors.Forbidden as exc:
                raise errors.ValidationError(f"scope: {user.email} is {found.role} there: {exc.message}") from None
            token, secret = tokens.create(conn, user, args.name or "", org_id=org_id, scopes=scopes, actor_id=None)
            print(
                f"token {token.id} for {user.email} in organization {org_id}, scopes {','.join(token.scopes)}"
                " (shown once, keep it secret):",
                file=sys.stderr,
            )
            print(secret)
            return 0
        row = db.one(conn, "user_by_email", email=args.user)
        if row is None:
            raise errors.NotFound(f"no user {args.user!r}")
        user = models.User.from_row(row)
        org_id = _member_org(conn, args.org, user) if args.org else orgs.personal_org_id(conn, user.id)
        if args.token_command == "revoke":
            tokens.revoke(conn, org_id, user, args.id, actor_id=None)
            print(f"token {args.id} revoked")
            return 0
        _print_json([t.as_dict() for t in tokens.list_for(conn, org_id, user)])
        return 0


def _member_org(conn: db.Conn, ref: str, user: models.User) -> int:
    """Return the id of organization ``ref``, which ``user`` must belong to (else exit 2)."""
    org = orgs.find(conn, ref)
    if orgs.membership(conn, org.id, user.id) is None:
        raise errors.ValidationError(f"org: {user.email} is not a member of {org.name!r} (id {org.id})", field="org")
    return org.id


def _user(conn: db.Conn, address: str) -> models.User:
    row = db.one(conn, "user_by_email", email=address.strip())
    if row is None:
        raise errors.ValidationError(f"no user {address!r} (they are created when they first sign in)", field="email")
    return models.User.from_row(row)


def cmd_org(args: argparse.Namespace, settings: Settings) -> int:
    """Operators' commands on organizations (the operator's connection: every organization)."""
    from tasks.domain import org_settings
    from tasks.ops import orgs as ops_orgs

    with db.connect(settings.database_url) as conn:
        if args.org_command == "create":
            owner = emails.ensure_user(conn, email=_token_user(args.owner, settings))
            org = orgs.create(conn, args.name, owner)
            print(f"organization {org.id} {org.name!r} created, owner {owner.email}")
            return 0
        if args.org_command == "list":
            rows = orgs.overview(conn)
            if args.json:
                _print_json(rows)
                return 0
            for r in rows:
                state = f"suspended ({r['suspended_reason']})" if r["suspended_at"] else "active"
                print(
                    f"{r['id']:>6}  {r['name'][:30]:<30}  {r['members']:>3} member(s)  {r['emails']:>8} email(s)  "
                    f"{state}  owners: {r['owners'] or '-'}"
                )
            return 0
        org = orgs.find(conn, args.org)
        if args.org_command == "add-member":
            role = orgs.parse_role(args.role)
            user = emails.ensure_user(conn, email=_token_user(args.email, settings))
            if orgs.add_member(conn, org.id, user, role):
                print(f"{user.email} added to {org.name!r} as {role}")
            else:
                old = orgs.change_role(conn, None, org.id, user.id, role)
                print(f"{user.email} was already a member of {org.name!r} ({old}); now {role}")
            return 0
        if args.org_command == "remove-member":
            user = _user(conn, args.email)
            try:
                orgs.remove_member(conn, None, org.id, user.id)
            except errors.NotFound:
                raise errors.ValidationError(f"{user.email} is not a member of {org.name!r}", field="email") from None
            except errors.Conflict as exc:
                raise errors.ValidationError(exc.message) from None
            print(f"{user.email} removed from {org.name!r}; their tokens there are revoked")
            return 0
        if args.org_command == "quota":
            quota = None if args.daily_quota == "none" else _quota(args.daily_quota)
            org_settings.set_quota(conn, org.id, None, quota)
            print(f"organization {org.id} {org.name!r}: daily quota {'none' if quota is None else quota}")
            return 0
        if args.org_command == "suspend":
            org = ops_orgs.suspend(conn, org.id, args.reason or "", None)
            print(f"organization {org.id} {org.name!r} suspended: {org.suspended_reason}")
            return 0
        org = ops_orgs.resume(conn, org.id, None)
        print(f"organization {org.id} {org.name!r} resumed")
        return 0


def _add_org_parser(sub: Any) -> None:
    p = sub.add_parser("org", help="organizations: create, list, members, suspend")
    osub = p.add_subparsers(dest="org_command", required=True, metavar="ACTION")
    c = osub.add_parser("create", help="create an organization with its first owner")
    c.add_argument("name")
    c.add_argument("--owner", required=True, metavar="EMAIL")
    ls = osub.add_parser("list", help="every organization: members, emails, suspension")
    ls.add_argument("--json", action="store_true")
    a = osub.add_parser("add-member", help="add a member (or change an existing member's role)")
    a.add_argument("org", metavar="ORG", help="id or name")
    a.add_argument("email")
    a.add_argument("--role", required=True, choices=[str(r) for r in orgs.Role])
    r = osub.add_parser("remove-member", help="remove a member (not the last owner); revokes their tokens there")
    r.add_argument("org", metavar="ORG", help="id or name")
    r.add_argument("email")
    s = osub.add_parser("suspend", help="suspend an organization (its mail waits until resumed)")
    s.add_argument("org", metavar="ORG", help="id or name")
    s.add_argument("--reason", help="shown with its waiting mail")
    u = osub.add_parser("resume", help="resume a suspended organization")
    u.add_argument("org", metavar="ORG", help="id or name")
    q = osub.add_parser("quota", help="set an organization's daily quota (emails a UTC day; `none`: no quota)")
    q.add_argument("org", metavar="ORG", help="id or name")
    q.add_argument("daily_quota", metavar="N|none")
    p.set_defaults(func=cmd_org)


def _quota(raw: str) -> int:
    if not raw.isdigit():
        raise errors.ValidationError("daily_quota: must be a whole number, or none", field="daily_quota")
    return int(raw)


def _token_user(raw: str, settings: Settings) -> str:
    """Return the address a token is created for.

    Outside production the dev login's own user is accepted as it is: its default,
    ``dev@localhost``, is a local address the validator refuses (no dot in the domain).
    """
    if settings.app_env != "production" and raw.strip().lower() == settings.dev_user_email.lower():
        return settings.dev_user_email
    return validation.user_address(raw, field="user")


def _add_token_parser(sub: Any) -> None:
    p = sub.add_parser("token", help="personal access tokens for the API")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    c = tsub.add_parser("create", help="create a token; prints it once")
    c.add_argument("--user", required=True, metavar="EMAIL", help="the user the token acts as")
    c.add_argument("--name", help="a label, e.g. 'deploy script'")
    c.add_argument("--org", metavar="ORG", help="its organization, id or name (default the user's first)")
    c.add_argument("--scope", default="send,read", metavar="SCOPES", help="send, read, admin, comma-separated")
    r = tsub.add_parser("revoke", help="revoke a token")
    r.add_argument("id", type=positive_int)
    r.add_argument("--user", required=True, metavar="EMAIL")
    r.add_argument("--org", metavar="ORG", help="id or name (default the user's first)")
    ls = tsub.add_parser("list", help="the user's tokens, as JSON (never the secrets)")
    ls.add_argument("--user", required=True, metavar="EMAIL")
    ls.add_argument("--org", metavar="ORG", help="id or name (default the user's first)")
    p.set_defaults(func=cmd_token)


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """``keys rotate``: re-encrypt every stored secret with the first key of SECRET_KEYS."""
    from tasks.core import crypto
    from tasks.domain import org_settings

    try:
        with db.connect(settings.database_url) as conn:
            count = org_settings.rotate_keys(conn, settings)
    except crypto.KeysMissing as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"re-encrypted {count} stored secret(s) with the first key of SECRET_KEYS")
    return 0


def cmd_suppression(args: argparse.Namespace, settings: Settings) -> int:
    """``suppression add|remove|list``: the operators' global list (or, with --org, one organization's)."""
    from tasks.domain import suppression

    org_id: int | None = args.org
    with db.connect(settings.database_url) as conn:
        if args.suppression_command == "add":
            added = suppression.add(conn, org_id, args.address, detail=args.detail)
            print(("added" if added else "already on the list") + f": {suppression.normalize(args.address)}")
        elif args.suppression_command == "remove":
            entry = suppression.remove(conn, org_id, args.address)
            print(f"removed: {entry.address}")
        else:
            for e in suppression.entries(conn, org_id, q=args.search, limit=suppression.PAGE, with_global=False):
                print(f"{e.address}\t{e.reason}\t{e.created_at.isoformat()}\t{e.detail}")
    return 0


def _add_suppression_parser(sub: Any) -> None:
    p = sub.add_parser("suppression", help="the suppression list: the global one (every organization), or --org's")
    ssub = p.add_subparsers(dest="suppression_command", required=True, metavar="ACTION")
    for name, help_text in (("add", "stop sending to an address"), ("remove", "send to an address again")):
        c = ssub.add_parser(name, help=help_text)
        c.add_argument("address")
        c.add_argument("--org", type=positive_int, help="an organization's list (default: the global one)")
        if name == "add":
            c.add_argument("--detail", default="", help="a note shown with it")
    c = ssub.add_parser("list", help="the newest 100 addresses of a list (address, reason, since, detail)")
    c.add_argument("--org", type=positive_int, help="an organization's list (default: the global one)")
    c.add_argument("--search", help="part of an address")
    p.set_defaults(func=cmd_suppression)


def _add_keys_parser(sub: Any) -> None:
    p = sub.add_parser("keys", help="the keys that encrypt stored secrets (SECRET_KEYS)")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    ksub.add_parser("rotate", help="re-encrypt every stored secret with the first key; the others may then be removed")
    p.set_defaults(func=cmd_keys)


def cmd_replay_offline(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.delivery import offline

    if not any(not spec.offline for spec in settings.mail_transports):
        raise errors.ValidationError(
            "MAIL_TRANSPORTS has no transport but the offline log: nothing to replay to", field="MAIL_TRANSPORTS"
        )
    with db.connect(settings.database_url) as conn:
        replayed = offline.replay(conn, settings, limit=args.limit)
        ids = replayed.ids
        print(f"handed {len(ids)} offline email(s) back to the real transports")
        for label in replayed.trials:
            print(f"{label}: circuit breaker open; its trial send is now (the replay), not after the cool-down")
        if not ids or args.no_wait:
            return 0
        if not _workers_alive(conn, settings):
            # Waiting could not end well: say so at once (the emails stay handed over).
            print(
                f"no worker is running, so nothing is sent yet: the {len(ids)} email(s) wait in the queue "
                "until one starts (`python -m tasks worker`)"
            )
            return 1
        deadline = time.monotonic() + args.timeout.total_seconds()
        next_check = time.monotonic() + WORKER_CHECK_SECONDS
        alive = True
        while True:
            counts = offline.progress(conn, ids)
            pending = counts.get(Status.SCHEDULED, 0) + counts.get(Status.SENDING, 0)
            if not pending or time.monotonic() > deadline:
                break
            if time.monotonic() > next_check:
                # The last worker stopped meanwhile: stop waiting for it.
                alive, next_check = _workers_alive(conn, settings), time.monotonic() + WORKER_CHECK_SECONDS
                if not alive:
                    break
            time.sleep(0.2)
    print(", ".join(f"{status} {n}" for status, n in sorted(counts.items())))
    if pending:
        hint = "" if alive else " (no worker is running: start `python -m tasks worker`)"
        print(f"{pending} still waiting; the workers carry on{hint}")
    return 0 if counts.get(Status.SENT, 0) == len(ids) else 1


#: While replay-offline waits, how often it checks that a worker is still alive.
WORKER_CHECK_SECONDS = 1.0


def _workers_alive(conn: db.Conn, settings: Settings) -> bool:
    return bool(procrastinate_boundary.workers_alive(conn, stalled_after=settings.worker_stalled_after))


def cmd_url(args: argparse.Namespace, settings: Settings) -> int:
    """Print the URL the other commands use (the environment's, else `make run`'s, else the default)."""
    print(settings.redis_url if args.redis else settings.database_url)
    return 0


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.queue import retention

    hours = int(args.older_than.total_seconds() // 3600)
    if hours < 1:
        raise errors.ValidationError("--older-than: must be at least 1h", field="older-than")
    before = dt.datetime.now(dt.UTC) - args.older_than
    with db.connect(settings.database_url) as conn:
        jobs_before = retention.count_finished_jobs(conn)
        asyncio.run(retention.delete_old_jobs(settings.database_url, hours))
        jobs_deleted = jobs_before - retention.count_finished_jobs(conn)
        events_deleted = retention.prune_events(conn, before)
        alerts_deleted = db.run(conn, "prune_alerts", before=before)
        # Providers' event ids remembered against redeliveries: none redelivers a month later.
        seen_deleted = db.run(conn, "prune_feedback_seen", before=before)
    age = args.older_than.total_seconds()
    older = f"{age / 86400:g}d" if age % 86400 == 0 else f"{age / 3600:g}h"
    print(f"deleted {max(jobs_deleted, 0)} finished job(s) and {events_deleted} event(s) older than {older}")
    if alerts_deleted:
        print(f"deleted {alerts_deleted} alert(s) resolved more than {older} ago")
    if seen_deleted:
        print(f"deleted {seen_deleted} provider event id(s) older than {older}")
    return 0


def _read_body(args: argparse.Namespace) -> str:
    if args.body_file is None:
        return str(args.body)
    if args.body_file == "-":
        return sys.stdin.read()
    try:
        with open(args.body_file, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ValidationError(f"cannot read {args.body_file}: {exc}", field="body-file") from None


def _rule_fields(args: argparse.Namespace) -> dict[str, Any]:
    preset: Any = None
    if args.preset is not None:
        try:
            preset = json.loads(args.preset)
        except ValueError:
            raise errors.ValidationError('preset: must be JSON, e.g. \'{"kind": "daily"}\'', field="preset") from None
    return {
        "cron": args.cron,
        "preset": preset,
        "time_zone": args.tz,
        "starts_at": args.starts_at,
        "ends_at": args.ends_at,
        "count": args.count,
    }


def _print_occurrences(ats: list[dt.datetime], time_zone: str) -> None:
    from tasks.domain import zones

    for at in ats:
        print(f"  {zones.local(at, time_zone).isoformat()}")


def cmd_recurrence_create(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.domain import recurrences

    data = {
        "to": args.to,
        "cc": args.cc,
        "bcc": args.bcc,
        "subject": args.subject,
        "body_text": _read_body(args),
        **_rule_fields(args),
    }
    spec = recurrences.validate(data, settings=settings, idempotency_key=args.idempotency_key)
    with db.connect(settings.database_url) as conn:
        owner = emails.ensure_user(conn, email=args.owner or settings.dev_user_email)
        org_id = _member_org(conn, args.org, owner) if args.org else None
        rec, _created = recurrences.create(
            conn, owner=owner, spec=spec, settings=settings, org_id=org_id, by_operator=True
        )
        print(rec.id)
        print(rec.summary)
        _print_occurrences(recurrences.upcoming(conn, rec, 5), rec.time_zone)
    return 0


def cmd_recurrence_list(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.domain import recurrences

    with db.connect(settings.database_url) as conn:
        found = recurrences.list_for(conn, models.OPERATOR, limit=args.limit)
    if args.json:
        _print_json([r.as_dict(with_body=False) for r in found])
        return 0
    for r in found:
        upcoming = r.next_occurrence.isoformat() if r.next_occurrence else "-"
        print(f"{r.id}  {r.status:<7} next {upcoming:<25} last {r.last_status or '-':<9} {r.summary}")
    return 0


def _recurrence_action(name: str) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from tasks.domain import recurrences

        with db.connect(settings.database_url) as conn:
            if name == "pause":
                changed = recurrences.pause(conn, models.OPERATOR, args.id, reason="paused by an operator")
            elif name == "resume":
                changed = recurrences.resume(conn, models.OPERATOR, args.id)
            else:
                changed = recurrences.delete(conn, models.OPERATOR, args.id)
        rec = changed.recurrence
        print(
            f"{rec.id} {rec.status}"
            + (f" ({len(changed.cancelled)} waiting occurrence(s) cancelled)" if changed.cancelled else "")
        )
        return 0

    return run


def cmd_recurrence_preview(args: argparse.Namespace, settings: Settings) -> int:
    from tasks.domain import recurrences

    if args.id is not None:
        with db.connect(settings.database_url) as conn:
            rec = recurrences.get(conn, models.OPERATOR, args.id)
            print(rec.summary)
            _print_occurrences(recurrences.upcoming(conn, rec, args.n), rec.time_zone)
        return 0
    rule = recurrences.rule_from(_rule_fields(args), settings=settings)
    print(rule.summary())
    _print_occurrences(recurrences.preview(rule, args.n), rule.time_zone)
    return 0


def _rule_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    rule = parser.add_mutually_exclusive_group(required=required)
    rule.add_argument("--cron", metavar="EXPR", help="5-field cron expression, e.g. '0 9 * * 1-5'")
    rule.add_argument("--preset", metavar="JSON", help='a preset, e.g. \'{"kind": "weekdays", "time": "09:00"}\'')
    parser.add_argument("--tz", metavar="ZONE", help="IANA time zone the rule is read in (default UTC)")
    parser.add_argument("--starts-at", metavar="ISO8601", help="first possible occurrence (default now)")
    parser.add_argument("--ends-at", metavar="ISO8601", help="no occurrence after it")
    parser.add_argument("--count", type=positive_int, help="at most this many emails")


def _add_recurrence_parser(sub: Any) -> None:
    p = sub.add_parser("recurrence", help="recurring emails: create, list, pause, resume, delete, preview")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    c = rsub.add_parser("create", help="create a recurring email; prints its id, summary and next occurrences")
    c.add_argument("--to", action="append", required=True, metavar="ADDR", help="recipient (repeatable)")
    c.add_argument("--cc", action="append", metavar="ADDR")
    c.add_argument("--bcc", action="append", metavar="ADDR")
    c.add_argument("--subject", required=True, help="may use {{occurrence_date}} and {{occurrence_time}}")
    body = c.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="plain-text body")
    body.add_argument("--body-file", metavar="PATH", help="read the body from a file ('-' for stdin)")
    _rule_arguments(c, required=True)
    c.add_argument("--owner", metavar="EMAIL", help="the user it is sent for (default DEV_USER_EMAIL)")
    c.add_argument(
        "--org", metavar="ORG", help="the organization it belongs to (id or name; default the owner's personal one)"
    )
    c.add_argument("--idempotency-key", metavar="KEY", help="repeat-safe key: the same key returns the same one")
    c.set_defaults(func=cmd_recurrence_create)

    c = rsub.add_parser("list", help="every recurrence: status, next occurrence, last result, rule")
    c.add_argument("--json", action="store_true")
    c.add_argument("--limit", type=positive_int, default=200)
    c.set_defaults(func=cmd_recurrence_list)

    for name, help_text in (
        ("pause", "pause: what waits is cancelled, nothing more goes out"),
        ("resume", "resume from the next occurrence after now"),
        ("delete", "delete: what waits is cancelled; sent emails stay"),
    ):
        c = rsub.add_parser(name, help=help_text)
        c.add_argument("id")
        c.set_defaults(func=_recurrence_action(name))

    c = rsub.add_parser("preview", help="the next occurrences of a saved recurrence (ID) or of a rule")
    c.add_argument("id", nargs="?", help="a saved recurrence (else give --cron or --preset)")
    _rule_arguments(c, required=False)
    c.add_argument("-n", type=positive_int, default=5, help="how many (default 5)")
    c.set_defaults(func=cmd_recurrence_preview)


def _when(parser: argparse.ArgumentParser, *, now: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--at", metavar="ISO8601", help="send time with an offset, e.g. 2026-12-01T09:00:00+01:00")
    group.add_argument("--in", dest="in_", type=duration, metavar="DURATION", help="send after 90s, 5m, 2h, 1d")
    if now:
        group.add_argument("--now", action="store_true", help="send as soon as possible")
    parser.add_argument("--tz", metavar="ZONE", help="IANA time zone the time was chosen in (default UTC)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tasks", description="Reach D. Box: scheduler and operator tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("migrate", help="install or upgrade the database schema").set_defaults(func=cmd_migrate)

    p = sub.add_parser("worker", help="run a worker (SIGTERM stops it gracefully)")
    p.add_argument("--concurrency", type=positive_int, help="parallel sends (default WORKER_CONCURRENCY)")
    p.set_defaults(func=cmd_worker)

    sub.add_parser("devmail", help="run the dev mailbox SMTP sink on DEVMAIL_ADDR").set_defaults(func=cmd_devmail)

    sub.add_parser(
        "monitor", help="watch workers, breakers, the queue, PostgreSQL and Redis; alert on Slack (one is active)"
    ).set_defaults(func=cmd_monitor)

    p = sub.add_parser("schedule", help="schedule an email; prints its id")
    p.add_argument("--to", action="append", required=True, metavar="ADDR", help="recipient (repeatable)")
    p.add_argument("--cc", action="append", metavar="ADDR")
    p.add_argument("--bcc", action="append", metavar="ADDR")
    p.add_argument("--subject", required=True)
    body = p.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="plain-text body")
    body.add_argument("--body-file", metavar="PATH", help="read the body from a file ('-' for stdin)")
    _when(p, now=True)
    p.add_argument("--owner", metavar="EMAIL", help="the user it is sent for (default DEV_USER_EMAIL)")
    p.add_argument(
        "--org", metavar="ORG", help="the organization (id or name) it belongs to (default the owner's first)"
    )
    p.add_argument("--idempotency-key", metavar="KEY", help="repeat-safe key: the same key returns the same email")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("status", help="counts per status, next due time, transports' breakers, workers alive")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("inspect", help="an email and its timeline, as JSON")
    p.add_argument("id")
    p.add_argument("--body", action="store_true", help="include the body")
    p.set_defaults(func=cmd_inspect)

    for name, func, help_text in (
        ("cancel", cmd_cancel, "cancel a scheduled email"),
        ("send-now", cmd_send_now, "send a scheduled email at once"),
        ("retry", cmd_retry, "send a failed or uncertain email again"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("id")
        p.set_defaults(func=func)

    p = sub.add_parser("reschedule", help="move a scheduled email to another time")
    p.add_argument("id")
    _when(p, now=False)
    p.set_defaults(func=cmd_reschedule)
    _add_token_parser(sub)
    _add_keys_parser(sub)
    _add_suppression_parser(sub)
    _add_org_parser(sub)
    _add_recurrence_parser(sub)

    p = sub.add_parser("replay-offline", help="send the emails of the offline log through the real transports")
    p.add_argument("--limit", type=positive_int, help="replay at most this many (oldest first)")
    p.add_argument("--no-wait", action="store_true", help="hand them over and return at once")
    p.add_argument(
        "--timeout", type=duration, default=dt.timedelta(minutes=10), metavar="DURATION", help="wait at most (10m)"
    )
    p.set_defaults(func=cmd_replay_offline)

    p = sub.add_parser(
        "url", help="print the DATABASE_URL the commands use (the environment's, else `make run`'s), e.g. for psql"
    )
    p.add_argument("--redis", action="store_true", help="print the REDIS_URL instead")
    p.set_defaults(func=cmd_url)

    p = sub.add_parser("prune", help="delete finished jobs, old events and old resolved alerts (emails are kept)")
    p.add_argument(
        "--older-than", type=duration, default=dt.timedelta(days=30), metavar="DURATION", help="age, e.g. 30d (default)"
    )
    p.set_defaults(func=cmd_prune)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    args = build_parser().parse_args(argv)
    # DATABASE_URL / REDIS_URL left unset: the servers of a running `make run`, if any.
    resolved = localrun.resolve(os.environ)
    if note := resolved.note():
        print(note, file=sys.stderr)
    try:
        settings = config.load(resolved.environ)
    except errors.ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    recurrence_rules.set_time_scale(settings.recurrence_time_scale)
    command: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return command(args, settings)
    except errors.ValidationError as exc:
        lines = [f"{d['field']}: {d['message']}" for d in exc.details] or [exc.message]
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except errors.ReachError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"error: cannot reach the database: {str(exc).strip()}", file=sys.stderr)
        if hint := resolved.hint("DATABASE_URL"):
            print(hint, file=sys.stderr)
        return 1
