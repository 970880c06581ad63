"""Personal access tokens for the API: created, listed, revoked; only their hash is stored.

A token is 32 random bytes (``secrets``), so a plain SHA-256 is the right hash:
there is nothing to brute-force, and a lookup stays one indexed query.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
from typing import Any

from tasks.core import db, errors
from tasks.domain import audit, orgs
from tasks.domain.models import User

#: Every token starts with this, so a leaked one is easy to recognise (and to scan for).
PREFIX = "rdbx_"
MAX_NAME = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class Token:
    id: int
    org_id: int
    user_id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    #: Whose it is (in lists an admin sees).
    user_email: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Token:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in data.items()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Identity:
    """Who a token is: its user, in its organization, with its role there and the token's scopes."""

    user: User
    token_id: int
    org_id: int
    role: orgs.Role
    scopes: tuple[str, ...]


def digest(token: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    conn: db.Conn,
    user: User,
    name: str = "",
    *,
    org_id: int | None = None,
    scopes: list[str] | tuple[str, ...] = ("send", "read"),
    actor_id: int | None = -1,
) -> tuple[Token, str]:
    """Create a token for ``user`` in ``org_id`` (by default their personal organization).

    Return it and its secret (shown once, never stored). The caller has checked that
    the user may hold these scopes. ``actor_id``: who did it, for the audit log (by
    default the user; None: an operator's command).
    """
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise errors.ValidationError(f"name: at most {MAX_NAME} printable characters", field="name")
    scopes = orgs.check_scopes(list(scopes))
    if org_id is None:
        org_id = orgs.personal_org_id(conn, user.id)
    secret = PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        row = db.one(
            conn,
            "insert_token",
            org_id=org_id,
            user_id=user.id,
            name=name,
            token_hash=digest(secret),
            prefix=secret[: len(PREFIX) + 6],
            scopes=scopes,
        )
        assert row is not None
        token = Token.from_row(row)
        actor = user.id if actor_id == -1 else actor_id
        detail = {"token_id": token.id, "name": name, "scopes": scopes}
        audit.record(conn, org_id, actor, "token.create", user.email, detail)
    return token, secret


def authenticate(conn: db.Conn, secret: str) -> Identity | None:
    """Return who a token is, or None for an unknown or revoked one, or one whose user left its organization.

    On the web's connection the same statement makes the token's organization the
    connection's (row-level security).
    """
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    row = db.one(conn, "user_by_token_hash", token_hash=digest(secret))
    if row is None:
        return None
    db.run(conn, "touch_token", id=row["token_id"])
    return Identity(
        user=User.from_row(row),
        token_id=row["token_id"],
        org_id=row["token_org_id"],
        role=orgs.Role(row["token_role"]),
        scopes=tuple(row["token_scopes"]),
    )


def list_for(conn: db.Conn, org_id: int, user: User, *, all_users: bool = False) -> list[Token]:
    """Return the user's tokens in the organization (``all_users``: every member's), newest first."""
    rows = db.all_rows(conn, "list_tokens", org_id=org_id, user_id=user.id, all_users=all_users)
    return [Token.from_row(r) for r in rows]


def revoke(
    conn: db.Conn, org_id: int, user: User, token_id: int, *, all_users: bool = False, actor_id: int | None = -1
) -> None:
    """Revoke one of the user's tokens (``all_users``: any member's); another's (or a revoked one) is NotFound.

    ``actor_id``: who did it, for the audit log (by default ``user``; None: an operator's command).
    """
    with conn.transaction():
        if db.one(conn, "revoke_token", org_id=org_id, id=token_id, user_id=user.id, all_users=all_users) is None:
            raise errors.NotFound(f"no active token with id {token_id}")
        actor = user.id if actor_id == -1 else actor_id
        audit.record(conn, org_id, actor, "token.revoke", f"token {token_id}", {"token_id": token_id})
