"""A ruled table's grid: its rules painted out, and its cells in reading order.

Read as a block, a table's lines run across its cells ("Культурный кинотеатров": a left cell's word
joined to a right cell's line) and its grid reads as "|" between the words. Where the table is
ruled, its rules cut it into cells; each cell is read on its own, and the cells are read row by
row (by their top edge, then left to right), as a person reads them and as a PDF draws them. Pure
pixel work on numpy arrays and cv2; no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .datatypes import Box

INK = 160  # grey under this is ink
# A straight stroke longer than this many of the table's line heights is a ruling line (the grid,
# an underline), not a letter: no letter is taller than its line.
RULE_TALL = 1.3
RULE_WIDE = 4.0
RULE_LEFT = 1.5  # ... and where strokes this long are left beside them, the rules came in pieces
RULE_LEFT_SHARE = 0.05
TALLEST = 3.0  # a table's tallest line is taken at most this many of its median line heights
PAPER_PX = 9  # the paper's grey is the lightest within this many pixels
RULE_CONTRAST = 20  # a rule is this much darker than the paper
SKEW_PX = 3  # strokes are thickened across by this many pixels before they are measured
PIECE_SHARE = 0.1  # a cell holds part of a line if it has this share of the line's ink
CELL_FILL = 0.8  # a cell fills this share of its box: what does not is the space round the grid
CELL_LINES_SHARE = 0.5  # no cell holds more than this share of the table's lines ...
OUTSIDE_SHARE = 0.1  # ... nor does the space round it hold more than this share of them
CELL_MIN = 0.5  # a cell is at least this many line heights high and wide ...
CELL_INK_COVER = 0.98  # ... and the cells hold this share of the table's text ink, or it is no grid


@dataclass(frozen=True)
class Cell:
    box: Box  # x0, y0, x1, y1 in the table crop's pixels
    pixels: np.ndarray  # its part of the crop, rules and other cells' ink painted white
    lines: tuple[Box, ...]  # the text lines in it, in its pixels


def _ink(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ink as 0/1, and strokes as 0/1: darker than the paper around them by RULE_CONTRAST (a scan's
    faint grey rules are no ink at INK, and a scan's paper is no white)."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    paper = cv2.dilate(gray, np.ones((PAPER_PX, PAPER_PX), np.uint8))
    strokes = gray.astype(np.int16) < paper.astype(np.int16) - RULE_CONTRAST
    return (gray < INK).astype(np.uint8), strokes.astype(np.uint8)


def _rules(
    ink: np.ndarray, strokes: np.ndarray, line_h: float, tallest: float, skew: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The vertical and the horizontal rules among the strokes (0/1 masks), or None where there
    are none or where they came in pieces: a skewed or broken rule (a scan) leaves strokes that
    read as "_" and "E" between the words, worse than the whole rule. The strokes are thickened
    across by ``skew`` pixels first: a scan's rule, skewed a little, is one unbroken stroke then."""
    import cv2

    tall = cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(3, round(RULE_TALL * tallest))))
    wide = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, round(RULE_WIDE * line_h)), 1))
    across = np.ones((1, skew), np.uint8)
    vertical = cv2.morphologyEx(cv2.dilate(strokes, across), cv2.MORPH_OPEN, tall) & strokes
    horizontal = cv2.morphologyEx(cv2.dilate(strokes, across.T), cv2.MORPH_OPEN, wide) & strokes
    rules = cv2.dilate(np.maximum(vertical, horizontal), np.ones((3, 3), np.uint8))
    if not rules.any():
        return None
    left = np.where(rules > 0, 0, ink).astype(np.uint8)
    short = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, round(RULE_LEFT * line_h)), 1))
    if cv2.morphologyEx(left, cv2.MORPH_OPEN, short).sum() > RULE_LEFT_SHARE * rules.sum():
        return None
    return vertical, horizontal


def _int_box(box: Box) -> tuple[int, int, int, int]:
    return int(box[0]), int(box[1]), int(np.ceil(box[2])), int(np.ceil(box[3]))


def _box(stat: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in stat[:4])
    return x, y, x + w, y + h


def _fill(labels: np.ndarray, stat: np.ndarray, i: int) -> float:
    """The share of its box that component ``i`` fills, its box turned as the component is: a
    scan's cell, skewed by a degree, fills three quarters of its upright box when one line high."""
    import cv2

    x0, y0, x1, y1 = _box(stat)
    mask = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    _, (w, h), _ = cv2.minAreaRect(np.vstack(contours))
    return float(stat[4]) / max(1.0, w * h)


def _left_top(labels: np.ndarray, stat: np.ndarray, i: int, reach: int) -> int:
    """The top of component ``i`` within ``reach`` pixels of its left edge."""
    x0, y0, x1, y1 = _box(stat)
    rows = np.flatnonzero((labels[y0:y1, x0 : min(x1, x0 + reach)] == i).any(axis=1))
    return y0 + int(rows[0])


def _pieces(lines: Sequence[Box], labels: np.ndarray, text: np.ndarray) -> dict[int, list[Box]]:
    """Each cell's parts of the text lines (the box of the line's ink in it, in the crop's
    pixels): a line read across cells is cut at their walls; a cell with under PIECE_SHARE of a
    line's ink (a descender, a speck) has no part of it."""
    out: dict[int, list[Box]] = {}
    for line in lines:
        x0, y0, x1, y1 = (max(0, int(v)) for v in line)
        cells, ink = labels[y0 : y1 + 1, x0 : x1 + 1], text[y0 : y1 + 1, x0 : x1 + 1]
        owners = cells[ink]
        if not owners.size:
            continue
        counts = np.bincount(owners)
        for i in np.flatnonzero(counts >= PIECE_SHARE * owners.size):
            ys, xs = np.nonzero(ink & (cells == i))
            box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
            out.setdefault(int(i), []).append(tuple(float(v) for v in box))  # type: ignore[arg-type]
    return out


def _to_edges(mask: np.ndarray, reach: int) -> np.ndarray:
    """Each column's rule that ends within ``reach`` of the top or bottom edge drawn on to it: a
    table cut by a page break, or drawn without its outer frame, leaves its edge cells open."""
    out = mask.copy()
    h = mask.shape[0]
    has = mask.any(axis=0)
    first = np.where(has, mask.argmax(axis=0), h)
    last = np.where(has, h - 1 - mask[::-1].argmax(axis=0), -1)
    for x in np.flatnonzero(has & (first < reach)):
        out[: first[x], x] = 1
    for x in np.flatnonzero(has & (last >= h - reach)):
        out[last[x] :, x] = 1
    return out


def grid(rgb: np.ndarray, lines: Sequence[Box]) -> tuple[np.ndarray, list[Cell]]:
    """A table crop with its ruling lines painted white (as it is where they came in pieces), and
    its cells in reading order, each with only its own ink: none where it is no ruled grid (no
    rules, rules in pieces, no two cells side by side, most of the text in one cell: a form's
    underlines and boxes). ``lines``: its text lines, in its pixels; a vertical rule is taller than
    the tallest (a heading's letters are taller than a cell's)."""
    import cv2

    heights = [b[3] - b[1] for b in lines]
    line_h = float(np.median(heights)) if len(heights) else 0.0
    if rgb.size == 0 or line_h < 4:
        return rgb, []
    tallest = min(max(heights), TALLEST * line_h)  # a taller "line" is lines run together
    ink, strokes = _ink(rgb)
    # Painted out: the dark rules, where they are whole. Walls between cells: faint and skewed
    # rules too (a scan's), which would take the bottoms of letters standing on them if painted.
    painted = _rules(ink, ink, line_h, line_h, 1)
    clean = rgb
    if painted is not None:
        clean = rgb.copy()
        clean[cv2.dilate(np.maximum(*painted), np.ones((3, 3), np.uint8)) > 0] = 255
    found = _rules(ink, strokes, line_h, tallest, SKEW_PX)
    if found is None:
        return clean, []
    vertical, horizontal = found
    reach = max(2, round(line_h))
    walls = np.maximum(_to_edges(vertical, reach), _to_edges(horizontal.T, reach).T)
    walls = cv2.dilate(walls, np.ones((3, 3), np.uint8))
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = 1
    text = (ink > 0) & (walls == 0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats((walls == 0).astype(np.uint8), connectivity=4)
    inked = np.bincount(labels[text], minlength=n)
    sized = [i for i in range(1, n) if min(stats[i, 2], stats[i, 3]) >= CELL_MIN * line_h]
    read = [i for i in sized if inked[i] >= line_h]  # less ink than a letter is a speck
    if len(read) < 2 or inked[sized].sum() < CELL_INK_COVER * text.sum():
        return clean, []
    boxes = {i: _box(stats[i]) for i in read}
    pieces = _pieces(lines, labels, text)
    read = [i for i in read if i in pieces]
    # What fills its box too little is the space round the grid: each of its few lines (a
    # caption, a page number) is read on its own, where it stands among the cells.
    outside = [i for i in read if _fill(labels, stats[i], i) < CELL_FILL]
    # box, component, the line or None, the top of its left edge
    Unit = tuple[tuple[int, int, int, int], int, Box | None, int]
    reach = max(1, round(line_h))
    units: list[Unit] = [
        (boxes[i], i, None, _left_top(labels, stats[i], i, reach)) for i in read if i not in outside
    ]
    units += [(_int_box(b), i, b, int(b[1])) for i in outside for b in pieces[i]]
    most = max((len(pieces[i]) for i in read if i not in outside), default=0)
    around = sum(len(pieces[i]) for i in outside)
    total = sum(len(pieces[i]) for i in read)
    if not units or most > CELL_LINES_SHARE * total or around > OUTSIDE_SHARE * total:
        return clean, []  # most of the text in one cell, or round the grid: a form, a page
    # Cells of one row start within half a line of each other: read them left to right.
    # A skewed cell's box starts at its highest corner: its left edge's top places it.
    rows: list[list[Unit]] = []
    for unit in sorted(units, key=lambda u: (u[3], u[0][0])):
        if not rows or unit[3] - rows[-1][0][3] > line_h / 2:
            rows.append([])
        rows[-1].append(unit)
    if len(rows) == len(units):  # one cell a row: bands between rules, no grid
        return clean, []
    out = []
    for (x0, y0, x1, y1), i, line, _ in (u for row in rows for u in sorted(row, key=lambda u: u[0][0])):
        pixels = clean[y0:y1, x0:x1].copy()
        pixels[labels[y0:y1, x0:x1] != i] = 255  # a cell that is no rectangle holds others' ink
        inside = tuple((a - x0, b - y0, c - x0, d - y0) for a, b, c, d in ([line] if line else pieces[i]))
        out.append(Cell((float(x0), float(y0), float(x1), float(y1)), pixels, inside))
    return clean, out
