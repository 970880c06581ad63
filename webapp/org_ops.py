"""Organizations on the Operators page: each one's volume, quota, failures and own
transports' breakers; suspend, resume, set the daily quota.

Operators only (OPERATOR_EMAILS); anyone else gets 404, as for the rest of the
page. Reads and writes go through the operators' connection, which sees every
organization (``ext.operator_conn``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for

from tasks.core import errors
from tasks.domain import org_settings
from tasks.ops import orgs as ops_orgs
from webapp import ext
from webapp.auth import is_operator, login_required, signed_in_user

bp = Blueprint("org_ops", __name__, url_prefix="/operators/orgs")


@bp.app_template_global("operator_organizations")
def operator_organizations() -> list[ops_orgs.OrgOverview]:
    """Every organization, for the Operators page (its template calls this; operators only)."""
    if not is_operator():
        return []
    return ops_orgs.overview(ext.operator_conn(), ext.settings(), ext.resources().redis)


def _org_id() -> int:
    if not is_operator():
        abort(404)
    raw = request.form.get("org_id", "")
    if not raw.isdigit():
        raise errors.ValidationError("org_id: must be an organization's number", field="org_id")
    return int(raw)


def _back() -> Any:
    return redirect(url_for("operators.index") + "#organizations")


@bp.post("/suspend")
@login_required
def suspend() -> Any:
    """Suspend an organization: its mail waits, with the reason, until it is resumed."""
    org_id = _org_id()
    ops_orgs.suspend(ext.operator_conn(), org_id, request.form.get("reason", ""), signed_in_user().id)
    flash(f"Organization {org_id} suspended: its mail waits until it is resumed.", "ok")
    return _back()


@bp.post("/resume")
@login_required
def resume() -> Any:
    """Resume an organization: its waiting mail goes at its next look."""
    org_id = _org_id()
    ops_orgs.resume(ext.operator_conn(), org_id, signed_in_user().id)
    flash(f"Organization {org_id} resumed.", "ok")
    return _back()


@bp.post("/quota")
@login_required
def quota() -> Any:
    """Set (or clear, when empty) an organization's daily quota."""
    org_id = _org_id()
    raw = request.form.get("daily_quota", "").strip()
    if raw and not raw.isdigit():
        raise errors.ValidationError("daily_quota: must be a whole number, or empty for none", field="daily_quota")
    org_settings.set_quota(ext.operator_conn(), org_id, signed_in_user().id, int(raw) if raw else None)
    flash(f"Organization {org_id}: daily quota {'set to ' + raw if raw else 'removed'}.", "ok")
    return _back()
