"""The product's web app plus one route that fails (for tests only, never in production code):
``gunicorn 'tests.security.boom_app:create_app()'``."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from webapp import create_app as create_product_app


def create_app() -> Flask:
    """Create the real app and add ``/boom``, which reads the request, then raises."""
    app = create_product_app()

    @app.route("/boom", methods=["GET", "POST"])
    def boom() -> Any:
        received = request.get_data(as_text=True)
        credentials = request.headers.get("Authorization", "")
        raise RuntimeError(f"the handler failed after reading {len(received)} characters and {len(credentials)}")

    return app
