"""Which hosts a callback may go to: an SSRF policy, pure (no DNS here; the caller resolves).

A caller of a sync flow names the URL its result is POSTed to, so without a check any caller could make our
workers POST into our own network: the metadata service (169.254.169.254), loopback admin ports, private
services. Refused, unless the deployment allows the network explicitly:

* loopback, link-local, private (RFC 1918, ULA fc00::/7, shared 100.64.0.0/10), multicast, reserved,
  unspecified (``0.0.0.0``, ``::``) and anything else not globally routable;
* the same addresses wrapped in IPv6: IPv4-mapped (``::ffff:127.0.0.1``), NAT64 (``64:ff9b::/96``), 6to4
  and Teredo, since they reach the IPv4 address inside;
* IPv4 written any way but the canonical dotted quad: ``0x7f000001``, ``2130706433``, ``0177.0.0.1``,
  ``127.1``. Resolvers (``inet_aton``) and browsers read all of these as 127.0.0.1, so a check that only
  parses dotted quads would let them through; refusing them costs no real user anything;
* hosts that are not ASCII: IDNA mapping turns e.g. full-width digits into an IPv4 address after our check.

The allow-list (:data:`ALLOWED_NETWORKS_ENV`, e.g. ``"127.0.0.1/32,10.0.0.0/8"``) is for deployments whose
callers really are on the private network (and for tests with a local receiver).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Sequence

ALLOWED_NETWORKS_ENV = "B2B_CALLBACK_ALLOWED_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# Used with fullmatch: "$" would also match before a trailing newline. ASCII classes, not \d (Unicode).
_CANONICAL_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
# WHATWG URL's "ends in a number": a host whose last label is all digits or 0x-hex is read as IPv4.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")

log = logging.getLogger(__name__)


class AddressRefused(ValueError):
    """We may not connect to this host or address; the message says why (the host only, never a URL)."""


def parse_networks(text: str | None) -> tuple[IPNetwork, ...]:
    """The allow-list, from comma-separated CIDRs; an unreadable entry is skipped with a warning (so a typo
    allows less, never more)."""
    networks: list[IPNetwork] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            log.warning("%s: %r is not a network (like 10.0.0.0/8); ignored", ALLOWED_NETWORKS_ENV, item)
    return tuple(networks)


def allowed_networks() -> tuple[IPNetwork, ...]:
    """The deployment's allow-list, from :data:`ALLOWED_NETWORKS_ENV` (empty when unset)."""
    return parse_networks(os.environ.get(ALLOWED_NETWORKS_ENV))


def literal_address(host: str) -> IPAddress | None:
    """The IP address ``host`` (as in a URL, IPv6 without brackets) is, or None for a name.

    :raises AddressRefused: for a host that is not ASCII, not a valid name, or IPv4 in a non-canonical form.
    """
    if not host or not host.isascii():
        raise AddressRefused("the host must be an ASCII name or IP address (punycode for other names)")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressRefused("the host is not a valid IPv6 address") from None
    bare = host[:-1] if host.endswith(".") else host
    if _NUMERIC_LABEL.fullmatch(bare.rsplit(".", 1)[-1]):
        if not _CANONICAL_IPV4.fullmatch(bare):
            raise AddressRefused("the host is IPv4 in a non-canonical form (write it as a dotted quad)")
        return ipaddress.IPv4Address(bare)
    if not _HOST_NAME.fullmatch(bare) or ".." in bare:
        raise AddressRefused("the host is not a valid host name")
    return None


def refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not be called (e.g. ``"loopback"``), or None when it may."""
    for candidate in _reaches(address):
        if any(candidate.version == net.version and candidate in net for net in allowed):
            continue
        why = _kind(candidate)
        if why is not None:
            return why
    return None


def check_address(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> None:
    """:raises AddressRefused: naming the kind of address, when :func:`refusal` has a reason."""
    why = refusal(address, allowed)
    if why is not None:
        raise AddressRefused(f"the host is {_a(why)} address, which callbacks may not go to")


def check_host(host: str, allowed: Sequence[IPNetwork] = ()) -> IPAddress | None:
    """Check a URL's host before any DNS: an IP literal must be allowed; a name passes (its addresses are
    checked when it is resolved). Returns the literal address, or None for a name."""
    address = literal_address(host)
    if address is not None:
        check_address(address, allowed)
    return address


def check_resolved(host: str, addresses: Iterable[str], allowed: Sequence[IPNetwork] = ()) -> IPAddress:
    """The address to connect to, from every address ``host`` resolved to: all must be allowed (a name
    resolving to a public and a private address is as dangerous as the private one).

    :raises AddressRefused: naming the host and the kind of address.
    """
    checked: list[IPAddress] = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        why = refusal(address, allowed)
        if why is not None:
            raise AddressRefused(f"{host} resolves to {_a(why)} address, which callbacks may not go to")
        checked.append(address)
    if not checked:
        raise AddressRefused(f"{host} resolves to no address")
    return checked[0]


def _reaches(address: IPAddress) -> list[IPAddress]:
    """What to judge: an IPv4-mapped or NAT64 address is its IPv4 address (where packets really go); 6to4
    and Teredo are judged as themselves and by the IPv4 addresses they carry."""
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    found: list[IPAddress] = [address]
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _kind(address: IPAddress) -> str | None:
    # Most specific first, so the reason tells the operator what the address is.
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED):
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-global"
    return None


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
