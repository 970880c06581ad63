"""The Flask web app: ``gunicorn 'webapp:create_app()'``."""

from __future__ import annotations

from typing import Any

from flask import Flask

from tasks import config


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create and configure an instance of the Flask application."""
    settings = config.load(test_config.get("ENV") if test_config else None)
    app = Flask(__name__)
    app.config.from_mapping(SECRET_KEY=settings.secret_key, SETTINGS=settings)
    if test_config:
        app.config.update({k: v for k, v in test_config.items() if k != "ENV"})

    from webapp import health, ops

    app.register_blueprint(health.bp)
    app.register_blueprint(ops.bp)
    return app
