"""A PDF page's own text, where it can be trusted: read in milliseconds, and exact.

A region is read from the text layer when what the layer says is what the page shows:
- its characters are drawn (not the invisible layer a scanner lays over a page image), and they
  stand on the page's ink (not white, clipped, hidden under a picture or off the page);
- they cover the region's ink lines (text that is pixels, a scanned picture, a stamp or text
  drawn as paths, has no characters: such a region is OCR'd);
- the text reads as text: no private-use or control code points, no words of mixed scripts or of
  Latin-1 letters only (a Cyrillic font without a ToUnicode map read as Windows-1252: "Ïðèêàç").
Pure functions over characters and line boxes; no PDFium, no Ray.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .datatypes import Box, Region

TextLayer = Literal["auto", "off", "only"]

LINES_COVERED = 0.9  # of the region's ink line width, spanned by the layer's characters
CHARS_ON_INK = 0.9  # of the layer's characters in the region, standing on an ink line
GARBLED_WORDS = 0.1  # a text with more of its words garbled than this is a broken layer
ODD_CODE_POINTS = 0.01  # ... or with more private-use, control or replacement characters
WORD_GAP = 0.5  # characters this many heights apart on one line are still one stretch of ink

# PDFium marks a hyphen it found at a line end with this code point.
_PDFIUM_HYPHEN = "\x02"
_LIGATURES = re.compile("[\ufb00-\ufb06]")
# A Symbol or Wingdings glyph (Word's list bullets) standing alone: PDFium gives its private-use code.
_SYMBOL_BULLET = re.compile(r"(?<!\S)[\uf000-\uf0ff](?!\S)")
_CJK_CHARS = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class Char:
    """One character of a page's text layer, in PDFium's order (the order it was drawn in)."""

    text: str
    box: Box  # in page pixels at the render scale; zero-sized for a generated space or break
    visible: bool = True  # drawn: its render mode is not "invisible" or "clip only"
    generated: bool = False  # a space or line break PDFium inferred from the characters' positions

    @property
    def blank(self) -> bool:
        return self.generated or not self.text.strip() or self.box[2] <= self.box[0]


def region_chars(
    chars: Sequence[Char], regions: Sequence[Region], invisible: bool = False
) -> list[list[int]]:
    """Each drawn character (``invisible``: undrawn ones too) given to one region: the one owning
    the ink line it stands on (so a region read from the layer and one OCR'd never share a line),
    else the first that holds its centre. Characters of no region (off the page, outside every
    region) are dropped."""
    drawn = [i for i, c in enumerate(chars) if (c.visible or invisible) and not c.blank]
    owners: list[list[int]] = [[] for _ in regions]
    if not drawn or not regions:
        return owners
    centres = _centres([chars[i].box for i in drawn])
    owner = np.full(len(drawn), -1)
    lines = [(b, k) for k, r in enumerate(regions) for b in r.lines]
    if lines:
        on = _inside(centres, [b for b, _ in lines])
        hit = on.any(axis=1)
        owner[hit] = np.array([k for _, k in lines])[on.argmax(axis=1)[hit]]
    inside = _inside(centres, [r.bbox for r in regions])
    rest = (owner < 0) & inside.any(axis=1)
    owner[rest] = inside.argmax(axis=1)[rest]
    for i, k in zip(drawn, owner.tolist(), strict=True):
        if k >= 0:
            owners[k].append(i)
    return owners


def text_of(chars: Sequence[Char], picked: Sequence[int]) -> str:
    """The picked characters in drawing order: a break where PDFium saw one or where other
    regions' characters come between, a space where it saw one."""
    out: list[str] = []
    for prev, i in zip([None, *picked], picked, strict=False):
        if prev is not None:
            between = "".join(c.text for c in chars[prev + 1 : i])
            if "\n" in between or "\r" in between or any(not chars[k].blank for k in range(prev + 1, i)):
                out.append("\n")
            elif between and not between.strip():
                out.append(" ")
        out.append(chars[i].text)
    text = "".join(out).replace(_PDFIUM_HYPHEN, "-")
    text = _SYMBOL_BULLET.sub("\u2022", text)
    return _LIGATURES.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


def garbled(text: str) -> str | None:
    """Why a text layer's text is not text, or None."""
    letters = [ch for ch in text if not ch.isspace()]
    if not letters:
        return None
    odd = sum(1 for ch in letters if unicodedata.category(ch) in ("Co", "Cc", "Cs") or ch == "\ufffd")
    if odd > ODD_CODE_POINTS * len(letters):
        return f"{odd} private-use, control or replacement characters"
    # CJK writes words without spaces and Latin ones amid them ("使用Python语言"): apart, not mixed.
    words = [w for w in _WORD.findall(_CJK_CHARS.sub(" ", text)) if len(w) >= 3]
    bad = sum(1 for w in words if _garbled_word(w))
    if words and bad > GARBLED_WORDS * len(words):
        return f"{bad} of {len(words)} words mix scripts or are accented Latin only"
    return None


def _garbled_word(word: str) -> bool:
    scripts = {_script(ch) for ch in word} - {None}
    if len(scripts) > 1:
        return True
    # Windows-1252 or Latin-1 read of an 8-bit Cyrillic encoding: every letter accented Latin.
    return all("\u00c0" <= ch <= "\u024f" for ch in word)


# Scripts by the first word of a letter's Unicode name; one writing system's several scripts are one.
_SCRIPTS = {"LATIN", "CYRILLIC", "GREEK", "ARABIC", "HEBREW", "ARMENIAN", "GEORGIAN", "DEVANAGARI", "THAI"}
_CJK = {"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "FULLWIDTH", "HALFWIDTH", "IDEOGRAPHIC"}


def _script(ch: str) -> str | None:
    """A letter's script, or None for marks, ordinals and letters of scripts not told apart here."""
    first = unicodedata.name(ch, "").split(" ", 1)[0]
    return "CJK" if first in _CJK else first if first in _SCRIPTS else None


def _coverage(chars: Sequence[Char], picked: Sequence[int], lines: Sequence[Box]) -> float:
    """The share of the lines' width spanned by the picked characters that stand on them."""
    boxes = [chars[i].box for i in picked]
    if not lines:
        return 1.0
    if not boxes:
        return 0.0
    on = _inside(_centres(boxes), lines)  # characters x lines
    total = sum(line[2] - line[0] for line in lines)
    spanned = sum(
        _spanned(line, [boxes[i] for i in np.flatnonzero(on[:, j])]) for j, line in enumerate(lines)
    )
    return spanned / total


def _spanned(line: Box, boxes: Sequence[Box]) -> float:
    """The width of ``line`` under characters that stand on it, word gaps bridged."""
    spans = sorted(
        (max(line[0], b[0] - WORD_GAP * (b[3] - b[1])), min(line[2], b[2] + WORD_GAP * (b[3] - b[1])))
        for b in boxes
    )
    width, end = 0.0, line[0]
    for x0, x1 in spans:
        if x1 > end:
            width += x1 - max(x0, end)
            end = x1
    return width


def read(chars: Sequence[Char], picked: Sequence[int], lines: Sequence[Box]) -> tuple[str, str | None]:
    """A region's text from the layer, and why it cannot stand for what the region shows (None
    when it can). Only what stands on the region's ink lines is read: a white word or one under a
    picture is not text the page shows."""
    if not picked:
        return "", "no text in the layer"
    spanned = _coverage(chars, picked, lines)
    shown = _shown(chars, picked, lines)
    letters = [s for i, s in zip(picked, shown, strict=True) if chars[i].text.isalnum()] or shown
    text = text_of(chars, [i for i, s in zip(picked, shown, strict=True) if s])
    if spanned < LINES_COVERED:
        return text, f"the layer covers {spanned:.0%} of the region's ink lines"
    if sum(letters) < CHARS_ON_INK * len(letters):
        return text, f"{1 - sum(letters) / len(letters):.0%} of the layer's letters stand on no ink"
    return text, garbled(text)


def _shown(chars: Sequence[Char], picked: Sequence[int], lines: Sequence[Box]) -> list[bool]:
    """Whether each picked character is shown: a letter or digit when it stands on an ink line;
    punctuation (a comma below the line, a rule of dashes the line finder took for a ruling) when
    the letters next to it in drawing order are shown, or one of them is."""
    if not lines:
        return [False] * len(picked)
    on = np.asarray(_inside(_centres([chars[i].box for i in picked]), lines).any(axis=1), dtype=bool)
    letter = [chars[i].text.isalnum() for i in picked]
    shown = [bool(o) and a for o, a in zip(on, letter, strict=True)]
    before: bool | None = None  # the last letter's verdict, going forwards
    after: list[bool | None] = [None] * len(picked)  # the next letter's verdict
    nxt: bool | None = None
    for k in range(len(picked) - 1, -1, -1):
        after[k] = nxt
        if letter[k]:
            nxt = shown[k]
    for k in range(len(picked)):
        if letter[k]:
            before = shown[k]
        else:
            near = [v for v in (before, after[k]) if v is not None]
            shown[k] = any(near) if near else bool(on[k])
    return shown


def lines_in(lines: Sequence[Box], bbox: Box) -> list[Box]:
    """The lines whose centre lies in ``bbox``."""
    if not lines:
        return []
    return [b for b, on in zip(lines, _inside(_centres(lines), [bbox])[:, 0], strict=True) if on]


def _centres(boxes: Sequence[Box]) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)


def _inside(points: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """points x boxes: whether each point lies in each box."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y = points[:, :1], points[:, 1:]
    return (x >= b[:, 0]) & (x <= b[:, 2]) & (y >= b[:, 1]) & (y <= b[:, 3])
