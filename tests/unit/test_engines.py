from __future__ import annotations

import asyncio
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve_app.config import AppArgs, CpuRecognizerArgs, RapidLayoutArgs
from serve_app.datatypes import RecognizeRequest, box_area
from serve_app.engines import build_layout, build_recognizer
from serve_app.engines.base import ModelLoadError
from serve_app.engines.cpu import dominant_script, prefer_english
from serve_app.engines.rapid import MIN_REC_WIDTH, order_lines
from serve_app.engines.tesseract import TessText
from serve_app.errors import UnsupportedLanguage
from tests.conftest import CROPS, DATA, evaldata_page, ground_truth


def load(name: str, folder: Path = DATA) -> np.ndarray:
    return np.asarray(Image.open(folder / name).convert("RGB"))


@contextmanager
def swapped_engines(rapid, wrap):  # type: ignore[no-untyped-def]
    """Every RapidOCR instance of the reader's pool replaced by ``wrap(instance)`` for a while."""
    originals = list(rapid.engines)
    for _ in originals:
        rapid._free.get_nowait()
    for ocr in originals:
        rapid._free.put(wrap(ocr))
    try:
        yield
    finally:
        for _ in originals:
            rapid._free.get_nowait()
        for ocr in originals:
            rapid._free.put(ocr)


def read(recognizer, image: np.ndarray, lang: str = "auto", whole_page: bool = True):
    req = RecognizeRequest(image=image, lang=lang, whole_page=whole_page)
    return asyncio.run(recognizer.recognize([req]))[0]


def test_layout_finds_title_text_and_figure_on_a_paper(engines) -> None:
    layout, _ = engines
    regions = asyncio.run(layout.detect([load("acl2020_s2orc_p1.png")]))[0]
    labels = {r.label for r in regions}
    assert {"title", "text", "figure"} <= labels
    assert all(0 <= r.score <= 1 and r.bbox[2] > r.bbox[0] for r in regions)
    assert layout.info().name == "rapid-layout:pp_layout_cdla"


def test_russian_is_read_by_tesseract_with_russian(engines) -> None:
    _, recognizer = engines
    result = read(recognizer, load("tech_spec_alpaca_p1.png"))
    assert result.engine == "tesseract:rus+eng"
    assert "ТЕХНИЧЕСКОЕ ЗАДАНИЕ" in result.text and "альпака" in result.text


def test_clean_english_print_is_read_by_tesseract(engines) -> None:
    _, recognizer = engines
    result = read(recognizer, load("phototest.png"))
    assert result.engine.startswith("tesseract")
    assert "quick brown dog jumped over the" in result.text and result.confidence > 0.85


def test_chinese_goes_to_rapidocr(engines) -> None:
    _, recognizer = engines
    image = load("phototest.png")
    result = read(recognizer, image, lang="zh")
    assert result.engine == "rapidocr" and "quick brown" in result.text


def test_explicit_languages_are_normalised_and_checked(engines) -> None:
    _, recognizer = engines
    assert recognizer.check_lang("ru") == "rus+eng"
    assert recognizer.check_lang("en+ru") == "eng+rus"
    assert recognizer.check_lang("AUTO") == "auto"
    assert recognizer.check_lang("zh") == "zh"
    with pytest.raises(UnsupportedLanguage, match="available: auto, zh"):
        recognizer.check_lang("klingon")


def test_a_crop_the_readers_fail_on_is_a_flagged_block_not_an_exception(engines) -> None:
    _, recognizer = engines
    result = read(recognizer, np.zeros((0, 5, 3), dtype=np.uint8))
    assert result.text == "" and result.error


def test_script_detection() -> None:
    assert dominant_script("Привет, мир, как дела? and a word") == "cyrillic"
    assert dominant_script("Hello world, привет") == "latin"
    assert dominant_script("中文文本 abc") == "han"
    assert dominant_script("12 345 ...") == "none"


def test_rapidocr_lines_come_out_in_rows() -> None:
    boxes = [(300, 12, 400, 30), (10, 10, 200, 32), (10, 50, 200, 70)]
    assert order_lines(boxes) == [[1, 0], [2]]
    # A handwritten total two lines tall beside the last two lines of a receipt (sroie_005's
    # boxes): it goes with the first; the lines above and below it stay two rows.
    receipt = [(153, 523, 298, 546), (365, 519, 443, 570), (119, 544, 332, 573)]
    assert order_lines(receipt) == [[0, 1], [2]]


def test_missing_layout_model_is_a_startup_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "layout.onnx"
    engine = build_layout(RapidLayoutArgs(model_path=missing))
    with pytest.raises(ModelLoadError, match=str(missing)):
        engine.start()
    with pytest.raises(RuntimeError):
        engine.check_health()


def test_corrupt_layout_model_is_a_startup_error(tmp_path: Path) -> None:
    bad = tmp_path / "layout.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelLoadError, match=str(bad)):
        build_layout(RapidLayoutArgs(model_path=bad)).start()


def test_missing_recognizer_models_are_startup_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=str(tmp_path / "tessdata")):
        build_recognizer(CpuRecognizerArgs(tessdata_dir=tmp_path / "tessdata")).start()
    det = tmp_path / "det.onnx"
    with pytest.raises(ModelLoadError, match=str(det)):
        build_recognizer(CpuRecognizerArgs(rapidocr_det_model=det)).start()


def test_engine_starts_on_one_machine_are_serialised(tmp_path: Path) -> None:
    import itertools
    import threading
    import time

    from serve_app.engines.base import one_start_at_a_time

    spans: list[tuple[float, float]] = []

    def start() -> None:
        with one_start_at_a_time(tmp_path):
            begin = time.monotonic()
            time.sleep(0.2)
            spans.append((begin, time.monotonic()))

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_rapidocr_reads_the_lines_it_is_given_with_its_recognizer_alone(engines) -> None:
    from serve_app.regions import text_lines

    rapid = engines[1]._rapid
    image = np.asarray(Image.open(DATA / "phototest.png").convert("RGB"))

    class RecognizerOnly:  # the detector must not run when the lines are known
        def __init__(self, ocr) -> None:  # type: ignore[no-untyped-def]
            self.text_rec = ocr.text_rec

        def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError("the detector ran")

    with swapped_engines(rapid, RecognizerOnly):
        text, score = rapid.read(image, text_lines(image))
    assert "quickbrowndogjumpedoverthelazyfox" in "".join(text.split()).lower() and score > 0.8
    assert len(text.splitlines()) >= 6  # one row per line of the page, in order


def test_the_detector_sees_known_lines_at_their_print_size_not_a_736_px_crop(engines) -> None:
    from serve_app.regions import text_lines

    rapid = engines[1]._rapid
    page = np.asarray(Image.open(DATA / "phototest.png").convert("RGB"))
    crop = page[185:370]  # four and a half lines of "The quick brown dog...", 185 px high
    lines = [(x0, y0 - 185, x1, y1 - 185) for x0, y0, x1, y1 in text_lines(page) if y0 >= 185]
    # Two lines touching (one box two lines tall): only the detector can take them apart.
    lines[0:2] = [(lines[0][0], lines[0][1], lines[1][2], lines[1][3])]
    ocr = rapid.engines[0]
    sizes = []
    with swapped_engines(rapid, lambda _: ocr):  # one RapidOCR for both reads, to look at
        for known in (lines, []):
            text, _ = rapid.read(crop, known)
            assert "".join(text.split()).lower().count("thelazyfox") == 4, text
            sizes.append(ocr.text_det.detector.limit_side_len)  # the short side the detector saw
    # Lines ~31 px high are seen at most 40 px high (1.3x), not at RapidOCR's 736 px (4x), which
    # stays where the lines are not known.
    assert sizes[0] <= 1.4 * 185 and sizes[1] == 736, sizes


def test_a_small_crop_of_unknown_lines_is_not_blown_up_to_736_px_for_the_detector(engines) -> None:
    # RapidOCR scales a crop up until its short side is 736 px: a 54 x 40 speck became 994 x 736,
    # 0.16-0.7 s of detector for nothing. Where no line is known, print 10 px high is the smallest
    # it must see at DETECT_LINE_PX: no more than MAX_DETECT_UPSCALE.
    from serve_app.engines.rapid import MAX_DETECT_UPSCALE

    rapid = engines[1]._rapid
    word = load("phototest.png")[84:130, 26:112]  # "This", 46 px high
    ocr = rapid.engines[0]
    with swapped_engines(rapid, lambda _: ocr):
        text, _ = rapid.read(word)
    assert text == "This"
    assert ocr.text_det.detector.limit_side_len == round(MAX_DETECT_UPSCALE * 46)


def test_a_page_of_english_is_read_in_english_and_its_russian_region_still_in_russian(engines) -> None:
    _, recognizer = engines
    english = load("phototest.png")
    russian = load("tech_spec_alpaca_p1.png")[150:350, 100:900]  # its title block, smaller
    english_too = english[:262]  # its first lines, whole (a line cut in half is not clean print)
    requests = [RecognizeRequest(english_too), RecognizeRequest(english), RecognizeRequest(russian)]
    results = asyncio.run(recognizer.recognize(requests))
    # The largest region, read as ever, is English: the others are tried in English alone first.
    assert results[1].engine.startswith("tesseract") and results[0].engine == "tesseract:eng"
    assert "quick brown dog" in results[0].text and "quick brown dog" in results[1].text
    assert results[2].engine == "tesseract:rus+eng" and "ТЕХНИЧЕСКОЕ" in results[2].text


def test_blank_and_speck_crops_are_read_not_failed(engines) -> None:
    # Tesseract finds no word in them: there is nothing to look up in its dictionary, which must
    # not be an error (a blank header region became a flagged block).
    _, recognizer = engines
    blank = np.full((60, 200, 3), 255, dtype=np.uint8)
    speck = blank.copy()
    speck[28:32, 98:102] = 0
    for image in (blank, speck):
        result = read(recognizer, image, whole_page=False)
        assert result.error is None and result.engine != "none"
    assert read(recognizer, blank, whole_page=False).text == ""


def test_a_russian_cell_on_an_english_page_is_not_read_as_english_look_alikes(engines) -> None:
    # English alone reads this cell as "pecypcoB" at confidence 0.89: clean-looking, and no word of
    # the English dictionary, which is what sends it back to rus+eng.
    _, recognizer = engines
    english, cell = load("phototest.png"), load("ru_table_cell_p51.png", CROPS)
    results = asyncio.run(recognizer.recognize([RecognizeRequest(english), RecognizeRequest(cell)]))
    assert results[0].engine.startswith("tesseract") and "quick brown dog" in results[0].text
    assert results[1].text == "ресурсов" and results[1].engine == "tesseract:rus+eng"


def page_requests(layout, page_id: str) -> list[RecognizeRequest]:
    """An evaldata page's recognizer requests as the pipeline makes them: its layout regions in
    reading order, each cropped, with its known lines."""
    from serve_app.crops import crop
    from serve_app.regions import arrange

    path = evaldata_page(page_id)
    page = load(path.name, path.parent)
    regions = arrange(page, asyncio.run(layout.detect([page]))[0])
    return [
        RecognizeRequest(pixels, r.task, lines=lines) for r in regions for pixels, lines in [crop(page, r)]
    ]


def test_a_chinese_page_s_chinese_regions_go_to_rapidocr_alone(engines, monkeypatch) -> None:
    layout, recognizer = engines
    requests = page_requests(
        layout, "omnidocbench/docstructbench_dianzishu_zhongwenzaixian-o.O-61522235.pdf_170"
    )
    to_tesseract: list[tuple[int, bool]] = []  # (the request, whether a sample of it was read)
    read = recognizer._read_tesseract

    def recording(req, lang, sample=False):  # type: ignore[no-untyped-def]
        to_tesseract.append((id(req), sample))
        return read(req, lang, sample)

    monkeypatch.setattr(recognizer, "_read_tesseract", recording)
    results = asyncio.run(recognizer.recognize(requests))
    main = max(requests, key=text_area)
    chinese = [q for q, r in zip(requests, results, strict=True) if dominant_script(r.text) == "han"]
    assert len(chinese) >= 3 and all(
        r.engine == "rapidocr" for r in results if dominant_script(r.text) == "han"
    )
    # Only the main region, read first, was tried with tesseract, and only a sample of its lines:
    # rus+eng reads the sample as Cyrillic, unsure (as it reads Chinese), and RapidOCR as Chinese.
    assert [(q, sample) for q in chinese for i, sample in to_tesseract if i == id(q)] == [(main, True)]


def text_area(req: RecognizeRequest) -> float:
    return sum(map(box_area, req.lines))


def test_the_region_with_most_text_is_read_first_not_the_largest_picture(engines, monkeypatch) -> None:
    # The FAA handbook page's largest region is a drawing of nuts with a few labels, which RapidOCR
    # reads. Read first, it told nothing of the page's print: every paragraph paid for a sample and
    # a rus+eng read. Its body is read first now, clean English: the others in English alone.
    layout, recognizer = engines
    requests = page_requests(layout, "docling_tests/faa_amt_handbook_sample_p1")
    first: list[RecognizeRequest] = []
    samples: list[bool] = []
    read, read_tesseract = recognizer._read, recognizer._read_tesseract

    def reading(req, hint=None):  # type: ignore[no-untyped-def]
        if hint is None:
            first.append(req)
        return read(req, hint)

    def recording(req, lang, sample=False):  # type: ignore[no-untyped-def]
        samples.append(sample)
        return read_tesseract(req, lang, sample)

    monkeypatch.setattr(recognizer, "_read", reading)
    monkeypatch.setattr(recognizer, "_read_tesseract", recording)
    results = asyncio.run(recognizer.recognize(requests))
    largest = max(requests, key=lambda r: r.image.size)
    assert first == [max(requests, key=text_area)] and first[0] is not largest
    assert samples.count(True) <= 1  # the main region's own, at most
    others = [r for q, r in zip(requests, results, strict=True) if q is not first[0]]
    prose = [r for r in others if sum(map(str.isalpha, r.text)) >= 20]  # not a dash read alone
    assert len(prose) >= 8 and all(r.engine in ("tesseract:eng", "rapidocr") for r in prose)
    assert sum("self-locking nut" in r.text for r in prose) >= 3


def test_english_beats_its_rus_eng_reading_by_the_dictionary_words_each_finds() -> None:
    # A court transcript's "San Diego, Cal.": rus+eng read "Са1." (no word of three letters any
    # more), and kept a larger share of known words (26 of 28) than English did (27 of 30).
    assert prefer_english(
        TessText("Diego, Cal.", 0.92, words=30, known=27), TessText("Diego, Са1.", 0.94, 28, 26)
    )
    # Russian read as English is look-alikes no dictionary holds.
    assert not prefer_english(TessText("pecypcoB", 0.89, 1, 0), TessText("ресурсов", 0.87, 1, 1))
    # As many words found either way: English only when at least as sure.
    assert prefer_english(TessText("THE", 0.93, 0, 0), TessText("ТНЕ", 0.93, 0, 0))
    assert not prefer_english(TessText("THE", 0.90, 0, 0), TessText("ТНЕ", 0.93, 0, 0))
    assert not prefer_english(TessText("Ivanov", 0.88, 1, 0), TessText("Иванов", 0.90, 1, 0))


@pytest.mark.parametrize(
    ("page_id", "engine", "reads", "max_cer"),
    [
        # A noisy scanned form: four of its lines read unsure, so RapidOCR reads it, and tesseract
        # never reads it whole (bare tesseract reads the page at 0.254).
        ("funsd/82253245_3247", "rapidocr", [True], 0.2),
        # Its sample has one stray Cyrillic word ("оля" for a smudge), which is not Russian: RapidOCR
        # reads it without a whole tesseract read first (bare RapidOCR reads the page at 0.124).
        ("funsd/82092117", "rapidocr", [True], 0.1),
        # A Russian scan: its sample reads as Russian, so tesseract reads it whole, in Russian
        # (RapidOCR has no Cyrillic; bare `tesseract -l rus` reads the page at 0.157).
        ("ru_docs/bachelor_thesis_investment_p5_scan", "tesseract:rus+eng", [True, False], 0.08),
    ],
)
def test_a_sample_of_a_crop_s_lines_decides_whether_tesseract_reads_it_whole(
    engines, monkeypatch, page_id: str, engine: str, reads: list[bool], max_cer: float
) -> None:
    from bench.textmetrics import cer
    from serve_app.regions import text_lines

    _, recognizer = engines
    path = evaldata_page(page_id)
    page = load(path.name, path.parent)
    samples: list[bool] = []  # each tesseract read: of the sample (True) or of the whole crop
    read_tesseract = recognizer._read_tesseract

    def recording(req, lang, sample=False):  # type: ignore[no-untyped-def]
        samples.append(sample)
        return read_tesseract(req, lang, sample)

    monkeypatch.setattr(recognizer, "_read_tesseract", recording)
    request = RecognizeRequest(page, lines=tuple(text_lines(page)))
    result = asyncio.run(recognizer.recognize([request]))[0]
    assert result.engine == engine and samples == reads
    assert cer(result.text, ground_truth(path), casefold=True) <= max_cer


@pytest.mark.parametrize(
    ("page", "reads", "engine", "words"),
    [
        # A sample read clean and Latin: English alone reads the crop (rus+eng took twice as long
        # on the Senate expenditures table), as it reads the others after a clean English page.
        ("phototest.png", [("rus+eng", True), ("eng", False)], "tesseract:eng", "quick brown dog"),
        ("tech_spec_alpaca_p1.png", [("rus+eng", True), ("rus+eng", False)], "tesseract:rus+eng", "альпака"),
    ],
)
def test_a_crop_whose_sample_reads_clean_english_is_read_in_english_alone(
    engines, monkeypatch, page: str, reads: list[tuple[str, bool]], engine: str, words: str
) -> None:
    from serve_app.regions import text_lines

    _, recognizer = engines
    image = load(page)
    asked: list[tuple[str, bool]] = []
    read = recognizer._read_tesseract

    def recording(req, lang, sample=False):  # type: ignore[no-untyped-def]
        asked.append((lang, sample))
        return read(req, lang, sample)

    monkeypatch.setattr(recognizer, "_read_tesseract", recording)
    request = RecognizeRequest(image, lines=tuple(text_lines(image)))
    result = asyncio.run(recognizer.recognize([request]))[0]
    assert asked == reads and result.engine == engine and words in result.text


def test_a_crop_with_a_clean_english_sample_but_an_unsure_whole_read_skips_rus_eng(
    engines, monkeypatch
) -> None:
    # The FUNSD fax cover's form (its main region): a sample of its lines reads as clean English,
    # the whole crop in English less so (noisy print). Its sample showed it is not Russian, so no
    # rus+eng read is made (0.35 s, then dropped): RapidOCR reads it.
    layout, recognizer = engines
    requests = page_requests(layout, "funsd/83553333_3334")
    main = max(requests, key=text_area)
    asked: list[tuple[str, bool, float] | str] = []
    read_tesseract, read_rapid = recognizer._read_tesseract, recognizer._read_rapid

    def tesseract(req, lang, sample=False):  # type: ignore[no-untyped-def]
        reading = read_tesseract(req, lang, sample)
        asked.append((lang, sample, reading.confidence))
        return reading

    monkeypatch.setattr(recognizer, "_read_tesseract", tesseract)
    monkeypatch.setattr(recognizer, "_read_rapid", lambda req: asked.append("rapid") or read_rapid(req))
    result = recognizer._read(main)
    (sample_lang, sampled, sample_conf), (whole_lang, whole_sampled, whole_conf), *rest = asked
    assert (sample_lang, sampled, whole_lang, whole_sampled) == ("rus+eng", True, "eng", False)
    assert sample_conf >= 0.85 > whole_conf
    assert rest == ["rapid"] and result.engine == "rapidocr" and "Fax Transmittal" in result.text


def test_an_unsure_cyrillic_sample_asks_rapidocr_first_and_russian_stays_russian(
    engines, monkeypatch
) -> None:
    # rus+eng reads Chinese as a few unsure Cyrillic letters (a newspaper's sample: "ри" at 0.18),
    # and its whole read of the crop cost 8.6 s before RapidOCR read it. Now RapidOCR is asked
    # first, and kept only where it reads Chinese: a noisy Russian crop (the alpaca contents, at
    # 0.6x with grain), whose sample reads "СОДЕРЖАНИЕ" at 0.21, is still read by tesseract.
    import cv2

    from serve_app.regions import text_lines

    _, recognizer = engines
    page = cv2.resize(
        load("tech_spec_alpaca_p1.png")[350:900, 80:1150], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA
    )
    grain = np.random.default_rng(0).normal(0, 40, page.shape[:2])[..., None]
    noisy = np.clip(page + grain, 0, 255).astype(np.uint8)
    request = RecognizeRequest(noisy, lines=tuple(text_lines(noisy)))
    probe = recognizer._read_tesseract(request, "rus+eng", sample=True)
    assert probe.confidence < 0.6 and dominant_script(probe.text) == "cyrillic"
    asked: list[str] = []
    read_rapid = recognizer._read_rapid
    monkeypatch.setattr(recognizer, "_read_rapid", lambda req: asked.append("rapid") or read_rapid(req))
    result = asyncio.run(recognizer.recognize([request]))[0]
    assert asked == ["rapid"] and result.engine == "tesseract:rus+eng" and "Кормление" in result.text


def test_light_text_on_a_dark_banner_is_found_cropped_dark_on_light_and_read(engines) -> None:
    from serve_app.crops import crop
    from serve_app.datatypes import Region
    from serve_app.regions import arrange

    _, recognizer = engines
    page = load("phototest.png").copy()
    band = page[60:122]  # its first line, printed white on a dark green banner
    page[60:122] = np.where(band < 128, 255, np.array([20, 90, 70])).astype(np.uint8)
    regions = arrange(page, [Region(bbox=(0, 60, page.shape[1], 122), label="title", score=0.9)])
    [banner] = [r for r in regions if r.label == "title"]
    # The line inside the field is found (not the field itself, which is a picture-sized blob).
    assert banner.lines and all(line[1] >= 70 and line[3] <= 120 for line in banner.lines)
    pixels, lines = crop(page, banner)
    # The field is white now and the letters dark; the reader finds the lines itself.
    assert np.median(pixels) > 200 and pixels.min() < 60 and lines == ()
    [result] = asyncio.run(recognizer.recognize([RecognizeRequest(pixels, "text", lines=lines)]))
    assert result.text == "This is a lot of 12 point text to test the"


def test_rapidocr_never_turns_lines_upside_down(engines) -> None:
    # Its angle classifier flips digit runs on upright pages ("60000≤Q<80000" -> "00008>0≥00009").
    rapid = engines[1]._rapid

    class Refuses:
        def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError("the angle classifier ran")

    saved = [ocr.text_cls for ocr in rapid.engines]
    for ocr in rapid.engines:
        ocr.text_cls = Refuses()
    try:
        text, _ = rapid.read(load("phototest.png"))  # no lines given: detector + recognizer
    finally:
        for ocr, cls in zip(rapid.engines, saved, strict=True):
            ocr.text_cls = cls
    assert "quick brown dog" in text


def test_a_short_word_is_recognised_at_its_own_width_not_padded_to_320_px(engines, monkeypatch) -> None:
    # RapidOCR pads every line to 320 px wide at least: a word of six letters to the width of
    # thirty, and the recognizer's time grows with the width. A word goes in at its own width (at
    # least MIN_REC_WIDTH), a line at its own too.
    rec = engines[1]._rapid.engines[0].text_rec
    session = rec.session.session
    widths: list[int] = []

    class Recording:  # the OpenVINO request, the widths it is given written down
        def __init__(self, request) -> None:  # type: ignore[no-untyped-def]
            self.request = request

        def infer(self, arrays):  # type: ignore[no-untyped-def]
            widths.append(arrays[0].shape[-1])
            return self.request.infer(arrays)

        def get_tensor(self, name):  # type: ignore[no-untyped-def]
            return self.request.get_tensor(name)

    monkeypatch.setattr(session, "_request", Recording(session._request))
    line = load("phototest.png")[88:126, 30:585]  # "This is a lot of 12 point text to test the"
    words = [line[:, :70], line]  # "This", 38 px high: 89 px wide at 48
    texts = [t for t, _ in rec(words)[0]]
    assert texts == ["This", "This is a lot of 12 point text to test the"]
    assert widths == [MIN_REC_WIDTH, int(48 * line.shape[1] / line.shape[0])]


def test_layout_and_rapidocr_run_on_openvino(engines) -> None:
    from onnxruntime import InferenceSession

    from serve_app.engines.rapid import OpenVinoSession

    layout, recognizer = engines
    # The layout model runs on OpenVINO in float32, and finds the regions ONNX Runtime finds.
    wrapper = layout._model.session
    assert isinstance(wrapper.session, OpenVinoSession)
    page = load("phototest.png")
    regions = layout._detect_one(page)
    openvino_session, wrapper.session = wrapper.session, InferenceSession(str(layout.model_path))
    try:
        ort_regions = layout._detect_one(page)
    finally:
        wrapper.session = openvino_session
    assert regions and [r.label for r in regions] == [r.label for r in ort_regions]
    for r, o in zip(regions, ort_regions, strict=True):
        assert max(abs(a - b) for a, b in zip(r.bbox, o.bbox, strict=True)) < 0.05
        assert abs(r.score - o.score) < 1e-4
    # RapidOCR's detector and recognizer run on OpenVINO, one request each per worker ...
    rapid = recognizer._rapid
    assert len(rapid.engines) == AppArgs().recognizer.tesseract_workers
    for ocr in rapid.engines:
        for session in (ocr.text_det.infer.session, ocr.text_rec.session.session):
            assert isinstance(session, OpenVinoSession)
            # Unpinned: OpenVINO pins every one-thread model to the same core, where the workers'
            # calls would take turns.
            assert not session._request.get_compiled_model().get_property("ENABLE_CPU_PINNING")
    assert rapid.precision in ("bf16", "f32")
    assert recognizer.info().detail["rapidocr"].endswith(f"OpenVINO {rapid.precision}")
    # ... and read a line of print as ONNX Runtime reads it.
    line = load("phototest.png")[88:126, 30:585]
    rec = rapid.engines[0].text_rec
    text, score = rec([line])[0][0]
    openvino_session, rec.session.session = rec.session.session, InferenceSession(str(rapid.paths["rec"]))
    try:
        ort_text, ort_score = rec([line])[0][0]
    finally:
        rec.session.session = openvino_session
    assert text == ort_text == "This is a lot of 12 point text to test the"
    assert abs(score - ort_score) < 0.01


async def test_a_ruled_table_is_read_without_its_grid(engines) -> None:
    # Rows of a Russian table whose every cell is boxed, as the layout model finds it on its page
    # (one table region): read as they were, the grid inside each line's box came out as "|".
    from bench.textmetrics import cer
    from serve_app.crops import crop
    from serve_app.datatypes import Region
    from serve_app.regions import text_lines
    from tests.conftest import ground_truth

    _, recognizer = engines
    path = CROPS / "ru_ruled_table_rows.png"
    page = load(path.name, CROPS)
    h, w = page.shape[:2]
    table = Region((0.0, 0.0, float(w), float(h)), "table", 1.0, tuple(text_lines(page)))
    pixels, lines = crop(page, table)
    [result] = await recognizer.recognize([RecognizeRequest(pixels, "table", lines=lines)])
    assert "|" not in result.text and cer(result.text, ground_truth(path)) <= 0.02, result.text


class _OneFigure:
    """A layout that calls the whole page one figure, as the layout model does a scanned table."""

    async def detect(self, image: np.ndarray):  # type: ignore[no-untyped-def]
        from serve_app.datatypes import Region
        from serve_app.regions import text_lines

        h, w = image.shape[:2]
        return [Region((0.0, 0.0, float(w), float(h)), "figure", 1.0, tuple(text_lines(image)))]


async def test_a_scanned_table_is_read_cell_by_cell(engines) -> None:
    # Three rows of a scanned (skewed, faint-ruled) Russian table whose left cells span several
    # right ones. Read as a block, its lines ran across the cells ("Культурный HUNDREDS) S"); as a
    # figure, its text was left out of the Markdown.
    from bench.textmetrics import cer
    from serve_app.assemble import page_markdown
    from serve_app.config import LimitsArgs
    from serve_app.documents import Document
    from serve_app.pipeline import Options, process_page
    from tests.conftest import ground_truth

    _, recognizer = engines
    path = CROPS / "ru_scan_table_cells.jpg"
    doc = Document(path.read_bytes(), LimitsArgs())
    page = await process_page(doc, 0, Options(), _OneFigure(), recognizer)
    [table] = page.blocks
    assert table.label == "table" and "Культурный" in page_markdown(page)
    lines = table.text.splitlines()
    assert "Культурный" in lines and "Трудовой" in lines, table.text
    assert cer(table.text, ground_truth(path)) <= 0.03, table.text


def test_a_table_of_contents_keeps_its_rows_and_every_dot_of_their_leaders(engines) -> None:
    # Tesseract alone drops a row of a hundred dots and a few letters as noise, and reads the
    # dots of the rows it keeps as letters ("иииниинии"): this crop came back as those.
    _, recognizer = engines
    contents = load("tech_spec_alpaca_p1.png")[440:600, 100:1500]
    result = read(recognizer, contents, whole_page=False)
    first, second = result.text.splitlines()
    assert first == "1 Кормление альпака" + "." * 99 + " 1"
    assert second.endswith("альпаками " + "." * 100 + " 2")
