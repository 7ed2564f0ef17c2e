"""tables.grid on drawn pages: which ruled crops are grids of cells, and in what order they read."""

from __future__ import annotations

import cv2
import numpy as np

from serve_app.regions import text_lines
from serve_app.tables import grid

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _page(h: int = 400, w: int = 900) -> np.ndarray:
    return np.full((h, w, 3), 255, dtype=np.uint8)


def _write(page: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(page, text, (x, y), FONT, 0.9, (0, 0, 0), 2, cv2.LINE_AA)


def test_a_ruled_grid_reads_cell_by_cell_row_by_row_even_where_a_cell_spans_rows() -> None:
    page = _page()
    for y in (20, 140, 260, 380):  # rows; the left column's cell spans the lower two
        cv2.line(page, (20 if y in (20, 380) else 300, y), (880, y), (0, 0, 0), 2)
    for x in (20, 300, 880):
        cv2.line(page, (x, 20), (x, 380), (0, 0, 0), 2)
    cv2.line(page, (20, 140), (300, 140), (0, 0, 0), 2)
    _write(page, "Header", 60, 90)
    _write(page, "first line", 330, 70)
    _write(page, "second line", 330, 110)
    _write(page, "Spanning", 60, 270)
    _write(page, "upper right", 330, 210)
    _write(page, "lower right", 330, 330)
    clean, cells = grid(page, text_lines(page))
    assert len(cells) == 5
    # By top edge, then left to right: the spanning cell before the right cell on its top row.
    assert [(round(c.box[0], -2), round(c.box[1], -2)) for c in cells] == [
        (0, 0), (300, 0), (0, 100), (300, 100), (300, 300)
    ]  # fmt: skip
    assert [len(c.lines) for c in cells] == [1, 2, 1, 1, 1]
    assert clean[140, 600].min() == 255  # the rules are painted out


def test_a_form_of_underlined_fields_in_a_frame_is_no_grid() -> None:
    form = _page()
    cv2.rectangle(form, (10, 10), (890, 390), (0, 0, 0), 2)
    for i, y in enumerate((80, 160, 240, 320)):
        _write(form, f"Field {i}:", 40, y)
        cv2.line(form, (200, y + 4), (860, y + 4), (0, 0, 0), 2)  # the value's underline
        _write(form, f"value {i}", 220, y)
    clean, cells = grid(form, text_lines(form))
    assert cells == [] and clean.shape == form.shape


def test_a_scanned_grid_skewed_by_a_degree_still_reads_cell_by_cell() -> None:
    # One-line rows of a wide column: skewed, each cell fills under 0.8 of its upright box, as the
    # space round a grid does; it fills its turned box.
    page = _page(h=340, w=1000)
    rows = range(30, 311, 40)
    for y in rows:
        cv2.line(page, (30, y), (970, y), (0, 0, 0), 2)
    for x in (30, 230, 970):
        cv2.line(page, (x, 30), (x, 310), (0, 0, 0), 2)
    for i, y in enumerate(rows[:-1]):
        _write(page, f"item {i}", 50, y + 30)
        _write(page, f"the value of item {i}", 250, y + 30)
    turn = cv2.getRotationMatrix2D((500, 170), 1.0, 1.0)
    skewed = cv2.warpAffine(page, turn, (1000, 340), borderValue=(255, 255, 255))
    _, cells = grid(skewed, text_lines(skewed))
    assert len(cells) == 2 * (len(rows) - 1)
    assert [len(c.lines) for c in cells] == [1] * len(cells)
