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
from tasks.domain.models import User

#: Every token starts with this, so a leaked one is easy to recognise (and to scan for).
PREFIX = "rdbx_"
MAX_NAME = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class Token:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Token:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in data.items()}


def digest(token: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: db.Conn, user: User, name: str = "") -> tuple[Token, str]:
    """Create a token for ``user``; return it and its secret (shown once, never stored)."""
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise errors.ValidationError(f"name: at most {MAX_NAME} printable characters", field="name")
    secret = PREFIX + secrets.token_urlsafe(32)
    row = db.one(
        conn, "insert_token", user_id=user.id, name=name, token_hash=digest(secret), prefix=secret[: len(PREFIX) + 6]
    )
    assert row is not None
    return Token.from_row(row), secret


def authenticate(conn: db.Conn, secret: str) -> User | None:
    """Return the user a token belongs to, or None for an unknown or revoked one."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    row = db.one(conn, "user_by_token_hash", token_hash=digest(secret))
    if row is None:
        return None
    db.run(conn, "touch_token", id=row["token_id"])
    return User.from_row(row)


def list_for(conn: db.Conn, user: User) -> list[Token]:
    """Return the user's tokens, newest first (revoked ones included, marked)."""
    return [Token.from_row(r) for r in db.all_rows(conn, "list_tokens", user_id=user.id)]


def revoke(conn: db.Conn, user: User, token_id: int) -> None:
    """Revoke one of the user's tokens; another user's (or a revoked) one is NotFound."""
    if db.one(conn, "revoke_token", id=token_id, user_id=user.id) is None:
        raise errors.NotFound(f"no active token with id {token_id}")
