"""Whether a request is addressed to this host, for the servers that run without keys on loopback.

A keyless server (`stepwell dev`, the HTTP API without keys, the unsigned development push endpoint)
listens on loopback only, and that is not enough: a web page whose name is re-pointed at 127.0.0.1
(DNS rebinding) reaches it as a loopback client, and so does everyone behind a reverse proxy on the
same host. Only the Host header tells the first apart (it carries the attacker's name), and a
forwarding header the second. The HTTP API's envelope (`http/envelope.py`) and the push adapters
(`push/adapters.py`) apply the same rule from here; this module imports nothing of ours.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

PROXY_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-real-ip"})


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a Host header without its port (`[::1]:8288` -> `::1`, `localhost:8288` -> `localhost`)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def addressed_locally(host: str, header_names: Iterable[str]) -> bool:
    """Addressed to a loopback name (`host`: the Host header) and not relayed by a proxy
    (`header_names`: the request's header names, lower case)."""
    if any(name in PROXY_HEADERS for name in header_names):
        return False
    return is_loopback(host_name(host))
