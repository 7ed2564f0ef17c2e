"""The systems a benchmark compares, each started and stopped by the harness on this machine.

- ``service``: serve_app under ``serve run`` (or an already running one, ``--url``).
- ``bare``: the same engines and pipeline in this process, one page after another; no HTTP, no Ray.
- ``naive``: the users' earlier design, one uvicorn process with a synchronous route (baselines/naive.py).
- ``rapidocr_api``: the RapidOCR HTTP server from PyPI (its own venv under bench/.venv-rapidocr-api).
- ``tesseract``: Debian's tesseract CLI, one single-threaded process per request in flight.

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import httpx
import yaml

from bench.corpus import Page, tesseract_lang
from bench.loadgen import Answer
from serve_app.client import AsyncClient, ServiceError

if TYPE_CHECKING:
    from serve_app.config import AppArgs

ROOT = Path(__file__).parents[1]
VENV_BIN = Path(sys.executable).parent
REQUEST_TIMEOUT_S = 600.0
RETRIES = 120  # at Retry-After's 5 s, as long as REQUEST_TIMEOUT_S
T = TypeVar("T")


def config_args(config: Path) -> AppArgs:
    """The validated ``args`` of a serve config's first application, without env overrides."""
    from serve_app.config import load_args

    app = yaml.safe_load(config.read_text())["applications"][0]
    return load_args(app.get("args") or {}, environ={})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_only(url: str) -> str:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"benchmarks only talk to 127.0.0.1 / localhost, not {host!r}")
    return url.rstrip("/")


class HttpSystem:
    """A server process on 127.0.0.1 and how to send it one page."""

    name = ""
    ready_path = "/"

    def __init__(self) -> None:
        self.url = ""
        self.cold_start_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.AsyncClient | None = None
        fd, log = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        os.close(fd)
        self.log = Path(log)

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self, timeout_s: float = 300) -> None:
        port = free_port()
        argv, env = self.command(port)
        self.url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        while time.perf_counter() - started < timeout_s:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}; log: {self.log}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=5).status_code == 200:
                    self.cold_start_s = round(time.perf_counter() - started, 2)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout_s:g} s; log: {self.log}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGINT)
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    async def call(self, page: Page) -> Answer:
        try:
            return self.read(await self.send(page))
        except ServiceError as exc:
            return Answer(exc.status, 0)
        except httpx.HTTPError:
            return Answer(0, 0)

    async def send(self, page: Page) -> Any:
        """A page's answer (JSON); ServiceError for an error status."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=REQUEST_TIMEOUT_S, limits=httpx.Limits(max_connections=None)
            )
        response = await self.post(self._client, page)
        if response.status_code != 200:
            raise ServiceError(response.status_code, {})
        return response.json()

    async def post(self, client: httpx.AsyncClient, page: Page) -> httpx.Response:
        raise NotImplementedError

    def read(self, body: Any) -> Answer:
        return Answer(200, 1)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class Service(HttpSystem):
    name = "service"
    ready_path = "/ready"

    def __init__(self, config: Path, url: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.external = url is not None
        self._service: AsyncClient | None = None
        if url:
            self.url = local_only(url)

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        config = yaml.safe_load(self.config.read_text())
        config.setdefault("http_options", {}).update(host="127.0.0.1", port=port)
        path = Path(tempfile.mkdtemp(prefix="bench-serve-")) / self.config.name
        path.write_text(yaml.safe_dump(config))
        return [str(VENV_BIN / "serve"), "run", str(path)], {"RAY_AUTH_MODE": "disabled"}

    def start(self, timeout_s: float = 300) -> None:
        if not self.external:
            super().start(timeout_s)

    def stop(self) -> None:
        if self.external:
            return
        super().stop()
        # `serve run` started a local Ray of its own; leave nothing behind for the next system.
        subprocess.run([str(VENV_BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120)

    async def send(self, page: Page) -> Any:
        if self._service is None:
            # As the service's clients do: a 503's Retry-After honoured (the CPU config reads 3
            # documents at once and refuses the rest), so a step past that counts pages read, not
            # refusals sent back to back.
            self._service = AsyncClient(
                self.url, timeout_s=REQUEST_TIMEOUT_S, retries=RETRIES, max_connections=None
            )
        return await self._service.ocr((page.name, page.data))

    async def close(self) -> None:
        await super().close()
        if self._service is not None:
            await self._service.aclose()
            self._service = None

    def read(self, body: Any) -> Answer:
        stages: dict[str, float] = {}
        for p in body["pages"]:
            for k, v in p["timings_ms"].items():
                stages[k] = stages.get(k, 0.0) + v
        stages["request_total"] = body["timings_ms"]["total"]
        return Answer(200, len(body["pages"]), stages)


async def timed_ocr(client: AsyncClient, page: Page) -> dict[str, Any]:
    """One page sent to the service: its status (0: no answer), Retry-After and latency."""
    t = time.perf_counter()
    status, retry = 200, None
    try:
        await client.ocr((page.name, page.data))
    except ServiceError as exc:
        status, retry = exc.status, exc.retry_after_s
    except httpx.HTTPError:
        status = 0
    return {"status": status, "retry_after": retry, "latency_s": round(time.perf_counter() - t, 3)}


@dataclass(frozen=True)
class Run:
    """What a harness records of its run besides its figures."""

    started: str
    command: str
    out: Path


def service_arguments(
    p: argparse.ArgumentParser, config: Path = ROOT / "serve_config.cpu.yaml", limit: int = 8
) -> None:
    """The options of a harness that runs against the service (``run_against_service``)."""
    p.add_argument("--config", type=Path, default=config)
    p.add_argument("--url", help="a service already running at this 127.0.0.1 URL")
    p.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "evaldata")
    p.add_argument("--limit", type=int, default=limit, help="pages of the corpus, sent round-robin")
    p.add_argument("--out", type=Path)


def run_against_service(
    prog: str, opts: Any, argv: list[str] | None, work: Callable[[str], Coroutine[Any, Any, T]]
) -> tuple[T, Run]:
    """``work(url)`` against the service ``opts.config`` starts (or ``opts.url``), which is stopped
    after; the run's start, its command line and its output folder (``opts.out`` or a new one)."""
    started = time.strftime("%Y%m%d-%H%M%S")
    out = opts.out or ROOT / "bench" / "results" / f"{prog}-{started}"
    out.mkdir(parents=True, exist_ok=True)
    service = Service(opts.config, opts.url)
    service.start()
    try:
        result = asyncio.run(work(service.url))
    finally:
        service.stop()
    command = f"python -m bench.{prog} " + " ".join(sys.argv[1:] if argv is None else argv)
    return result, Run(started, command, out)


class Naive(HttpSystem):
    name = "naive"
    ready_path = "/health"

    def __init__(self, config: Path) -> None:
        super().__init__()
        self.config = config

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "uvicorn", "bench.baselines.naive:app", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--log-level", "warning"]  # fmt: skip
        return argv, {"BENCH_NAIVE_CONFIG": str(self.config.resolve())}

    async def post(self, client: httpx.AsyncClient, page: Page) -> httpx.Response:
        return await client.post(self.url + "/ocr", files={"file": (page.name, page.data, page.media_type)})

    def read(self, body: Any) -> Answer:
        return Answer(200, int(body["pages"]), {"total": float(body["ms"])})


class RapidocrApi(HttpSystem):
    """rapidocr_api 0.2.0 needs rapidocr 3, which conflicts with the service's rapidocr-onnxruntime:
    it gets a venv of its own, made on first use from PyPI, and the ONNX files of our wheel (it
    would download its own otherwise)."""

    name = "rapidocr_api"
    VENV = ROOT / "bench" / ".venv-rapidocr-api"

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        if not (self.VENV / "bin" / "rapidocr_api").exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.VENV)], check=True)
            pip = [str(self.VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, "rapidocr-api==0.2.0", "onnxruntime"], check=True, timeout=900)
        import rapidocr_onnxruntime

        models = Path(rapidocr_onnxruntime.__file__).parent / "models"
        env = {
            "det_model_path": str(next(models.glob("*det*.onnx"))),
            "rec_model_path": str(next(models.glob("*rec*.onnx"))),
            "cls_model_path": str(next(models.glob("*cls*.onnx"))),
        }
        return [str(self.VENV / "bin" / "rapidocr_api"), "-ip", "127.0.0.1", "-p", str(port)], env

    async def post(self, client: httpx.AsyncClient, page: Page) -> httpx.Response:
        return await client.post(
            self.url + "/ocr", files={"image_file": (page.name, page.data, page.media_type)}
        )


class TesseractCli:
    """``tesseract - -`` per request, single-threaded (OMP_THREAD_LIMIT=1), as a shell script would;
    ``-l`` the page's language where the corpus says it (``lang="page"``), else ``lang``."""

    name = "tesseract"
    cold_start_s: float | None = 0.0

    def __init__(self, lang: str = "page") -> None:
        if shutil.which("tesseract") is None:
            raise RuntimeError("the tesseract CLI is not installed (apt-get install tesseract-ocr)")
        self.lang = lang

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    async def call(self, page: Page) -> Answer:
        proc = await asyncio.create_subprocess_exec(
            "tesseract", "-", "-", "-l", tesseract_lang(page.lang) if self.lang == "page" else self.lang,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )  # fmt: skip
        try:
            await asyncio.wait_for(proc.communicate(page.data), REQUEST_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            return Answer(0, 0)
        return Answer(200 if proc.returncode == 0 else 500, 1)

    async def close(self) -> None:
        return None


class Bare:
    """The service's engines and pipeline in this process, one page at a time (a lock): the upper
    bound of what the engines do on this machine, with nothing of Serve or HTTP around them."""

    name = "bare"

    def __init__(self, config: Path) -> None:
        self._args = config_args(config)
        self._lock = asyncio.Lock()
        self.cold_start_s: float | None = None

    def start(self) -> None:
        from serve_app.engines import build_layout, build_recognizer
        from serve_app.local import LocalLayout

        started = time.perf_counter()
        self._layout, self._recognizer = (
            build_layout(self._args.layout),
            build_recognizer(self._args.recognizer),
        )
        self._layout.start()
        self._recognizer.start()
        self._clients = (LocalLayout(self._layout), self._recognizer)
        self.cold_start_s = round(time.perf_counter() - started, 2)

    def stop(self) -> None:
        self._recognizer.shutdown()

    async def call(self, page: Page) -> Answer:
        from serve_app.documents import Document
        from serve_app.pipeline import Options, process_document

        async with self._lock:
            started = time.perf_counter()
            doc = Document(page.data, self._args.limits)
            try:
                pages = await process_document(doc, doc.select(None), Options(), *self._clients, 1)
            finally:
                doc.close()
            stages: dict[str, float] = {}
            for p in pages:
                for k, v in p.timings_ms.items():
                    stages[k] = stages.get(k, 0.0) + v
            stages["request_total"] = round((time.perf_counter() - started) * 1000, 1)
            return Answer(200, len(pages), stages)

    async def close(self) -> None:
        return None
