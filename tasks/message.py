"""Build the RFC 5322 message of an email (the same Message-ID on every attempt)."""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage

from tasks.models import Email


def build(email_row: Email) -> bytes:
    """Render the email as wire bytes: headers, text part, optional HTML alternative.

    Bcc recipients are envelope-only: they never appear in the headers.
    """
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email_row.from_addr
    if email_row.to_addrs:
        msg["To"] = ", ".join(email_row.to_addrs)
    if email_row.cc_addrs:
        msg["Cc"] = ", ".join(email_row.cc_addrs)
    if email_row.reply_to:
        msg["Reply-To"] = email_row.reply_to
    msg["Subject"] = email_row.subject
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email_row.message_id
    msg.set_content(email_row.body_text)
    if email_row.body_html:
        msg.add_alternative(email_row.body_html, subtype="html")
    return msg.as_bytes()
