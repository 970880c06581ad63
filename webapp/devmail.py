"""The dev mailbox page (not in production): what the built-in SMTP sink captured.

It shows every user's mail, so only operators see it (outside production the dev
user is one); anyone else gets 404, as if it did not exist.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
from typing import Any

from flask import Blueprint, abort, render_template

from tasks.core import db
from webapp import ext
from webapp.auth import is_operator, login_required

bp = Blueprint("devmail", __name__, url_prefix="/devmail")
_parser = email.parser.BytesParser(policy=email.policy.default)
SHOWN = 100
HEADERS = ("From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID")


def content(part: email.message.MIMEPart) -> str:
    """Return a text part's content; a charset Python does not know reads as UTF-8, U+FFFD for the rest.

    Whatever a sender put in a captured message, the page must still answer.
    """
    try:
        return str(part.get_content())
    except LookupError:  # an unknown charset name
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def parse(row: dict[str, Any]) -> dict[str, Any]:
    """Turn a stored message into its headers, text body and HTML body."""
    msg = _parser.parsebytes(bytes(row["raw"]))
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return {
        "id": row["id"],
        "received_at": row["received_at"],
        "rcpt_tos": row["rcpt_tos"],
        "mail_from": row["mail_from"],
        "subject": row["subject"] or "(no subject)",
        "headers": [(name, str(msg[name])) for name in HEADERS if msg[name] is not None],
        "text": content(text) if text is not None else "",
        "html": content(html) if html is not None else None,
        "size": len(row["raw"]),
    }


@bp.get("/")
@login_required
def index() -> Any:
    """List captured mail, newest first, with headers and body."""
    if not is_operator():
        abort(404)
    rows = db.all_rows(ext.conn(), "list_devmail", limit=SHOWN)
    return render_template("devmail.html", messages=[parse(r) for r in rows], shown=SHOWN)
