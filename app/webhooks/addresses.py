"""Which webhook URLs are accepted, and which addresses a delivery may connect to.

At registration a URL must be ``http`` or ``https``, name a host, carry no credentials and be
at most ``MAX_URL_CHARS`` long; an address written in it (``http://10.0.0.5/``, ``localhost``)
is refused at once unless private addresses are allowed. The check that matters is made by the
worker on every attempt, on the addresses the host resolves to then (a name can change what it
points at): :func:`refused`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from app.errors import InvalidInput

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def refused(address: IPAddress) -> bool:
    """True for loopback, private, link-local, shared (CGNAT), reserved, multicast and every
    other address that is not on the public internet (IPv4-mapped IPv6 included)."""
    return not address.is_global or address.is_multicast


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _invalid(message: str, url: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_url", details={"field": "url", "url": url[:200]})


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` when it may be registered; 422 ``invalid_url`` (or ``address_not_allowed``)
    naming the problem otherwise."""
    if len(url) > MAX_URL_CHARS:
        raise _invalid(f"url: at most {MAX_URL_CHARS} characters.", url)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise _invalid("url: must not contain spaces or control characters.", url)
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid("url: not a valid URL (check the host and the port).", url) from exc
    if parts.scheme.lower() not in SCHEMES:
        raise _invalid("url: must start with http:// or https://.", url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _invalid(
            "url: must not contain credentials (user:password@); authenticate deliveries "
            "with their signature instead.",
            url,
        )
    host = parts.hostname or ""
    if not host:
        raise _invalid("url: must name a host, as in https://example.com/hooks.", url)
    if port == 0:
        raise _invalid("url: port 0 is not a port.", url)
    if parts.fragment:
        raise _invalid("url: must not have a #fragment (it is never sent).", url)
    address = literal_address(host)
    local = host.rstrip(".").lower() in _LOCAL_NAMES
    if not allow_private and (local or (address is not None and refused(address))):
        raise InvalidInput(
            f"url: {host} is not a public address; deliveries to loopback, private and "
            "link-local addresses are refused (TUNESERVE_WEBHOOK_ALLOW_PRIVATE allows them).",
            code="address_not_allowed",
            details={"field": "url", "host": host[:200]},
        )
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise _invalid("url: the host name is not valid.", url) from exc
    return url
