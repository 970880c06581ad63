"""Webhooks in the dashboard (admins and owners): the endpoints, adding one (its secret
shown once), an endpoint's page (change it, rotate its secret, send a test event, delete
it) with its delivery log (each attempt; deliver again).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain.orgs import Action, Membership
from tasks.webhooks import endpoints, events
from webapp import ext
from webapp.auth import login_required, membership, require, signed_in_user

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def admin_of(endpoint_id: str, delivery_id: str | None = None) -> Membership:
    """The caller, once the endpoint (and delivery) are found in their organization: another
    organization's are unknown (404) whatever the caller's role or token, before any other answer
    (the pages' and the API's, webapp/api/webhooks.py)."""
    member = membership()
    if delivery_id is None:
        endpoints.get(ext.conn(), member.org_id, endpoint_id)
    else:
        endpoints.delivery(ext.conn(), member.org_id, endpoint_id, delivery_id)
    return require(Action.ADMIN)


def _form_changes() -> dict[str, Any]:
    return {
        "url": request.form.get("url", ""),
        "event_types": request.form.getlist("event_type"),
        "description": request.form.get("description", ""),
        "enabled": request.form.get("enabled") == "1",
    }


def _list(secret_of: endpoints.Endpoint | None = None, form: dict[str, Any] | None = None) -> Any:
    member = require(Action.ADMIN)
    return render_template(
        "webhooks.html",
        endpoints=endpoints.list_endpoints(ext.conn(), member.org_id),
        created=secret_of,
        types=events.TYPES,
        form=form or {"url": "", "event_types": [], "description": "", "enabled": True},
    )


@bp.get("/")
@login_required
def index() -> Any:
    """The organization's endpoints and the form to add one."""
    return _list()


@bp.post("/")
@login_required
def create() -> Any:
    """Add an endpoint and show its secret this once."""
    member = require(Action.ADMIN)
    form = _form_changes()
    try:
        made = endpoints.create(ext.conn(), ext.settings(), member.org_id, signed_in_user().id, **form)
    except errors.ValidationError as exc:
        flash(exc.message, "error")
        return _list(form=form), 422
    return _list(made)


def _page(endpoint_id: str, secret: str | None = None, status: int = 200) -> Any:
    member = admin_of(endpoint_id)
    conn = ext.conn()
    endpoint = endpoints.get(conn, member.org_id, endpoint_id)
    before = None
    raw = request.args.get("before")
    if raw:
        try:
            last = endpoints.delivery(conn, member.org_id, endpoint.id, raw)
            before = (last.created_at, last.id)
        except errors.NotFound:
            before = None
    found = endpoints.deliveries(conn, member.org_id, endpoint.id, before=before)
    opened = request.args.get("delivery")
    attempts: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for d in found:
        if str(d.id) == opened or d.attempts:
            attempts[d.id] = endpoints.attempts(conn, member.org_id, endpoint.id, d.id)
    body = render_template(
        "webhook.html",
        endpoint=endpoint,
        deliveries=found,
        attempts=attempts,
        secret=secret,
        types=events.TYPES,
        more=len(found) == endpoints.PAGE,
    )
    return body, status


@bp.get("/<endpoint_id>")
@login_required
def show(endpoint_id: str) -> Any:
    """An endpoint: its settings, and its delivery log (newest first)."""
    return _page(endpoint_id)


@bp.post("/<endpoint_id>")
@login_required
def edit(endpoint_id: str) -> Any:
    member = admin_of(endpoint_id)
    try:
        endpoints.update(ext.conn(), ext.settings(), member.org_id, signed_in_user().id, endpoint_id, _form_changes())
    except errors.ValidationError as exc:
        flash(exc.message, "error")
        return _page(endpoint_id, status=422)
    flash("Endpoint saved.", "ok")
    return redirect(url_for("webhooks.show", endpoint_id=endpoint_id))


@bp.post("/<endpoint_id>/rotate")
@login_required
def rotate(endpoint_id: str) -> Any:
    """A new secret, shown once; the old one signs too for a day."""
    member = admin_of(endpoint_id)
    rotated = endpoints.rotate(ext.conn(), ext.settings(), member.org_id, signed_in_user().id, endpoint_id)
    return _page(endpoint_id, secret=rotated.secret)


@bp.post("/<endpoint_id>/test")
@login_required
def test(endpoint_id: str) -> Any:
    member = admin_of(endpoint_id)
    endpoints.send_test(ext.conn(), member.org_id, endpoint_id)
    flash("Test event sent: it appears in the log below.", "ok")
    return redirect(url_for("webhooks.show", endpoint_id=endpoint_id))


@bp.post("/<endpoint_id>/delete")
@login_required
def delete(endpoint_id: str) -> Any:
    member = admin_of(endpoint_id)
    endpoints.delete(ext.conn(), member.org_id, signed_in_user().id, endpoint_id)
    flash("Endpoint deleted.", "ok")
    return redirect(url_for("webhooks.index"))


@bp.post("/<endpoint_id>/deliveries/<delivery_id>/redeliver")
@login_required
def redeliver(endpoint_id: str, delivery_id: str) -> Any:
    member = admin_of(endpoint_id, delivery_id)
    endpoints.redeliver(ext.conn(), member.org_id, endpoint_id, delivery_id)
    flash("Delivering again, with the same webhook-id.", "ok")
    return redirect(url_for("webhooks.show", endpoint_id=endpoint_id))
