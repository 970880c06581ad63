"""The dev mailbox page (not in production): what the built-in SMTP sink captured.

It shows every user's mail, so only operators see it (outside production the dev
user is one); anyone else gets 404, as if it did not exist. A message's HTML is
attacker-controlled content: it is only ever served from ``/devmail/<id>/html`` with a
``sandbox`` Content-Security-Policy (an opaque origin, no script, nothing remote unless
asked), and shown in an ``<iframe sandbox>``.
"""

from __future__ import annotations

import base64
import email.message
import email.parser
import email.policy
import functools
import re
import urllib.parse
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for

from tasks.core import db, errors
from webapp import devmail_check, devmail_search, ext
from webapp.auth import is_operator, login_required

bp = Blueprint("devmail", __name__, url_prefix="/devmail")
_parser = email.parser.BytesParser(policy=email.policy.default)
_header_parser = email.parser.BytesHeaderParser(policy=email.policy.default)
#: The search reads text parts with the older, much faster policy (no header objects).
_fast_parser = email.parser.BytesParser(policy=email.policy.compat32)
SHOWN = 100
#: How many of the newest messages a search looks through (pruning keeps fewer by default),
#: read ``PAGE`` at a time.
SCANNED = 5000
PAGE = 200
#: A message without any of these bytes has no attachment (no part marked so, no file name).
_MAY_ATTACH = re.compile(rb"(?i)attachment|filename|name=")
#: A ``cid:`` reference in HTML (an attribute or CSS ``url()``), up to a quote, space, ``)`` or ``>``.
_CID = re.compile(r"""(?i)\bcid:([^"'\s)>]+)""")
#: What an attachment's file name keeps in a Content-Disposition header (the rest becomes ``_``).
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]")
HEADERS = ("From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID")
VIEWS = ("html", "text", "source", "headers", "links", "check")
#: The policy of a message's HTML: its own opaque origin, no script, no form, no plugin,
#: inline styles and ``data:`` images only; nothing is fetched from anywhere.
HTML_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
#: The same once the user asks for remote content: images, styles and fonts over http(s).
HTML_CSP_REMOTE = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline' http: https:; img-src data: http: https:; "
    "font-src data: http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def content(part: email.message.MIMEPart) -> str:
    """Return a text part's content; a charset Python does not know reads as UTF-8, U+FFFD for the rest.

    Whatever a sender put in a captured message, the page must still answer.
    """
    try:
        return str(part.get_content())
    except LookupError:  # an unknown charset name
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _header(msg: email.message.EmailMessage, name: str) -> str:
    """Return every value of a header, decoded and joined; a malformed one as it was written."""
    try:
        return ", ".join(str(value) for value in msg.get_all(name, []))
    except (LookupError, ValueError):
        return ", ".join(str(value) for value in msg.get_all(name, []) if isinstance(value, str))


def attachments(msg: email.message.EmailMessage) -> list[dict[str, Any]]:
    """Return each attachment's file name, type, size and content (a part with a file name, or marked attachment)."""
    found = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.is_attachment() or part.get_filename():
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            found.append(
                {
                    "filename": part.get_filename() or "(no name)",
                    "type": part.get_content_type(),
                    "size": len(data),
                    "data": data,
                }
            )
    return found


def inline_images(msg: email.message.EmailMessage) -> dict[str, str]:
    """Return each image part with a Content-ID as a ``data:`` URI, by its id (without ``<>``)."""
    found = {}
    for part in msg.walk():
        content_id = part.get("Content-ID")
        if content_id and part.get_content_maintype() == "image":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                encoded = base64.b64encode(payload).decode("ascii")
                found[str(content_id).strip().strip("<>")] = f"data:{part.get_content_type()};base64,{encoded}"
    return found


def with_inline_images(html: str, images: dict[str, str]) -> str:
    """Point each ``cid:`` reference of the HTML at its image part, as a ``data:`` URI (the only images
    the HTML view's policy loads without asking)."""
    if not images:
        return html
    return _CID.sub(lambda m: images.get(urllib.parse.unquote(m[1]), m[0]), html)


def parse(row: dict[str, Any]) -> dict[str, Any]:
    """Turn a stored message into its headers, text body, HTML body and attachments."""
    raw = bytes(row["raw"])
    msg = _parser.parsebytes(raw)
    assert isinstance(msg, email.message.EmailMessage)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return {
        "id": row["id"],
        "received_at": row["received_at"],
        "rcpt_tos": row["rcpt_tos"],
        "mail_from": row["mail_from"],
        "subject": row["subject"] or "(no subject)",
        "headers": [(name, _header(msg, name)) for name in HEADERS if msg[name] is not None],
        "all_headers": [(name, str(value)) for name, value in msg.raw_items()],
        "text": content(text) if text is not None else "",
        "has_text": text is not None,
        "html": content(html) if html is not None else None,
        "attachments": attachments(msg),
        "inline_images": inline_images(msg),
        "size": len(raw),
        "raw": raw,
    }


class Candidate:
    """A stored message as a search sees it: headers parsed at first need, the whole message only
    if a term needs its text or attachments."""

    def __init__(self, row: dict[str, Any]):
        self.row = row

    @functools.cached_property
    def _headers(self) -> email.message.EmailMessage:
        headers = _header_parser.parsebytes(bytes(self.row["raw"]))
        assert isinstance(headers, email.message.EmailMessage)
        return headers

    @functools.cached_property
    def parsed(self) -> dict[str, Any]:
        return parse(self.row)

    @property
    def mail_from(self) -> str:
        return f"{self.row['mail_from']} {_header(self._headers, 'From')}"

    @property
    def to(self) -> str:
        return " ".join([*self.row["rcpt_tos"], _header(self._headers, "To"), _header(self._headers, "Cc")])

    @property
    def subject(self) -> str:
        return str(self.row["subject"] or "")

    @property
    def body(self) -> str:
        """The first plain-text part that is not an attachment, decoded (U+FFFD for what cannot be)."""
        for part in _fast_parser.parsebytes(bytes(self.row["raw"])).walk():
            if part.get_content_type() == "text/plain" and part.get_content_disposition() != "attachment":
                payload = part.get_payload(decode=True)
                if not isinstance(payload, bytes):
                    return ""
                try:
                    return payload.decode(part.get_content_charset() or "utf-8", "replace")
                except LookupError:  # an unknown charset name
                    return payload.decode("utf-8", "replace")
        return ""

    @property
    def has_attachment(self) -> bool:
        return _MAY_ATTACH.search(bytes(self.row["raw"])) is not None and bool(self.parsed["attachments"])


def _require_operator() -> None:
    if not is_operator():
        abort(404)


def _message(message_id: int) -> dict[str, Any]:
    row = db.one(ext.conn(), "get_devmail", id=message_id)
    if row is None:
        abort(404)
    return parse(row)


@bp.get("/")
@login_required
def index() -> Any:
    """List captured mail, newest first, narrowed by the search ``q``."""
    _require_operator()
    query = request.args.get("q", "").strip()
    try:
        terms = devmail_search.parse(query)
    except devmail_search.QueryError as exc:
        page = render_template("devmail.html", messages=[], shown=SHOWN, q=query, error=exc.message)
        return page, 400
    messages: list[dict[str, Any]] = []
    before, scanned = None, 0
    while len(messages) < SHOWN and scanned < SCANNED:
        rows = db.all_rows(ext.conn(), "list_devmail", before=before, limit=PAGE if terms else SHOWN)
        for row in rows:
            candidate = Candidate(row)
            if devmail_search.matches(terms, candidate):
                messages.append(candidate.parsed)
                if len(messages) == SHOWN:
                    break
        if len(rows) < (PAGE if terms else SHOWN) or not terms:
            break
        before, scanned = rows[-1]["id"], scanned + len(rows)
    return render_template("devmail.html", messages=messages, shown=SHOWN, q=query, error=None)


@bp.get("/<int:message_id>")
@login_required
def message(message_id: int) -> Any:
    """One message: its HTML, text, source, headers, links or HTML check (``view``)."""
    _require_operator()
    view = request.args.get("view", "")
    found = _message(message_id)
    if view not in VIEWS:
        view = "html" if found["html"] is not None else "text"
    return _render(found, view, checked=None)


def _render(found: dict[str, Any], view: str, *, checked: list[devmail_check.Link] | None) -> str:
    hosts = ext.settings().devmail_link_check_hosts
    links = checked if checked is not None else devmail_check.links(found["html"], found["text"], hosts)
    return render_template(
        "devmail_message.html",
        m=found,
        view=view,
        views=VIEWS,
        remote=request.args.get("remote") == "1",
        source=found["raw"].decode("utf-8", "replace"),
        findings=devmail_check.check_html(found["html"], has_text_part=found["has_text"]),
        links=links,
        checked=checked is not None,
        hosts=hosts,
    )


@bp.get("/<int:message_id>/html")
@login_required
def html_body(message_id: int) -> Response:
    """A message's HTML, for the sandboxed iframe only: nothing remote loads unless ``remote=1``."""
    _require_operator()
    found = _message(message_id)
    if found["html"] is None:
        abort(404)
    response = Response(with_inline_images(found["html"], found["inline_images"]), mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_CSP_REMOTE if request.args.get("remote") == "1" else HTML_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/<int:message_id>/raw")
@login_required
def raw(message_id: int) -> Response:
    """A message's source, as received, to download (``.eml``)."""
    _require_operator()
    found = _message(message_id)
    response = Response(found["raw"], mimetype="message/rfc822")
    response.headers["Content-Disposition"] = f'attachment; filename="devmail-{message_id}.eml"'
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.get("/<int:message_id>/attachments/<int:number>")
@login_required
def attachment(message_id: int, number: int) -> Response:
    """One attachment (counted from 0), always as a download: never rendered in the app's origin."""
    _require_operator()
    found = _message(message_id)["attachments"]
    if number >= len(found):
        abort(404)
    response = Response(found[number]["data"], mimetype="application/octet-stream")
    filename = _SAFE_FILENAME.sub("_", found[number]["filename"])[:100] or "attachment"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@bp.post("/<int:message_id>/links")
@login_required
def check_links(message_id: int) -> Any:
    """Request each link the operator allows (one HEAD or GET each) and show what answered."""
    _require_operator()
    found = _message(message_id)
    hosts = ext.settings().devmail_link_check_hosts
    listed = devmail_check.links(found["html"], found["text"], hosts)
    return _render(found, "links", checked=devmail_check.check_links(listed, hosts))


@bp.post("/delete")
@login_required
def delete() -> Any:
    """Delete the selected messages (``ids``, one or more), then go back to the same search."""
    _require_operator()
    values = request.form.getlist("ids")
    if not values:
        raise errors.ValidationError("select at least one message to delete", field="ids")
    if len(values) > SCANNED or not all(value.isdigit() and len(value) < 19 for value in values):
        raise errors.ValidationError("ids must be message numbers", field="ids")
    deleted = db.all_rows(ext.conn(), "delete_devmail", ids=[int(value) for value in values])
    flash(f"Deleted {len(deleted)} message(s).", "ok")
    return redirect(url_for("devmail.index", q=request.form.get("q") or None))
