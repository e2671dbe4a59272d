"""SSRF guard for outgoing webhooks: refuse loopback, private and other special
addresses after DNS resolution (F-77), unless private URLs are allowed.

No Django here: the caller passes `allow_private` (the `ALLOW_PRIVATE_URLS` setting).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[..., list[Any]]


class UnsafeURL(ValueError):
    """The URL may not be called: the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _forbidden(ip.ipv4_mapped)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def url_parts(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; UnsafeURL for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("Only http and https URLs can be called.")
    host = parts.hostname
    if not host:
        raise UnsafeURL("The URL has no host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL("The URL's port is not a number from 0 to 65535.") from exc
    return parts.scheme, host, port


def resolve_target(
    url: str, *, allow_private: bool, resolver: Resolver | None = None
) -> Target:
    """Parse and resolve `url`; raise UnsafeURL if it is not a public http(s) address.

    Every address the name resolves to must be public (one private answer is enough
    to refuse: a resolver could hand either out).
    """
    scheme, host, port = url_parts(url)
    try:
        infos = (resolver or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"The host {host} does not resolve ({exc}).") from exc
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeURL(f"The host {host} does not resolve.")
    if not allow_private:
        for address in addresses:
            if _forbidden(ipaddress.ip_address(address)):
                raise UnsafeURL(
                    f"{host} resolves to {address}, a private, loopback or reserved "
                    "address; outgoing calls go to public addresses only "
                    "(ALLOW_PRIVATE_URLS is off)."
                )
    return Target(scheme, host, port, tuple(addresses))
