"""Organizations in the dashboard: the switcher, the members page, invitations.

- ``POST /orgs/switch``: make another of the user's organizations the current one
  (kept in the session).
- ``/members``: who belongs to the current organization, with their roles; admins
  invite, change roles and remove members (owners manage owners); anyone leaves.
- ``/invitations/<link>``: an invitation, accepted by signing in with the address it
  was sent to. The link carries (organization, invitation, secret), signed with the
  app's key; only the secret's hash is stored, and it works once, for 7 days.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from itsdangerous import BadSignature, URLSafeSerializer

from tasks.core import errors
from tasks.domain import emails, orgs, validation
from webapp import ext
from webapp.auth import current_user, login_required, membership, require, signed_in_user
from webapp.errors import error_response

log = structlog.get_logger("webapp.orgs")
bp = Blueprint("orgs", __name__)
SALT = "reachdbox-invitation"


def _signer(secret_key: str | None = None) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key or ext.settings().secret_key, salt=SALT)


def sign(invitation: orgs.Invitation, secret: str, secret_key: str | None = None) -> str:
    """Return the signed part of an invitation's link (``/invitations/<it>``)."""
    token = _signer(secret_key).dumps([invitation.org_id, invitation.id, secret])
    assert isinstance(token, str)
    return token


def invitation_link(invitation: orgs.Invitation, secret: str) -> str:
    """Return the absolute link that accepts ``invitation``."""
    return url_for("orgs.invitation", token=sign(invitation, secret), _external=True)


def _read_link(token: str) -> tuple[int, int, str]:
    """Return (org_id, invitation id, secret) from a link, or 404 for one this app did not sign."""
    try:
        org_id, invitation_id, secret = _signer().loads(token)
    except (BadSignature, ValueError, TypeError):
        abort(404, "no such invitation")
    if not (isinstance(org_id, int) and isinstance(invitation_id, int) and isinstance(secret, str)):
        abort(404, "no such invitation")
    return org_id, invitation_id, secret


@bp.post("/orgs/switch")
@login_required
def switch() -> Any:
    """Make another organization of the user's the current one."""
    try:
        wanted = int(request.form.get("org_id", ""))
    except ValueError:
        abort(404, "no such organization")
    if not any(m.org_id == wanted for m in orgs.memberships_of(ext.conn(), signed_in_user().id)):
        abort(404, "no such organization")
    session["org_id"] = wanted
    # The list of the organization chosen: a page of the one left would be a 404 now.
    return redirect(url_for("dashboard.index"))


@bp.get("/members")
@login_required
def members() -> Any:
    """Show the current organization's members and pending invitations."""
    member = membership()
    conn = ext.conn()
    return render_template(
        "members.html",
        members=orgs.members(conn, member.org_id),
        invitations=orgs.pending_invitations(conn, member.org_id) if member.may(orgs.Action.ADMIN) else [],
        roles=list(orgs.Role),
        link=None,
    )


@bp.post("/members/invite")
@login_required
def invite() -> Any:
    """Invite an address with a role; show the link once."""
    member = require(orgs.Action.ADMIN)
    conn = ext.conn()
    try:
        role = orgs.parse_role(request.form.get("role"))
        invitation, secret = orgs.invite(conn, member, request.form.get("email", ""), role)
    except errors.ValidationError as exc:
        flash(exc.message, "error")
        return redirect(url_for("orgs.members"))
    log.info("invitation created", org_id=member.org_id, invitation_id=invitation.id, role=str(role))
    link = invitation_link(invitation, secret)
    if request.form.get("send") == "1":
        _send(invitation, link, member)
    return render_template(
        "members.html",
        members=orgs.members(conn, member.org_id),
        invitations=orgs.pending_invitations(conn, member.org_id),
        roles=list(orgs.Role),
        link=link,
        invited=invitation,
    )


def _send(invitation: orgs.Invitation, link: str, member: orgs.Membership) -> None:
    """Email the link to the invitee, from the organization's outbox, now (best effort: the page shows it too)."""
    user = signed_in_user()
    inviter = user.name or user.email
    body = (
        f"{inviter} invited you to join {member.org_name} on Reach D. Box as {invitation.role}.\n\n"
        f"Sign in as {invitation.email} and open this link to accept (it works once, for 7 days):\n{link}\n"
    )
    try:
        draft = validation.validate(
            to=[invitation.email], subject=f"{inviter} invited you to {member.org_name}", body_text=body, send_now=True
        )
        email, _created = emails.schedule(
            ext.conn(), owner=user, draft=draft, settings=ext.settings(), org_id=member.org_id
        )
    except errors.ValidationError as exc:
        flash(f"The link was not emailed ({exc.message}): send it yourself.", "error")
        return
    ext.publish_email(email)
    flash(f"The link was emailed to {invitation.email}.", "ok")


@bp.post("/members/<int:user_id>/role")
@login_required
def change_role(user_id: int) -> Any:
    """Give a member another role (the last owner keeps theirs)."""
    member = membership()
    _known_member(member.org_id, user_id)
    require(orgs.Action.ADMIN)
    role = orgs.parse_role(request.form.get("role"))
    try:
        orgs.change_role(ext.conn(), member, member.org_id, user_id, role)
    except errors.Conflict as exc:
        flash(exc.message[:1].upper() + exc.message[1:], "error")
    else:
        flash(f"Role changed to {role}.", "ok")
    return redirect(url_for("orgs.members"))


@bp.post("/members/<int:user_id>/remove")
@login_required
def remove(user_id: int) -> Any:
    """Remove a member, or leave (the last owner cannot)."""
    member = membership()
    _known_member(member.org_id, user_id)
    if user_id != member.user_id:
        require(orgs.Action.ADMIN)
    try:
        orgs.remove_member(ext.conn(), member, member.org_id, user_id)
    except errors.Conflict as exc:
        flash(exc.message[:1].upper() + exc.message[1:], "error")
        return redirect(url_for("orgs.members"))
    if user_id == member.user_id:
        session.pop("org_id", None)
        flash(f"You left {member.org_name}.", "ok")
        return redirect(url_for("dashboard.index"))
    flash("Member removed; their tokens here are revoked.", "ok")
    return redirect(url_for("orgs.members"))


@bp.post("/members/invitations/<int:invitation_id>/revoke")
@login_required
def revoke_invitation(invitation_id: int) -> Any:
    """Withdraw a pending invitation."""
    member = membership()
    orgs.revoke_invitation(ext.conn(), member, invitation_id)
    flash("Invitation withdrawn: its link no longer works.", "ok")
    return redirect(url_for("orgs.members"))


@bp.post("/orgs/delete")
@login_required
def delete() -> Any:
    """Delete the current organization and everything in it (owners; its name typed to confirm)."""
    member = require(orgs.Action.OWNER)
    if request.form.get("confirm", "").strip() != member.org_name:
        flash("Type the organization's name to confirm: nothing was deleted.", "error")
        return redirect(url_for("orgs.members"))
    try:
        gone = orgs.delete(ext.conn(), member, member.org_id)
    except errors.Conflict as exc:
        flash(exc.message[:1].upper() + exc.message[1:], "error")
        return redirect(url_for("orgs.members"))
    log.info("organization deleted", org_id=member.org_id, **gone)
    session.pop("org_id", None)
    flash(f"{member.org_name} was deleted, with its {gone['emails']} email(s).", "ok")
    return redirect(url_for("dashboard.index"))


def _known_member(org_id: int, user_id: int) -> None:
    """404 for a user who is not a member of the current organization (before any role check)."""
    if orgs.membership(ext.conn(), org_id, user_id) is None:
        raise errors.NotFound(f"no member with id {user_id}")


@bp.get("/invitations/<token>")
def invitation(token: str) -> Any:
    """Show an invitation to the signed-in user (sign in first, then back here)."""
    if current_user() is None:
        return redirect(url_for("auth.login", next=request.path))
    org_id, invitation_id, secret = _read_link(token)
    # The link is this app's (signed): read the invitation in its organization.
    ext.set_org(org_id)
    try:
        found = orgs.usable_invitation(ext.conn(), org_id, invitation_id, secret, signed_in_user())
    except (orgs.InvitationUnusable, errors.Forbidden) as exc:
        return _refused(exc)
    return render_template("invitation.html", org=orgs.get(ext.conn(), org_id), invitation=found, token=token)


@bp.post("/invitations/<token>")
@login_required
def accept(token: str) -> Any:
    """Join the organization as the invitation says: once, in time, with its address."""
    org_id, invitation_id, secret = _read_link(token)
    user = signed_in_user()
    ext.set_org(org_id)
    try:
        accepted = orgs.accept(ext.conn(), org_id, invitation_id, secret, user)
    except (orgs.InvitationUnusable, errors.Forbidden) as exc:
        log.info("invitation refused", org_id=org_id, invitation_id=invitation_id, reason=exc.code)
        return _refused(exc)
    session["org_id"] = org_id
    flash(f"Welcome: you joined as {accepted.role}.", "ok")
    return redirect(url_for("dashboard.index"))


def _refused(exc: errors.ReachError) -> Any:
    """Answer an invitation that may not be used, saying why: 410 when it is spent, 403 for another address."""
    status = 403 if isinstance(exc, errors.Forbidden) else 410
    return error_response(status, exc.code, exc.message[:1].upper() + exc.message[1:])
