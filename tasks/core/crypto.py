"""Secrets at rest: what the database stores of a credential is a Fernet token, never the text.

``SECRET_KEYS`` holds one or more Fernet keys (``cryptography``'s MultiFernet):
the first encrypts, every one decrypts. Rotating a key is three steps: put the
new key first (the old one stays after it), restart, then ``python -m tasks keys
rotate`` re-encrypts every stored secret with the first key; the old key can then
be removed. Outside production an empty ``SECRET_KEYS`` means a fixed development
key (anyone can read what it encrypted); in production it means no secret can be
stored or read (``KeysMissing``).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tasks.core import errors
from tasks.core.config import Settings

#: The development key (only outside production, when SECRET_KEYS is empty): derived from a
#: public constant, so it protects nothing; it only keeps the code path the same as production's.
_DEV_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"reach-d-box development key").digest())


class KeysMissing(errors.ConfigError):
    """SECRET_KEYS is empty in production: secrets can be neither stored nor read."""

    def __init__(self) -> None:
        super().__init__("SECRET_KEYS", "must be set in production to store or read provider credentials")


class Undecryptable(errors.ReachError):
    """A stored secret was encrypted with a key that SECRET_KEYS no longer holds."""

    code = "undecryptable"


class Box:
    """Encrypt and decrypt short secrets with the keys of ``SECRET_KEYS``."""

    def __init__(self, settings: Settings):
        keys = settings.secret_keys
        if not keys and settings.app_env != "production":
            keys = (_DEV_KEY.decode("ascii"),)
        self._fernet = MultiFernet([Fernet(k.encode("ascii")) for k in keys]) if keys else None

    def _keys(self) -> MultiFernet:
        if self._fernet is None:
            raise KeysMissing()
        return self._fernet

    def encrypt(self, secret: str) -> bytes:
        """Return the token to store for ``secret`` (encrypted with the first key)."""
        return self._keys().encrypt(secret.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        """Return the secret of a stored token; ``Undecryptable`` if no key opens it."""
        try:
            return self._keys().decrypt(bytes(token)).decode("utf-8")
        except InvalidToken:
            raise Undecryptable(
                "a stored secret cannot be decrypted with any key of SECRET_KEYS (was a key removed too early?)"
            ) from None

    def rotate(self, token: bytes) -> bytes:
        """Return ``token`` re-encrypted with the first key (``Undecryptable`` if no key opens it)."""
        try:
            return self._keys().rotate(bytes(token))
        except InvalidToken:
            raise Undecryptable(
                "a stored secret cannot be decrypted with any key of SECRET_KEYS (was a key removed too early?)"
            ) from None
