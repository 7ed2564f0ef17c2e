"""The in-process layout client over a layout engine: the deployment serves it, and tests and bench
use it directly to run the very same code without Ray. (A recognizer engine is its own client.)"""

from __future__ import annotations

import asyncio

import numpy as np

from .datatypes import Region
from .engines.base import LayoutEngine
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
