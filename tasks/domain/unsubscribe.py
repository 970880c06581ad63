"""One-click unsubscribe (RFC 8058): the signed link each message of a list carries.

The messages of a batch and of a recurrence (and a one-off email that asks for it),
when they have one recipient, carry ``List-Unsubscribe: <PUBLIC_URL/u/TOKEN>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. ``TOKEN`` names the email and
its recipient, signed with ``SECRET_KEY`` (HMAC-SHA256, itsdangerous): it cannot be
guessed or altered, and it is the only thing the link needs, so a POST to it
suppresses the address at once, without a sign-in (webapp/feedback.py). A link used
again changes nothing more. Without ``PUBLIC_URL`` no message carries the headers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

import itsdangerous

#: Keeps these signatures apart from every other use of SECRET_KEY (sessions, invitations).
SALT = "reachdbox.unsubscribe"
PATH = "/u/"


@dataclasses.dataclass(frozen=True)
class Target:
    """Who a link unsubscribes: the recipient of one email."""

    email_id: uuid.UUID
    address: str


class Links:
    """Make and read unsubscribe links (one per process: the worker's messages, the web's page)."""

    def __init__(self, public_url: str, secret_key: str):
        self.public_url = public_url.rstrip("/")
        self._serializer = itsdangerous.URLSafeSerializer(
            secret_key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
        )

    def token(self, email_id: uuid.UUID, address: str) -> str:
        """Sign the email and its recipient."""
        return self._serializer.dumps([str(email_id), address.lower()])

    def url(self, email_id: uuid.UUID, address: str) -> str:
        """The link a message carries (``PUBLIC_URL/u/TOKEN``)."""
        return f"{self.public_url}{PATH}{self.token(email_id, address)}"

    def read(self, token: str) -> Target | None:
        """The link's email and recipient; None if the token is not one of ours, or was altered."""
        try:
            value = self._serializer.loads(token)
        except itsdangerous.BadData:
            return None
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            return None
        try:
            return Target(email_id=uuid.UUID(value[0]), address=value[1])
        except ValueError:
            return None
