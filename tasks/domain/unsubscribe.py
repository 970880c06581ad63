"""One-click unsubscribe (RFC 8058): the signed link each message of a list carries.

The messages of a batch and of a recurrence (and a one-off email that asks for it),
when they have one recipient, carry ``List-Unsubscribe: <PUBLIC_URL/u/TOKEN>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. ``TOKEN`` names the email (whose
one recipient is the address), signed with ``SECRET_KEY`` (HMAC-SHA256, itsdangerous):
it cannot be guessed or altered, and it is the only thing the link needs, so a POST to
it suppresses the address at once, without a sign-in (webapp/feedback.py). The address
itself is not in the link. A link used again changes nothing more. Without
``PUBLIC_URL`` no message carries the headers.
"""

from __future__ import annotations

import hashlib
import uuid

import itsdangerous

#: Keeps these signatures apart from every other use of SECRET_KEY (sessions, invitations).
SALT = "reachdbox.unsubscribe"
PATH = "/u/"


class Links:
    """Make and read unsubscribe links (one per process: the worker's messages, the web's page)."""

    def __init__(self, public_url: str, secret_key: str):
        self.public_url = public_url.rstrip("/")
        self._serializer = itsdangerous.URLSafeSerializer(
            secret_key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
        )

    def token(self, email_id: uuid.UUID) -> str:
        """Sign the email's id."""
        return self._serializer.dumps(email_id.hex)

    def url(self, email_id: uuid.UUID) -> str:
        """The link a message carries (``PUBLIC_URL/u/TOKEN``)."""
        return f"{self.public_url}{PATH}{self.token(email_id)}"

    def read(self, token: str) -> uuid.UUID | None:
        """The link's email; None if the token is not one of ours, or was altered."""
        try:
            value = self._serializer.loads(token)
        except itsdangerous.BadData:
            return None
        if not isinstance(value, str):
            return None
        try:
            return uuid.UUID(hex=value)
        except ValueError:
            return None
