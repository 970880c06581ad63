"""``/api/v1/batches``: send to a list (preview with ``dry_run``), progress, cancel the rest."""

from __future__ import annotations

from typing import Any

from flask import url_for

from tasks.core import errors
from tasks.domain import batch_plan, batches, suppression
from webapp import ext
from webapp.api import bp, idempotency_key, json_body
from webapp.auth import scope, signed_in_user

FIELDS = frozenset(
    {
        "csv",
        "addresses",
        "recipients",
        "subject",
        "body_text",
        "start_at",
        "time_zone",
        "min_delay_seconds",
        "hourly_cap",
        "name",
        "dry_run",
        "idempotency_key",
    }
)


def plan_from(data: dict[str, Any]) -> batch_plan.Plan:
    """Check a batch request body and plan it."""
    for name in data:
        if name not in FIELDS:
            raise errors.ValidationError(f"{name}: unknown field", field=name)
    return batch_plan.prepare(
        settings=ext.settings(),
        csv_text=data.get("csv"),
        addresses=data.get("addresses"),
        recipients=data.get("recipients"),
        subject=data.get("subject"),
        body_text=data.get("body_text"),
        start_at=data.get("start_at"),
        time_zone=data.get("time_zone"),
        min_delay_seconds=data.get("min_delay_seconds", 0),
        hourly_cap=data.get("hourly_cap"),
        name=data.get("name", ""),
        idempotency_key=idempotency_key(data),
        suppressed=lambda addresses: suppression.suppressed_among(ext.conn(), scope_org(), addresses),
    )


def scope_org() -> int:
    """The caller's organization (a batch always belongs to one)."""
    org_id = scope().org_id
    assert org_id is not None
    return org_id


@bp.post("/batches")
def create_batch() -> Any:
    """Create one email per recipient, spaced out; or, with ``dry_run``, only preview them."""
    data = json_body()
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise errors.ValidationError("dry_run: must be true or false", field="dry_run")
    plan = plan_from(data)
    if dry_run:
        return {"dry_run": True, **plan.preview()}
    batch, created = batches.create(
        ext.conn(), owner=signed_in_user(), plan=plan, settings=ext.settings(), org_id=scope().org_id
    )
    if created:
        ext.publish(batch.org_id, "", "batch", batch_id=str(batch.id), total=batch.total)
    body = {"batch": batch.as_dict(), **plan.preview()}
    headers = {"Location": url_for("api.get_batch", batch_id=batch.id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return body, 201 if created else 200, headers


@bp.get("/batches/<batch_id>")
def get_batch(batch_id: str) -> Any:
    """Return a batch and its progress."""
    return {"batch": batches.get(ext.conn(), scope(), batch_id).as_dict()}


@bp.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> Any:
    """Cancel every email of the batch that has not started sending."""
    batch, cancelled = batches.cancel_rest(ext.conn(), scope(), batch_id)
    ext.publish(batch.org_id, "", "batch", batch_id=str(batch.id), cancelled=len(cancelled))
    return {"batch": batch.as_dict(), "cancelled": len(cancelled)}
