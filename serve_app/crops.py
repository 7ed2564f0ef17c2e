"""A region's pixels as a reader wants them: cut out with a margin (and to its outline, where the
layout gives one), on a white border, with its known text lines beside them, light-on-dark text
inverted, a ruled table cut into cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import tables
from .datatypes import Box, Region

CROP_MARGIN_PX = 4  # grow each region a little: layout boxes often clip descenders
CROP_BORDER_PX = 10  # white border: tesseract reads text touching the edge badly
DARK_FIELD = 110  # grey under this is dark; a region ringed by it, and this dark in part ...
DARK_SHARE = 0.3  # ... holds light text on a dark field (a frame round a paragraph is thinner)


Crop = tuple[np.ndarray, tuple[Box, ...]]  # pixels to read, and their text lines in those pixels


def crop(image: np.ndarray, region: Region) -> Crop:
    """The region's pixels on a white border, and its known lines in the crop's pixels.

    Light text on a dark field (a banner, a coloured badge: the region is ringed by dark) comes
    back whole, inverted to dark text on white, with no lines (the reader finds them itself)."""
    return _crops(image, region, split_cells=False)[0]


def crops(image: np.ndarray, region: Region) -> list[Crop]:
    """What to read of a region: its crop, or for a ruled table (where its lines are known) each
    of its cells, in reading order (tables.py)."""
    return _crops(image, region, split_cells=True)


def _crops(image: np.ndarray, region: Region, split_cells: bool) -> list[Crop]:
    h, w = image.shape[:2]
    m = CROP_MARGIN_PX
    x0, y0 = max(0, int(region.bbox[0]) - m), max(0, int(region.bbox[1]) - m)
    x1, y1 = min(w, int(np.ceil(region.bbox[2])) + m), min(h, int(np.ceil(region.bbox[3])) + m)
    inverted = _light_on_dark(image[y0:y1, x0:x1], m)
    if inverted is not None:
        return [(_bordered(np.repeat(inverted[:, :, None], 3, axis=2)), ())]
    lines = [(lx0 - x0, ly0 - y0, lx1 - x0, ly1 - y0) for lx0, ly0, lx1, ly1 in region.lines]
    raw = image[y0:y1, x0:x1]
    if len(region.polygon) >= 3:
        raw = _inside(raw, [(px - x0, py - y0) for px, py in region.polygon], m)
    if lines and region.label in ("table", "figure"):
        # A scanned table is often called a figure; a chart's text sits on its grid and bars, so
        # a figure's rules are painted out only where they make a grid of cells.
        clean, cells = tables.grid(raw, lines)
        if split_cells and cells:
            return [_lines_of(c.pixels, c.lines) for c in cells]
        if region.label == "table":
            raw = clean
    return [_lines_of(raw, lines)]


def _lines_of(pixels: np.ndarray, lines: Sequence[Box]) -> Crop:
    """The pixels on a white border, and the lines in the bordered pixels. All of the pixels: a
    reader that finds lines itself (RapidOCR's detector) reads faint print that the line finder
    missed; one that reads what it is given (tesseract) takes ``only_lines`` of it."""
    return _bordered(pixels), _shifted(lines)


def only_lines(pixels: np.ndarray, lines: Sequence[Box]) -> np.ndarray:
    """Only the ink of these lines (a little grown): not a line that another region owns, nor the
    specks and strokes between lines."""
    m = CROP_MARGIN_PX
    out = np.full_like(pixels, 255)
    for lx0, ly0, lx1, ly1 in lines:
        a, b = max(0, int(ly0) - m), min(pixels.shape[0], int(np.ceil(ly1)) + m)
        c, d = max(0, int(lx0) - m), min(pixels.shape[1], int(np.ceil(lx1)) + m)
        out[a:b, c:d] = pixels[a:b, c:d]
    return out


def sample_lines(pixels: np.ndarray, lines: Sequence[Box], k: int) -> np.ndarray:
    """``k`` of the lines, spread from top to bottom, one under the other on white: a strip to
    judge a crop's print by before it is read whole."""
    m = CROP_MARGIN_PX
    ordered = sorted(lines, key=lambda b: b[1])
    picked = [ordered[round(i * (len(ordered) - 1) / max(1, k - 1))] for i in range(min(k, len(ordered)))]
    strips = [
        pixels[max(0, int(y0) - m) : int(np.ceil(y1)) + m, max(0, int(x0) - m) : int(np.ceil(x1)) + m]
        for x0, y0, x1, y1 in picked
    ]
    height = sum(s.shape[0] + m for s in strips) + m
    out = np.full((height, max(s.shape[1] for s in strips), pixels.shape[2]), 255, np.uint8)
    y = m
    for strip in strips:
        out[y : y + strip.shape[0], : strip.shape[1]] = strip
        y += strip.shape[0] + m
    return _bordered(out)


def _inside(pixels: np.ndarray, polygon: Sequence[tuple[float, float]], grow_px: int) -> np.ndarray:
    """White outside the polygon grown by ``grow_px`` (as a box is grown by the margin)."""
    import cv2

    mask = np.zeros(pixels.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(polygon)).astype(np.int32)], 255)
    grown = cv2.dilate(mask, np.ones((2 * grow_px + 1, 2 * grow_px + 1), np.uint8))
    return np.where(grown[:, :, None] > 0, pixels, 255).astype(pixels.dtype)


def _bordered(pixels: np.ndarray) -> np.ndarray:
    b = CROP_BORDER_PX
    return np.pad(pixels, ((b, b), (b, b), (0, 0)), constant_values=255)


def _shifted(lines: Sequence[Box]) -> tuple[Box, ...]:
    """Lines of a crop in the pixels of the crop bordered."""
    b = CROP_BORDER_PX
    return tuple((x0 + b, y0 + b, x1 + b, y1 + b) for x0, y0, x1, y1 in lines)


def _light_on_dark(rgb: np.ndarray, ring_px: int) -> np.ndarray | None:
    """If the region is ringed by dark (its outer ``ring_px``) and dark in good part, its text is
    light: the region in grey, inverted, with the field stretched to white. Else None."""
    import cv2

    if rgb.size == 0:
        return None
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    m = ring_px
    ring = np.concatenate([gray[:m].ravel(), gray[-m:].ravel(), gray[:, :m].ravel(), gray[:, -m:].ravel()])
    if np.median(ring) >= DARK_FIELD or (gray < DARK_FIELD).mean() <= DARK_SHARE:
        return None
    field = 255.0 - float(np.median(ring))
    return np.clip((255.0 - gray) * (255.0 / max(1.0, field)), 0, 255).astype(np.uint8)
