"""A stand-in for serve_app behind Serve's proxy, to tell the proxy's memory from ours: it takes the
same uploads and answers the same shapes (about 10 KB of JSON after half a second; 503 +
Retry-After past three documents at once, as the CPU config's ingress does) and reads nothing.

    .venv/bin/python -m bench.soak --config bench/serve_config.echo.yaml --requests 2000 --corpus tests/data
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

api = FastAPI()
ANSWER = {"text": "x" * 10_000, "pages": [{"page": 1, "blocks": []}]}


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class Echo:
    def __init__(self) -> None:
        self.in_flight = 0

    @api.get("/ready")
    async def ready(self) -> dict[str, str]:
        return {"status": "ready"}

    @api.post("/v1/ocr")
    async def ocr(self, request: Request) -> JSONResponse:
        if self.in_flight >= 3:
            return JSONResponse({"type": "overloaded"}, status_code=503, headers={"Retry-After": "1"})
        self.in_flight += 1
        try:
            await request.body()
            await asyncio.sleep(0.5)
            return JSONResponse(ANSWER)
        finally:
            self.in_flight -= 1


app = Echo.bind()
