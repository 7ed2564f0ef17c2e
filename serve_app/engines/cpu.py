"""The CPU recognizer: tesseract and RapidOCR behind one interface, the reader chosen per region.

Why two readers (measured on 42 real pages, 2 cores): tesseract reads born-digital Latin and
Cyrillic print almost perfectly (CER 0.003-0.10) but fails on noisy scans and has no Chinese here;
RapidOCR (PP-OCRv6) is far better on noisy scans and Chinese but has no Cyrillic at all. Tesseract's
own word confidence separates the cases well: >= 0.85 on clean print, 0.55-0.80 on noisy scans,
0.2-0.6 on Chinese, and its rus+eng model reaches 0.88-0.95 on Russian pages.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from ..config import CpuRecognizerArgs
from ..crops import only_lines, sample_lines
from ..datatypes import Recognition, RecognizeRequest, box_area
from ..errors import UnsupportedLanguage
from .base import ModelInfo, RecognizerEngine
from .rapid import RapidOcrReader
from .tesseract import TesseractReader, TessText

# ISO 639-1 -> tesseract; Russian documents carry English words (names, units, code), so read both.
ISO_TO_TESSERACT = {
    "en": "eng", "ru": "rus+eng", "uk": "ukr+eng", "be": "bel+eng", "kk": "kaz+eng",
    "de": "deu", "fr": "fra", "es": "spa", "it": "ita", "pt": "por", "pl": "pol", "nl": "nld",
    "cs": "ces", "tr": "tur", "ms": "msa",
}  # fmt: skip
RAPIDOCR_LANGS = {"zh", "ch", "chi_sim", "chi_tra"}
AUTO_FIRST_PASS = "rus+eng"
MIN_CYRILLIC_CONFIDENCE = 0.6
NOISE_CONFIDENCE = 0.4
# After a page's main region read as clean English, another region's English reading is kept
# without a rus+eng reading when more than this share of its words is in the English dictionary
# (Russian read as English: 0-0.5, "Серверная платформа Intel Xeon" the 0.5), or it has no letters.
ENG_KNOWN_SHARE = 0.5
# A crop of more lines than this is judged by this many of them first: where tesseract reads them
# below the clean confidence and not as Cyrillic (a noisy scan, a receipt), RapidOCR reads the crop,
# and tesseract's whole read, which would have been thrown away, is not made.
PROBE_LINES = 4
CYRILLIC_TESSERACT = {"rus", "ukr", "bel", "kaz", "bul", "srp", "mkd"}

Script = Literal["latin", "cyrillic", "han", "other", "none"]
# What the page's main region (most text), read first, says of the others: clean English ("eng"),
# Chinese ("zh"), other print tesseract read ("tesseract"), or noisy print RapidOCR read ("rapid").
Hint = Literal["eng", "zh", "tesseract", "rapid"] | None


def dominant_script(text: str) -> Script:
    counts = {"latin": 0, "cyrillic": 0, "han": 0, "other": 0}
    for ch in text:
        if not ch.isalpha():
            continue
        if "\u0400" <= ch <= "\u04ff":
            counts["cyrillic"] += 1
        elif "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
            counts["han"] += 1
        elif ch.isascii() or unicodedata.name(ch, "").startswith("LATIN"):
            counts["latin"] += 1
        else:
            counts["other"] += 1
    total = sum(counts.values())
    if total == 0:
        return "none"
    script, n = max(counts.items(), key=lambda kv: kv[1])
    return script if n / total >= 0.5 else "other"  # type: ignore[return-value]


_CYRILLIC_IN_LATIN = re.compile(r"[\u0400-\u04ff]")
# Cyrillic letters with no Latin look-alike: one of them settles that a text is not English.
_UNAMBIGUOUS_CYRILLIC = re.compile(r"[БбГгДдЁёЖжЗзИиЙйЛлПпФфЦцЧчШшЩщЪъЫыЬьЭэЮюЯявкмнт]")


def _cyrillic_words(text: str) -> int:
    """Words of three letters or more with a letter only Cyrillic has: Russian, even read badly,
    has them line after line; a noisy English scan read with rus+eng has a stray one ("оля" for
    a smudge), which alone sent whole forms to tesseract before RapidOCR read them anyway."""
    return sum(bool(_UNAMBIGUOUS_CYRILLIC.search(w)) for w in re.findall(r"\w{3,}", text))


def _text_area(req: RecognizeRequest) -> tuple[float, int]:
    """How much of a crop is text: the area of its known lines (then of the crop). A picture with a
    few labels can be larger than the page's body, and says less of the page's script and print."""
    return sum(map(box_area, req.lines)), req.image.shape[0] * req.image.shape[1]


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float
    engine: str


def _unless_noise(reading: Reading) -> Reading:
    """Tesseract turns specks, stamps and scribbles into letters at low confidence; where RapidOCR
    saw no text either, that reading is noise, not content."""
    return (
        reading if reading.confidence >= NOISE_CONFIDENCE else Reading("", reading.confidence, reading.engine)
    )


def prefer_english(eng: TessText, mixed: TessText) -> bool:
    """Whether a crop's ``eng`` reading beats its ``rus+eng`` one. Dictionary words decide first:
    Russian read as English is a string of look-alikes that no dictionary holds, while English read
    with ``rus+eng`` has Cyrillic letters inside English words, which no dictionary holds either.
    Words found are counted, not their share: "Са1." for "Cal." is no word of three letters, and
    so raised rus+eng's share. Confidence decides only where the dictionaries cannot (as many words
    found either way), and there English wins only when at least as sure: a Russian name in English
    text, less sure read as English, stays Cyrillic. (A margin in English's favour, 0.05, moved one
    page of the 66 by 0.0005 and none of the validation half: deleted.)"""
    if eng.known != mixed.known:
        return eng.known > mixed.known
    return eng.confidence >= mixed.confidence


class CpuRecognizer(RecognizerEngine):
    def __init__(self, args: CpuRecognizerArgs) -> None:
        self._args = args
        self._tesseract = TesseractReader(args)
        self._rapid = RapidOcrReader(args)
        self._pool = ThreadPoolExecutor(args.tesseract_workers, thread_name_prefix="ocr")
        self._default_lang = args.default_lang

    def start(self) -> None:
        self._tesseract.start()
        self._rapid.start()
        self._default_lang = self.check_lang(self._args.default_lang)

    def check_health(self) -> None:
        if not (self._tesseract.loaded and self._rapid.loaded):
            raise RuntimeError("recognizer models are not loaded")

    def check_lang(self, lang: str) -> str:
        """``auto``, ``zh``, or a tesseract language string such as ``rus+eng``."""
        lang = (lang or "auto").strip().lower()
        if lang in ("", "auto"):
            return "auto"
        parts = [p for p in re.split(r"[+,\s]+", lang) if p]
        if any(p in RAPIDOCR_LANGS for p in parts):
            return "zh"
        codes: list[str] = []
        for part in parts:
            for code in ISO_TO_TESSERACT.get(part, part).split("+"):
                if code not in codes:
                    codes.append(code)
        missing = [c for c in codes if c not in self._tesseract.languages]
        if missing:
            raise UnsupportedLanguage(
                f"language(s) {', '.join(missing)} not installed; available: auto, zh, "
                + ", ".join(self._tesseract.languages)
            )
        return "+".join(codes)

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        """The regions of one page. In ``auto`` mode the main one (most text) is read first: when
        it is clean English, the others are tried with English alone first (half the work of
        ``rus+eng``); when it is Chinese, with RapidOCR first (tesseract has no Chinese here). Where
        RapidOCR read it (noisy print), each of the others is judged by a sample of its lines
        first, as the main one was (unsure and not Cyrillic: RapidOCR reads it; clean English:
        English alone); where tesseract read it, they are not (a clean page pays for one sample)."""
        loop = asyncio.get_running_loop()
        out: list[Recognition | None] = [None] * len(requests)
        rest = list(range(len(requests)))
        hint: Hint = None
        if (
            len(requests) > 1
            and all(r.lang in ("", "auto") for r in requests)
            and self._default_lang == "auto"
        ):
            first = max(rest, key=lambda i: _text_area(requests[i]))
            rest.remove(first)
            main: Recognition = await loop.run_in_executor(self._pool, self._read, requests[first], None)
            out[first] = main
            script = dominant_script(main.text)
            if main.engine.startswith("tesseract"):
                hint = "eng" if script == "latin" else "tesseract"
            elif main.engine == self._rapid.name:
                hint = "zh" if script == "han" else "rapid"
        done = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self._read, requests[i], hint) for i in rest)
        )
        for i, recognition in zip(rest, done, strict=True):
            out[i] = recognition
        return [r for r in out if r is not None]

    def _read(self, req: RecognizeRequest, hint: Hint = None) -> Recognition:
        lang = self._default_lang if req.lang in ("", "auto") else self.check_lang(req.lang)
        try:
            reading = self._route(req, lang, hint)
        except Exception as exc:  # one bad crop is a flagged block, not a failed document
            return Recognition(text="", confidence=0.0, engine="none", error=repr(exc))
        return Recognition(reading.text, reading.confidence, reading.engine)

    def _route(self, req: RecognizeRequest, lang: str, hint: Hint = None) -> Reading:
        if lang == "zh":
            return self._read_rapid(req)
        rapid: Reading | None = None
        eng: TessText | None = None
        if lang == "auto" and hint == "zh":
            # The page's main region was Chinese: so is this one, if RapidOCR reads it so.
            rapid = self._read_rapid(req)
            if dominant_script(rapid.text) == "han":
                return rapid
        first = AUTO_FIRST_PASS if lang == "auto" else lang
        read: TessText | None = None
        latin_sample = False
        if (
            rapid is None
            and hint in (None, "rapid")  # a page's main region, or one of a page of noisy print
            and lang == "auto"  # a named language has no main-first read: every region would pay
            and len(req.lines) > PROBE_LINES
        ):
            probe = self._read_tesseract(req, first, sample=True)
            if probe.confidence < self._args.clean_confidence / 100:
                cyrillic = dominant_script(probe.text) == "cyrillic" or _cyrillic_words(probe.text) >= 2
                if not cyrillic or probe.confidence < MIN_CYRILLIC_CONFIDENCE:
                    # Unsure Cyrillic is as likely Chinese read with rus+eng (a newspaper's sample:
                    # "ри" at 0.18): RapidOCR is asked first, and kept only if it reads Chinese.
                    rapid = self._read_rapid(req)
                    if rapid.text.strip() and (not cyrillic or dominant_script(rapid.text) == "han"):
                        return rapid
            elif dominant_script(probe.text) == "latin":
                hint = "eng"  # a clean English sample: English alone first, as on an English page
                latin_sample = True
        if lang == "auto" and hint == "eng":
            # The page's main region (or this crop's sample) was clean English: so is this crop,
            # if English reads it cleanly, unless rus+eng reads it as Russian with more words of
            # its dictionary (Russian read as English is clean-looking nonsense: "pecypcoB").
            eng = self._read_tesseract(req, "eng")
            if (
                dominant_script(eng.text) in ("latin", "none")
                and eng.confidence >= self._args.clean_confidence / 100
            ):
                share = eng.known_share
                if (share is not None and share > ENG_KNOWN_SHARE) or not any(map(str.isalpha, eng.text)):
                    return Reading(eng.text, eng.confidence, "tesseract:eng")
                read = self._read_tesseract(req, first)
                if dominant_script(read.text) != "cyrillic" or prefer_english(eng, read):
                    return Reading(eng.text, eng.confidence, "tesseract:eng")
            elif latin_sample:
                # Its sample read as clean English, the whole crop less so: noisy print, not Russian
                # (whose sample reads as Cyrillic). A rus+eng read would only be made to be dropped.
                rapid = self._read_rapid(req)
                english = Reading(eng.text, eng.confidence, "tesseract:eng")
                return rapid if rapid.text.strip() else _unless_noise(english)
        read = read or self._read_tesseract(req, first)
        text, conf = read.text, read.confidence
        reading = Reading(text, conf, f"tesseract:{first}")
        script = dominant_script(text)
        cyrillic_lang = bool(CYRILLIC_TESSERACT & set(first.split("+")))
        if script == "cyrillic" and cyrillic_lang:
            if lang == "auto" and not _UNAMBIGUOUS_CYRILLIC.search(text):
                # Only letters that Latin shares (ТНЕ, ВОХ): English in capitals, as often as not.
                eng = eng or self._read_tesseract(req, "eng")
                if prefer_english(eng, read):
                    return Reading(eng.text, eng.confidence, "tesseract:eng")
            if lang != "auto" or conf >= MIN_CYRILLIC_CONFIDENCE:
                return reading
            # Unsure: Chinese read with rus+eng also comes out as low-confidence Cyrillic.
            rapid = rapid or self._read_rapid(req)
            return rapid if dominant_script(rapid.text) == "han" else _unless_noise(reading)
        if script in ("latin", "none") and conf >= self._args.clean_confidence / 100:
            if lang == "auto" and _CYRILLIC_IN_LATIN.search(text):
                # rus+eng turns some English words into Cyrillic look-alikes; try it as English.
                eng = eng or self._read_tesseract(req, "eng")
                if prefer_english(eng, read):
                    return Reading(eng.text, eng.confidence, "tesseract:eng")
            return reading
        if lang not in ("auto", "eng"):
            # The caller named the language; RapidOCR has no Cyrillic and no accented letters.
            return reading
        rapid = rapid or self._read_rapid(req)
        return rapid if rapid.text.strip() else _unless_noise(reading)

    def _read_tesseract(self, req: RecognizeRequest, lang: str, sample: bool = False) -> TessText:
        # Tesseract reads whatever ink it is given: of a crop whose lines are known, only theirs
        # (RapidOCR's detector gets the whole crop and finds faint lines that the finder missed).
        if sample:  # a few of its lines, one under the other: one block
            return self._tesseract.read(sample_lines(req.image, req.lines, PROBE_LINES), lang)
        image = only_lines(req.image, req.lines) if req.lines else req.image
        return self._tesseract.read(image, lang, req.whole_page)

    def _read_rapid(self, req: RecognizeRequest) -> Reading:
        text, score = self._rapid.read(req.image, req.lines)
        return Reading(text, score, self._rapid.name)

    def info(self) -> ModelInfo:
        return ModelInfo(
            "recognizer",
            "cpu:tesseract+rapidocr",
            {
                "tesseract": self._tesseract.version,
                "languages": ["auto", "zh", *self._tesseract.languages],
                "rapidocr": f"PP-OCRv6 small (ch, en, ja, Latin), OpenVINO {self._rapid.precision}",
                "default_lang": self._default_lang,
            },
        )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
