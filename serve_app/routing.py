"""``route_by_script``: regions in Cyrillic read by the recognizer configured for them.

VLMs differ most on Russian (PaddleOCR-VL 1.6 reads it worse than 1.5, PaddleOCR #18088; MinerU
#4195). A region's script is known before reading when the request's ``lang`` names a Cyrillic
language (``rus``, ``ru``, ``rus+eng``...); every region then goes to the Cyrillic model at once.
Otherwise the default model reads first and the regions it read as Cyrillic are read again by the
Cyrillic model. A Cyrillic region that comes back flagged (cut off, looping) is read once more by
the ``fallback`` recognizer (the CPU reader, whose tesseract reads Russian), whose reading is kept
when it is not flagged and has text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .datatypes import Recognition, RecognizeRequest
from .pipeline import RecognizerClient

# Languages written in Cyrillic, as tesseract and ISO 639-1 spell them.
CYRILLIC_LANGS = frozenset({
    "rus", "ru", "ukr", "uk", "bel", "be", "bul", "bg", "srp", "sr", "mkd", "mk", "kaz", "kk",
    "kir", "ky", "tgk", "tg", "mon", "mn", "tat", "tt", "bak", "ba", "chv", "cv",
})  # fmt: skip


def names_cyrillic(lang: str) -> bool:
    """Whether a request's ``lang`` (``rus``, ``rus+eng``, ``ru``) names a Cyrillic language."""
    return any(part.strip() in CYRILLIC_LANGS for part in lang.lower().replace(",", "+").split("+"))


def is_cyrillic(text: str) -> bool:
    """More Cyrillic letters than Latin ones, and at least three letters."""
    cyrillic = sum("\u0400" <= c <= "\u04ff" for c in text)
    latin = sum(c.isascii() and c.isalpha() for c in text)
    return cyrillic + latin >= 3 and cyrillic >= latin


class ByScript:
    """A ``RecognizerClient`` that sends Cyrillic regions to ``cyrillic``, and flagged Cyrillic
    readings to ``fallback``."""

    def __init__(
        self, default: RecognizerClient, cyrillic: RecognizerClient, fallback: RecognizerClient | None
    ) -> None:
        self._default, self._cyrillic, self._fallback = default, cyrillic, fallback

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        named = [i for i, r in enumerate(requests) if names_cyrillic(r.lang)]
        rest = [i for i in range(len(requests)) if i not in set(named)]
        out: list[Recognition | None] = [None] * len(requests)
        await self._read(self._cyrillic, requests, named, out)
        await self._read(self._default, requests, rest, out)
        again = [i for i in rest if is_cyrillic(_text(out[i]))]
        await self._read(self._cyrillic, requests, again, out)
        if self._fallback is not None:
            flagged = [i for i in [*named, *again] if _flagged(out[i])]
            if flagged:
                second: list[Recognition | None] = [None] * len(requests)
                # Read as the fallback reads unknown text (rus+eng first): the request's lang may
                # name another script than the one this region was read in.
                auto = [replace(r, lang="auto") for r in requests]
                await self._read(self._fallback, auto, flagged, second)
                for i in flagged:
                    if not _flagged(second[i]) and _text(second[i]).strip():
                        out[i] = second[i]
        assert all(r is not None for r in out)
        return out  # type: ignore[return-value]

    @staticmethod
    async def _read(
        reader: RecognizerClient,
        requests: Sequence[RecognizeRequest],
        which: list[int],
        out: list[Recognition | None],
    ) -> None:
        if which:
            for i, reading in zip(which, await reader.recognize([requests[i] for i in which]), strict=True):
                out[i] = reading


def _text(r: Recognition | None) -> str:
    return "" if r is None else r.text


def _flagged(r: Recognition | None) -> bool:
    return r is None or r.error is not None
