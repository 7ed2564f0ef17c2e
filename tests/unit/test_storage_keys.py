from __future__ import annotations

from serve_app.storage import result_key


def test_result_keys_follow_the_input_the_options_and_the_models() -> None:
    base = result_key(b"%PDF-1.7 ...", {"pages": [0, 1], "dpi": 200, "lang": "auto"}, {"Recognizer": "cpu"})
    assert base == result_key(
        b"%PDF-1.7 ...", {"lang": "auto", "dpi": 200, "pages": [0, 1]}, {"Recognizer": "cpu"}
    )
    assert len(base) == 64
    assert base != result_key(
        b"%PDF-1.7 ..!", {"pages": [0, 1], "dpi": 200, "lang": "auto"}, {"Recognizer": "cpu"}
    )
    assert base != result_key(
        b"%PDF-1.7 ...", {"pages": [0], "dpi": 200, "lang": "auto"}, {"Recognizer": "cpu"}
    )
    # Another model reads differently: its answers are other results.
    assert base != result_key(
        b"%PDF-1.7 ...", {"pages": [0, 1], "dpi": 200, "lang": "auto"}, {"Recognizer": "vllm:x"}
    )
