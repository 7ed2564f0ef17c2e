"""Documents by URL: the SSRF guard and the bounded fetch, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serve_app.errors import PayloadTooLarge, UnfetchableUrl, UrlNotAllowed
from serve_app.fetch import allowed, check_url, fetch, internal

BODY = b"%PDF-1.4 not really" * 100


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/doc.pdf":
            self.send_response(200)
            self.send_header("content-length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/host":  # what the server was asked for
            host = self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("content-length", str(len(host)))
            self.end_headers()
            self.wfile.write(host)
        elif self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif self.path == "/hop":
            self.send_response(301)
            self.send_header("location", "/doc.pdf")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1",
           "fd00::1", "::ffff:10.0.0.1", "224.0.0.1", "100.100.100.200", "fec0::1", "64:ff9b::a00:1",
           "192.0.2.7"],
)  # fmt: skip
def test_internal_addresses_are_recognised(ip: str) -> None:
    assert internal(ipaddress.ip_address(ip))


def test_public_addresses_pass_and_the_allowlist_takes_hosts_and_networks() -> None:
    assert not internal(ipaddress.ip_address("93.184.216.34"))
    addr = ipaddress.ip_address("10.20.30.40")
    assert allowed("files.corp", addr, ["files.corp"]) and allowed("x", addr, ["10.0.0.0/8"])
    assert not allowed("x", addr, ["192.168.0.0/16", "other.host"])


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/a.pdf", "http://localhost:8000/", "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.7/x", "http://[::1]/x", "http://0.0.0.0/"],
)  # fmt: skip
def test_urls_to_internal_addresses_and_names_resolving_to_them_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        asyncio.run(check_url(url, []))


def test_only_http_urls_are_fetched() -> None:
    for url in ("file:///etc/passwd", "ftp://example.org/a", "gopher://x", "http:///nohost", "http://[::1",
                "http://a.example:99999/x", f"http://{'a' * 70}.example/x", "http://a..b/x"):  # fmt: skip
        with pytest.raises(Exception) as info:
            asyncio.run(check_url(url, []))
        assert getattr(info.value, "status", None) == 400


def test_fetch_is_bounded_and_follows_checked_redirects(server: str) -> None:
    allow = ["127.0.0.1"]
    assert asyncio.run(fetch(server + "/doc.pdf", 10_000, 5, allow)) == BODY
    assert asyncio.run(fetch(server + "/hop", 10_000, 5, allow)) == BODY
    with pytest.raises(PayloadTooLarge):
        asyncio.run(fetch(server + "/doc.pdf", 100, 5, allow))
    with pytest.raises(UnfetchableUrl, match="404"):
        asyncio.run(fetch(server + "/missing", 10_000, 5, allow))
    with pytest.raises(UrlNotAllowed, match=r"169\.254\.169\.254"):  # a redirect is checked like the URL
        asyncio.run(fetch(server + "/to-metadata", 10_000, 5, allow))
    with pytest.raises(UrlNotAllowed):  # and without the allowlist, not even the first hop
        asyncio.run(fetch(server + "/doc.pdf", 10_000, 5, []))


def test_each_hop_connects_to_the_address_that_was_checked(server: str, monkeypatch) -> None:
    """A name is resolved once per hop and the connection goes to that answer: a rebinding DNS
    server that answers 'public' to the check and 'internal' to the connection has no second ask.
    ``docs.example`` resolves nowhere, so only a pinned connection can reach the server."""
    from serve_app import fetch as fetch_module

    port = int(server.rsplit(":", 1)[1])
    answers = iter([[ipaddress.ip_address("127.0.0.1")]])
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        asked.append(host)
        return next(answers)  # a second question would find this DNS server's answers run out

    monkeypatch.setattr(fetch_module, "resolve", rebinding)
    url = f"http://docs.example:{port}/host"
    assert asyncio.run(fetch(url, 10_000, 5, ["docs.example"])) == f"docs.example:{port}".encode()
    assert asked == ["docs.example"]


def test_a_pinned_request_keeps_its_host_for_the_server_and_for_tls() -> None:
    from serve_app.fetch import pinned

    v4, v6 = ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:2800:220:1::1")
    assert pinned("https://u:p@docs.example/a.pdf?x=1", v4) == (
        "https://u:p@93.184.216.34/a.pdf?x=1",
        {"Host": "docs.example"},
        {"sni_hostname": "docs.example"},
    )
    assert pinned("https://пример.рф/a", v4)[1:] == (
        {"Host": "xn--e1afmkfd.xn--p1ai"},
        {"sni_hostname": "xn--e1afmkfd.xn--p1ai"},
    )
    assert pinned("http://docs.example:8080/a", v6) == (
        "http://[2606:2800:220:1::1]:8080/a",
        {"Host": "docs.example:8080"},
        {},
    )
