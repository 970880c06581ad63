"""``/api/v1/webhooks``: the organization's webhook endpoints, for admins and owners (a token
needs the ``admin`` scope): create (the secret is in that answer only), list, read, change,
delete, rotate the secret, send a test event; each one's deliveries with their attempts,
and deliver one again. What is sent is the OpenAPI document's ``webhooks`` section.
"""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from tasks.core import errors
from tasks.domain.orgs import Action
from tasks.webhooks import endpoints
from webapp import ext
from webapp.api import bp, json_body
from webapp.auth import require
from webapp.webhooks import admin_of as _admin_of

FIELDS = frozenset({"url", "event_types", "description", "enabled"})


def _only(data: dict[str, Any]) -> None:
    for name in data:
        if name not in FIELDS:
            raise errors.ValidationError(f"{name}: unknown field", field=name)


@bp.post("/webhooks")
def create_webhook() -> Any:
    """Add an endpoint; its signing secret is in this answer and never again."""
    member = require(Action.ADMIN)
    data = json_body()
    _only(data)
    endpoint = endpoints.create(
        ext.conn(), ext.settings(), member.org_id, member.user_id,
        url=data.get("url"), event_types=data.get("event_types"), description=data.get("description"),
        enabled=data.get("enabled", True),
    )  # fmt: skip
    return endpoint.as_dict(), 201, {"Location": url_for("api.get_webhook", endpoint_id=endpoint.id)}


@bp.get("/webhooks")
def list_webhooks() -> Any:
    """Every endpoint of the organization (never a secret)."""
    member = require(Action.ADMIN)
    return {"webhooks": [e.as_dict() for e in endpoints.list_endpoints(ext.conn(), member.org_id)]}


@bp.get("/webhooks/<endpoint_id>")
def get_webhook(endpoint_id: str) -> Any:
    member = _admin_of(endpoint_id)
    return endpoints.get(ext.conn(), member.org_id, endpoint_id).as_dict()


@bp.patch("/webhooks/<endpoint_id>")
def edit_webhook(endpoint_id: str) -> Any:
    """Change the fields given; enabling a disabled endpoint starts its failures' count afresh."""
    member = _admin_of(endpoint_id)
    data = json_body()
    _only(data)
    if not data:
        raise errors.ValidationError("give at least one field to change", field=None)
    return endpoints.update(ext.conn(), ext.settings(), member.org_id, member.user_id, endpoint_id, data).as_dict()


@bp.delete("/webhooks/<endpoint_id>")
def delete_webhook(endpoint_id: str) -> Any:
    """Delete an endpoint, its deliveries and their log."""
    member = _admin_of(endpoint_id)
    endpoints.delete(ext.conn(), member.org_id, member.user_id, endpoint_id)
    return {"id": endpoint_id, "deleted": True}


@bp.post("/webhooks/<endpoint_id>/rotate")
def rotate_webhook_secret(endpoint_id: str) -> Any:
    """A new secret (in this answer only); the previous one also signs for a day."""
    member = _admin_of(endpoint_id)
    return endpoints.rotate(ext.conn(), ext.settings(), member.org_id, member.user_id, endpoint_id).as_dict()


@bp.post("/webhooks/<endpoint_id>/test")
def test_webhook(endpoint_id: str) -> Any:
    """Send a ``webhook.test`` event to the endpoint now; the delivery, to follow in its log."""
    member = _admin_of(endpoint_id)
    delivery = endpoints.send_test(ext.conn(), member.org_id, endpoint_id)
    location = url_for("api.get_webhook_delivery", endpoint_id=delivery.endpoint_id, delivery_id=delivery.id)
    return delivery.as_dict(), 201, {"Location": location}


@bp.get("/webhooks/<endpoint_id>/deliveries")
def list_webhook_deliveries(endpoint_id: str) -> Any:
    """The endpoint's deliveries, newest first, 50 a page (``before``: the last one's id)."""
    member = _admin_of(endpoint_id)
    conn = ext.conn()
    before = None
    raw = request.args.get("before")
    if raw is not None:
        try:
            last = endpoints.delivery(conn, member.org_id, endpoint_id, raw)
        except errors.NotFound:
            raise errors.ValidationError("before: must be a delivery's id", field="before") from None
        before = (last.created_at, last.id)
    found = endpoints.deliveries(conn, member.org_id, endpoint_id, before=before)
    return {"deliveries": [d.as_dict() for d in found]}


@bp.get("/webhooks/<endpoint_id>/deliveries/<delivery_id>")
def get_webhook_delivery(endpoint_id: str, delivery_id: str) -> Any:
    """A delivery and each of its attempts (time, status code, latency, the answer's first 1 KB)."""
    member = _admin_of(endpoint_id, delivery_id)
    conn = ext.conn()
    found = endpoints.delivery(conn, member.org_id, endpoint_id, delivery_id)
    return found.as_dict() | {"attempt_log": endpoints.attempts(conn, member.org_id, endpoint_id, found.id)}


@bp.post("/webhooks/<endpoint_id>/deliveries/<delivery_id>/redeliver")
def redeliver_webhook(endpoint_id: str, delivery_id: str) -> Any:
    """Deliver again now, with the same ``webhook-id`` and a new day of retries."""
    member = _admin_of(endpoint_id, delivery_id)
    return endpoints.redeliver(ext.conn(), member.org_id, endpoint_id, delivery_id).as_dict()
