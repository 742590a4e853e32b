"""Which endpoint URLs may be called: no loopback, private, link-local, metadata or other
non-public address (unless WEBHOOKS_ALLOW_PRIVATE), HTTPS only (same setting), checked when
an endpoint is saved and again for every connection (a resolver that refuses what it would
connect to), so a name that later resolves to an internal address (DNS rebinding) is not
followed there."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

MAX_URL_LENGTH: Final = 2048


class UnsafeUrl(ValueError):
    """The URL may not be called; the message says why (for a 422 or the delivery log)."""


def check_syntax(url: str, *, allow_private: bool) -> str:
    """The URL's host, if the URL itself is acceptable (before any name is resolved)."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"url is not a valid URL: {exc}") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeUrl("url must use https" if not allow_private else "url must be http(s)")
    if not parts.hostname:
        raise UnsafeUrl("url has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("url must not carry credentials")
    if parts.fragment:
        raise UnsafeUrl("url must not have a fragment")
    if port == 0:
        raise UnsafeUrl("url has port 0")
    return parts.hostname


def is_public(address: str) -> bool:
    """A globally routable unicast address (not loopback, private, link-local, shared,
    reserved, multicast or unspecified; an IPv4-mapped IPv6 address is judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_addresses(host: str, addresses: list[str]) -> None:
    if not addresses:
        raise UnsafeUrl(f"{host} does not resolve")
    for address in addresses:
        if not is_public(address):
            raise UnsafeUrl(
                f"{host} resolves to {address}, a loopback, private, link-local or other"
                " non-public address (set WEBHOOKS_ALLOW_PRIVATE=true to allow it)"
            )


class SafeResolver(AbstractResolver):
    """aiohttp's resolver that refuses a host with any non-public address, used by both the
    check on save and every delivery's connection (so what is checked is what is used)."""

    def __init__(self, *, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            results = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise UnsafeUrl(f"{host} does not resolve: {exc}") from None
        if not self._allow_private:
            check_addresses(host, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()


async def check_url(url: str, resolver: SafeResolver, *, allow_private: bool) -> None:
    """Refuse (UnsafeUrl) a URL that may not be called, resolving its host."""
    host = check_syntax(url, allow_private=allow_private)
    if allow_private:
        return
    try:
        literal: Any = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        check_addresses(host, [str(literal)])
        return
    await resolver.resolve(host, 443, socket.AF_UNSPEC)
