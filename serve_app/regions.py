"""Layout regions -> regions that hold whole text lines, cover all the text, in reading order.

Layout models draw approximate boxes: they clip the first or last letters of a line, overlap each
other (the same line read twice) and miss text (a stamp, a line of a form). So each region is
rebuilt from the page's own ink: text lines are found by morphology, each line is given to the one
region it overlaps most, a region becomes the box of its lines, and lines no region claims become
regions of their own. Pure geometry on numpy arrays; no model, no Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .datatypes import Box, Region, box_area

WORK_SIDE_PX = 1600  # ink analysis runs on a page scaled so that its long side is about this
SPANNING_WIDTH = 0.55  # a region this share of the content width separates bands of columns
DUPLICATE_COVER = 0.7  # a region this much inside a larger one is a duplicate detection
LINE_CLAIM = 0.3  # a line belongs to a region holding at least this share of its area
REGION_INSIDE = 0.6  # ... or to a region with this share of its own area inside the line
MERGE_OVERLAP = 0.2  # text regions overlapping this much of the smaller one are merged
KEEP_BOX = {"figure"}  # a picture's drawn area matters, not only the text found in it
FLOATS = {"figure", "figure_caption"}  # may stand across a column gutter
MAX_LINE_LETTERS = 6  # a blob taller than this many letters is a picture or a border ...
MIN_SIDE_PX = 4
LETTER_SHARE = 0.7  # ... unless this share of its glyphs are letter-sized (text a stroke touches)
ROW_LINES = 2  # regions of at most this many lines may be cells of a row ...
ROW_SHARE = 0.6  # ... and when this share of them has a partner on its row, rows are read first
FIELD_LETTERS = 3  # a blob this many letters tall or more (not a bold word run together) ...
FIELD_FILL = 0.6  # ... filling this share of its outline is a dark field, not strokes ...
FIELD_FLAT = 25  # ... if its grey varies this little (std) ...
MIN_FIELD_LETTERS = 3  # ... holds light text if its holes include this many letters, page-sized
NUMBER_WIDTH = 3.5  # a line number is at most this many heights wide ("125")
GUTTER_MIN_LINES = 8  # a margin column of line numbers has at least this many ...
GUTTER_PITCH = 0.15  # ... most of them this close to its median spacing ...
GUTTER_EVEN = 0.8
GUTTER_BARE_ROWS = 2  # ... and some with nothing else on their row


def _inter(a: Box, b: Box) -> float:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def _union(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def text_lines(image: np.ndarray) -> list[Box]:
    """Boxes of ink lines (words joined horizontally), in page pixels.

    Table rulings and frame lines are removed first (else a form is one blob); specks, i-dots
    and blobs far taller than a line (pictures, scan borders) are not lines.
    """
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, WORK_SIDE_PX / max(h, w))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    gh, gw = gray.shape
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    if ink.mean() > 127:  # light text on a dark page: Otsu picked the background
        ink = 255 - ink
    ink, reversed_lines = _dark_fields(gray, ink, max(3.0, gh * 0.003))
    for kernel in ((max(25, gw // 25), 1), (1, max(25, gh // 25))):
        rules = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
        ink = cv2.subtract(ink, rules)
    min_h = max(3.0, gh * 0.003)
    _, _, glyphs, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    heights = glyphs[1:, cv2.CC_STAT_HEIGHT]
    heights = heights[(heights >= min_h) & (heights < gh * 0.05)]
    letter = float(np.median(heights)) if heights.size else 10.0
    return [
        (x0 / scale, y0 / scale, x1 / scale, y1 / scale)
        for x0, y0, x1, y1 in _ink_lines(ink, letter, max(min_h, 0.5 * letter)) + reversed_lines
    ]


def _dark_fields(gray: np.ndarray, ink: np.ndarray, min_h: float) -> tuple[np.ndarray, list[Box]]:
    """Light text on dark fields of one flat colour (a banner, a badge): the ink without the
    fields, and the lines of the text in them (their holes, read as ink with a letter size of its
    own: a banner's letters are often far larger than the page's)."""
    import cv2

    _, blobs, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    heights = heights[(heights >= min_h) & (heights < ink.shape[0] * 0.05)]
    page_letter = float(np.median(heights)) if heights.size else min_h
    widths, tall, area = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_AREA]
    # Not a word of glyphs run together, not too tall, not strokes (a frame, a drawing).
    candidates = (
        (tall >= FIELD_LETTERS * page_letter)
        & (3 * widths >= 4 * tall)
        & (area >= 0.5 * FIELD_FILL * widths * tall)
    )
    lines: list[Box] = []
    for i in np.flatnonzero(candidates[1:]) + 1:
        x, y, bw, bh, pixels = stats[i]
        field = (blobs[y : y + bh, x : x + bw] == i).astype(np.uint8)
        filled = field.copy()
        outline, _ = cv2.findContours(field, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(filled, outline, -1, 1, thickness=cv2.FILLED)
        inner = cv2.erode(field, np.ones((3, 3), np.uint8)) > 0  # no anti-aliased edges
        shades = gray[y : y + bh, x : x + bw][inner]
        if pixels < FIELD_FILL * filled.sum() or not shades.size or shades.std() > FIELD_FLAT:
            continue  # not filled, or shaded: a picture (a photo, a drawn machine part)
        # Its light pixels inside its outline (not the dark counters of the light letters).
        holes = np.where((filled > 0) & (ink[y : y + bh, x : x + bw] == 0), 255, 0).astype(np.uint8)
        _, _, glyphs, _ = cv2.connectedComponentsWithStats(holes, connectivity=8)
        heights = glyphs[1:, cv2.CC_STAT_HEIGHT]
        heights = heights[heights >= min_h]
        letter = float(np.median(heights)) if heights.size else 0.0
        letters = int(((heights >= 0.5 * letter) & (heights <= 1.6 * letter)).sum())
        if (
            letters < MIN_FIELD_LETTERS
            or letters < 0.5 * heights.size
            or not page_letter <= letter < 0.8 * bh
        ):
            continue  # no text in it: a dark picture's light patches, the counters of bold glyphs
        ink[y : y + bh, x : x + bw][filled > 0] = 0  # the field and the counters of its letters
        found = _ink_lines(holes, letter, max(min_h, 0.5 * letter))
        lines += [(x + a, y + b, x + c, y + d) for a, b, c, d in found]
    return ink, lines


def _ink_lines(ink: np.ndarray, letter: float, min_h: float, strokes_removed: bool = False) -> list[Box]:
    """Line boxes of a binary ink image: glyphs joined across word gaps (the gap scales with the
    letter height, so columns stay apart). A blob too tall for a line is a picture or a border;
    but if most of its glyphs are letters, it is text that a stroke touches (a pen circle round a
    total, an arrow, a frame): it is looked at once more without its strokes over two letters tall."""
    import cv2

    gap = max(3, round(letter * 1.2))
    joined = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_RECT, (gap, 1)))
    n, blobs, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    lines: list[Box] = []
    for i, (x, y, bw, bh, pixels) in enumerate(stats[1:n], start=1):
        if bh < min_h or pixels < 4 * min_h:
            continue
        if bh <= MAX_LINE_LETTERS * letter:
            lines.append((float(x), float(y), float(x + bw), float(y + bh)))
            continue
        if strokes_removed:
            continue
        part = np.where(blobs[y : y + bh, x : x + bw] == i, ink[y : y + bh, x : x + bw], 0).astype(np.uint8)
        _, glyphs, glyph_stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
        heights = glyph_stats[:, cv2.CC_STAT_HEIGHT]
        if not _mostly_letters(heights[1:], letter, min_h):
            continue
        strokes = np.flatnonzero(heights > 2 * letter)
        part[np.isin(glyphs, strokes[strokes > 0])] = 0
        lines += [(x + a, y + b, x + c, y + d) for a, b, c, d in _ink_lines(part, letter, min_h, True)]
    return lines


def _mostly_letters(heights: np.ndarray, letter: float, min_h: float) -> bool:
    """Most glyphs (specks aside) are about a letter tall: text, not the pieces of a picture."""
    heights = heights[heights >= min_h]
    letters = (heights >= 0.5 * letter) & (heights <= 1.6 * letter)
    return heights.size > 0 and letters.mean() >= LETTER_SHARE


def clean_regions(regions: Sequence[Region], width: int, height: int) -> list[Region]:
    """Clip to the page, drop slivers, and drop regions mostly inside a larger one."""
    clipped = []
    for r in regions:
        x0, y0, x1, y1 = r.bbox
        box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
        if box[2] - box[0] >= MIN_SIDE_PX and box[3] - box[1] >= MIN_SIDE_PX:
            clipped.append(Region(bbox=box, label=r.label, score=r.score))
    kept: list[Region] = []
    for r in sorted(clipped, key=lambda r: r.area, reverse=True):
        if all(_inter(r.bbox, k.bbox) < DUPLICATE_COVER * r.area for k in kept):
            kept.append(r)
    return kept


def snap_to_lines(regions: Sequence[Region], lines: Sequence[Box]) -> list[Region]:
    """Each line goes to the region overlapping it most; a region becomes the box of its lines;
    lines no region claims are stacked into new text regions."""
    claimed: dict[int, list[Box]] = {i: [] for i in range(len(regions))}
    loose: list[Box] = []
    for line in lines:
        best = _owner(line, regions)
        if best is None:
            loose.append(line)
        else:
            claimed[best].append(line)
    out = []
    for i, r in enumerate(regions):
        own = claimed[i]
        if r.label in KEEP_BOX or (not own and not lines):
            # Pictures keep their drawn area; so does everything when the page showed no lines.
            out.append(Region(_union([r.bbox, *own]), r.label, r.score, tuple(own)))
        elif own:
            out.append(Region(_union(own), r.label, r.score, tuple(own)))
    out.extend(Region(_union(group), "text", 0.0, tuple(group)) for group in _group_lines(loose))
    return _merge_overlaps(out)


def _owner(line: Box, regions: Sequence[Region]) -> int | None:
    """The region holding most of the line (ties: the larger overlap, then the smaller region);
    failing that, a region lying inside the line (a layout box that clipped it)."""
    if not regions:
        return None
    area = max(box_area(line), 1.0)
    overlaps = [_inter(line, r.bbox) for r in regions]
    best = max(range(len(regions)), key=lambda i: (overlaps[i] / area, overlaps[i], -regions[i].area))
    if overlaps[best] / area >= LINE_CLAIM:
        return best
    inside = max(range(len(regions)), key=lambda i: overlaps[i] / max(regions[i].area, 1.0))
    return inside if overlaps[inside] / max(regions[inside].area, 1.0) >= REGION_INSIDE else None


def _merge_overlaps(regions: list[Region]) -> list[Region]:
    """Text regions whose line boxes interleave become one region (one reading, in order)."""
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(regions):
            for j in range(i + 1, len(regions)):
                b = regions[j]
                if a.label in KEEP_BOX or b.label in KEEP_BOX or not (a.lines and b.lines):
                    continue
                if _inter(a.bbox, b.bbox) > MERGE_OVERLAP * min(a.area, b.area):
                    big = a if a.area >= b.area else b
                    box = _union([a.bbox, b.bbox])
                    regions[i] = Region(box, big.label, max(a.score, b.score), a.lines + b.lines)
                    del regions[j]
                    merged = True
                    break
            if merged:
                break
    return regions


def _group_lines(lines: Sequence[Box]) -> list[list[Box]]:
    """Group loose lines into blocks: words of one row and rows stacked under each other.
    Judged line by line (never on a grown group's box, which would swallow a column gutter)."""
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(lines)), key=lambda i: lines[i][1])
    for n, i in enumerate(order):
        a = lines[i]
        reach = a[3] + (a[3] - a[1])  # nothing further down than one line height can join
        for j in order[n + 1 :]:
            if lines[j][1] > reach:
                break
            if _joins(a, lines[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[Box]] = {}
    for i in order:
        groups.setdefault(root(i), []).append(lines[i])
    return list(groups.values())


def _joins(a: Box, b: Box) -> bool:
    """Two lines of one block: the same row with a gap under three heights, or stacked with a gap
    under one height and overlapping in x."""
    height = min(a[3] - a[1], b[3] - b[1])
    top, bottom = (a, b) if a[1] <= b[1] else (b, a)
    x_overlap = min(a[2], b[2]) - max(a[0], b[0])
    stacked = bottom[1] - top[3] <= height and x_overlap > 0
    same_row = min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * height and -x_overlap < 3 * height
    return stacked or same_row


def arrange(image: np.ndarray, regions: Sequence[Region]) -> list[Region]:
    """The regions the recognizer should read, in reading order."""
    h, w = image.shape[:2]
    regions = clean_regions(regions, w, h)
    lines = text_lines(image)
    numbers = line_numbers(lines, [r.bbox for r in regions if r.label in KEEP_BOX | {"table"}])
    gutter = [Region(_union(numbers), "text", 0.0, tuple(numbers))] if numbers else []
    text = [line for line in lines if line not in numbers]
    return reading_order(snap_to_lines(regions, text) + gutter)


def line_numbers(lines: Sequence[Box], exclude: Sequence[Box] = ()) -> list[Box]:
    """The column of line numbers down the margin of a transcript, pleading or bill, if the page
    has one: short tokens stacked at an even pitch, apart from the text, on bare rows too (a
    numbered line left empty). It is read as a column of its own, as the page's text layer has it,
    not glued to the start of each line. A table's first column is not one (``exclude``)."""
    tokens = [
        b
        for b in lines
        if b[2] - b[0] <= NUMBER_WIDTH * (b[3] - b[1])
        and all(_inter(b, e) < 0.5 * box_area(b) for e in exclude)
    ]
    for column in _x_columns(tokens):
        if len(column) < GUTTER_MIN_LINES:
            continue
        x0, x1 = min(b[0] for b in column), max(b[2] for b in column)
        height = float(np.median([b[3] - b[1] for b in column]))
        centers = sorted((b[1] + b[3]) / 2 for b in column)
        pitch = np.diff(centers)
        even = np.abs(pitch - np.median(pitch)) <= GUTTER_PITCH * np.median(pitch)
        others = [b for b in lines if b not in column]
        apart = all(b[0] >= x1 + height or b[2] <= x0 - height for b in others)
        left = all(b[0] >= x1 for b in others)
        right = all(b[2] <= x0 for b in others)
        bare = sum(not any(_beside(b, o) for o in others) for b in column)
        if even.mean() >= GUTTER_EVEN and apart and (left or right) and bare >= GUTTER_BARE_ROWS:
            return column
    return []


def _x_columns(boxes: Sequence[Box]) -> list[list[Box]]:
    """Boxes grouped by overlapping x extents."""
    columns: list[list[Box]] = []
    end = float("-inf")
    for b in sorted(boxes, key=lambda b: b[0]):
        if columns and b[0] < end:
            columns[-1].append(b)
            end = max(end, b[2])
        else:
            columns.append([b])
            end = b[2]
    return columns


def _beside(a: Box, b: Box) -> bool:
    return min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * min(a[3] - a[1], b[3] - b[1])


def reading_order(regions: Sequence[Region]) -> list[Region]:
    """Full-width regions cut the page into bands; inside a band, columns left to right."""
    if len(regions) <= 1:
        return list(regions)
    left = min(r.bbox[0] for r in regions)
    right = max(r.bbox[2] for r in regions)
    span = SPANNING_WIDTH * (right - left)

    def center_y(r: Region) -> float:
        return (r.bbox[1] + r.bbox[3]) / 2

    def separates(r: Region) -> bool:  # wide, and alone on its rows (not a cell beside a number)
        return r.bbox[2] - r.bbox[0] >= span and not any(o is not r and _same_row(r, o) for o in regions)

    wide = [separates(r) for r in regions]
    spanning = sorted((r for r, w in zip(regions, wide, strict=True) if w), key=center_y)
    rest = [r for r, w in zip(regions, wide, strict=True) if not w]
    ordered: list[Region] = []
    for separator in spanning:
        above = [r for r in rest if center_y(r) < center_y(separator)]
        rest = [r for r in rest if center_y(r) >= center_y(separator)]
        ordered += _xy_cut(above)
        ordered.append(separator)
    return ordered + _xy_cut(rest)


def _groups(regions: Sequence[Region], axis: int) -> list[list[Region]]:
    """Split along an axis (0 = x, 1 = y) at gaps that no region crosses. Across y, a gap must be
    half a line high: text flowing on in its column is often cut into regions a few pixels apart."""
    heights = [line[3] - line[1] for r in regions for line in r.lines]
    min_gap = 0.5 * float(np.median(heights)) if axis == 1 and heights else 0.0
    groups: list[list[Region]] = []
    end = float("-inf")
    for r in sorted(regions, key=lambda r: r.bbox[axis]):
        lo, hi = r.bbox[axis], r.bbox[axis + 2]
        if not groups or lo >= end + min_gap:
            groups.append([r])
            end = hi
        else:
            groups[-1].append(r)
            end = max(end, hi)
    return groups


def _xy_cut(regions: Sequence[Region]) -> list[Region]:
    """Columns first, then rows inside a column; but rows first where the "columns" are the two
    sides of rows (a receipt's items and prices, a form's labels and values)."""
    if len(regions) <= 1:
        return list(regions)
    columns = _groups(regions, 0)
    if len(columns) == 1:
        # A picture (or its caption) set across the gutter joins the columns: find them without.
        text = [r for r in regions if r.label not in FLOATS]
        if 0 < len(text) < len(regions) and len(_groups(text, 0)) > 1:
            return _place_floats(_xy_cut(text), [r for r in regions if r.label in FLOATS])
    axes = (1, 0) if len(columns) > 1 and _reads_across(columns) else (0, 1)
    for axis in axes:
        groups = columns if axis == 0 else _groups(regions, 1)
        if len(groups) > 1:
            return [r for group in groups for r in _xy_cut(group)]
    return sorted(regions, key=lambda r: (r.bbox[1], r.bbox[0]))


def _same_row(a: Region, b: Region) -> bool:
    """The two share more than half the height of the shorter one."""
    overlap = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
    return overlap > 0.5 * min(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1])


def _place_floats(ordered: list[Region], floats: Sequence[Region]) -> list[Region]:
    """Each picture goes before the first region that starts below its top and shares some of its
    width (where the text flowing around it resumes); its caption follows it."""
    out = list(ordered)
    for f in sorted(floats, key=lambda r: (r.bbox[1], r.bbox[0])):
        at = next(
            (
                i
                for i, r in enumerate(out)
                if r.label not in FLOATS
                and r.bbox[1] >= f.bbox[1]
                and min(r.bbox[2], f.bbox[2]) > max(r.bbox[0], f.bbox[0])
            ),
            len(out),
        )
        if f.label == "figure_caption":  # right after the picture above it, if there is one
            pictures = [i for i, r in enumerate(out) if r.label == "figure" and r.bbox[3] <= f.bbox[1] + 1]
            at = pictures[-1] + 1 if pictures else at
        out.insert(at, f)
    return out


def _reads_across(columns: Sequence[Sequence[Region]]) -> bool:
    """Side by side groups of one- or two-line regions that mostly sit on the same rows as a
    region of another group: a table of rows, not columns of text (whose paragraphs are taller)."""
    regions = [r for column in columns for r in column]
    short = [r for r in regions if 1 <= len(r.lines) <= ROW_LINES]
    if len(short) < ROW_SHARE * len(regions):
        return False
    index = {id(r): k for k, column in enumerate(columns) for r in column}

    def has_partner(a: Region) -> bool:
        return any(index[id(b)] != index[id(a)] and _same_row(a, b) for b in short)

    return sum(map(has_partner, short)) >= ROW_SHARE * len(short)
