"""The Flask web app: ``gunicorn -c gunicorn.conf.py 'webapp:create_app()'``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from tasks.core import config, logs
from tasks.domain import recurrence_rules
from tasks.domain.models import Status


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the Flask application.

    The only place the web reads configuration: ``tasks.core.config.load`` (the
    environment, or ``test_config["ENV"]``); other ``test_config`` keys override
    Flask's own settings.
    """
    settings = config.load(test_config.get("ENV") if test_config else None)
    config.validate_for_web(settings)
    recurrence_rules.set_time_scale(settings.recurrence_time_scale)
    if not (test_config and test_config.get("TESTING")):
        logs.configure(settings.log_level, settings.log_format)
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.web_max_request_bytes,
        SESSION_COOKIE_NAME="reachdbox_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Always Secure in production; elsewhere whenever the request came over HTTPS (security.py).
        SESSION_COOKIE_SECURE=settings.app_env == "production",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(days=14),
        # CSRF is checked in security.py, so requests with a bearer token can skip it.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
    )
    assert isinstance(app.json, DefaultJSONProvider)
    app.json.sort_keys = False  # keep the documented field order
    # Templates compare and name statuses by these, never by literal strings.
    app.jinja_env.globals["Status"] = Status
    if test_config:
        app.config.update({k: v for k, v in test_config.items() if k != "ENV"})

    from webapp import (
        api,
        auth,
        batches,
        bulk,
        charts,
        dashboard,
        devmail,
        errors,
        ext,
        feedback,
        health,
        insights,
        limits,
        live,
        operators,
        ops,
        org_ops,
        org_settings,
        orgs,
        recurring,
        search,
        security,
        suppressions,
        tokens,
        webhooks,
    )
    from webapp.api import docs as api_docs

    ext.init_app(app, settings)
    security.init_app(app, settings)
    limits.init_app(app, settings)
    errors.init_app(app)
    auth.init_app(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(bulk.bp)
    app.register_blueprint(recurring.bp)
    app.register_blueprint(search.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(orgs.bp)
    app.register_blueprint(live.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api_docs.bp)
    if settings.app_env != "production":
        app.register_blueprint(devmail.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(operators.bp)
    app.register_blueprint(charts.bp)
    app.register_blueprint(org_settings.bp)
    app.register_blueprint(org_ops.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(suppressions.bp)
    app.register_blueprint(insights.bp)
    dashboard.init_app(app)
    return app
