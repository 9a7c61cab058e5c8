"""Which addresses a webhook may reach: public unicast ones only (server-side request forgery).

A webhook URL is chosen by a workspace member, and the server sends requests to it from inside
the operator's network. Without a check, a member could point one at the server's own
loopback, the cloud metadata service (169.254.169.254), a private network or a multicast
group. So every address a delivery would connect to must be a public unicast address: not
loopback, private, shared (carrier-grade NAT), link-local, multicast, unspecified, reserved or
documentation space, for IPv4 and IPv6 alike, and IPv6 forms that embed an IPv4 address
(IPv4-mapped, NAT64, 6to4, Teredo) are judged by that IPv4 address.
`TALLYQL_WEBHOOK_ALLOW_PRIVATE` lifts the rule (a receiver on the operator's own network).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from tallyql.field_error import FieldError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2000
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


class WebhookError(FieldError):
    """A webhook the caller described wrongly; most mistakes are in its url."""

    def __init__(self, message: str, field: str = "url") -> None:
        super().__init__(field, message)


class AddressRefused(Exception):
    """A delivery would connect to an address that webhooks may not reach."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    return None


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_unspecified
    )


def parse_ip(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal (IPv6 with or without brackets), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_url(url: str, allow_private: bool) -> str:
    """The URL, stripped, when a webhook may use it; WebhookError with the reason otherwise.

    Names are resolved only when a delivery is sent (they may change), so here only a literal
    address or a name for this host itself can be refused."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(f"url must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        raise WebhookError("url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("url must be an absolute http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("url must not contain credentials (user:password@)")
    if not allow_private:
        host = parts.hostname.rstrip(".").lower()
        address = parse_ip(host)
        if address is not None and not is_public(address):
            raise WebhookError("url must not point at a loopback, private or reserved address")
        if host in _LOCAL_NAMES or host.endswith(".localhost"):
            raise WebhookError("url must not point at this host")
    return url


def check_addresses(host: str, addresses: list[IPAddress], allow_private: bool) -> IPAddress:
    """The address to connect to: the first, once every address of the name is allowed (a
    name with one forbidden address is refused whole, so no retry can fall back to it)."""
    if not addresses:
        raise AddressRefused(f"{host} has no address")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise AddressRefused(f"{host} resolves to a non-public address")
    return addresses[0]
