"""Who is asking, and the guards every request passes: body size, sessions, CSRF, headers.

A request is authenticated by a personal access token (``Authorization: Bearer``,
API only, no CSRF needed: a browser never adds that header by itself) or by the
session cookie, which must carry the user's current ``session_version`` (bumped
at sign-out) and, for anything that changes state, a CSRF token.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from flask import Flask, abort, g, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf import csrf as wtf_csrf
from werkzeug.middleware.proxy_fix import ProxyFix

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import tokens
from tasks.domain.models import User
from webapp import ext

csrf = wtf_csrf.CSRFProtect()
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Scripts and styles only from this site; user HTML is shown only in sandboxed srcdoc
# iframes, which inherit this policy, so even there nothing remote loads.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or (request and request.is_secure))


def init_app(app: Flask, settings: Settings) -> None:
    """Install the guards on ``app`` (before the rate limiter, which needs ``g.user``)."""
    app.session_interface = SessionInterface()
    if settings.web_trusted_proxies:
        n = settings.web_trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]
    csrf.init_app(app)
    app.before_request(_refuse_oversize)
    app.before_request(_identify)
    app.before_request(_check_csrf)
    app.after_request(_headers)


def _refuse_oversize() -> None:
    # Before anything reads the body or touches the database (MAX_CONTENT_LENGTH
    # also stops a body without a length once it grows too big).
    limit = ext.settings().web_max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        abort(413)
    # A body without a length (chunked): its size is known only by reading it, so read it
    # now (kept for the view). Werkzeug stops quietly at the limit: a byte more left is 413.
    chunked = request.content_length is None and request.environ.get("wsgi.input_terminated")
    if chunked and len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
        abort(413)


def _bearer() -> str | None:
    """Return the bearer token of the request, if it carries one."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


def _identify() -> None:
    g.user, g.auth, g.token_problem = None, None, None
    if "Authorization" in request.headers:
        # A request with credentials of its own is judged by them alone, never by a cookie
        # (so it needs no CSRF token). Credentials that are not a personal access token
        # (e.g. /metrics' OPS_TOKEN) are left to the endpoint; the API answers 401.
        secret = _bearer()
        if secret is None:
            g.token_problem = "use 'Authorization: Bearer <personal access token>'"
            return
        found = tokens.authenticate(ext.conn(), secret) if secret.startswith(tokens.PREFIX) else None
        if found is None:
            g.token_problem = "the token is unknown or revoked"
            return
        g.user, g.auth = found, "token"
        return
    user_id = session.get("user_id")
    if user_id is None:
        return
    row = db.one(ext.conn(), "get_user", id=user_id)
    if row is None or row["session_version"] != session.get("session_version"):
        # Signed out elsewhere (or the user is gone): this cookie is void.
        session.clear()
        return
    g.user, g.auth = User.from_row(row), "session"


def _check_csrf() -> None:
    # A browser never adds an Authorization header on its own, so a request with one
    # cannot be a cross-site forgery; it is authenticated (or refused) by its token.
    if request.method in SAFE_METHODS or "Authorization" in request.headers:
        return
    csrf.protect()


def start_session(user: User) -> None:
    """Begin a fresh session for ``user`` (nothing of the old one survives)."""
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["session_version"] = user.session_version
    g.user, g.auth = user, "session"


def end_session(user: User | None) -> None:
    """Sign out: void every cookie of this user, then clear this one."""
    if user is not None:
        db.one(ext.conn(), "bump_session_version", id=user.id)
    session.clear()


def safe_next(target: Any, default: str = "/") -> str:
    """Return ``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return default
    if any(c in target for c in "\\\r\n\t") or any(ord(c) < 32 for c in target):
        return default
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def _headers(response: Any) -> Any:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if g.get("auth") == "session" or session.get("user_id"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
