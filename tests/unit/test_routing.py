"""route_by_script: which recognizer reads which region (the recognizers here are scripted: the
routing is what is under test; the real models read in tests/integration/test_vlm_serve.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from serve_app.config import load_args
from serve_app.datatypes import Recognition, RecognizeRequest
from serve_app.routing import ByScript, is_cyrillic, names_cyrillic


class Scripted:
    """Answers each region (told apart by its pixel value) with a fixed reading; records what it
    was asked."""

    def __init__(self, name: str, readings: dict[int, tuple[str, str | None]]) -> None:
        self.name, self.readings, self.asked, self.langs = name, readings, list[int](), list[str]()

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        ids = [int(r.image[0, 0, 0]) for r in requests]
        self.asked += ids
        self.langs += [r.lang for r in requests]
        readings = [self.readings.get(i, ("", None)) for i in ids]
        return [Recognition(text, 0.9, self.name, error=error) for text, error in readings]


def regions(lang: str, n: int) -> list[RecognizeRequest]:
    return [RecognizeRequest(np.full((4, 4, 3), i, np.uint8), "text", lang) for i in range(n)]


def test_scripts_are_told_by_letters_and_by_the_language_asked() -> None:
    assert names_cyrillic("rus") and names_cyrillic("rus+eng") and names_cyrillic("RU")
    assert not names_cyrillic("eng") and not names_cyrillic("auto") and not names_cyrillic("zh")
    assert is_cyrillic("Приказ № 5") and is_cyrillic("ГОСТ Р 7.0.97-2016")
    assert not is_cyrillic("Order No. 5") and not is_cyrillic("12.05") and not is_cyrillic("")


async def test_a_cyrillic_language_sends_every_region_to_the_cyrillic_model() -> None:
    default = Scripted("default", {})
    cyrillic = Scripted(
        "cyr", {0: ("Приказ", None), 1: ("Догов", "repetition"), 2: ("", "generation stopped")}
    )
    fallback = Scripted("cpu", {1: ("Договор", None), 2: ("", None)})
    out = await ByScript(default, cyrillic, fallback).recognize(regions("rus+eng", 3))
    assert default.asked == [] and cyrillic.asked == [0, 1, 2]
    assert fallback.langs == ["auto", "auto"]  # read as unknown text, whatever the request named
    # Flagged readings are read again; the fallback's is kept where it read something unflagged.
    assert fallback.asked == [1, 2]
    assert [(r.engine, r.text, r.error) for r in out] == [
        ("cyr", "Приказ", None),
        ("cpu", "Договор", None),
        ("cyr", "", "generation stopped"),
    ]


async def test_without_a_language_the_default_reads_first_and_cyrillic_is_read_again() -> None:
    default = Scripted("default", {0: ("Order No. 5", None), 1: ("Прикз", None), 2: ("Догвр", "repetition")})
    cyrillic = Scripted("cyr", {1: ("Приказ", None), 2: ("Договор", "repetition")})
    fallback = Scripted("cpu", {2: ("Договор", None)})
    out = await ByScript(default, cyrillic, fallback).recognize(regions("auto", 3))
    assert default.asked == [0, 1, 2] and cyrillic.asked == [1, 2] and fallback.asked == [2]
    assert [(r.engine, r.text) for r in out] == [
        ("default", "Order No. 5"),
        ("cyr", "Приказ"),
        ("cpu", "Договор"),
    ]
    # No fallback configured: the flagged reading stands, flagged.
    out = await ByScript(default, cyrillic, None).recognize(regions("auto", 3))
    assert (out[2].engine, out[2].error) == ("cyr", "repetition")


def test_routes_must_name_configured_recognizers() -> None:
    vlm = {"engine": "vllm", "model": "/models/PaddleOCR-VL-1.6"}
    two = [vlm, {**vlm, "model": "/models/PaddleOCR-VL-1.5"}, {"engine": "cpu"}]
    args = load_args(
        {"recognizer": two, "route_by_script": {"cyrillic": "PaddleOCR-VL-1.5", "fallback": "cpu"}},
        environ={},
    )
    assert args.route_by_script is not None
    assert args.route_by_script.readers == {"cyrillic": "PaddleOCR-VL-1.5", "fallback": "cpu"}
    swapping = [{**vlm, "swappable": True}, {**vlm, "model": "/models/PaddleOCR-VL-1.5", "swappable": True}]
    with pytest.raises(ValidationError, match=r"route_by_script.cyrillic: 'PaddleOCR-VL-1.5' swaps with"):
        load_args({"recognizer": swapping, "route_by_script": {"cyrillic": "PaddleOCR-VL-1.5"}}, environ={})
    with pytest.raises(ValidationError, match=r"route_by_script.fallback: no recognizer 'tesseract'.*cpu"):
        load_args(
            {"recognizer": two, "route_by_script": {"cyrillic": "cpu", "fallback": "tesseract"}}, environ={}
        )
