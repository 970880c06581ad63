"""Build the RFC 5322 message of an email (the same Message-ID on every attempt).

Two builders from the standard library's ``email`` package: the ``compat32``
classes (MIMEText, Header, formataddr) for the usual all-ASCII addresses, and
``EmailMessage`` with the SMTP policy for internationalised addresses. The
first is about five times cheaper (0.15 vs 0.76 ms a message, measured in
bench/RESULTS.md), which matters at hundreds of emails a second.

An organization's sending identity (tasks/delivery/orgs.py), when it has one,
is the From and the Reply-To, as it stands when the email is sent: its From
name and address replace the deployment's ``MAIL_FROM``, its Reply-To the
signed-in user's address.

The messages of a list (a batch's, a recurrence's, a one-off that asked for it) with one
recipient carry RFC 8058's one-click unsubscribe: ``List-Unsubscribe`` with the signed
link of tasks/domain/unsubscribe.py, and ``List-Unsubscribe-Post``.
"""

from __future__ import annotations

import dataclasses
import email.charset
import email.policy
import email.utils
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from tasks.delivery.orgs import Identity
from tasks.domain.models import Email
from tasks.domain.unsubscribe import Links

_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.header_encoding = email.charset.QP
_UTF8_QP.body_encoding = email.charset.QP
_CRLF = email.policy.compat32.clone(linesep="\r\n")


def with_identity(email_row: Email, identity: Identity | None) -> Email:
    """The email with its organization's identity as From and Reply-To (unchanged without one)."""
    if identity is None:
        return email_row
    from_addr, reply_to = email_row.from_addr, email_row.reply_to
    if identity.from_address or identity.from_name:
        address = identity.from_address or email.utils.parseaddr(from_addr)[1]
        from_addr = email.utils.formataddr((identity.from_name or "", address))
    if identity.reply_to:
        reply_to = identity.reply_to
    return dataclasses.replace(email_row, from_addr=from_addr, reply_to=reply_to)


def build(email_row: Email, identity: Identity | None = None, unsubscribe: Links | None = None) -> bytes:
    """Render the email as wire bytes: headers, text part, optional HTML alternative.

    Bcc recipients are envelope-only: they never appear in the headers.
    ``identity``: the email's organization's sending identity, if it has one.
    ``unsubscribe``: the process's unsubscribe links (None: no ``PUBLIC_URL``, no header).
    """
    email_row = with_identity(email_row, identity)
    addresses = [*email_row.to_addrs, *email_row.cc_addrs, email_row.reply_to or ""]
    link = unsubscribe_url(email_row, unsubscribe)
    if all(a.isascii() for a in addresses):
        return _build_ascii(email_row, link)
    return _build_international(email_row, link)


def unsubscribe_url(email_row: Email, links: Links | None) -> str | None:
    """The one-click unsubscribe link its message carries, if any: a list's message to one recipient."""
    recipients = email_row.recipients
    if links is None or not email_row.unsubscribable or len(recipients) != 1:
        return None
    return links.url(email_row.id)


def _unsubscribe_headers(msg: Message, link: str | None) -> None:
    if link is not None:
        msg["List-Unsubscribe"] = f"<{link}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def _address(raw: str) -> str:
    return email.utils.formataddr(email.utils.parseaddr(raw), charset=_UTF8_QP)


def _build_ascii(email_row: Email, link: str | None) -> bytes:
    # MIMEText takes a Charset as well as its name (it hands it to set_payload); typeshed has only str.
    text = MIMEText(email_row.body_text, "plain", _UTF8_QP)  # type: ignore[arg-type]  # a Charset: see above
    msg: Message
    if email_row.body_html:
        msg = MIMEMultipart("alternative")
        msg.attach(text)
        msg.attach(MIMEText(email_row.body_html, "html", _UTF8_QP))  # type: ignore[arg-type]  # a Charset, as above
    else:
        msg = text
    msg["From"] = _address(email_row.from_addr)
    if email_row.to_addrs:
        msg["To"] = ", ".join(email_row.to_addrs)
    if email_row.cc_addrs:
        msg["Cc"] = ", ".join(email_row.cc_addrs)
    if email_row.reply_to:
        msg["Reply-To"] = email_row.reply_to
    # compat32 takes a Header as a value (it folds it as encoded-words); typeshed has only str.
    subject = Header(email_row.subject, _UTF8_QP if not email_row.subject.isascii() else "us-ascii")
    msg["Subject"] = subject  # type: ignore[assignment]  # a Header: see above
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email_row.message_id
    _unsubscribe_headers(msg, link)
    return msg.as_bytes(policy=_CRLF)


def _build_international(email_row: Email, link: str | None) -> bytes:
    # Sent with SMTPUTF8 (tasks/delivery/transports.py): addresses go out as UTF-8, as typed
    # (RFC 6532); an encoded-word is never valid inside an address.
    msg = EmailMessage(policy=email.policy.SMTPUTF8)
    msg["From"] = email_row.from_addr
    if email_row.to_addrs:
        msg["To"] = ", ".join(email_row.to_addrs)
    if email_row.cc_addrs:
        msg["Cc"] = ", ".join(email_row.cc_addrs)
    if email_row.reply_to:
        msg["Reply-To"] = email_row.reply_to
    # This policy decodes an encoded-word given as the value and writes what it decoded
    # (line breaks included) onto the wire; encoded first, the text goes out as typed.
    literal = "=?" in email_row.subject
    msg["Subject"] = Header(email_row.subject, _UTF8_QP).encode(maxlinelen=0) if literal else email_row.subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email_row.message_id
    _unsubscribe_headers(msg, link)
    msg.set_content(email_row.body_text)
    if email_row.body_html:
        msg.add_alternative(email_row.body_html, subtype="html")
    return msg.as_bytes()
