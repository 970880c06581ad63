"""The dashboard: lists with counts, search and saved searches, an email's detail, and its actions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain import bulk, emails, explain, listing, orgs, saved_searches, search, zones
from tasks.domain.models import Email, Status
from webapp import ext
from webapp.auth import login_required, membership, require, scope

bp = Blueprint("dashboard", __name__)

#: Each status's icon and name, on the pages and (through base.html) in app.js.
BADGES: dict[Status, tuple[str, str]] = {
    Status.SCHEDULED: ("◷", "Scheduled"),
    Status.SENDING: ("➤", "Sending"),
    Status.SENT: ("✓", "Sent"),
    Status.FAILED: ("✕", "Failed"),
    Status.UNCERTAIN: ("?", "Uncertain"),
    Status.CANCELLED: ("⊘", "Cancelled"),
    Status.OFFLINE: ("⎙", "Logged offline"),
}
#: The delivery states' names (the providers' feedback), as badges and the list's filter show them.
DELIVERY_NAMES = {"delivered": "Delivered", "deferred": "Deferred", "bounced": "Bounced", "complained": "Complained"}
TABS: list[tuple[str, str]] = [(Status.SCHEDULED, "Scheduled"), (Status.SENT, "Sent"), (Status.FAILED, "Failed")]
TABS += [(Status.UNCERTAIN, "Uncertain"), (Status.OFFLINE, "Offline"), (Status.CANCELLED, "Cancelled"), ("all", "All")]


def init_app(app: Flask) -> None:
    """Give every template the helpers it shares (who is signed in comes from ``webapp.auth``)."""

    @app.context_processor
    def _helpers() -> dict[str, Any]:
        return {
            "badges": BADGES,
            "delivery_names": DELIVERY_NAMES,
            "views": listing.VIEWS,
            "app_env": ext.settings().app_env,
            "relative": lambda at: explain.relative(at, dt.datetime.now(dt.UTC)) if at else "",
        }


@bp.get("/")
@login_required
def index() -> Any:
    """Show a list (a tab), searchable, newest first, batches grouped."""
    view = request.args.get("view", Status.SCHEDULED)
    if view not in listing.VIEWS:
        view = Status.SCHEDULED
    q = request.args.get("q", "").strip()
    cursor = request.args.get("cursor") or None
    mine = request.args.get("mine") == "1"
    delivery = request.args.get("delivery") if request.args.get("delivery") in DELIVERY_NAMES else None
    where = scope(mine=mine)
    conn = ext.conn()
    items: list[listing.Item] = []
    next_cursor, query_error, status = None, None, 200
    try:
        if q or delivery:
            # Searched, or narrowed to a delivery state: one email a line (batches' emails too).
            page = listing.emails_page(conn, where, view=view, q=q or None, cursor=cursor, limit=25, delivery=delivery)
            items, next_cursor = [listing.Item(kind="email", email=e) for e in page.emails], page.next_cursor
        else:
            items, next_cursor = listing.items_page(conn, where, view=view, cursor=cursor, limit=25)
    except search.QueryError as exc:
        # What is wrong with the query, where the list would be; the query stays in the box to fix.
        query_error, status = readable(exc), 400
    except errors.ValidationError as exc:
        flash(exc.message, "error")
        return redirect(url_for("dashboard.index", view=view, q=q or None, mine=1 if mine else None))
    saved = saved_searches.list_for(conn, scope())
    may_act = membership().may(orgs.Action.SEND)
    matching = None
    if may_act and q and delivery is None and query_error is None and items:
        # The exact count of the search in this tab: what "Select all N matching" acts on.
        matching = bulk.count(conn, where, bulk.Selection(q=q, view=view, mine=mine))
    return render_template(
        "dashboard.html",
        view=view,
        q=q,
        query_error=query_error,
        tabs=TABS,
        counts=listing.counts(conn, where),
        mine=mine,
        delivery=delivery,
        items=items,
        next_cursor=next_cursor,
        first_page=cursor is None,
        saved=saved,
        saved_counts=saved_searches.counts(conn, scope(), saved),
        count_cap=search.COUNT_CAP,
        qualifiers=search.QUALIFIERS,
        may_act=may_act,
        matching=matching,
        matching_cap=bulk.COUNT_CAP,
    ), status


def local_time(text: str, zone: str) -> dt.datetime | str:
    """Read a browser's ``datetime-local`` value as a time in ``zone`` (left as is if unreadable;
    an unknown zone is then refused by name)."""
    found = zones.zone(zone)
    try:
        naive = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=found) if found else text


def _actions(email: Email) -> list[str]:
    """Return what can be done to the email now."""
    if email.status == Status.SCHEDULED:
        return ["send_now", "reschedule", "cancel"]
    if email.status in (Status.FAILED, Status.UNCERTAIN):
        return ["resend"]
    if email.status == Status.OFFLINE:
        return ["cancel"]  # an operator replays the offline log (python -m tasks replay-offline)
    return []


@bp.get("/emails/<email_id>")
@login_required
def detail(email_id: str) -> Any:
    """Show everything about one email, its timeline and why it has not gone yet."""
    conn = ext.conn()
    email = emails.get(conn, scope(), email_id)
    return render_template(
        "email.html",
        email=email,
        events=emails.timeline(conn, scope(), email.id),
        why=explain.why(email),
        actions=_actions(email) if membership().may(orgs.Action.SEND) else [],
    )


def readable(exc: errors.ReachError) -> str:
    """Return an error as a sentence for a page: the API's ``field: `` prefix off, a capital first."""
    text = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
    return text[:1].upper() + text[1:]


def _act(email_id: str, action: Callable[[uuid.UUID], Email], done: str | None) -> Any:
    """Do ``action`` to the caller's email and go back to its page (``done``: what to flash, if the page
    does not say it already)."""
    email = emails.get(ext.conn(), scope(), email_id)  # 404 outside the organization
    require(orgs.Action.SEND)  # then 403 for a viewer
    try:
        changed = action(email.id)
    except (errors.Conflict, errors.ValidationError) as exc:
        flash(readable(exc), "error")
    else:
        ext.publish_email(changed)
        if done:
            flash(done, "ok")
    return redirect(url_for("dashboard.detail", email_id=email.id))


@bp.post("/emails/<email_id>/cancel")
@login_required
def cancel(email_id: str) -> Any:
    """Cancel a scheduled email (its page then says "Cancelled: it will not be sent.", so no flash repeats it)."""
    return _act(email_id, lambda i: emails.cancel(ext.conn(), scope(), i), None)


@bp.post("/emails/<email_id>/send-now")
@login_required
def send_now(email_id: str) -> Any:
    """Send a scheduled email at once."""
    return _act(email_id, lambda i: emails.send_now(ext.conn(), scope(), i, settings=ext.settings()), "Sending it now.")


@bp.post("/emails/<email_id>/resend")
@login_required
def resend(email_id: str) -> Any:
    """Send a failed or uncertain email again."""
    return _act(email_id, lambda i: emails.retry(ext.conn(), scope(), i, settings=ext.settings()), "Sending it again.")


@bp.post("/emails/<email_id>/reschedule")
@login_required
def reschedule(email_id: str) -> Any:
    """Move a scheduled email to the time picked (in the browser's zone)."""
    zone = request.form.get("time_zone") or None
    send_at: Any = request.form.get("send_at") or local_time(request.form.get("local", ""), zone or "UTC")
    return _act(
        email_id,
        lambda i: emails.reschedule(ext.conn(), scope(), i, send_at=send_at, send_tz=zone, settings=ext.settings()),
        "Rescheduled.",
    )
