from __future__ import annotations

import pytest

from bench.textmetrics import bag_wer, cer, normalize, order_error, wer


def test_normalisation_is_nfkc_and_whitespace() -> None:
    assert normalize("  ﬁne\u00a0 text\n\tend ") == "fine text end"
    assert normalize("ABC", casefold=True) == "abc"


@pytest.mark.parametrize(
    ("hyp", "ref", "expected"),
    [
        ("abc", "abc", 0.0),
        ("abd", "abc", 1 / 3),
        ("", "abcd", 1.0),
        ("abcdef", "abc", 1.0),
        ("a  b\nc", "a b c", 0.0),
        ("", "", 0.0),
        ("x", "", 1.0),
    ],
)
def test_cer_known_answers(hyp: str, ref: str, expected: float) -> None:
    assert cer(hyp, ref) == pytest.approx(expected)


def test_wer_and_case() -> None:
    assert wer("the quick brown fox", "the quick red fox") == pytest.approx(0.25)
    assert cer("HELLO", "hello") == 1.0 and cer("HELLO", "hello", casefold=True) == 0.0


def test_order_error_sees_swapped_columns_but_not_misread_letters() -> None:
    ref = "Title line\nfirst column text\nsecond column text\nfooter note"
    assert order_error(ref, ref) == 0.0
    # Misread characters do not count as order errors: CER shows them.
    assert order_error("Tltle line\nfirst colunm text\nsecond column text\nfooter note", ref) == 0.0
    # The two columns read in the wrong order: one of four lines is out of place.
    swapped = "Title line\nsecond column text\nfirst column text\nfooter note"
    assert order_error(swapped, ref) == pytest.approx(0.25)
    # Reversed: only one line can be in order.
    assert order_error("\n".join(reversed(ref.splitlines())), ref) == pytest.approx(0.75)
    assert order_error("", ref) == 0.0 and order_error("text", "") == 0.0  # nothing to order


def test_bag_wer_leaves_the_order_out_but_counts_missing_extra_and_misread_words() -> None:
    assert bag_wer("c b a", "a b c") == 0.0
    assert bag_wer("a b", "a b c d") == 0.5  # two of four missing
    assert bag_wer("a b c d e f", "a b c") == 1.0  # three extra
    assert bag_wer("a x c", "a b c") == pytest.approx(1 / 3)  # one misread: one missing, one extra
