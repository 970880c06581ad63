"""Organizations: members and their roles, invitations, and what each role may do.

Every user has a personal organization (created with the user, by the database:
sql/migrations/0012_organizations.sql) and may belong to others. A role is what a
member may do in one organization:

- **viewer** reads the organization's outbox;
- **member** also composes, sends, cancels and reschedules (any email of the organization);
- **admin** also manages members (not owners), invitations and every member's tokens;
- **owner** also manages owners and may delete the organization.

An organization always keeps an owner: the last one can neither leave nor be demoted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import secrets
from typing import Any

from tasks.core import db, errors
from tasks.domain import audit
from tasks.domain.models import Scope, User, in_org
from tasks.queue import jobs


class Role(enum.StrEnum):
    """A member's role, lowest first."""

    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


class Action(enum.StrEnum):
    """What a request does, and so the least role (and the token scope) it needs."""

    READ = "read"
    SEND = "send"
    ADMIN = "admin"
    OWNER = "owner"


#: The least role for each action.
LEAST_ROLE = {Action.READ: Role.VIEWER, Action.SEND: Role.MEMBER, Action.ADMIN: Role.ADMIN, Action.OWNER: Role.OWNER}
#: Token scopes, and the action each one allows (an owner's token acts as ``admin``).
SCOPES = ("send", "read", "admin")
SCOPE_OF = {Action.READ: "read", Action.SEND: "send", Action.ADMIN: "admin", Action.OWNER: "admin"}
#: What a role may grant a token: scopes it could use itself.
ROLE_SCOPES = {
    Role.VIEWER: ("read",),
    Role.MEMBER: ("send", "read"),
    Role.ADMIN: SCOPES,
    Role.OWNER: SCOPES,
}
#: Why a role is refused an action (the 403's reason).
REFUSALS = {
    Action.READ: "reading needs the viewer role or above",
    Action.SEND: "viewers only read: composing, sending, cancelling and rescheduling need the member role",
    Action.ADMIN: "only admins and owners manage members, invitations and the organization's tokens",
    Action.OWNER: "only owners may do this",
}
INVITATION_DAYS = 7
MAX_NAME = 200


@dataclasses.dataclass(frozen=True, kw_only=True)
class Org:
    id: int
    name: str
    created_at: dt.datetime
    suspended_at: dt.datetime | None = None
    suspended_reason: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Org:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Membership:
    """One user's place in one organization."""

    org_id: int
    org_name: str
    user_id: int
    role: Role

    def may(self, action: Action) -> bool:
        return self.role.at_least(LEAST_ROLE[action])

    def require(self, action: Action) -> None:
        """Raise ``Forbidden`` (with the reason) unless this member's role allows ``action``."""
        if not self.may(action):
            raise errors.Forbidden(f"your role here is {self.role}: {REFUSALS[action]}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Member:
    user_id: int
    email: str
    name: str
    role: Role
    joined_at: dt.datetime


def parse_role(raw: Any, field: str = "role") -> Role:
    """Return the role named by ``raw``, or raise ``ValidationError``."""
    try:
        return Role(str(raw).strip().lower())
    except ValueError:
        raise errors.ValidationError(f"{field}: must be one of {', '.join(Role)}", field=field) from None


def check_scopes(raw: Any, role: Role | None = None, field: str = "scopes") -> list[str]:
    """Return token scopes from ``"send,read"`` or a list, each known and (for ``role``) grantable."""
    items = raw.split(",") if isinstance(raw, str) else list(raw or [])
    wanted = {str(s).strip().lower() for s in items if str(s).strip()}
    if not wanted:
        raise errors.ValidationError(f"{field}: give at least one of {', '.join(SCOPES)}", field=field)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise errors.ValidationError(f"{field}: unknown scope {unknown[0]!r} (use {', '.join(SCOPES)})", field=field)
    if role is not None and (beyond := sorted(wanted - set(ROLE_SCOPES[role]))):
        raise errors.Forbidden(f"your role here is {role}: a token of yours cannot have the scope {beyond[0]!r}")
    return [s for s in SCOPES if s in wanted]


def check_name(raw: Any) -> str:
    name = str(raw or "").strip()
    if not 1 <= len(name) <= MAX_NAME or any(ord(c) < 32 for c in name):
        raise errors.ValidationError(f"name: 1 to {MAX_NAME} printable characters", field="name")
    return name


# ---- Reads ----


def memberships_of(conn: db.Conn, user_id: int) -> list[Membership]:
    """Return the user's organizations, oldest membership first (their personal one first)."""
    return [
        Membership(org_id=r["org_id"], org_name=r["name"], user_id=user_id, role=Role(r["role"]))
        for r in db.all_rows(conn, "user_orgs", user_id=user_id)
    ]


def personal_org_id(conn: db.Conn, user_id: int) -> int:
    """Return the user's first organization (their personal one, unless they left it)."""
    found = memberships_of(conn, user_id)
    if not found:
        raise errors.NotFound(f"user {user_id} belongs to no organization")
    return found[0].org_id


def personal_scope(conn: db.Conn, user_id: int) -> Scope:
    """Return the scope of the user in their first organization (the CLI's default)."""
    return in_org(personal_org_id(conn, user_id), user_id)


def membership(conn: db.Conn, org_id: int, user_id: int) -> Membership | None:
    """Return the user's membership of this organization, if any."""
    row = db.one(conn, "membership", org_id=org_id, user_id=user_id)
    if row is None:
        return None
    return Membership(org_id=org_id, org_name=row["org_name"], user_id=user_id, role=Role(row["role"]))


def members(conn: db.Conn, org_id: int) -> list[Member]:
    """Return the organization's members: owners first, then by address."""
    return [
        Member(user_id=r["user_id"], email=r["email"], name=r["name"], role=Role(r["role"]), joined_at=r["created_at"])
        for r in db.all_rows(conn, "org_members", org_id=org_id)
    ]


def get(conn: db.Conn, org_id: int) -> Org:
    row = db.one(conn, "get_org", id=org_id)
    if row is None:
        raise errors.NotFound(f"no organization with id {org_id}")
    return Org.from_row(row)


def find(conn: db.Conn, ref: str) -> Org:
    """Return the organization named by ``ref``: its id, or its exact name when that is unique (operators)."""
    ref = ref.strip()
    if ref.isdigit():
        row = db.one(conn, "get_org", id=int(ref))
        if row is not None:
            return Org.from_row(row)
    rows = db.all_rows(conn, "orgs_by_name", name=ref)
    if len(rows) > 1:
        ids = ", ".join(str(r["id"]) for r in rows)
        raise errors.ValidationError(f"org: several organizations are named {ref!r} (ids {ids}); give the id")
    if not rows:
        raise errors.NotFound(f"no organization {ref!r}")
    return Org.from_row(rows[0])


def overview(conn: db.Conn) -> list[dict[str, Any]]:
    """Every organization with its members and emails (operators)."""
    return db.all_rows(conn, "org_overview")


# ---- Changes (the caller has checked the actor's role) ----


def create(conn: db.Conn, name: str, owner: User) -> Org:
    """Create an organization with ``owner`` as its first owner."""
    with conn.transaction():
        row = db.one(conn, "insert_org", name=check_name(name))
        assert row is not None
        db.run(conn, "upsert_membership", org_id=row["id"], user_id=owner.id, role=Role.OWNER)
    return Org.from_row(row)


def _address(conn: db.Conn, user_id: int) -> str:
    """A user's address, for the audit log's lines."""
    row = db.one(conn, "get_user", id=user_id)
    return str(row["email"]) if row is not None else f"user {user_id}"


def _lock_members(conn: db.Conn, org_id: int) -> dict[int, Role]:
    """Lock the organization's memberships for a change of roles (the last-owner rule holds under races)."""
    return {r["user_id"]: Role(r["role"]) for r in db.all_rows(conn, "lock_memberships", org_id=org_id)}


def add_member(conn: db.Conn, org_id: int, user: User, role: Role) -> bool:
    """Add ``user`` with ``role`` (an existing member keeps their role); return whether they were added."""
    with conn.transaction():
        row = db.one(conn, "insert_membership", org_id=org_id, user_id=user.id, role=role)
        if row is not None:
            audit.record(conn, org_id, None, "member.add", user.email, {"role": role})
    return row is not None


def _check_actor_over(actor: Membership, target_role: Role, new_role: Role | None) -> None:
    actor.require(Action.ADMIN)
    if Role.OWNER in (target_role, new_role) and actor.role != Role.OWNER:
        raise errors.Forbidden(f"your role here is {actor.role}: {REFUSALS[Action.OWNER]} (owners manage owners)")


def change_role(conn: db.Conn, actor: Membership | None, org_id: int, user_id: int, role: Role) -> Role:
    """Give a member another role; return the old one. ``actor`` None: an operator (the CLI)."""
    with conn.transaction():
        roles = _lock_members(conn, org_id)
        if user_id not in roles:
            raise errors.NotFound(f"no member with id {user_id}")
        old = roles[user_id]
        if actor is not None:
            _check_actor_over(actor, old, role)
        if old == Role.OWNER and role != Role.OWNER and list(roles.values()).count(Role.OWNER) == 1:
            raise errors.Conflict("the last owner cannot be demoted: make another member an owner first", field="role")
        db.run(conn, "update_membership", org_id=org_id, user_id=user_id, role=role)
        actor_id = actor.user_id if actor is not None else None
        audit.record(conn, org_id, actor_id, "member.role", _address(conn, user_id), {"from": old, "to": role})
    return old


def remove_member(conn: db.Conn, actor: Membership | None, org_id: int, user_id: int) -> None:
    """Remove a member (or, when ``actor`` is that member, leave); their tokens here are revoked.

    ``actor`` None: an operator (the CLI).
    """
    with conn.transaction():
        roles = _lock_members(conn, org_id)
        if user_id not in roles:
            raise errors.NotFound(f"no member with id {user_id}")
        if actor is not None and actor.user_id != user_id:
            _check_actor_over(actor, roles[user_id], None)
        if roles[user_id] == Role.OWNER and list(roles.values()).count(Role.OWNER) == 1:
            raise errors.Conflict("the last owner cannot leave: make another member an owner first")
        db.run(conn, "delete_membership", org_id=org_id, user_id=user_id)
        db.run(conn, "revoke_member_tokens", org_id=org_id, user_id=user_id)
        actor_id = actor.user_id if actor is not None else None
        action = "member.leave" if actor_id == user_id else "member.remove"
        audit.record(conn, org_id, actor_id, action, _address(conn, user_id), {"role": roles[user_id]})


def delete(conn: db.Conn, actor: Membership | None, org_id: int) -> dict[str, int]:
    """Delete the organization and everything it owns: emails (with their timelines), batches,
    tokens, invitations, memberships; the jobs of its waiting emails are cancelled.

    Only an owner may (``actor`` None: an operator); refused while one of its emails is
    being sent. Returns how many rows of each kind went.
    """
    if actor is not None:
        actor.require(Action.OWNER)
    with conn.transaction():
        rows = db.all_rows(conn, "org_jobs_to_cancel", org_id=org_id)
        if any(r["status"] == "sending" for r in rows):
            raise errors.Conflict("an email of this organization is being sent: try again in a moment")
        for row in rows:
            jobs.cancel_job(conn, row["job_id"])
        counts = db.one(conn, "delete_org", org_id=org_id)
        if db.one(conn, "delete_org_row", org_id=org_id) is None:
            raise errors.NotFound(f"no organization with id {org_id}")
    assert counts is not None
    return {k: int(v) for k, v in counts.items()}


def suspend(conn: db.Conn, org_id: int, reason: str) -> Org:
    reason = reason.strip() or "suspended by an operator"
    row = db.one(conn, "suspend_org", id=org_id, reason=reason[:500])
    if row is None:
        raise errors.NotFound(f"no organization with id {org_id}")
    return Org.from_row(row)


def resume(conn: db.Conn, org_id: int) -> Org:
    row = db.one(conn, "resume_org", id=org_id)
    if row is None:
        raise errors.NotFound(f"no organization with id {org_id}")
    return Org.from_row(row)


# ---- Invitations ----


@dataclasses.dataclass(frozen=True, kw_only=True)
class Invitation:
    org_id: int
    id: int
    email: str
    role: Role
    invited_by: int
    created_at: dt.datetime
    expires_at: dt.datetime
    accepted_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Invitation:
        data = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        return cls(**data | {"role": Role(row["role"])})


def secret_digest(secret: str) -> str:
    """The stored form of an invitation's secret (32 random bytes: a plain SHA-256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def invite(conn: db.Conn, actor: Membership, email: str, role: Role) -> tuple[Invitation, str]:
    """Invite ``email`` with ``role``; return the invitation and its secret (only its hash is stored)."""
    _check_actor_over(actor, role, None)
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise errors.ValidationError("email: must be an email address", field="email")
    secret = secrets.token_urlsafe(32)
    with conn.transaction():
        row = db.one(
            conn,
            "insert_invitation",
            org_id=actor.org_id,
            email=email,
            role=role,
            secret_hash=secret_digest(secret),
            invited_by=actor.user_id,
            days=INVITATION_DAYS,
        )
        assert row is not None
        invitation = Invitation.from_row(row)
        audit.record(conn, actor.org_id, actor.user_id, "member.invite", email, {"role": role, "id": invitation.id})
    return invitation, secret


def pending_invitations(conn: db.Conn, org_id: int) -> list[Invitation]:
    return [Invitation.from_row(r) for r in db.all_rows(conn, "pending_invitations", org_id=org_id)]


def revoke_invitation(conn: db.Conn, actor: Membership, invitation_id: int) -> None:
    actor.require(Action.ADMIN)
    with conn.transaction():
        row = db.one(conn, "revoke_invitation", org_id=actor.org_id, id=invitation_id)
        if row is None:
            raise errors.NotFound(f"no pending invitation with id {invitation_id}")
        audit.record(conn, actor.org_id, actor.user_id, "invitation.revoke", f"invitation {invitation_id}")


class InvitationUnusable(errors.Conflict):
    """This invitation can no longer be used."""

    code = "invitation_unusable"


def _check(row: dict[str, Any] | None, secret: str, user: User) -> Invitation:
    if row is None or not secrets.compare_digest(row["secret_hash"], secret_digest(secret)):
        raise errors.NotFound("no such invitation")
    invitation = Invitation.from_row(row)
    if invitation.accepted_at is not None:
        raise InvitationUnusable("this invitation has already been used")
    if invitation.revoked_at is not None:
        raise InvitationUnusable("this invitation was withdrawn")
    if row["expired"]:
        raise InvitationUnusable(f"this invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC")
    if invitation.email.lower() != user.email.lower():
        raise errors.Forbidden("this invitation is for another address: sign in with the address it was sent to")
    return invitation


def usable_invitation(conn: db.Conn, org_id: int, invitation_id: int, secret: str, user: User) -> Invitation:
    """Return the invitation if ``user`` may accept it now; else raise why not (see ``accept``)."""
    return _check(db.one(conn, "get_invitation", org_id=org_id, id=invitation_id), secret, user)


def accept(conn: db.Conn, org_id: int, invitation_id: int, secret: str, user: User) -> Invitation:
    """Join the organization through an invitation: once, before it expires, as its address.

    The caller has checked the link's signature and set the connection's organization
    to ``org_id`` (the invitee is not a member yet). Raises ``NotFound`` (no such
    invitation, or not this secret), ``InvitationUnusable`` (used, withdrawn, expired)
    or ``Forbidden`` (another address).
    """
    with conn.transaction():
        invitation = _check(db.one(conn, "lock_invitation", org_id=org_id, id=invitation_id), secret, user)
        db.run(conn, "accept_invitation", org_id=org_id, id=invitation_id, user_id=user.id)
        db.run(conn, "insert_membership", org_id=org_id, user_id=user.id, role=invitation.role)
        audit.record(
            conn, org_id, user.id, "member.join", user.email, {"role": invitation.role, "invitation": invitation_id}
        )
    return invitation
