from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from serve_app.datatypes import Region
from serve_app.regions import arrange, clean_regions, line_numbers, reading_order, snap_to_lines, text_lines


def R(x0: float, y0: float, x1: float, y1: float, label: str = "text", score: float = 0.9) -> Region:
    return Region((x0, y0, x1, y1), label, score)


def test_two_columns_under_a_full_width_title() -> None:
    title = R(100, 50, 1500, 100, "title")
    left = [R(100, 200, 780, 600), R(100, 650, 780, 1200)]
    right = [R(820, 200, 1500, 500), R(820, 560, 1500, 1200)]
    footer = R(700, 2100, 900, 2150, "footer")
    shuffled = [right[1], footer, left[1], title, right[0], left[0]]
    assert reading_order(shuffled) == [title, *left, *right, footer]


def test_full_width_figure_separates_bands_of_columns() -> None:
    top = [R(100, 100, 780, 500), R(820, 100, 1500, 500)]
    figure = R(100, 550, 1500, 900, "figure")
    bottom = [R(100, 950, 780, 1400), R(820, 950, 1500, 1400)]
    assert reading_order([bottom[1], figure, top[1], bottom[0], top[0]]) == [*top, figure, *bottom]


def test_a_wide_line_with_a_neighbour_on_its_row_does_not_cut_the_page() -> None:
    # A numbered transcript: "1  IN THE  SUPREME COURT OF THE UNITED STATES" under a header. The
    # wide part of the row is no band separator: its row is read left to right, after the header.
    header = L(700, 100, 1100, 130)
    number, first, wide = L(260, 190, 300, 210), L(400, 190, 537, 210), L(540, 190, 1240, 210)
    body = L(240, 260, 1320, 860, lines=9)
    assert reading_order([wide, body, first, header, number]) == [header, number, first, wide, body]


def L(x0: float, y0: float, x1: float, y1: float, lines: int = 1) -> Region:
    """A text region of ``lines`` lines, as snap_to_lines leaves it."""
    step = (y1 - y0) / lines
    rows = tuple((x0, y0 + i * step, x1, y0 + (i + 1) * step) for i in range(lines))
    return Region((x0, y0, x1, y1), "text", 0.9, rows)


def test_items_and_prices_read_row_by_row_not_column_by_column() -> None:
    items = [L(100, y, 500, y + 30) for y in (100, 150, 200, 250)]
    prices = [L(900, y + 2, 1000, y + 28) for y in (100, 150, 200, 250)]
    total = L(100, 320, 300, 350)
    ordered = reading_order([*prices, total, *items])
    assert ordered == [
        items[0],
        prices[0],
        items[1],
        prices[1],
        items[2],
        prices[2],
        items[3],
        prices[3],
        total,
    ]


def test_columns_of_paragraphs_stay_columns_even_when_their_lines_align() -> None:
    left = [L(100, 100, 700, 400, lines=10), L(100, 450, 700, 900, lines=15)]
    right = [L(800, 100, 1400, 400, lines=10), L(800, 450, 1400, 900, lines=15)]
    assert reading_order([right[1], left[1], right[0], left[0]]) == [*left, *right]


def test_a_picture_across_the_gutter_does_not_join_the_columns() -> None:
    top_left, top_right = R(100, 100, 780, 300), R(820, 100, 1500, 300)
    left = [R(100, 350, 500, 1200), R(100, 1300, 780, 1800)]
    right = [R(1100, 350, 1500, 1200), R(820, 1300, 1500, 1800)]
    picture = R(450, 400, 1150, 1100, "figure")
    caption = R(500, 1120, 1100, 1180, "figure_caption")
    shuffled = [caption, right[1], picture, left[0], top_right, right[0], left[1], top_left]
    # Columns as if the picture were not there; the picture where the text under it resumes.
    assert reading_order(shuffled) == [top_left, left[0], picture, caption, left[1], top_right, *right]


def test_single_column_is_top_down() -> None:
    blocks = [R(100, y, 1500, y + 80) for y in (700, 100, 400)]
    assert [r.bbox[1] for r in reading_order(blocks)] == [100, 400, 700]


def test_duplicates_and_slivers_are_dropped() -> None:
    big = R(100, 100, 1000, 500)
    inside = R(120, 120, 900, 400, "title", 0.99)
    sliver = R(10, 10, 12, 400)
    kept = clean_regions([inside, big, sliver, R(-50, -50, 60, 60)], 1200, 800)
    assert big in kept and inside not in kept and sliver not in kept
    assert R(0, 0, 60, 60) in kept  # clipped to the page


def test_each_line_goes_to_one_region_and_loose_lines_become_regions() -> None:
    lines = [(100, 100, 900, 130), (100, 140, 900, 170), (100, 400, 600, 430), (100, 440, 580, 470)]
    # Two overlapping detections over the first two lines, none over the last two.
    a = R(90, 95, 910, 150)
    b = R(90, 120, 910, 175, score=0.5)
    out = snap_to_lines([a, b], lines)
    boxes = sorted(r.bbox for r in out)
    # Each region shrinks to the one line it holds most of: no line is read twice.
    assert boxes == [(100, 100, 900, 130), (100, 140, 900, 170), (100, 400, 600, 470)]
    assert [r.label for r in out] == ["text", "text", "text"] and out[2].score == 0.0


def _draw_page(lines: list[tuple[int, int, str]], size=(1200, 900)) -> np.ndarray:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    for x, y, text in lines:
        draw.text((x, y), text, fill="black", font=font)
    return np.asarray(image)


def test_text_lines_finds_each_printed_line_and_keeps_columns_apart() -> None:
    page = _draw_page(
        [
            (60, 100, "left column line one"),
            (700, 100, "right column line"),
            (60, 160, "left column line two"),
        ]
    )
    found = sorted(text_lines(page))
    assert len(found) == 3
    assert all(b[3] - b[1] < 50 for b in found)
    assert max(b[2] for b in found if b[0] < 600) < 700


def test_a_pen_circle_touching_a_line_does_not_hide_it() -> None:
    # A receipt: someone circled the total, and the circle touches the end of the line above it.
    page = Image.fromarray(
        _draw_page([(60, 100, "Goods sold are non-refundable"), (60, 300, "Thank you"), (500, 155, "31.00")])
    )
    ImageDraw.Draw(page).ellipse((440, 105, 640, 240), outline="black", width=3)
    rows = sorted(text_lines(np.asarray(page)), key=lambda b: b[1])
    first = [b for b in rows if b[1] < 140 and b[0] < 100]
    assert first and first[0][2] > 400 and first[0][3] - first[0][1] < 50
    assert any(b[0] >= 490 and 150 <= b[1] < 200 for b in rows)  # what the circle holds is read too
    assert any(b[1] >= 295 for b in rows)


def test_a_picture_is_not_cut_into_lines() -> None:
    page = Image.fromarray(_draw_page([(60, 100, "A caption under nothing")]))
    draw = ImageDraw.Draw(page)
    for k in range(12):  # a gear-like drawing: a wheel with spokes and scattered marks
        draw.line((800, 500, 800 + 150 * np.cos(k / 2), 500 + 150 * np.sin(k / 2)), fill="black", width=4)
        top = 700 + (k % 3) * 9
        draw.rectangle((700 + 17 * k, top, 708 + 17 * k, top + 12 + (k % 5) * 7), fill="black")
    draw.ellipse((650, 350, 950, 650), outline="black", width=6)
    rows = text_lines(np.asarray(page))
    assert [b for b in rows if b[1] < 200] and not [b for b in rows if 340 <= b[1] <= 660]


def test_arrange_grows_a_clipped_box_to_whole_lines_and_adds_missed_text() -> None:
    page = _draw_page([(60, 100, "a heading the model clipped"), (60, 500, "a line it missed")])
    clipped = R(150, 105, 300, 120, "title")
    out = arrange(page, [clipped])
    assert [r.label for r in out] == ["title", "text"]
    assert out[0].bbox[0] <= 62 and out[0].bbox[2] >= 400
    assert out[1].bbox[1] >= 495


def test_a_small_box_inside_a_paragraph_line_does_not_steal_the_line() -> None:
    paragraph = R(0, 0, 1000, 300)
    inline = R(400, 10, 450, 40, "equation")
    out = snap_to_lines([paragraph, inline], [(0, 5, 1000, 45), (0, 60, 1000, 100)])
    assert [r.label for r in out] == ["text"]
    assert out[0].lines == ((0, 5, 1000, 45), (0, 60, 1000, 100))


def test_loose_lines_of_two_columns_stay_two_blocks() -> None:
    left = [(50, 100 + 30 * i, 450, 120 + 30 * i) for i in range(10)]
    right = [(850, 100 + 30 * i, 1250, 120 + 30 * i) for i in range(10)]
    out = snap_to_lines([], left + right)
    assert sorted(r.bbox for r in out) == [(50, 100, 450, 390), (850, 100, 1250, 390)]


def _transcript(numbers_gap: int = 120, texts: dict[int, str] | None = None) -> np.ndarray:
    """A transcript page: lines numbered 1-12 down the left margin, some numbered lines empty."""
    texts = (
        texts
        if texts is not None
        else {1: "IN THE SUPREME COURT", 3: "MICHAEL A. KNOWLES,", 4: "Petitioner", 8: "Washington, D.C."}
    )
    rows = [(60, 100 + 50 * i, str(i + 1)) for i in range(12)]
    rows += [(60 + numbers_gap, 100 + 50 * (n - 1), text) for n, text in texts.items()]
    return _draw_page(rows, size=(1000, 800))


def test_a_margin_of_line_numbers_is_read_as_its_own_column_first() -> None:
    page = _transcript()
    body = R(50, 90, 700, 560)  # the layout model's box takes in the numbers with the text
    out = arrange(page, [body])
    assert len(out) == 2
    gutter, text = out
    assert len(gutter.lines) == 12 and gutter.bbox[2] < 120  # every number, and nothing else
    assert len(text.lines) == 4 and text.bbox[0] >= 170


def test_numbered_list_items_and_a_table_column_are_not_a_margin_of_line_numbers() -> None:
    # Every numbered row has its text right beside the number: a list, read row by row.
    listed = _transcript(numbers_gap=80, texts={n: f"item number {n}" for n in range(1, 13)})
    assert line_numbers(text_lines(listed)) == []
    # The numbers of a table's rows stay in the table.
    page = _transcript()
    table = (50, 90, 700, 700)
    assert line_numbers(text_lines(page), [table]) == []
    assert len(line_numbers(text_lines(page))) == 12


def test_light_text_on_a_dark_banner_is_one_line_of_text() -> None:
    page = Image.fromarray(_draw_page([(80, 300 + 50 * k, f"body text line {k}") for k in range(4)]))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, 1199, 220), fill=(20, 90, 70))
    title_font = ImageFont.load_default(size=72)
    draw.text((80, 70), "ANNUAL REPORT 2025", fill="white", font=title_font)
    x0, y0, x1, y1 = draw.textbbox((80, 70), "ANNUAL REPORT 2025", font=title_font)
    in_banner = [b for b in text_lines(np.asarray(page)) if b[1] < 220]
    # The letters are found, whole, as one line: not the field, not pieces of it between letters.
    assert len(in_banner) == 1
    bx0, by0, bx1, by1 = in_banner[0]
    assert bx0 <= x0 + 5 and bx1 >= x1 - 5 and y0 - 5 <= by0 and by1 <= y1 + 5
