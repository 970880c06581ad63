"""Where a webhook may go: the URL's form when it is saved, the address when it is sent.

An endpoint's URL is ``https://`` (``http://`` only with WEBHOOK_ALLOW_HTTP). At
delivery time its host is resolved once, by a resolver that can be injected (the
tests resolve names themselves, so nothing leaves 127.0.0.0/8); every address it
gives must be public (not private, loopback, link-local, multicast or reserved)
unless WEBHOOK_ALLOW_PRIVATE; and the connection is made to the very address that
was checked, with the name kept for the Host header, SNI and the certificate's
check (``PinnedTransport``): a second lookup that answers differently (DNS
rebinding) is never made. A refusal raises ``Refused`` before any connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable

import httpx

from tasks.core import errors
from tasks.core.config import Settings

#: Resolve ``(host, port)`` to IP addresses, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL = 2000


class Refused(Exception):
    """The endpoint's address may not be connected to (said before any connection)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the system's resolver (getaddrinfo), every address it gives."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def not_public(text: str) -> str | None:
    """Why an address may not be connected to (None: it is a public one)."""
    address = _ip(text)
    if address is None:
        return "not an IP address"
    for what, test in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
    ):
        if test:
            return what
    return None if address.is_global else "not a public address"


def check_url(raw: object, settings: Settings) -> str:
    """Return an endpoint's URL as stored, or raise ``ValidationError`` (field ``url``)."""
    if not isinstance(raw, str) or not raw.strip():
        raise errors.ValidationError("url: required", field="url")
    url = raw.strip()
    if len(url) > MAX_URL:
        raise errors.ValidationError(f"url: at most {MAX_URL} characters", field="url")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise errors.ValidationError("url: not a valid URL", field="url") from None
    allowed = ("https", "http") if settings.webhook_allow_http else ("https",)
    if parts.scheme not in allowed:
        raise errors.ValidationError("url: must start with " + " or ".join(f"{s}://" for s in allowed), field="url")
    if not parts.hostname:
        raise errors.ValidationError("url: has no host", field="url")
    if parts.username is not None or parts.password is not None:
        raise errors.ValidationError("url: must not hold a user name or password", field="url")
    if port == 0:
        raise errors.ValidationError("url: port 0 is not a port", field="url")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise errors.ValidationError("url: must not contain spaces or control characters", field="url")
    host = parts.hostname
    literal = _ip(host)
    if literal is not None and not settings.webhook_allow_private and (why := not_public(host)):
        raise errors.ValidationError(f"url: {host} is a {why} address", field="url")
    name = host.rstrip(".").lower()
    if literal is None and not settings.webhook_allow_private and (name == "localhost" or name.endswith(".localhost")):
        raise errors.ValidationError("url: localhost is not reachable from the outside", field="url")
    return url


async def pick_address(host: str, port: int, *, resolver: Resolver, allow_private: bool) -> str:
    """The address to connect to for ``host``: checked here, used as is (``Refused`` otherwise)."""
    if _ip(host) is not None:
        addresses = [host.strip("[]")]
    else:
        try:
            addresses = await resolver(host, port)
        except OSError as exc:
            raise Refused(f"{host} does not resolve: {exc}") from None
    if not addresses:
        raise Refused(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            if why := not_public(address):
                raise Refused(f"{host} resolves to a {why} address ({address})")
    return addresses[0]


class PinnedTransport(httpx.AsyncBaseTransport):
    """Connect to the address checked for the request's host, not to a second lookup's."""

    def __init__(self, *, resolver: Resolver, allow_private: bool, inner: httpx.AsyncBaseTransport) -> None:
        self._resolver = resolver
        self._allow_private = allow_private
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = await pick_address(host, port, resolver=self._resolver, allow_private=self._allow_private)
        if address != host:
            # The Host header was set from the name when the request was built; the TLS
            # handshake names it too (SNI, and the certificate is checked against it).
            request.url = request.url.copy_with(host=address)
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
