"""``/api/v1/org``: the current organization's settings and audit log, for admins and owners
(a token needs the ``admin`` scope).

Read and change the sending identity and how the organization's own transports join
the deployment's; add a transport (answered masked, never its password); read the
audit log. Removing a transport is on the dashboard's settings page.
"""

from __future__ import annotations

from typing import Any

from flask import request

from tasks.core import errors
from tasks.domain import audit, org_settings
from tasks.domain.orgs import Action
from webapp import ext
from webapp.api import bp, json_body
from webapp.auth import require

#: What ``PATCH /org/settings`` may change.
SETTINGS_FIELDS = frozenset({"from_name", "from_address", "reply_to", "providers_mode"})
PROVIDER_FIELDS = frozenset({"label", "url", "rate_limit"})


def _only(data: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in data:
        if name not in allowed:
            raise errors.ValidationError(f"{name}: unknown field", field=name)


@bp.get("/org/settings")
def get_org_settings() -> Any:
    """The organization's settings (its transports masked)."""
    member = require(Action.ADMIN)
    return org_settings.get(ext.conn(), member.org_id).as_dict()


@bp.patch("/org/settings")
def edit_org_settings() -> Any:
    """Change the sending identity (the fields given; null clears one) and/or the providers' mode."""
    member = require(Action.ADMIN)
    data = json_body()
    _only(data, SETTINGS_FIELDS)
    if not data:
        raise errors.ValidationError("give at least one field to change", field=None)
    conn, settings = ext.conn(), ext.settings()
    current = org_settings.get(conn, member.org_id)
    identity = None
    if data.keys() & {"from_name", "from_address", "reply_to"}:
        identity = org_settings.check_identity(
            settings,
            from_name=data.get("from_name", current.from_name),
            from_address=data.get("from_address", current.from_address),
            reply_to=data.get("reply_to", current.reply_to),
        )
    if "providers_mode" in data:
        org_settings.check_mode(data["providers_mode"])
    # Checked whole first: nothing is stored when any field is refused.
    if identity is not None:
        org_settings.set_identity(conn, member.org_id, member.user_id, identity)
    if "providers_mode" in data:
        org_settings.set_mode(conn, member.org_id, member.user_id, data["providers_mode"])
    return org_settings.get(conn, member.org_id).as_dict()


@bp.post("/org/providers")
def add_org_provider() -> Any:
    """Add a transport of the organization's own, last in its order; answers the settings."""
    member = require(Action.ADMIN)
    data = json_body()
    _only(data, PROVIDER_FIELDS)
    org_settings.add_transport(
        ext.conn(),
        ext.settings(),
        member.org_id,
        member.user_id,
        label=data.get("label"),
        url=data.get("url"),
        rate_limit=data.get("rate_limit"),
    )
    return org_settings.get(ext.conn(), member.org_id).as_dict()


@bp.get("/org/audit")
def get_org_audit() -> Any:
    """The organization's audit log, newest first, 100 lines a page (``before``: the last id seen)."""
    member = require(Action.ADMIN)
    raw = request.args.get("before")
    if raw is not None and not (raw.isdigit() and len(raw) < 19):
        raise errors.ValidationError("before: must be a line's id", field="before")
    before = int(raw) if raw is not None else None
    return {"entries": [e.as_dict() for e in audit.entries(ext.conn(), member.org_id, before=before)]}
