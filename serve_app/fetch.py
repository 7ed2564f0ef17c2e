"""Documents named by URL: http(s) only, bounded in size and time, and never an internal address.

The SSRF guard resolves the host and refuses loopback, private, link-local (cloud metadata at
169.254.169.254), multicast, reserved and unspecified addresses unless the config's allowlist names
the host or a network holding the address. Redirects are followed by hand, each hop checked again.
Each hop connects to the address that was checked (the name is resolved once; the request carries
it as ``Host`` and as TLS's SNI and certificate name), so a DNS answer that changes between the
check and the connection (rebinding) cannot send the request inside. Fetches go out directly:
proxy settings in the environment are not used (a proxy would connect where it resolves).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urljoin, urlparse

import httpx

from .errors import BadRequest, PayloadTooLarge, UnfetchableUrl, UrlNotAllowed

MAX_REDIRECTS = 3
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address reached through a NAT64 gateway


def internal(address: Address) -> bool:
    """Anything but a public unicast address: loopback, private, link-local (cloud metadata),
    shared (100.64/10: Alibaba's metadata), site-local, reserved, multicast, unspecified."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return internal(address.ipv4_mapped)
        if address in NAT64:
            return internal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.is_site_local:
            return True
    return not address.is_global or address.is_multicast or address.is_private or address.is_loopback


def allowed(host: str, address: Address, allowlist: Sequence[str]) -> bool:
    for entry in allowlist:
        if entry == host:
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name, not a network
    return False


async def resolve(host: str, port: int) -> list[Address]:
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnfetchableUrl(f"cannot resolve {host!r}: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def ascii_host(host: str) -> str:
    """``host`` as DNS and a ``Host`` header want it (IDNA: ``пример.рф`` -> ``xn--e1afmkfd.xn--p1ai``)."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise BadRequest(f"not a valid host name: {host[:200]!r}") from None


async def check_url(url: str, allowlist: Sequence[str]) -> Address:
    """The address to connect to for ``url``: every address its host resolves to is checked."""
    try:
        parsed = urlparse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as exc:  # a broken IPv6 literal, a port that is not one
        raise BadRequest(f"not a valid URL ({exc}): {url[:200]!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadRequest(f"only http(s) URLs with a host can be fetched, not {url[:200]!r}")
    addresses = await resolve(ascii_host(parsed.hostname), port)
    for address in addresses:
        if internal(address) and not allowed(parsed.hostname, address, allowlist):
            raise UrlNotAllowed(
                f"{parsed.hostname} resolves to {address}, an internal address; "
                "fetching it would reach inside the network (allow it in limits.url_allowlist)"
            )
    if not addresses:
        raise UnfetchableUrl(f"{parsed.hostname!r} resolves to no address")
    return addresses[0]


def pinned(url: str, address: Address) -> tuple[str, dict[str, str], dict[str, str]]:
    """``url`` with its host replaced by ``address``, and the headers and extensions that keep the
    request what it was for the server (``Host``) and for TLS (SNI and the certificate's name)."""
    parsed = urlparse(url)
    name = ascii_host(parsed.hostname or "")  # a Host header is ASCII
    name = f"[{name}]" if ":" in name else name
    host = str(address) if address.version == 4 else f"[{address}]"
    userinfo = parsed.netloc.rpartition("@")[0]  # basic auth, kept in the URL, never in Host
    port = "" if parsed.port is None else f":{parsed.port}"
    netloc = f"{userinfo}@{host}{port}" if userinfo else f"{host}{port}"
    extensions = {"sni_hostname": name.strip("[]")} if parsed.scheme == "https" else {}
    return parsed._replace(netloc=netloc).geturl(), {"Host": name + port}, extensions


async def fetch(url: str, limit_bytes: int, timeout_s: float, allowlist: Sequence[str]) -> bytes:
    """The document's bytes; refused before the first byte past ``limit_bytes``."""
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(MAX_REDIRECTS + 1):
                target, headers, extensions = pinned(url, await check_url(url, allowlist))
                # A client per hop: a pooled connection is named by the address, and another host
                # there must not get the first one's TLS session. No proxy from the environment:
                # through one, the connection would go where the proxy resolves, not where we checked.
                async with (
                    httpx.AsyncClient(follow_redirects=False, trust_env=False) as client,
                    client.stream("GET", target, headers=headers, extensions=extensions) as response,
                ):
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise UnfetchableUrl(f"GET {url[:200]} answered {response.status_code}")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > limit_bytes:
                        raise PayloadTooLarge(f"the document is {declared} bytes; the limit is {limit_bytes}")
                    data = bytearray()
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > limit_bytes:
                            raise PayloadTooLarge(f"the document is over the limit of {limit_bytes} bytes")
                    return bytes(data)
            raise UnfetchableUrl(f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise UnfetchableUrl(f"fetching the document took longer than {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise UnfetchableUrl(f"GET {url[:200]} failed: {exc!r}") from None
