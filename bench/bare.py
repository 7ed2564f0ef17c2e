"""The bare engines as a user without this service would run them, for the accuracy baselines."""

from __future__ import annotations

from typing import Any


def bare_rapidocr() -> Any:
    """RapidOCR with its own defaults (angle classifier on) and the models the service reads with:
    the PP-OCRv6 files of the ``rapidocr`` wheel, which is what ``pip install rapidocr`` runs."""
    from rapidocr_onnxruntime import RapidOCR

    from serve_app.engines.rapid import model_paths

    return RapidOCR(**{f"{role}_model_path": str(path) for role, path in model_paths().items()})
