from __future__ import annotations

import pytest

from bench.textmetrics import cer, normalize, wer


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
