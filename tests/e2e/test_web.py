"""The web page at ``/``, in a real Chromium against the real service (Serve, S3, jobs, API keys),
deployed under a route prefix as an operator would put it behind a path: a page read shows its
text and boxes, a job runs to its end with its progress bar moving, errors read as sentences, the
interface switches to Russian and stays so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.textmetrics import cer
from scripts.s3_dev import SeaweedFS
from tests.browser import screenshot
from tests.conftest import DATA, phototest_tiff
from tests.serve_fixtures import deploy, small_app_args, wait_for

KEY = "e2e-browser-key-0123456789"
PHOTOTEST = DATA / "phototest.png"
LAW = DATA / "draft_federal_law_personal_data_p1.pdf"


@pytest.fixture(scope="module")
def web(base_url: str, s3: SeaweedFS) -> Iterator[str]:
    from ray import serve

    args = small_app_args(s3, jobs={"poll_s": 0.5, "slice_pages": 1}, auth={"api_keys": [KEY]})
    yield deploy(base_url, "web", args)
    serve.delete("web")


def opened(page, web: str, key: str | None = KEY):
    page.goto(web + "/")
    if key is not None:
        page.fill("#api-key", key)
        page.press("#api-key", "Tab")  # the change event: the key is kept for this browser
    return page


def read(page, document: Path, **options: str) -> None:
    page.set_input_files("#file", str(document))
    for name, value in options.items():
        page.select_option(f"select[name={name}]", value)
    page.click("#read-go")


def test_a_page_is_read_and_shown_with_its_text_and_boxes(page, web: str) -> None:
    read(opened(page, web), PHOTOTEST, lang="en")
    page.wait_for_selector("svg.page .box", timeout=120_000)
    assert page.get_attribute("svg.page image", "href").startswith("data:image/jpeg;base64,")
    page.hover("svg.page .box >> nth=0")
    detail = page.inner_text("#block")
    text = page.inner_text("#block .block-text")
    words = " ".join(text.split())
    assert "tesseract" in detail and words and words in " ".join(page.inner_text("#view").split())
    page.click(".views [data-view=text]")
    assert cer(page.inner_text("#view"), (DATA / "phototest.gt.txt").read_text()) < 0.05
    screenshot(page, "read-image")

    read(page, LAW)  # a PDF: its pages come back as images to draw the boxes over
    page.wait_for_selector("#result-name:text('draft_federal_law')")
    page.locator("svg.page .box").nth(3).wait_for()  # (no wait_for_function: the page's CSP forbids eval)
    assert (
        cer(page.inner_text("#view"), (DATA / "draft_federal_law_personal_data_p1.gt.txt").read_text()) < 0.02
    )
    page.click(".views [data-view=md]")
    assert "Федеральным законом" in page.inner_text("#view .markdown")
    labels = page.locator("#legend .tag").all_inner_texts()
    assert "text" in labels
    page.hover("svg.page .box >> nth=2")
    assert "text_layer" in page.inner_text("#block")  # born digital: read from its own text
    screenshot(page, "read-pdf")


def test_a_job_runs_to_its_end_with_its_progress_bar_moving(page, web: str, tmp_path: Path) -> None:
    pages = 12  # a page a slice, each about a second: the bar is seen between its ends
    document = tmp_path / "twelve-pages.tif"
    document.write_bytes(phototest_tiff(pages))
    opened(page, web)
    page.check("input[name=as_job]")
    read(page, document, lang="en")
    row = page.locator("#jobs tbody tr[data-job]")
    row.wait_for()
    assert page.is_visible("#tab-jobs") and "twelve-pages.tif" in row.inner_text()
    seen: list[int] = []

    def progressed() -> bool:
        # The status first: the row may be redrawn between the two reads, and the bar read after
        # a final status is the final bar.
        ended = row.get_attribute("data-status") in ("succeeded", "failed", "cancelled")
        value = int(row.locator("progress").get_attribute("value") or 0)
        if not seen or seen[-1] != value:
            seen.append(value)
            if 0 < value < pages:
                screenshot(page, "job-running")
        return ended

    wait_for(progressed, timeout_s=240, every_s=0.2)
    assert row.get_attribute("data-status") == "succeeded", row.inner_text()
    assert seen[-1] == pages and any(0 < v < pages for v in seen), seen  # moved, page by page
    assert row.locator("progress").get_attribute("max") == str(pages)
    row.get_by_role("button", name="Open").click()
    page.locator("svg.page").nth(pages - 1).wait_for()
    assert page.locator("svg.page").count() == pages
    assert page.is_visible("#tab-read") and page.inner_text("#result-name") == "twelve-pages.tif"
    # Its page images came through the service, with the key (not from S3's own URLs).
    image = page.get_attribute("svg.page image >> nth=0", "href")
    assert (
        image.startswith("blob:")
        and page.evaluate(f"fetch('{image}').then(r => r.blob()).then(b => b.type)") == "image/jpeg"
    )
    page.click(".views [data-view=text]")
    assert page.inner_text("#view").count("This is a lot of 12 point text") == pages
    screenshot(page, "job-opened")


def test_errors_are_shown_as_sentences(page, web: str, tmp_path: Path) -> None:
    read(opened(page, web, key=None), PHOTOTEST)
    page.wait_for_selector("#error:visible")
    error = page.inner_text("#error")
    assert error.startswith("401") and "enter it above" in error, error
    notes = tmp_path / "notes.txt"
    notes.write_text("plain text is not a document")
    page.fill("#api-key", KEY)
    read(page, notes)
    page.wait_for_selector("#error strong:text-matches('^415 ')")
    error = page.inner_text("#error")
    assert "PDF" in error and "401" not in error, error  # the service's own detail: what it reads
    screenshot(page, "error-415")


def test_the_interface_switches_to_russian_and_stays_so(page, web: str) -> None:
    opened(page, web)
    assert page.inner_text("#tabs [data-tab=read]") == "Read"
    page.wait_for_selector("body[data-chat=off]")  # /v1/models asked: no VLM in this app, no chat
    assert page.is_hidden("#tabs [data-tab=chat]")
    page.click("#lang")
    assert page.inner_text("#tabs [data-tab=read]") == "Распознать"
    page.reload()
    assert page.get_attribute("html", "lang") == "ru"
    assert page.inner_text("#read-go") == "Распознать" and page.input_value("#api-key") == KEY
    page.click("#tabs [data-tab=health]")
    page.wait_for_selector("#health table td:text('Recognizer')")
    health = page.inner_text("#health")
    assert "Развёртывания" in health and "Layout" in health and "Jobs" in health
    screenshot(page, "health-ru")
    page.click("#lang")
    assert page.inner_text("#tabs [data-tab=health]") == "Health"


HOSTILE = '<img src=x onerror="window.pwned = 1">'


def test_what_a_document_says_is_shown_as_text_never_run(page, web: str) -> None:
    """A document can say anything, and a VLM can write any HTML: an answer made of markup that
    would run script, shown in every view, runs none of it and shows it as the text it is."""
    import json

    block = {"order": 0, "label": 'text"><script>window.pwned = 1</script>', "bbox": [5, 5, 90, 40],
             "score": 1.0, "text": HOSTILE, "engine": HOSTILE, "confidence": 0.5, "error": HOSTILE,
             "source": "ocr"}  # fmt: skip
    markdown = (
        f"## {HOSTILE}\n\n<table><tr><td>&lt;b&gt;kept as text&lt;/b&gt;</td><td>{HOSTILE}</td>"
        f"<td><script>window.pwned = 1</script>x</td></tr></table>\n\n{HOSTILE}\n\n"
        "![x](javascript:window.pwned=1)"
    )
    body = {
        "request_id": "r", "models": {"Recognizer": HOSTILE},
        "document": {"media_type": "image/png", "page_count": 1, "pages": [1], "dpi": None},
        "pages": [{"page": 1, "width": 100, "height": 50, "blocks": [block], "markdown": markdown,
                   "text": HOSTILE, "timings_ms": {}}],
        "markdown": markdown, "text": HOSTILE, "timings_ms": {"total": 5.0},
    }  # fmt: skip
    page.route("**/v1/ocr", lambda route: route.fulfill(json=body))
    read(opened(page, web), PHOTOTEST)
    page.wait_for_selector("svg.page .box")
    page.hover("svg.page .box")
    assert page.inner_text("#block .block-text") == HOSTILE and HOSTILE in page.inner_text("#block .flag")
    # The table rebuilt from its cells' text: what was text stays text, what was markup is gone.
    assert page.locator("#view table td").all_inner_texts() == ["<b>kept as text</b>", "", "x"]
    assert HOSTILE in page.inner_text("#view h2") and HOSTILE in page.inner_text("#view")
    assert page.locator("#view script, #view img, #block img, #result img").count() == 0
    for view in ("raw", "text", "json"):
        page.click(f".views [data-view={view}]")
        assert HOSTILE in page.inner_text("#view") or json.dumps(HOSTILE)[1:-1] in page.inner_text("#view")
    assert page.evaluate("window.pwned") is None
