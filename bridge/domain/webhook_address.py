"""Where a webhook may be sent (SSRF): never to a link-local address (169.254.0.0/16, fe80::/10: the cloud
metadata services live there, with the instance's credentials), a cloud metadata address or name, an
unspecified or multicast one — whether written in the URL (refused at config load) or what its name
resolves to when a notification is sent (checked every time: DNS rebinding). Plain http only to loopback.
Pure functions (the standard library's ipaddress, and socket.inet_aton to read an address the way the resolver
does), no I/O.
"""

from __future__ import annotations

import ipaddress
import re
import socket

LOOPBACK_NAMES = ("localhost",)
METADATA_NAMES = ("metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                  "instance-data.ec2.internal", "metadata.azure.com")
# EC2's IMDS over IPv6, the EKS Pod Identity agent's (credentials; its IPv4 169.254.170.23 is link-local), Alibaba's.
METADATA_IPS = (ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("fd00:ec2::23"),
                ipaddress.ip_address("100.100.100.200"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What C's inet_aton (so getaddrinfo, so the resolver at delivery) also reads as an IPv4 address: 1 to 4
# parts, each decimal, octal (0…) or hex (0x…) — ``2852039166`` and ``0251.0376.0251.0376`` are 169.254.169.254.
_LOOSE_IPV4 = re.compile(r"(?i)(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.split("%", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LOOSE_IPV4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))  # parses only: no lookup
        except OSError:
            return None
    return None


def _embedded(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """``a`` and the IPv4 addresses it carries (mapped, 6to4, Teredo, NAT64): each reaches that IPv4 host."""
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [a]
    if isinstance(a, ipaddress.IPv6Address):
        out += [x for x in (a.ipv4_mapped, a.sixtofour, *(a.teredo or ())) if x is not None]
        if a in NAT64:
            out.append(ipaddress.IPv4Address(int(a) & 0xFFFFFFFF))
    return out


def blocked_ip(text: str) -> str | None:
    """Why a webhook must not be sent to the address ``text`` (None: it may)."""
    a = _ip(text)
    if a is None:
        return "not an IP address"
    for x in _embedded(a):
        if x.is_link_local:
            return "a link-local address (where cloud metadata services answer)"
        if x in METADATA_IPS:
            return "a cloud metadata address"
        if x.is_unspecified or x.is_multicast:
            return "an unspecified or multicast address"
    return None


def blocked_host(host: str) -> str | None:
    """Why a webhook URL naming ``host`` is refused at config load (literal addresses, metadata names)."""
    name = host.lower().rstrip(".")
    if name in METADATA_NAMES:
        return "a cloud metadata service's name"
    return blocked_ip(name) if _ip(name) is not None else None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    a = _ip(host)
    return a is not None and any(x.is_loopback for x in _embedded(a))
