from __future__ import annotations

from serve_app.pipeline import Options
from serve_app.service import result_key

PDF = b"%PDF-1.7 ..."
AUTO = Options(lang="auto")
CPU = {"Recognizer": "cpu"}


def test_result_keys_follow_the_input_the_options_and_the_models() -> None:
    base = result_key(PDF, [0, 1], 200, AUTO, CPU)
    assert len(base) == 64
    # The page range as written does not count, only the pages it selects.
    assert base == result_key(PDF, [0, 1], 200, Options(pages="1-2", lang="auto"), CPU)
    assert base != result_key(b"%PDF-1.7 ..!", [0, 1], 200, AUTO, CPU)
    assert base != result_key(PDF, [0], 200, AUTO, CPU)
    assert base != result_key(PDF, [0, 1], 300, AUTO, CPU)
    assert base != result_key(PDF, [0, 1], 200, Options(lang="ru"), CPU)
    assert base != result_key(PDF, [0, 1], 200, Options(layout=False), CPU)
    assert base != result_key(PDF, [0, 1], 200, Options(text_layer="off"), CPU)
    assert base != result_key(PDF, [0, 1], 200, Options(ocr_tasks=frozenset({"table"})), CPU)
    # Another model reads differently: its answers are other results.
    assert base != result_key(PDF, [0, 1], 200, AUTO, {"Recognizer": "vllm:x"})
