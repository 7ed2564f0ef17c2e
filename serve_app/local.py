"""In-process pipeline clients over engines: the deployments serve these, and tests and bench use
them directly to run the very same code without Ray."""

from __future__ import annotations

import asyncio

import numpy as np

from .engines.base import LayoutEngine, Recognition, RecognizerEngine, RecognizeRequest, Region
from .regions import arrange


class LocalLayout:
    def __init__(self, engine: LayoutEngine) -> None:
        self.engine = engine

    async def detect(self, image: np.ndarray) -> list[Region]:
        """Regions in reading order: the model's own order, or rebuilt from the page's text lines."""
        regions = (await self.engine.detect([image]))[0]
        if self.engine.ordered:
            return regions
        return await asyncio.to_thread(arrange, image, regions)


class LocalRecognizer:
    def __init__(self, engine: RecognizerEngine) -> None:
        self.engine = engine

    async def recognize(self, request: RecognizeRequest) -> Recognition:
        return (await self.engine.recognize([request]))[0]
