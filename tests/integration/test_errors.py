"""Every error class through the real proxy: problem+json, request id, never a 500."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import DATA

PNG = (DATA / "phototest.png").read_bytes()


def problem(r: httpx.Response, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/" + kind)
    assert body["request_id"] == r.headers["x-request-id"]
    return body


@pytest.mark.parametrize(
    ("kwargs", "status", "kind"),
    [
        ({"json": {"file": "%%%"}}, 400, "invalid-base64"),
        ({"files": {"file": ("p.png", PNG)}, "data": {"pages": "9"}}, 400, "invalid-page-range"),
        ({"files": {"file": ("p.png", PNG)}, "data": {"lang": "tlh"}}, 400, "unsupported-language"),
        ({"files": {"file": ("a.txt", b"just text")}}, 415, "unsupported-media-type"),
        ({"files": {"file": ("p.png", PNG[:100])}}, 422, "unprocessable-document"),
        (
            {"json": {"file": base64.b64encode(b"%PDF-1.5 broken").decode()}},
            422,
            "unprocessable-document",
        ),
    ],
)
def test_bad_input_is_a_clear_4xx(client, kwargs, status: int, kind: str) -> None:
    problem(client.post("/v1/ocr", **kwargs), status, kind)


@pytest.mark.parametrize("extra", [1024, 3 * 1024 * 1024])
def test_oversized_upload_is_413(client, extra: int) -> None:
    # Just over the 50 MiB limit is read and measured; far over is refused from its length.
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (50 * 1024 * 1024 + extra)
    problem(client.post("/v1/ocr", files={"file": ("big.png", big)}), 413, "payload-too-large")


def test_deadline_is_504_and_the_service_keeps_working(client) -> None:
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    # OCR'd, not read from its text layer: that would take under the deadline.
    r = client.post("/v1/ocr", files={"file": ("d.pdf", pdf)}, data={"timeout_s": "0.1", "text_layer": "off"})
    problem(r, 504, "deadline-exceeded")
    # Serve's own per-request header: its proxy answers 408 and cancels the request tree.
    r = client.post(
        "/v1/ocr",
        files={"file": ("d.pdf", pdf)},
        data={"text_layer": "off"},
        headers={"x-request-timeout-seconds": "0.05"},
    )
    assert r.status_code == 408
    r = client.post("/v1/ocr", files={"file": ("p.png", PNG)})
    assert r.status_code == 200 and "quick brown" in r.json()["text"]


def test_health_ready_models(client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ready"
    assert health["deployments"]["Layout"]["replicas"]["RUNNING"] >= 1
    assert client.get("/ready").status_code == 200
    models = client.get("/v1/models").json()["data"]
    assert {m["name"] for m in models} == {"rapid-layout:pp_layout_cdla", "cpu:tesseract+rapidocr"}
    assert client.get("/openapi.json").status_code == 200
