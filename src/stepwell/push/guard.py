"""The dispatcher's SSRF guard: which endpoint addresses it may call.

A registered URL comes from whoever holds a token that may register, so the server must not be
turned into a proxy into its own network: link-local (169.254.0.0/16, where cloud metadata lives),
private, shared and unique-local ranges, and the known metadata addresses are refused unless
`allow_private`; loopback only with `allow_loopback` (development); unspecified, multicast and
reserved addresses always. An IPv6 address that carries an IPv4 address (IPv4-mapped or -compatible,
6to4, NAT64, Teredo) is judged by the IPv4 address it carries. The check runs on every address the
name resolves to, and the request then goes to the checked address itself (Host header and TLS
server name kept), so a DNS answer that changes between check and connect (rebinding) cannot slip
through. Redirects are never followed. A checked answer is reused for `RESOLVED_TTL` seconds (an IP
literal for good): the dispatcher does not resolve a name per request, and every address it connects
to is still one that was checked after its resolution.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from stepwell.errors import ConfigurationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: the IPv4 address is the last 32 bits
COMPATIBLE = ipaddress.IPv6Network("::/96")  # IPv4-compatible (deprecated), also the last 32 bits
RESOLVED_TTL = 5.0  # seconds a checked DNS answer is reused
RESOLVED_MAX = 1024  # URLs remembered


class UnsafeEndpoint(ConfigurationError):
    """The push endpoint's address is not allowed (SSRF guard); allow private addresses in the server's
    configuration if the endpoint really lives on the private network."""


@dataclass(frozen=True, slots=True)
class Guard:
    allow_private: bool = False
    allow_loopback: bool = False
    _checked: dict[str, tuple[SplitResult, IPAddress, float]] = field(default_factory=dict, compare=False, repr=False)

    def check_address(self, address: IPAddress, url: str) -> None:
        """UnsafeEndpoint unless `address` may be called. An IPv6 form that carries an IPv4 address
        (`embedded_ipv4`) is judged by what it carries, as that IPv4 address itself would be."""
        if isinstance(address, ipaddress.IPv6Address):
            carried = embedded_ipv4(address)
            for inner in carried:
                self._judge(inner, url, f" (carried by {address})")
            if carried:
                return
        self._judge(address, url, "")

    def _judge(self, address: IPAddress, url: str, carried: str) -> None:
        shown = f"{address}{carried}"
        if address.is_loopback:  # before `is_reserved`: ::1 lies in a reserved IPv6 block
            if not self.allow_loopback:
                raise UnsafeEndpoint(f"endpoint {url}: loopback address {shown} is allowed in development only")
            return
        if address.is_unspecified or address.is_multicast or address.is_reserved:
            raise UnsafeEndpoint(f"endpoint {url}: address {shown} can never be called")
        restricted = address in METADATA or address.is_link_local or address.is_private or not address.is_global
        if restricted and not self.allow_private:
            kind = "metadata" if address in METADATA else "link-local" if address.is_link_local else "private"
            raise UnsafeEndpoint(f"endpoint {url}: {kind} address {shown} refused (configure allow_private to call it)")

    async def resolve(self, url: str) -> tuple[SplitResult, IPAddress]:
        """Check the URL's form and every address its host resolves to; returns the address to connect to."""
        now = time.monotonic()
        checked = self._checked.get(url)
        if checked is not None and checked[2] > now:
            return checked[0], checked[1]
        parts, address, literal = await self._resolve(url)
        if len(self._checked) >= RESOLVED_MAX:
            self._checked.clear()
        self._checked[url] = (parts, address, float("inf") if literal else now + RESOLVED_TTL)
        return parts, address

    async def _resolve(self, url: str) -> tuple[SplitResult, IPAddress, bool]:
        parts = check_url(url)
        host = parts.hostname
        assert host is not None
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self.check_address(literal, url)
            return parts, literal, True
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise UnsafeEndpoint(f"endpoint {url}: {host!r} does not resolve ({error})") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise UnsafeEndpoint(f"endpoint {url}: {host!r} has no address")
        for address in addresses:
            self.check_address(address, url)
        return parts, addresses[0], False


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries, which a router or relay turns it into: IPv4-mapped
    (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated; not `::` or `::1`), 6to4
    (2002::/16), NAT64 (64:ff9b::/96, RFC 6052) and Teredo (2001::/32: its client and its server).
    Without this, `2002:a00:1::` would pass as a global address while it reaches 10.0.0.1."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        server, client = address.teredo
        return (client, server)
    if address in NAT64 or (address in COMPATIBLE and int(address) > 1):
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    return ()


def check_url(url: str) -> SplitResult:
    """An absolute http(s) URL with a host and no credentials; UnsafeEndpoint naming what is wrong."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as error:
        raise UnsafeEndpoint(f"endpoint {url!r}: not a URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeEndpoint(f"endpoint {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise UnsafeEndpoint(f"endpoint {url!r}: no host")
    if parts.username or parts.password:
        raise UnsafeEndpoint(f"endpoint {url!r}: credentials in the URL are not allowed; use a signing key")
    return parts


def pinned_url(parts: SplitResult, address: IPAddress) -> str:
    """The URL with its host replaced by the checked address (the Host header carries the name)."""
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()
