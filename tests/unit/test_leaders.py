from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from serve_app.engines.leaders import Leader, erase, find_leaders, with_leaders


def _contents(rows: list[tuple[str, int, str]], angle: float = 0.0) -> np.ndarray:
    """A table of contents: each row a title, a leader of N dots as a 12 pt font prints them at
    200 dpi (4 px discs 10 px apart), and a page number."""
    image = Image.new("RGB", (1400, 100 + 80 * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for i, (title, dots, number) in enumerate(rows):
        top = 60 + 80 * i
        draw.text((60, top), title, fill="black", font=font)
        left = draw.textbbox((60, top), title, font=font)[2] + 6
        for k in range(dots):
            draw.ellipse((left + 10 * k, top + 34, left + 10 * k + 4, top + 38), fill="black")
        draw.text((left + 10 * dots + 8, top), number, fill="black", font=font)
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor="white")
    return np.asarray(image)


def test_each_dot_of_a_leader_is_counted_and_text_is_not_taken_for_one() -> None:
    page = _contents(
        [
            ("Introduction", 60, "3"),
            ("1.2 Methods of the study", 35, "14"),
            ("A sentence... with an ellipsis, and i, j, ;: all small marks.", 0, ""),
        ]
    )
    leaders = sorted(find_leaders(page), key=lambda leader: leader.box[1])
    assert [leader.count for leader in leaders] == [60, 35]
    # Each run is one row, from the first dot to the last.
    assert leaders[0].box[3] < 140 < leaders[1].box[1]
    assert leaders[0].pitch == pytest.approx(10, abs=0.1)


def test_a_leader_skewed_by_a_degree_is_still_one_run_of_dots() -> None:
    page = _contents([("Introduction", 60, "3")], angle=1.0)
    (leader,) = find_leaders(page)
    assert abs(leader.count - 60) <= 1


def test_erased_leaders_leave_the_letters() -> None:
    page = _contents([("Introduction", 60, "3")])
    (leader,) = find_leaders(page)
    clean = erase(page, [leader])
    x0, y0, x1, y1 = (int(v) for v in leader.box)
    assert clean[y0 : y1 + 1, x0 : x1 + 1].min() == 255  # the dots are gone
    assert clean[:, :x0].min() < 100 and clean[:, x1 + 1 :].min() < 100  # title and page number stay
    assert find_leaders(clean) == []


def test_dots_go_back_into_the_line_they_sit_on() -> None:
    title, number = ((60, 60, 250, 90), "Introduction"), ((1003, 60, 1018, 90), "3")
    other = ((60, 120, 200, 150), "Contents")
    joined = Leader((254, 84, 990, 89), 60, 12.3)  # printed right after the title
    apart = Leader((80, 204, 990, 209), 60, 12.3)  # a row tesseract read nothing of
    lines = with_leaders([[title, number], [other]], [joined, apart])
    assert lines == ["Introduction" + "." * 60 + " 3", "Contents", "." * 60]


def test_dots_go_to_the_nearest_line_of_their_height_and_the_order_of_lines_stays() -> None:
    # Two columns, read column by column: the left one's lines first.
    left = [[((60, 60, 400, 90), "Left one")], [((60, 120, 400, 150), "Left two")]]
    right = [[((800, 62, 900, 92), "Right"), ((1300, 62, 1315, 92), "7")]]
    leader = Leader((905, 84, 1290, 89), 40, 9.9)
    lines = with_leaders(left + right, [leader])
    assert lines == ["Left one", "Left two", "Right" + "." * 40 + " 7"]
