"""The dispatcher's SSRF guard and circuit breaker, decided without a network."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from stepwell.push.breaker import Breaker
from stepwell.push.guard import Guard, UnsafeEndpoint, check_url, pinned_url

PRODUCTION = Guard()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.10.1/", "link-local"),
        ("http://10.1.2.3/push", "private"),
        ("http://192.168.0.10/push", "private"),
        ("http://172.16.5.5/push", "private"),
        ("http://100.64.0.1/push", "private"),  # shared address space (carrier-grade NAT)
        ("http://127.0.0.1:8000/push", "loopback"),
        ("http://[::1]/push", "loopback"),
        ("http://[::ffff:10.0.0.1]/push", "private"),  # an IPv4-mapped address is judged as IPv4
        ("http://0.0.0.0/", "can never be called"),
        ("http://224.0.0.1/", "can never be called"),
        ("ftp://example.com/", "scheme"),
        ("http://user:pw@example.com/", "credentials"),
        ("/relative", "scheme"),
    ],
)
def test_refused_addresses(url: str, reason: str) -> None:
    with pytest.raises(UnsafeEndpoint, match=reason):
        asyncio.run(PRODUCTION.resolve(url))


def test_a_name_is_checked_after_resolution() -> None:
    with pytest.raises(UnsafeEndpoint, match="loopback"):
        asyncio.run(PRODUCTION.resolve("http://localhost:9/push"))  # resolves to 127.0.0.1 / ::1


def test_a_checked_answer_is_reused_for_a_while_and_a_refusal_is_never_remembered() -> None:
    lenient = Guard(allow_loopback=True)
    url = "http://localhost:9/push"
    first = asyncio.run(lenient.resolve(url))
    assert first[1].is_loopback and asyncio.run(lenient.resolve(url)) == first  # checked after its resolution
    parts, address, until = lenient._checked[url]
    assert (parts, address) == first and until < float("inf")  # a name is resolved again after RESOLVED_TTL
    for _ in range(2):
        with pytest.raises(UnsafeEndpoint, match="loopback"):
            asyncio.run(PRODUCTION.resolve(url))
    assert not PRODUCTION._checked


def test_configuration_allows_private_and_loopback_but_never_unspecified() -> None:
    lenient = Guard(allow_private=True, allow_loopback=True)
    for url in ("http://10.1.2.3/", "http://169.254.169.254/", "http://127.0.0.1:1/"):
        asyncio.run(lenient.resolve(url))
    with pytest.raises(UnsafeEndpoint):
        asyncio.run(lenient.resolve("http://0.0.0.0/"))


def test_a_public_address_passes_and_the_request_goes_to_the_checked_address() -> None:
    parts, address = asyncio.run(PRODUCTION.resolve("https://93.184.216.34:8443/api/stepwell/"))
    assert str(address) == "93.184.216.34"
    assert pinned_url(check_url("https://shop.example:8443/a?b=1"), address) == "https://93.184.216.34:8443/a?b=1"
    assert (
        pinned_url(check_url("http://shop.example/a"), ipaddress.ip_address("2001:db8::1")) == "http://[2001:db8::1]/a"
    )
    assert parts.hostname == "93.184.216.34"


def test_the_breaker_opens_after_the_threshold_probes_once_and_closes_on_success() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    breaker = Breaker(threshold=3, cooldown=timedelta(seconds=10))
    url = "http://shop/api"
    assert breaker.failed(url, now) is None and breaker.failed(url, now) is None
    assert breaker.failed(url, now) == now + timedelta(seconds=10)
    assert not breaker.allows(url, now + timedelta(seconds=9))
    later = now + timedelta(seconds=10)
    assert breaker.allows(url, later)
    breaker.started(url, later)  # the one probe
    assert not breaker.allows(url, later)
    assert breaker.failed(url, later) == later + timedelta(seconds=20)  # a failed probe doubles the cooldown
    again = later + timedelta(seconds=20)
    breaker.started(url, again)
    assert breaker.succeeded(url) is True
    assert breaker.allows(url, again) and breaker.open_until(url) is None


def _ipv6_forms(ipv4: str) -> dict[str, str]:
    """`ipv4` carried by each IPv6 form that embeds an IPv4 address (Teredo: as its client, behind a public server)."""
    value = int(ipaddress.IPv4Address(ipv4))
    teredo_server = int(ipaddress.IPv4Address("65.54.227.120"))
    return {
        "6to4": str(ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)),
        "nat64": str(ipaddress.IPv6Address((0x64FF9B << 96) | value)),
        "mapped": str(ipaddress.IPv6Address((0xFFFF << 32) | value)),
        "compatible": str(ipaddress.IPv6Address(value)),
        "teredo": str(ipaddress.IPv6Address((0x20010000 << 96) | (teredo_server << 64) | (value ^ 0xFFFFFFFF))),
    }


@pytest.mark.parametrize("form", ["6to4", "nat64", "mapped", "compatible", "teredo"])
@pytest.mark.parametrize(
    ("ipv4", "reason"),
    [("10.1.2.3", "private"), ("127.0.0.1", "loopback"), ("169.254.10.1", "link-local"),
     ("169.254.169.254", "metadata"), ("100.64.0.1", "private")],
)  # fmt: skip
def test_an_ipv6_form_that_carries_an_ipv4_address_is_judged_by_it(form: str, ipv4: str, reason: str) -> None:
    address = _ipv6_forms(ipv4)[form]
    with pytest.raises(UnsafeEndpoint, match=rf"{reason} address {ipv4} \(carried by {address}\)"):
        asyncio.run(PRODUCTION.resolve(f"http://[{address}]/push"))
    if reason == "loopback":  # allowing private addresses does not allow loopback
        with pytest.raises(UnsafeEndpoint, match="loopback"):
            asyncio.run(Guard(allow_private=True).resolve(f"http://[{address}]/push"))


@pytest.mark.parametrize("form", ["6to4", "nat64", "mapped", "compatible", "teredo"])
def test_an_ipv6_form_that_carries_a_public_ipv4_address_passes(form: str) -> None:
    address = _ipv6_forms("8.8.8.8")[form]
    _, checked = asyncio.run(Guard().resolve(f"http://[{address}]/push"))
    assert str(checked) == address


def test_a_teredo_address_with_a_private_server_is_refused() -> None:
    server, client = int(ipaddress.IPv4Address("10.0.0.1")), int(ipaddress.IPv4Address("8.8.8.8"))
    address = ipaddress.IPv6Address((0x20010000 << 96) | (server << 64) | (client ^ 0xFFFFFFFF))
    with pytest.raises(UnsafeEndpoint, match=r"private address 10\.0\.0\.1 \(carried by"):
        asyncio.run(PRODUCTION.resolve(f"http://[{address}]/push"))
