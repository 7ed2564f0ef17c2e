"""Tesseract 5 in-process through tesserocr: one API object per worker thread, each single-threaded."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import CpuRecognizerArgs
from .base import ModelLoadError
from .leaders import Word, erase, find_leaders, with_leaders


@dataclass(frozen=True)
class TessText:
    text: str
    confidence: float  # mean word confidence, 0..1
    # Words of three letters or more, and how many of them are in the language's dictionary: the
    # evidence of which language a text is in that look-alike letters cannot fake (Russian read
    # as English comes out as "xapakTepuctuka", a string no dictionary has).
    words: int
    known: int

    @property
    def known_share(self) -> float | None:
        return self.known / self.words if self.words else None


class TesseractReader:
    name = "tesseract"

    def __init__(self, args: CpuRecognizerArgs) -> None:
        self._args = args
        self._pools: dict[str, queue.SimpleQueue] = {}
        self.languages: list[str] = []
        self.version = ""

    def start(self) -> None:
        # Several tesseract calls share the cores and OpenMP inside each one only slows them down:
        # the serve configs set OMP_THREAD_LIMIT=1 in the replica's runtime_env. Not set here: a
        # process-wide OpenMP limit would also throttle other engines in the same process (vLLM).
        tessdata = Path(self._args.tessdata_dir)
        if not tessdata.is_dir():
            raise ModelLoadError(
                f"tesseract language data not found at {tessdata}: install Debian's "
                "tesseract-ocr-eng and tesseract-ocr-rus (or set recognizer.tessdata_dir)"
            )
        import tesserocr

        self.version = tesserocr.tesseract_version().split()[1]
        self.languages = sorted(p.stem for p in tessdata.glob("*.traineddata") if p.stem != "osd")
        for needed in ("eng", "rus"):
            if needed not in self.languages:
                raise ModelLoadError(
                    f"tesseract language {needed!r} missing from {tessdata} (install tesseract-ocr-{needed})"
                )
        with self._api("rus+eng") as api:  # load once so start-up, not a request, pays for it
            api.SetImage(_pil(np.full((32, 32, 3), 255, dtype=np.uint8)))
            api.GetUTF8Text()

    @property
    def loaded(self) -> bool:
        return bool(self._pools)

    @contextmanager
    def _api(self, lang: str) -> Iterator:
        import tesserocr

        pool = self._pools.setdefault(lang, queue.SimpleQueue())
        try:
            api = pool.get_nowait()
        except queue.Empty:
            api = tesserocr.PyTessBaseAPI(
                path=str(self._args.tessdata_dir) + os.sep, lang=lang, psm=tesserocr.PSM.AUTO
            )
        try:
            yield api
        finally:
            api.Clear()
            pool.put(api)

    def read(self, image: np.ndarray, lang: str, whole_page: bool = False) -> TessText:
        """One crop read with ``lang`` (e.g. "rus+eng"); its dot leaders are counted, not read
        (leaders.py)."""
        import tesserocr

        leaders = find_leaders(image)
        with self._api(lang) as api:
            api.SetPageSegMode(tesserocr.PSM.AUTO if whole_page else tesserocr.PSM.SINGLE_BLOCK)
            api.SetImage(_pil(erase(image, leaders) if leaders else image))
            text = api.GetUTF8Text()
            confidence = max(0, api.MeanTextConf()) / 100.0
            words = known = 0
            lines: list[list[Word]] = []  # with leaders: the words, line by line, to put them back in
            if text.strip():  # with no text there is no word to iterate over (tesserocr raises)
                for word in tesserocr.iterate_level(api.GetIterator(), tesserocr.RIL.WORD):
                    try:
                        token = word.GetUTF8Text(tesserocr.RIL.WORD)
                    except RuntimeError:  # an empty word
                        continue
                    if sum(ch.isalpha() for ch in token) >= 3:
                        words += 1
                        known += bool(word.WordIsFromDictionary())
                    if leaders:
                        if not lines or word.IsAtBeginningOf(tesserocr.RIL.TEXTLINE):
                            lines.append([])
                        lines[-1].append((word.BoundingBox(tesserocr.RIL.WORD), token))
        if leaders:
            text = "\n".join(with_leaders(lines, leaders))
        return TessText(_tidy(text), confidence, words, known)


def _pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image)


def _tidy(text: str) -> str:
    """Drop tesseract's empty lines inside paragraphs and its trailing form feed."""
    lines = [line.rstrip() for line in text.replace("\f", "").splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
