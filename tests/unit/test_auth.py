"""API keys and per-key limits: the Gate alone (a virtual clock), then through the HTTP API."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi.testclient import TestClient

from serve_app import __version__
from serve_app.api import create_api
from serve_app.auth import Gate, exposure_warning, fingerprint
from serve_app.config import AuthArgs, load_args
from serve_app.errors import ModelError, RateLimited, Unauthorized
from serve_app.schemas import HealthOut
from tests.conftest import DATA
from tests.unit.engines_fixture import EngineBackend, HeldRecognizer
from tests.unit.test_api import assert_problem

KEY, OTHER = "k" * 16 + "-first-key", "o" * 16 + "-second-key"
PHOTOTEST = (DATA / "phototest.png").read_bytes()
FILES = {"file": ("p.png", PHOTOTEST, "image/png")}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock | None = None, **limits: int) -> Gate:
    return Gate(AuthArgs.model_validate({"api_keys": [KEY, OTHER], **limits}), clock or Clock())


def test_keys_come_from_the_environment_as_a_comma_list_and_short_ones_are_refused() -> None:
    args = load_args({}, environ={"SERVE_APP_AUTH__API_KEYS": f"{KEY}, {OTHER}"})
    assert [k.get_secret_value() for k in args.auth.api_keys] == [KEY, OTHER]
    assert KEY not in repr(args) and KEY not in str(args.model_dump_json())
    short = "too-short-secret"[:12]
    with pytest.raises(ValueError, match="at least 16 characters") as err:
        load_args({"auth": {"api_keys": [short]}}, environ={})
    assert short not in str(err.value)  # a config error names the setting, never the value


def test_listening_beyond_loopback_without_keys_is_warned_about() -> None:
    keys = AuthArgs.model_validate({"api_keys": [KEY]})
    assert "0.0.0.0" in (exposure_warning("0.0.0.0", AuthArgs()) or "")
    assert exposure_warning("0.0.0.0", keys) is None
    assert exposure_warning("127.0.0.1", AuthArgs()) is None


def test_a_caller_is_named_by_its_key_fingerprint_from_either_header() -> None:
    g = gate()
    assert g.caller({"authorization": f"Bearer {KEY}"}) == fingerprint(KEY)
    assert g.caller({"x-api-key": OTHER}) == fingerprint(OTHER) != fingerprint(KEY)
    for headers in ({}, {"authorization": f"Basic {KEY}"}, {"x-api-key": KEY[:-1]}, {"x-api-key": KEY + "x"}):
        with pytest.raises(Unauthorized):
            g.caller(headers)
    both = {"authorization": f"Bearer {KEY}", "x-api-key": KEY}
    assert g.caller(both) == fingerprint(KEY)
    wrong_one = [{**both, "x-api-key": KEY[::-1]}, {**both, "authorization": "Bearer wrong-key-wrong-key"}]
    for mixed in [*wrong_one, {**both, "x-api-key": OTHER}]:
        with pytest.raises(Unauthorized):  # every key a request carries must be right, and the same
            g.caller(mixed)
    assert Gate(AuthArgs()).caller({}) == "anonymous"


def test_documents_at_once_per_key() -> None:
    g = gate(max_documents_per_key=1)
    me, other = fingerprint(KEY), fingerprint(OTHER)
    with g.document(me):
        with pytest.raises(RateLimited) as err, g.document(me):
            pass
        assert err.value.retry_after_s
        with g.document(other):  # another key is not held back
            pass
    with g.document(me):  # the slot is free again
        pass


def test_pages_a_minute_per_key_is_a_leaky_bucket() -> None:
    clock = Clock()
    g, me = gate(clock, pages_per_minute_per_key=10), fingerprint(KEY)
    g.take(me, 25)  # one large document may go over once...
    with pytest.raises(RateLimited) as err:
        g.take(me, 1)
    assert err.value.retry_after_s == 96  # ...and the next waits until 9 are owed (room for one)
    with pytest.raises(RateLimited), g.document(me):  # refused before its body is read, too
        pass
    g.take(fingerprint(OTHER), 10)
    clock.now += 95
    with pytest.raises(RateLimited):
        g.take(me, 1)
    clock.now += 2
    g.take(me, 1)
    clock.now += 60
    g.take(me, 5)


@pytest.fixture
def backend(engines) -> EngineBackend:
    return EngineBackend(*engines)


def keyed(backend: EngineBackend, **auth: object) -> TestClient:
    args = load_args({"auth": {"api_keys": [KEY, OTHER], **auth}}, environ={})
    return TestClient(create_api(args, backend))


def test_with_keys_every_route_but_the_probes_needs_one(backend, caplog) -> None:
    c = keyed(backend)
    for method, path in [("post", "/v1/ocr"), ("get", "/v1/models"), ("post", "/v1/chat/completions")]:
        r = getattr(c, method)(path)
        body = assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "X-Api-Key" in body["detail"]
    wrong = c.post("/v1/ocr", files=FILES, headers={"X-Api-Key": KEY[::-1]})
    assert_problem(wrong, 401, "unauthorized")
    assert KEY[::-1] not in wrong.text and KEY[::-1] not in caplog.text
    for path in ["/health", "/ready", "/livez"]:
        assert c.get(path).status_code == 200, path
    # /health tells a caller without a right key no names, messages or paths: a probe's due only.
    assert c.get("/health").json() == {"status": "ready", "version": __version__}
    assert_problem(
        c.get("/health", headers={"X-Api-Key": KEY[::-1]}), 401, "unauthorized"
    )  # said, not hidden
    HealthOut.model_validate(full := c.get("/health", headers={"X-Api-Key": KEY}).json())
    assert {"deployments", "models", "storage", "reason"} <= set(full)
    assert c.get("/").status_code == 200 and c.get("/ui/app.js").status_code == 200  # the page asks for a key
    assert c.get("/openapi.json").status_code == 200
    ok = c.post("/v1/ocr", files=FILES, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200, ok.text
    # AI Studio's PaddleOCR-VL clients send "token KEY".
    assert c.get("/v1/models", headers={"Authorization": f"token {KEY}"}).status_code == 200
    assert "quick brown dog" in ok.json()["text"]
    assert c.get("/v1/models", headers={"X-Api-Key": OTHER}).status_code == 200
    assert KEY not in caplog.text and OTHER not in caplog.text


def test_a_probe_without_a_key_is_not_told_why_the_service_is_not_ready(backend) -> None:
    c = keyed(backend)
    backend.status = "loading"
    try:
        probe = assert_problem(c.get("/ready"), 503, "not-ready")
        keyed_view = assert_problem(c.get("/ready", headers={"X-Api-Key": KEY}), 503, "not-ready")
    finally:
        backend.status = "ready"
    assert probe["detail"] == "service is loading" and keyed_view["detail"].startswith("service is loading: ")


def test_the_schema_offers_both_ways_to_send_a_key_only_when_keys_are_set(backend, make_args) -> None:
    spec = keyed(backend).get("/openapi.json").json()
    assert {s["type"] for s in spec["components"]["securitySchemes"].values()} == {"http", "apiKey"}
    for path, operations in spec["paths"].items():  # the schema says which routes need a key
        for operation in operations.values():
            assert ("security" in operation) == (path not in ("/health", "/ready", "/livez")), path
    open_spec = TestClient(create_api(make_args(), backend)).get("/openapi.json").json()
    assert "securitySchemes" not in open_spec.get("components", {})


def test_pages_a_minute_answer_429_with_retry_after(backend) -> None:
    c = keyed(backend, pages_per_minute_per_key=1)
    mine, others = {"X-Api-Key": KEY}, {"X-Api-Key": OTHER}
    assert c.post("/v1/ocr", files=FILES, headers=mine).status_code == 200
    r = c.post("/v1/ocr", files=FILES, headers=mine)
    assert_problem(r, 429, "rate-limited")
    # One page a minute, one page owed: the wait is that minute less the second or two between
    # the requests (a wrong bucket would say 1 s, or two minutes).
    assert 55 <= int(r.headers["retry-after"]) <= 60
    assert fingerprint(KEY) in r.json()["detail"] and KEY not in r.text
    assert c.post("/v1/ocr", files=FILES, headers=others).status_code == 200


async def test_pages_are_charged_when_a_document_opens_and_not_given_back(backend) -> None:
    """Two documents of one key at once: the first is charged as soon as it is opened, so the
    second is refused when it opens (not after both were read); a request that then fails
    (here: past its deadline) has used its pages all the same."""
    held = backend.recognizer = HeldRecognizer(backend.recognizer)
    args = load_args({"auth": {"api_keys": [KEY], "pages_per_minute_per_key": 1}}, environ={})
    transport = httpx.ASGITransport(app=create_api(args, backend))
    mine = {"X-Api-Key": KEY}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        first = asyncio.ensure_future(c.post("/v1/ocr", files=FILES, data={"timeout_s": "2"}, headers=mine))
        await asyncio.wait_for(held.entered.wait(), 30)
        assert_problem(await c.post("/v1/ocr", files=FILES, headers=mine), 429, "rate-limited")
        assert_problem(await first, 504, "deadline-exceeded")
        held.go.set()
        assert_problem(await c.post("/v1/ocr", files=FILES, headers=mine), 429, "rate-limited")


async def test_documents_at_once_per_key_answer_429_while_another_key_is_served(backend) -> None:
    held = backend.recognizer = HeldRecognizer(backend.recognizer)
    args = load_args({"auth": {"api_keys": [KEY, OTHER], "max_documents_per_key": 1}}, environ={})
    transport = httpx.ASGITransport(app=create_api(args, backend))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        first = asyncio.ensure_future(c.post("/v1/ocr", files=FILES, headers={"X-Api-Key": KEY}))
        await asyncio.wait_for(held.entered.wait(), 30)
        second = await c.post("/v1/ocr", files=FILES, headers={"X-Api-Key": KEY})
        assert_problem(second, 429, "rate-limited")
        assert second.headers["retry-after"]
        others = asyncio.ensure_future(c.post("/v1/ocr", files=FILES, headers={"X-Api-Key": OTHER}))
        held.go.set()
        assert (await first).status_code == 200
        assert (await others).status_code == 200


def test_a_model_error_is_masked_for_the_client_and_logged_once(backend, make_args, caplog) -> None:
    class Failing:
        async def recognize(self, requests):  # type: ignore[no-untyped-def]
            raise ModelError("model replica failed: OSError('/models/secret-path/weights.onnx')")

    backend.recognizer = Failing()
    with caplog.at_level(logging.ERROR, logger="serve_app"):
        r = TestClient(create_api(make_args(), backend)).post("/v1/ocr", files=FILES)
    body = assert_problem(r, 500, "model-error")
    assert "secret-path" not in r.text
    assert body["request_id"] in body["detail"]
    failures = [rec for rec in caplog.records if body["request_id"] in rec.getMessage()]
    assert len(failures) == 1 and "secret-path" in failures[0].getMessage()


def test_an_unexpected_error_is_masked_too(backend, make_args, caplog) -> None:
    class Broken:
        async def recognize(self, requests):  # type: ignore[no-untyped-def]
            raise KeyError("/etc/internal-host:5432")

    backend.recognizer = Broken()
    client = TestClient(create_api(make_args(), backend), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="serve_app"):
        r = client.post("/v1/ocr", files=FILES)
    body = assert_problem(r, 500, "internal")
    assert "internal-host" not in r.text and body["request_id"] in body["detail"]
    assert "internal-host" in caplog.text
