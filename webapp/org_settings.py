"""An organization's settings in the dashboard and the API (admins and owners only).

``/org/settings``: the sending identity, the organization's own mail transports
(shown masked, never their password), how they join the deployment's, its Slack
incoming webhook for its own alerts (shown masked), and the
quota and suspension an operator set; ``/org/audit``: the organization's audit
log. A refused value answers 422 with the page again, the reason beside its
field; nothing is half stored.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain import audit, org_settings
from tasks.domain.orgs import Action
from tasks.ops import orgs as ops_orgs
from webapp import ext
from webapp.auth import login_required, require

bp = Blueprint("org_settings", __name__)


def _page(status: int = 200, error: errors.ValidationError | None = None, form: dict[str, Any] | None = None) -> Any:
    member = require(Action.ADMIN)
    current = org_settings.get(ext.conn(), member.org_id)
    used = None
    if current.daily_quota is not None:
        used = ops_orgs.quota_used(ext.resources().redis, ext.settings(), [member.org_id]).get(member.org_id, 0)
    body = render_template(
        "org_settings.html",
        org=current,
        quota_used=used,
        error=error,
        form=form or {},
        domains=ext.settings().org_sending_domains,
    )
    return body, status


@bp.get("/org/settings")
@login_required
def index() -> Any:
    """The organization's settings page."""
    return _page()


def _form_or_422(action: Any) -> Any:
    """Run ``action``; on a refused value, the page again with the reason beside its field (422)."""
    try:
        action()
    except errors.ValidationError as exc:
        form = {k: v for k, v in request.form.items() if k not in ("csrf_token", "url", "slack_webhook")}
        return _page(422, exc, form)
    return None


@bp.post("/org/settings/identity")
@login_required
def identity() -> Any:
    """Change the sending identity (From name and address, Reply-To)."""
    member = require(Action.ADMIN)

    def store() -> None:
        checked = org_settings.check_identity(
            ext.settings(),
            from_name=request.form.get("from_name"),
            from_address=request.form.get("from_address"),
            reply_to=request.form.get("reply_to"),
        )
        org_settings.set_identity(ext.conn(), member.org_id, member.user_id, checked)

    if (refused := _form_or_422(store)) is not None:
        return refused
    flash("Sending identity saved.", "ok")
    return redirect(url_for("org_settings.index"))


@bp.post("/org/settings/mode")
@login_required
def mode() -> Any:
    """Say whether the organization's transports come before the deployment's or replace them."""
    member = require(Action.ADMIN)
    refused = _form_or_422(
        lambda: org_settings.set_mode(ext.conn(), member.org_id, member.user_id, request.form.get("providers_mode"))
    )
    if refused is not None:
        return refused
    flash("Saved.", "ok")
    return redirect(url_for("org_settings.index"))


@bp.post("/org/settings/providers")
@login_required
def add_provider() -> Any:
    """Add a transport of the organization's own (its URL stored encrypted)."""
    member = require(Action.ADMIN)
    refused = _form_or_422(
        lambda: org_settings.add_transport(
            ext.conn(),
            ext.settings(),
            member.org_id,
            member.user_id,
            label=request.form.get("label"),
            url=request.form.get("url"),
            rate_limit=request.form.get("rate_limit"),
        )
    )
    if refused is not None:
        return refused
    flash("Transport added: the workers use it within a second.", "ok")
    return redirect(url_for("org_settings.index"))


@bp.post("/org/settings/providers/remove")
@login_required
def remove_provider() -> Any:
    """Remove one of the organization's transports."""
    member = require(Action.ADMIN)
    org_settings.remove_transport(ext.conn(), member.org_id, member.user_id, request.form.get("label", ""))
    flash("Transport removed.", "ok")
    return redirect(url_for("org_settings.index"))


@bp.post("/org/settings/slack")
@login_required
def slack() -> Any:
    """Set (stored encrypted) or remove (empty) the Slack incoming webhook of the organization's own alerts."""
    member = require(Action.ADMIN)
    refused = _form_or_422(
        lambda: org_settings.set_slack_webhook(
            ext.conn(), ext.settings(), member.org_id, member.user_id, request.form.get("slack_webhook")
        )
    )
    if refused is not None:
        return refused
    flash("Slack alerts saved.", "ok")
    return redirect(url_for("org_settings.index"))


@bp.get("/org/audit")
@login_required
def audit_log() -> Any:
    """The organization's audit log, newest first."""
    member = require(Action.ADMIN)
    before = request.args.get("before", type=int)
    entries = audit.entries(ext.conn(), member.org_id, before=before)
    return render_template("org_audit.html", entries=entries, page=audit.PAGE)
