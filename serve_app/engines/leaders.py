"""Dot leaders ("ВВЕДЕНИЕ.............3", "Подпись ..........."): found in the pixels, erased
before tesseract reads a crop, and put back in its text as the dots they are.

Tesseract reads them badly. Under PSM 6 it drops a row of many small blobs and few letters as noise
(``textord_noise_rejrows``), so a table of contents loses its longest rows whole, title and page
number with them; the rows it keeps, its LSTM reads as letters ("иииннии", "eeeceeese"), which
also drags the crop's confidence down. With the dots erased, a row is a title and a page number,
which tesseract reads; the dots are counted here, where they are plain to see: eight or more blobs
of one small size on one line, evenly spaced, each under PITCH_SHARE of the spacing (the letters of
a word fill their spacing almost whole).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..datatypes import Box

MIN_DOTS = 8
MAX_LOST = 2  # dots in a row that a scan may lose (or thresholding may break) inside a run
DOT_FILL = 0.65  # a dot fills its box (a disc: 0.79); a letter's strokes and holes fill half of it
# Spaced dots (". . . .", 3 px a dot 33 px apart on an IRS form) are read by tesseract as they are.
MAX_PITCH = 5  # the distance to the next dot is at most this many dots
PITCH_SHARE = 0.7  # a dot is at most this share of the distance to the next one (letters: 0.8-0.95)
PITCH_SPREAD = 0.35  # consecutive distances differ by at most this share
SIZE_SPREAD = 1.6  # a run's dots differ in height by at most this factor
# A word and a run closer than this share of the dots' spacing were printed with no space between
# (the table of contents p2: 4-8 px where none, 11-14 px where one; spacing 9.7 px).
JOIN_GAP = 0.9


@dataclass(frozen=True)
class Leader:
    box: Box  # the run's dots, first to last
    count: int
    pitch: float


def find_leaders(image: np.ndarray) -> list[Leader]:
    import cv2

    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    x, y, w, h, area = (stats[1:, i].astype(float) for i in range(5))
    round_ = (w >= 2) & (h >= 2) & (w <= 2 * h) & (h <= 2 * w)
    dots = np.flatnonzero(round_ & (area >= DOT_FILL * w * h))
    if len(dots) < MIN_DOTS:
        return []
    leaders: list[Leader] = []
    for row in _rows(dots, y + h / 2, h):
        row = sorted(row, key=lambda i: x[i])
        boxes = [(float(x[i]), float(y[i]), float(x[i] + w[i]), float(y[i] + h[i])) for i in row]
        leaders.extend(_runs(boxes))
    return leaders


def _rows(dots: np.ndarray, middle: np.ndarray, height: np.ndarray) -> list[list[int]]:
    """Dots grouped by the height of their middles, each within a dot's height of the one before
    (so the dots of a line skewed by a degree stay one row)."""
    rows: list[list[int]] = []
    for i in sorted(dots, key=lambda i: middle[i]):
        if rows and middle[i] - middle[rows[-1][-1]] <= max(2.0, height[rows[-1][-1]]):
            rows[-1].append(int(i))
        else:
            rows.append([int(i)])
    return [r for r in rows if len(r) >= MIN_DOTS]


def _runs(boxes: Sequence[Box]) -> list[Leader]:
    """The evenly spaced runs of like dots in one row of dots, left to right. Dots lost to the
    scan (a gap of two or three spacings) are counted and do not end the run."""
    out: list[Leader] = []
    run, lost = [boxes[0]], 0

    def close() -> bool:
        count = len(run) + lost
        if count < MIN_DOTS:
            return False
        box = (run[0][0], min(b[1] for b in run), run[-1][2], max(b[3] for b in run))
        out.append(Leader(box, count, (run[-1][0] - run[0][0]) / (count - 1)))
        return True

    for box in boxes[1:]:
        last = run[-1]
        pitch = box[0] - last[0]
        size = max(box[2] - box[0], box[3] - box[1], last[2] - last[0], last[3] - last[1])
        heights = sorted((box[3] - box[1], run[0][3] - run[0][1]))
        alike = PITCH_SHARE * pitch >= size >= pitch / MAX_PITCH and heights[1] <= SIZE_SPREAD * heights[0]
        step = (last[0] - run[0][0]) / (len(run) + lost - 1) if len(run) > 1 else pitch
        steps = round(pitch / step) if alike else 0
        if 1 <= steps <= MAX_LOST + 1 and abs(pitch - steps * step) <= PITCH_SPREAD * step:
            run.append(box)
            lost += steps - 1
            continue
        closed = close()
        run, lost = ([box], 0) if closed or not alike else ([last, box], 0)
    close()
    return out


def erase(image: np.ndarray, leaders: Sequence[Leader]) -> np.ndarray:
    """The image with each run painted over in its background (the crop's median colour)."""
    out = image.copy()
    paper = np.median(image.reshape(-1, image.shape[2]) if image.ndim == 3 else image, axis=0)
    for leader in leaders:
        x0, y0, x1, y1 = (int(v) for v in leader.box)
        out[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = paper
    return out


Word = tuple[Box, str]


def with_leaders(lines: Sequence[Sequence[Word]], leaders: Sequence[Leader]) -> list[str]:
    """Text lines in tesseract's order (each a list of words with boxes, left to right) with the
    dots put back: each run into the line it sits on, the nearest where columns share a height,
    after the words left of it; a run beside no word read becomes a line of its own, after the
    line above it."""
    rows: list[list[Word]] = [list(words) for words in lines if words]
    pitch = {leader.box: leader.pitch for leader in leaders}
    for leader in leaders:
        dots: Word = (leader.box, "." * leader.count)
        beside = [row for row in rows if _overlap(row, leader.box) > 0]
        if beside:
            row = min(beside, key=lambda row: _x_gap(row, leader.box))
            row.append(dots)
            row.sort(key=lambda word: word[0][0])
            continue
        above = [i for i, row in enumerate(rows) if _top(row) <= leader.box[1]]
        at = max(above, key=lambda i: (-_x_gap(rows[i], leader.box), _top(rows[i])), default=-1)
        rows.insert(at + 1, [dots])
    return [_joined(words, pitch) for words in rows]


def _top(row: Sequence[Word]) -> float:
    return min(b[1] for b, _ in row)


def _overlap(row: Sequence[Word], box: Box) -> float:
    return min(max(b[3] for b, _ in row), box[3]) - max(_top(row), box[1])


def _x_gap(row: Sequence[Word], box: Box) -> float:
    return max(0.0, box[0] - max(b[2] for b, _ in row), min(b[0] for b, _ in row) - box[2])


def _joined(words: Sequence[Word], pitch: dict[Box, float]) -> str:
    """A line's words joined by spaces, but a run of dots and the word beside it by none where no
    space was printed (closer than JOIN_GAP of the dots' spacing)."""
    text = words[0][1]
    for (before, _), (box, word) in itertools.pairwise(words):
        dots = pitch.get(box) or pitch.get(before)
        gap = box[0] - before[2]
        text += word if dots and gap < JOIN_GAP * dots else " " + word
    return text
