"""Which endpoint URLs may be called, on save and at every connection."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from webhooks.urls import SafeResolver, UnsafeUrl, check_syntax, check_url, is_public


class FixedResolver(AbstractResolver):
    """Resolves every name to the given addresses (a DNS answer we choose)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(address)


def test_public_addresses_are_allowed() -> None:
    assert is_public("93.184.216.34")
    assert is_public("2606:2800:220:1:248:1893:25c8:1946")


def test_https_is_required_unless_private_is_allowed() -> None:
    with pytest.raises(UnsafeUrl, match="https"):
        check_syntax("http://example.com/hook", allow_private=False)
    assert check_syntax("http://example.com/hook", allow_private=True) == "example.com"
    for bad in ("ftp://example.com", "https://", "https://u:p@example.com/", "x" * 3000):
        with pytest.raises(UnsafeUrl):
            check_syntax(bad, allow_private=False)


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = SafeResolver(allow_private=False, inner=FixedResolver("93.184.216.34", "10.0.0.5"))
    with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.5"):
        await check_url("https://hooks.example.com/x", resolver, allow_private=False)
    with pytest.raises(UnsafeUrl, match=r"127\.0\.0\.1"):
        await check_url("https://127.0.0.1/x", resolver, allow_private=False)


async def test_the_connection_resolver_refuses_a_rebound_name() -> None:
    answer = FixedResolver("93.184.216.34")
    resolver = SafeResolver(allow_private=False, inner=answer)
    await check_url("https://hooks.example.com/x", resolver, allow_private=False)
    answer.addresses = ["169.254.169.254"]  # the name now points at the metadata service
    with pytest.raises(UnsafeUrl):
        await resolver.resolve("hooks.example.com", 443)


async def test_private_addresses_are_allowed_when_configured() -> None:
    resolver = SafeResolver(allow_private=True, inner=FixedResolver("127.0.0.1"))
    await check_url("http://localhost:9000/x", resolver, allow_private=True)
    assert (await resolver.resolve("localhost", 9000))[0]["host"] == "127.0.0.1"
