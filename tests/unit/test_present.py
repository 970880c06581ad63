"""One shape for an email: the API's documented fields, the CLI's extra columns, live status."""

from __future__ import annotations

import datetime as dt
import uuid

from tasks.domain import present
from tasks.domain.models import Event
from tests.unit.test_explain import NOW, email
from webapp.api import schemas


def test_the_full_shape_is_the_documented_one_in_its_order() -> None:
    """The API answers with these keys in this order (the app keeps dict order): the schema's."""
    shown = present.email_json(email(), with_body=True, events=[])

    assert list(shown) == list(schemas.SCHEMAS["Email"]["properties"])
    assert set(schemas.SCHEMAS["Email"]["required"]) <= set(present.email_json(email()))
    assert "body_text" not in present.email_json(email())


def test_values_are_json_times_with_offsets_ids_as_text_and_the_chosen_zone() -> None:
    batch = uuid.uuid4()
    sent = email(status="sent", sent_at=NOW, batch_id=batch)
    event = Event(id=1, at=NOW, kind="sent", job_id=None, detail={})

    shown = present.email_json(sent, events=[event])

    assert shown["id"] == str(sent.id) and shown["batch_id"] == str(batch)
    assert (shown["send_at"], shown["sent_at"]) == ("2030-01-07T08:00:00+00:00", "2030-01-07T08:00:00+00:00")
    assert (shown["send_at_local"], shown["time_zone"]) == ("2030-01-07T09:00:00+01:00", "Europe/Paris")
    assert shown["to"] == ["a@example.com"] and shown["why"].startswith("Sent at")
    assert shown["events"] == [event.as_dict()] and shown["events"][0]["at"] == "2030-01-07T08:00:00+00:00"


def test_the_operators_columns_come_only_when_asked() -> None:
    slotted = email(job_id=7, rate_slot=NOW, rate_transport="smtp")

    public = present.email_json(slotted)
    inspected = present.email_json(slotted, internals=True)

    assert not set(present.INTERNAL_FIELDS) & set(public)
    assert {k: inspected[k] for k in ("owner_id", "job_id", "rate_slot", "rate_transport")} == {
        "owner_id": 1,
        "job_id": 7,
        "rate_slot": "2030-01-07T08:00:00+00:00",
        "rate_transport": "smtp",
    }


def test_live_status_is_the_same_shape_from_an_email_or_from_a_bare_status_row() -> None:
    waiting = email(waiting_reason="retrying", next_attempt_at=NOW + dt.timedelta(seconds=30))
    row = {name: getattr(waiting, name) for name in present.STATUS_FIELDS}

    from_email = present.email_json(waiting, only=present.STATUS_FIELDS)

    assert from_email == present.status_json(row)
    assert list(from_email) == list(present.STATUS_FIELDS)
    assert from_email["next_attempt_at"] == "2030-01-07T08:00:30+00:00"
