"""Who is asking, and the guards every request passes: body size, sessions, CSRF, headers.

A request to ``/api/v1`` is authenticated by a personal access token
(``Authorization: Bearer``; no CSRF needed: a browser never adds that header by
itself) or else by the session cookie. Every other route takes the session cookie
alone: a token opens nothing there, so a leaked token cannot mint another token,
revoke the owner's tokens, sign the owner out or read their pages. The cookie must
carry the user's current ``session_version`` (bumped at sign-out) and, for anything
that changes state, a CSRF token. ``webapp/auth.py`` gives views the user found here.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
from flask import Flask, abort, g, request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask_wtf import csrf as wtf_csrf
from werkzeug.middleware.proxy_fix import ProxyFix

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import orgs, tokens
from tasks.domain.models import User
from webapp import ext

csrf = wtf_csrf.CSRFProtect()
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The only blueprint whose routes accept a personal access token (``webapp/api``).
TOKEN_BLUEPRINT = "api"
#: Blueprints whose routes take no CSRF token: providers' signed events and signed unsubscribe
#: links (webapp/feedback.py), which a cookie authenticates nothing on.
CSRF_EXEMPT = frozenset({"feedback"})

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

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        """Send the cookie back when this request changed the session, or (the 14 days running
        again) when the browser navigated to a page; never an unchanged copy to a script.

        A page's own requests (its live stream, snapshots, fragment refreshes) carry the cookie
        as it was when they left. One answered just after a form's POST had changed the session
        (the flash it redirects to, an organization switch) would write that older copy back,
        and the page the POST redirected to would lose the change: the reschedule error that
        never showed in tests/security/test_markup_in_browser.py. Browsers say which requests
        are navigations (``Sec-Fetch-Mode``); a client that does not say is refreshed as before.
        """
        if session.modified:
            return True
        navigation = request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"
        return navigation and super().should_set_cookie(app, session)


def init_app(app: Flask, settings: Settings) -> None:
    """Install the guards on ``app`` (before the rate limiter, which needs ``g.user``)."""
    app.session_interface = SessionInterface()
    if settings.web_trusted_proxies:
        n = settings.web_trusted_proxies
        # Wrapping wsgi_app is Flask's documented way to add WSGI middleware; mypy sees a method.
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


def takes_tokens() -> bool:
    """Tell whether this request's route accepts a personal access token (the API's, and only those)."""
    return request.blueprint == TOKEN_BLUEPRINT


def _identify() -> None:
    g.user, g.auth, g.token_problem = None, None, None
    g.membership, g.orgs, g.token_scopes = None, [], ()
    if "Authorization" in request.headers and takes_tokens():
        # An API request with credentials of its own is judged by them alone, never by a
        # cookie (so it needs no CSRF token); the API answers 401 to bad ones. Elsewhere the
        # header is not a credential (only /metrics and /ops/status read their OPS_TOKEN).
        secret = _bearer()
        if secret is None:
            g.token_problem = "use 'Authorization: Bearer <personal access token>'"
            return
        # One statement finds the token and sets the connection's organization to its own.
        found = tokens.authenticate(ext.conn(), secret) if secret.startswith(tokens.PREFIX) else None
        if found is None:
            g.token_problem = "the token is unknown or revoked, or its user left its organization"
            return
        g.user, g.auth = found.user, "token"
        g.membership = orgs.Membership(org_id=found.org_id, org_name="", user_id=found.user.id, role=found.role)
        g.token_scopes = found.scopes
        return
    user_id = session.get("user_id")
    if user_id is None:
        return
    row = db.one(ext.conn(), "get_user", id=user_id)
    if not _session_holds(row, session.get("session_version")):
        # Signed out elsewhere (or the user is gone): this cookie is void.
        session.clear()
        return
    assert row is not None
    g.user, g.auth = User.from_row(row), "session"
    choose_org(session.get("org_id"))


def choose_org(wanted: Any) -> None:
    """Settle the signed-in user's current organization: ``wanted`` if they belong to it, else their first.

    The choice is the session's (the switcher); the request's connection then sees
    that organization's rows only.
    """
    g.orgs = orgs.memberships_of(ext.conn(), g.user.id)
    chosen = next((m for m in g.orgs if m.org_id == wanted), g.orgs[0] if g.orgs else None)
    g.membership = chosen
    ext.set_org(chosen.org_id if chosen else None)


def _session_holds(user_row: dict[str, Any] | None, version: Any) -> bool:
    """Tell whether a session cookie of this version still signs this user in (no sign-out since)."""
    return user_row is not None and user_row["session_version"] == version


def session_check(timeout: float) -> Callable[[], bool]:
    """Return a check that this request's session still holds, for a response that outlives the request.

    A live stream calls it every few seconds from its own thread, so it borrows a pooled
    connection of its own (waiting at most ``timeout``). A session signed out (here or
    anywhere: the version moved on) no longer holds, nor does one the database cannot
    confirm: the stream ends and the browser must come back with a valid cookie.
    """
    user = g.get("user")
    assert user is not None and g.get("auth") == "session", "only a signed-in session can be re-checked"
    pool = ext.resources().pool

    def holds() -> bool:
        try:
            with pool.connection(timeout=timeout) as conn:
                return _session_holds(db.one(conn, "get_user", id=user.id), user.session_version)
        except (psycopg.Error, psycopg_pool.PoolTimeout):
            return False

    return holds


def _check_csrf() -> None:
    if request.method in SAFE_METHODS or request.blueprint in CSRF_EXEMPT:
        return
    if takes_tokens() and g.auth != "session":
        # An API request that the cookie does not authenticate: either its token does (a
        # browser never adds an Authorization header on its own, so it cannot be a cross-site
        # forgery), or nothing does and the API answers 401 with its Bearer challenge.
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
