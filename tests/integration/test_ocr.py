"""OCR of real pages through real Serve and real HTTP, against bare engines on the same pages."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.bare import bare_rapidocr
from bench.textmetrics import cer
from tests.conftest import DATA, evaldata_page, ground_truth

# (page, tesseract language a user would pick, compare case-insensitively, the service's CER
# ceiling: measured with `python -m bench.pages` on 2026-11-23 + 0.02, see bench/RESULTS.md;
# the paper now reads the labels inside its figure too, which its PDF ground truth lacks)
PAGES = [
    pytest.param(lambda: DATA / "phototest.png", "eng", False, 0.02, id="english-scan"),
    # Its table of contents' dot leaders are counted, not read as letters (0.31 before, 2026-12-04).
    pytest.param(lambda: DATA / "tech_spec_alpaca_p1.png", "rus+eng", False, 0.03, id="russian"),
    pytest.param(lambda: DATA / "acl2020_s2orc_p1.png", "eng", False, 0.21, id="two-column-paper"),
    pytest.param(
        lambda: DATA / "draft_federal_law_personal_data_p1.pdf", "rus+eng", False, 0.02, id="russian-pdf"
    ),
    pytest.param(lambda: evaldata_page("funsd/82253245_3247"), "eng", False, 0.16, id="noisy-form"),
    pytest.param(lambda: evaldata_page("sroie/sroie_345"), "eng", True, 0.14, id="noisy-receipt"),
    # Faint thermal print that the line finder misses: RapidOCR's detector reads the whole crop
    # (0.204 when it was given only the found lines' ink, 2026-12-03).
    pytest.param(lambda: evaldata_page("sroie/sroie_512"), "eng", True, 0.06, id="faint-receipt"),
    # A scan's ruled table skewed by a degree, read cell by cell (0.164 as one block, 2026-12-04).
    pytest.param(
        lambda: evaldata_page("ru_docs/bachelor_thesis_investment_p51_scan"),
        "rus+eng",
        False,
        0.03,
        id="russian-skewed-grid-scan",
    ),
    # A chart among the thesis' paragraphs: its labels, read unsure, are left out (0.46 with them).
    pytest.param(
        lambda: evaldata_page("ru_docs/bachelor_thesis_investment_p39"),
        "rus+eng",
        False,
        0.03,
        id="russian-chart",
    ),
    # A scanned table of contents: tesseract drops its rows of long leaders as noise (0.52 then).
    pytest.param(
        lambda: evaldata_page("ru_docs/bachelor_thesis_investment_p2_scan"),
        "rus+eng",
        False,
        0.03,
        id="russian-contents-scan",
    ),
]


@pytest.fixture(scope="module")
def bare():
    """The plain engines on the whole page, as a user without this service would run them."""
    import tesserocr

    rapid = bare_rapidocr()
    tessdata = "/usr/share/tesseract-ocr/5/tessdata/"

    def run(path: Path, lang: str) -> dict[str, str]:
        if path.suffix == ".pdf":
            import pypdfium2 as pdfium

            image = pdfium.PdfDocument(path.read_bytes())[0].render(scale=200 / 72).to_pil()
        else:
            image = Image.open(path)
        image = image.convert("RGB")
        result, _ = rapid(np.asarray(image))
        with tesserocr.PyTessBaseAPI(path=tessdata, lang=lang) as api:
            api.SetImage(image)
            tess = api.GetUTF8Text()
        return {"rapidocr": "\n".join(r[1] for r in result or []), "tesseract": tess}

    return run


@pytest.mark.parametrize(("page", "lang", "casefold", "ceiling"), PAGES)
def test_service_reads_at_least_as_well_as_the_better_bare_engine(
    client, bare, page, lang: str, casefold: bool, ceiling: float
) -> None:
    path: Path = page()
    truth = ground_truth(path)
    r = client.post("/v1/ocr", files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 200, r.text
    service = cer(r.json()["text"], truth, casefold)
    baselines = {k: cer(v, truth, casefold) for k, v in bare(path, lang).items()}
    best = min(baselines.values())
    print(f"{path.name}: service CER {service:.3f}, bare {baselines}")
    assert service <= ceiling, f"CER {service:.3f} went past {ceiling} (a regression)"
    assert service <= best + 0.03, (service, baselines)


def test_multipage_pdf_pages_come_back_in_order(client) -> None:
    pages = [
        Image.open(DATA / "phototest.png").convert("RGB"),
        Image.open(DATA / "tech_spec_alpaca_p1.png").convert("RGB").resize((827, 1170)),
        Image.open(DATA / "phototest.png").convert("RGB").rotate(0),
    ]
    buf = io.BytesIO()
    pages[0].save(buf, format="PDF", save_all=True, append_images=pages[1:], resolution=100)
    r = client.post(
        "/v1/ocr",
        files={"file": ("three.pdf", buf.getvalue())},
        data={"pages": "1-2", "dpi": "100"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["document"]["page_count"] == 3 and body["document"]["pages"] == [1, 2]
    assert [p["page"] for p in body["pages"]] == [1, 2]
    assert "quick brown" in body["pages"][0]["text"]
    assert "СОДЕРЖАНИЕ" in body["pages"][1]["text"]
    assert "\n\n---\n\n" in body["markdown"]
