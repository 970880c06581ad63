"""Endpoints for orchestrators and operators: ``/readyz``, ``/metrics``, ``/ops/status``, ``/ops/alerts``.

``/readyz`` says whether this process can serve (PostgreSQL and Redis answer);
``/healthz`` (webapp.health) only that it is up. ``/metrics``, ``/ops/status`` and
``/ops/alerts`` require ``Authorization: Bearer OPS_TOKEN`` when OPS_TOKEN is set.
"""

from __future__ import annotations

import hmac
from typing import Any, cast

import psycopg
import redis
from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tasks.core import db
from tasks.core.config import Settings
from tasks.ops import alerts, metrics
from tasks.ops import overview as ops

bp = Blueprint("ops", __name__)

#: Seconds a readiness check may take per dependency.
CHECK_TIMEOUT = 2
#: A scrape must not hold the database for long.
METRICS_STATEMENT_TIMEOUT_MS = 10_000


def _settings() -> Settings:
    return cast(Settings, current_app.config["SETTINGS"])


def _connect(statement_timeout_ms: int | None = None) -> db.Conn:
    options = f"-c statement_timeout={int(statement_timeout_ms)}" if statement_timeout_ms else ""
    return db.connect(_settings().database_url, connect_timeout=CHECK_TIMEOUT, options=options)


def _check_postgres() -> str:
    try:
        with _connect(statement_timeout_ms=CHECK_TIMEOUT * 1000) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def _check_redis() -> str:
    client = redis.Redis.from_url(
        _settings().redis_url, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"unavailable: {type(exc).__name__}"
    finally:
        client.close()
    return "ok"


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    """Answer 200 when PostgreSQL and Redis both answer, else 503 naming what is down."""
    checks = {"postgres": _check_postgres(), "redis": _check_redis()}
    ready = all(v == "ok" for v in checks.values())
    return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503


@bp.before_request
def _require_ops_token() -> Response | None:
    token = _settings().ops_token
    if not token or request.endpoint == "ops.readyz":
        return None
    given = request.headers.get("Authorization", "")
    if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    response = jsonify({"error": {"code": "unauthorized", "message": "a valid OPS_TOKEN is required", "field": None}})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _registry() -> CollectorRegistry:
    registry = current_app.extensions.get("reachdbox.metrics")
    if registry is None:
        registry = CollectorRegistry()
        registry.register(metrics.DatabaseCollector(lambda: _connect(METRICS_STATEMENT_TIMEOUT_MS), _settings()))
        current_app.extensions["reachdbox.metrics"] = registry
    return registry


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Expose the metrics in Prometheus' text format, computed from PostgreSQL now."""
    try:
        body = generate_latest(_registry())
    except psycopg.Error as exc:
        return Response(f"database unavailable: {type(exc).__name__}\n", status=503, mimetype="text/plain")
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _unavailable(exc: psycopg.Error) -> Response:
    error = {"code": "unavailable", "message": f"database unavailable: {type(exc).__name__}", "field": None}
    response = jsonify({"error": error})
    response.status_code = 503
    return response


@bp.get("/ops/status")
def status() -> Response:
    """Return the operators' overview as JSON: counts, next due, transports and breakers, workers."""
    try:
        with _connect(METRICS_STATEMENT_TIMEOUT_MS) as conn:
            data = ops.overview(conn, _settings())
    except psycopg.Error as exc:
        return _unavailable(exc)
    return jsonify(data)


@bp.get("/ops/alerts")
def alerts_now() -> Response:
    """Return the alerts open now and those resolved in the last 24 hours (docs/alerts.md), as JSON."""
    try:
        with _connect(METRICS_STATEMENT_TIMEOUT_MS) as conn:
            data = alerts.split(alerts.recent(conn))
    except psycopg.Error as exc:
        return _unavailable(exc)
    return jsonify(data)
