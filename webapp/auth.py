"""Sign-in: Google OAuth 2.0 (flask-dance), or a clearly marked dev login; sign-out;
and the helpers every view uses to know who is signed in (``current_user``,
``login_required``, ``scope``).

The authorize, token and userinfo URLs come from settings, so tests run the
whole real flow against a local provider. Only a verified email from an allowed
domain (or list) gets in; everyone else sees a refusal page. Who the request is
(session cookie, or on ``/api/v1`` a personal access token) is settled earlier,
in ``webapp/security.py``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

import requests
import structlog
from flask import Blueprint, Flask, g, make_response, redirect, render_template, request, session, url_for
from flask_dance.consumer import OAuth2ConsumerBlueprint, oauth_authorized, oauth_error
from oauthlib.oauth2 import OAuth2Error

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.domain import emails, orgs
from tasks.domain.models import Scope, User, in_org
from webapp import ext, security

log = structlog.get_logger("webapp.auth")
bp = Blueprint("auth", __name__, url_prefix="/auth")

SCOPES = [
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
]
NEXT_KEY = "login_next"


def make_google_blueprint(settings: Settings) -> OAuth2ConsumerBlueprint:
    """Build the Google sign-in blueprint on the configured endpoints."""
    google = OAuth2ConsumerBlueprint(
        "google",
        __name__,
        client_id=settings.google_oauth_client_id,
        client_secret=settings.google_oauth_client_secret,
        scope=SCOPES,
        authorization_url=settings.google_oauth_authorize_url,
        authorization_url_params={"prompt": "select_account"},
        token_url=settings.google_oauth_token_url,
        url_prefix="/auth",
        login_url="/google",
        authorized_url="/google/authorized",
    )
    oauth_authorized.connect_via(google)(_signed_in_with_google)
    oauth_error.connect_via(google)(_google_error)
    return google


def current_user() -> User | None:
    """Return the signed-in user of this request, if any (set by ``webapp/security.py``)."""
    user: User | None = g.get("user")
    return user


def signed_in_user() -> User:
    """Return the signed-in user of a view that only signed-in users reach (``login_required``, the API)."""
    user = current_user()
    assert user is not None, "a view for signed-in users was reached without one"
    return user


def membership() -> orgs.Membership:
    """Return the signed-in user's membership of the current organization (403 if they belong to none)."""
    found: orgs.Membership | None = g.get("membership")
    if found is None:
        raise errors.Forbidden("you belong to no organization: ask an admin of one to invite you")
    return found


def scope(*, mine: bool = False) -> Scope:
    """Return the signed-in user's scope: the current organization's emails and batches
    (``mine``: only their own)."""
    return in_org(membership().org_id, signed_in_user().id, mine=mine)


def require(action: orgs.Action) -> orgs.Membership:
    """Refuse (403, with the reason) what the caller's role, or their token's scopes, do not allow."""
    found = membership()
    found.require(action)
    if g.get("auth") == "token" and orgs.SCOPE_OF[action] not in g.get("token_scopes", ()):
        raise errors.Forbidden(f"this token lacks the {orgs.SCOPE_OF[action]!r} scope")
    return found


def is_operator() -> bool:
    """Tell whether the signed-in user may see the operators' pages (OPERATOR_EMAILS)."""
    user = current_user()
    return user is not None and ext.settings().is_operator(user.email)


def dev_login_enabled() -> bool:
    """Tell whether the dev login is offered (no Google client, not production)."""
    settings = ext.settings()
    return not settings.google_login and settings.app_env != "production"


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Send visitors who are not signed in to the sign-in page, then back."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def init_app(app: Flask, settings: Settings) -> None:
    """Register sign-in: Google when configured, else (outside production) the dev login."""
    app.register_blueprint(bp)
    app.context_processor(_template_helpers)
    # These libraries log client secrets, codes and tokens at DEBUG: never let them.
    for name in ("flask_dance", "oauthlib", "requests_oauthlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if settings.google_login:
        # oauthlib reads these switches only from the environment. Google reports
        # the granted scopes in its own spelling; plain http is allowed only
        # outside production (a local provider, or localhost during development).
        os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
        if settings.app_env != "production":
            os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
        app.register_blueprint(make_google_blueprint(settings))
        app.register_error_handler(OAuth2Error, _oauth_failed)
        app.register_error_handler(requests.RequestException, _provider_unreachable)


def _template_helpers() -> dict[str, Any]:
    """Tell every template who is signed in, in which organization (and their others), whether they
    are an operator, and whether the dev login is on."""
    return {
        "current_user": current_user(),
        "operator": is_operator(),
        "dev_login": dev_login_enabled(),
        "membership": g.get("membership"),
        "my_orgs": g.get("orgs", []),
        "Action": orgs.Action,
    }


def allowed(settings: Settings, email: str) -> bool:
    """Tell whether this verified address may sign in."""
    email = email.lower()
    if not settings.allowed_email_domains and not settings.allowed_emails:
        return True
    return email in settings.allowed_emails or email.rpartition("@")[2] in settings.allowed_email_domains


def refused(reason: str, status: int = 403) -> Any:
    """Answer a sign-in that may not proceed, saying why."""
    # A Response object, not a tuple: flask-dance only passes those through from its signals.
    return make_response(render_template("refused.html", reason=reason), status)


@bp.get("/login")
def login() -> Any:
    """Show the sign-in page (or go on, when already signed in)."""
    target = security.safe_next(request.args.get("next"))
    if current_user() is not None:
        return redirect(target)
    session[NEXT_KEY] = target
    return render_template(
        "login.html",
        google=ext.settings().google_login,
        dev_login=dev_login_enabled(),
        dev_user=ext.settings().dev_user_email,
    )


@bp.post("/dev")
def dev_login() -> Any:
    """Sign in as the local dev user (development only; CSRF-protected like every POST)."""
    if not dev_login_enabled():
        return refused("The dev login is not available here.", 404)
    settings = ext.settings()
    target = security.safe_next(request.form.get("next") or session.get(NEXT_KEY))
    # Any address in development (to accept an invitation sent to it), the dev user's by default.
    address = (request.form.get("email") or "").strip() or settings.dev_user_email
    if "@" not in address or len(address) > 320 or any(c.isspace() for c in address):
        return refused("The dev login needs an email address.", 422)
    user = emails.ensure_user(ext.conn(), email=address, name="Dev user" if address == settings.dev_user_email else "")
    security.start_session(user)
    log.info("signed in", user_id=user.id, method="dev")
    return redirect(target)


@bp.post("/logout")
def logout() -> Any:
    """Sign out everywhere: the server-side session version moves on."""
    security.end_session(current_user())
    return redirect(url_for("auth.login"))


def _signed_in_with_google(blueprint: OAuth2ConsumerBlueprint, token: dict[str, Any]) -> Any:
    settings = ext.settings()
    response = blueprint.session.get(settings.google_oauth_userinfo_url, timeout=10)
    if not response.ok:
        log.warning("userinfo request failed", status=response.status_code)
        return refused("Google did not tell us who you are. Please try again.", 502)
    info = response.json()
    email, verified = info.get("email"), info.get("email_verified")
    if not isinstance(email, str) or "@" not in email:
        return refused("Your Google account did not share an email address.")
    if verified is not True and str(verified).lower() != "true":
        return refused(f"Google has not verified the address {email}, so it cannot be used to sign in.")
    if not allowed(settings, email):
        log.info("sign-in refused", reason="not allowed")
        return refused(f"{email} is not allowed to use this Reach D. Box. Ask its administrator to add you.")
    sub = str(info.get("sub") or "")
    conn = ext.conn()
    linked = db.one(conn, "user_by_google_sub", google_sub=sub) if sub else None
    if linked is not None and linked["email"].lower() != email.lower():
        return refused("This Google account is linked to another address here; ask the administrator.")
    row = db.one(
        conn, "upsert_google_user", email=email, name=str(info.get("name") or "")[:200], google_sub=sub or None
    )
    assert row is not None
    target = security.safe_next(session.get(NEXT_KEY))
    security.start_session(User.from_row(row))
    log.info("signed in", user_id=row["id"], method="google")
    # Returning a response tells flask-dance not to keep Google's token: we never call Google again.
    return redirect(target)


def _google_error(blueprint: OAuth2ConsumerBlueprint, error: Any, error_description: Any = None, **_: Any) -> Any:
    log.info("sign-in refused by the provider", error=str(error))
    return refused(f"Sign-in was not completed ({error}{': ' + error_description if error_description else ''}).")


def _oauth_failed(exc: OAuth2Error) -> Any:
    # A state that does not match this browser's sign-in, or a code that is
    # invalid or already used, lands here.
    log.info("sign-in failed", error=exc.error)
    return refused(f"Sign-in failed ({exc.error}). Please start again from the sign-in page.", 400)


def _provider_unreachable(exc: requests.RequestException) -> Any:
    log.warning("sign-in provider unreachable", error=type(exc).__name__)
    return refused("Google could not be reached. Please try again in a moment.", 502)
