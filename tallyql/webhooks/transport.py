"""An httpx transport that connects only to checked addresses (tallyql/webhooks/addresses.py).

The host is resolved for every request (a redirect would be a new request; the dispatcher
follows none), every address is checked, and the connection is made to the checked address
itself: the URL's host is replaced by it while the Host header and TLS server name (SNI, and
so certificate verification) keep the original name. Resolving once and connecting by name
would leave a window in which a name could change from a public to an internal address (DNS
rebinding).
"""

from __future__ import annotations

import asyncio
import socket

import httpx

from tallyql.webhooks.addresses import AddressRefused, IPAddress, check_addresses, parse_ip


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address of `host` (TCP), in the resolver's order."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise AddressRefused(f"{host} could not be resolved") from exc
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = parse_ip(str(sockaddr[0]))
        if address is not None and address not in found:
            found.append(address)
    return found


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends each request to an address of its host that `check_addresses` allowed."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpx.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = check_addresses(host, await resolve(host, port), self._allow_private)
        # the Host header was set from the original URL when the request was built
        request.url = request.url.copy_with(host=str(address))
        if request.url.scheme == "https" and parse_ip(host) is None:
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
