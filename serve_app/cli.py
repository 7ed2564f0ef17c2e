"""``serve-app``: OCR files, folders and globs, follow jobs and check health from a shell.

    serve-app ocr scan.pdf --pages 1-3 --lang ru --format md
    serve-app ocr invoices/ --out texts/ --format txt --concurrency 4
    serve-app ocr book.pdf --job --out out/          # as a job, with a bar over its pages
    serve-app jobs submit book.pdf                   # prints the job id
    serve-app jobs wait ID && serve-app jobs result ID --format md
    serve-app health

``--url`` (or SERVE_APP_URL) names the service, ``--api-key`` (or SERVE_APP_API_KEY) its key.
Exit status: 0 when everything was read, 1 when anything failed (one line each on stderr),
2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx

from .client import DEFAULT_URL, AsyncClient, Document, ServiceError

DOCUMENT_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
FORMATS = {"md": "markdown", "txt": "text"}  # and json: the whole answer
RETRIES = 5  # 429s and 503s waited out (their Retry-After) before a document counts as failed
CANCEL_S = 5.0  # on Ctrl-C, how long `ocr --job` tries to cancel the jobs it submitted


class Failed(Exception):
    """One input that could not be read: its one-line reason."""


class Bar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, unit: str, total: int, stream: TextIO | None = None) -> None:
        self.unit, self.total, self.done = unit, total, 0
        self.stream = stream or sys.stderr
        self.shown = self.stream.isatty()

    def update(self, done: int, total: int | None = None) -> None:
        self.done, self.total = done, total if total is not None else self.total
        if self.shown:
            filled = 30 * self.done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {self.unit}")
            self.stream.flush()

    def follow(self, view: dict[str, Any]) -> None:
        """A job's view: its pages done of its pages."""
        self.update(view["progress"]["pages_done"], view["progress"]["pages_total"])

    def note(self, line: str, out: TextIO | None = None) -> None:
        """``line`` on stderr (or ``out``), above the bar."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
        (out or sys.stderr).write(line if line.endswith("\n") else line + "\n")
        (out or sys.stderr).flush()
        if self.shown:
            self.update(self.done)

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")


def render(body: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(body, ensure_ascii=False, indent=2) + "\n"
    text = str(body[FORMATS[fmt]])
    return text if text.endswith("\n") else text + "\n"


def inputs(specs: list[str]) -> Iterator[str]:
    """Files, folders (their documents, recursively, in name order), globs and URLs, each once."""
    seen: set[str] = set()
    for spec in specs:
        if spec.startswith(("http://", "https://", "s3://")):
            found = [spec]
        elif Path(spec).is_dir():
            found = sorted(str(p) for p in Path(spec).rglob("*") if p.suffix.lower() in DOCUMENT_SUFFIXES)
        elif not Path(spec).exists() and glob.has_magic(spec):
            found = sorted(
                p for p in glob.glob(spec, recursive=True) if Path(p).suffix.lower() in DOCUMENT_SUFFIXES
            )
            found = found or [spec]  # a pattern that matches no document fails with its own line
        else:
            found = [spec]  # a missing file fails when it is read, with its own line
        for name in found:
            if name not in seen:
                seen.add(name)
                yield name


def output_path(out: Path, name: str, fmt: str, taken: set[Path]) -> Path:
    stem = Path(name.rstrip("/")).stem or "document"
    path, n = out / f"{stem}.{fmt}", 1
    while path in taken:
        n += 1
        path = out / f"{stem}-{n}.{fmt}"
    taken.add(path)
    return path


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "pages": args.pages,
        "lang": args.lang,
        "layout": False if args.no_layout else None,
        "dpi": args.dpi,
        "text_layer": args.text_layer,
        "model": args.model,
    }


async def load(name: str) -> Document:
    """A file's name and bytes; a URL or ``s3://`` URI as it is (the service reads it)."""
    if name.startswith(("http://", "https://", "s3://")):
        return name
    try:
        return Path(name).name, await asyncio.to_thread(Path(name).read_bytes)
    except OSError as exc:
        raise Failed(exc.strerror or str(exc)) from None


def unfinished(view: dict[str, Any]) -> Failed | None:
    if view["status"] == "succeeded":
        return None
    return Failed(
        f"job {view['id']} {view['status']}: {(view.get('error') or {}).get('detail', '')}".rstrip(": ")
    )


async def read_one(
    client: AsyncClient, name: str, args: argparse.Namespace, bar: Bar | None
) -> dict[str, Any]:
    """One document's result, read now or (``--job``) as a job whose pages move ``bar``."""
    document = await load(name)
    if not args.job:
        return dict(await client.ocr(document, **options(args)))
    job = await client.submit(document, **options(args))
    try:
        view = await client.wait(job["id"], poll_s=args.poll_s, on_progress=bar.follow if bar else None)
    except asyncio.CancelledError:  # Ctrl-C: the job was this command's to start, and so to stop
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CANCEL_S):
                await client.cancel(job["id"])
        raise
    if failed := unfinished(view):
        raise failed
    return dict(await client.result(job["id"]))


def reason(exc: Exception, url: str) -> str:
    if isinstance(exc, httpx.TransportError):
        return f"no answer from {url}: {exc or type(exc).__name__}"
    if isinstance(exc, httpx.HTTPError):
        return f"a bad answer from {url}: {exc or type(exc).__name__}"
    return str(exc)


async def ocr(client: AsyncClient, args: argparse.Namespace) -> int:
    names = list(inputs(args.files))
    if not names:
        print("serve-app: no documents found in " + " ".join(args.files), file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(args.concurrency)
    single_job = args.job and len(names) == 1
    bar = Bar("pages" if single_job else "documents", 0 if single_job else len(names))

    async def one(name: str) -> dict[str, Any]:
        async with gate:
            return await read_one(client, name, args, bar if single_job else None)

    tasks = [asyncio.create_task(one(name)) for name in names]
    try:
        return await written(names, tasks, args, out, bar, client.url)
    except asyncio.CancelledError:
        # Ctrl-C: every document's task is stopped here, while the client is still open, so that
        # each cancels the job it submitted (read_one) before the command ends.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def written(
    names: list[str],
    tasks: list[asyncio.Task[dict[str, Any]]],
    args: argparse.Namespace,
    out: Path | None,
    bar: Bar,
    url: str,
) -> int:
    """Each document's result written (to ``out`` or stdout) as it comes, in the order given."""
    single_job = args.job and len(names) == 1
    failures, taken, done = 0, set[Path](), 0
    for name, task in zip(names, tasks, strict=True):
        try:
            text = render(await task, args.format)
        except (ServiceError, httpx.HTTPError, Failed) as exc:
            failures += 1
            bar.note(f"serve-app: {name}: {reason(exc, url)}")
            continue
        finally:
            done += 1
            if not single_job:
                bar.update(done)
        if out:
            output_path(out, name, args.format, taken).write_text(text, encoding="utf-8")
        else:
            bar.note(text if len(names) == 1 else f"==> {name} <==\n{text}", sys.stdout)
    bar.close()
    return 1 if failures else 0


async def jobs(client: AsyncClient, args: argparse.Namespace) -> int:
    if args.action == "submit":
        print((await client.submit(await load(args.file), **options(args)))["id"])
        return 0
    if args.action == "status":
        print(json.dumps(await client.job(args.id), ensure_ascii=False, indent=2))
        return 0
    if args.action == "wait":
        bar = Bar("pages", 0)
        view = await client.wait(args.id, args.poll_s, bar.follow)
        bar.close()
        print(view["status"])
        if failed := unfinished(view):
            raise failed
        return 0
    if args.action == "result":
        text = render(await client.result(args.id), args.format)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / f"{args.id}.{args.format}").write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    view = await client.cancel(args.id)
    print(view["status"])
    return 0


async def health(client: AsyncClient, args: argparse.Namespace) -> int:
    h = await client.health()
    if args.json:
        print(json.dumps(h, ensure_ascii=False, indent=2))
    else:
        if "deployments" not in h:  # keys are set and this caller has none
            print(f"{h['status']}  version {h['version']}  (an API key shows deployments and models)")
            return 0 if h["status"] == "ready" else 1
        print(
            f"{h['status']}  version {h['version']}  storage {h['storage']}"
            + (f"  ({h['reason']})" if h["reason"] else "")
        )
        for name, d in h["deployments"].items():
            replicas = ", ".join(f"{n} {state}" for state, n in (d.get("replicas") or {}).items())
            print(f"  {name:<12} {d.get('status', '')}  {replicas}")
        for name, m in h["models"].items():
            print(f"  {name:<12} " + ", ".join(f"{k}={v}" for k, v in m.items()))
    return 0 if h["status"] == "ready" else 1


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return int(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="serve-app", description="Read documents with a serve_app service.")
    p.add_argument(
        "--url", default=os.environ.get("SERVE_APP_URL", DEFAULT_URL), help="the service (SERVE_APP_URL)"
    )
    p.add_argument(
        "--api-key", default=os.environ.get("SERVE_APP_API_KEY"), help="its API key (SERVE_APP_API_KEY)"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for one answer")
    commands = p.add_subparsers(dest="command", required=True)

    def document_options(c: argparse.ArgumentParser) -> None:
        c.add_argument("--pages", help="1-based page ranges, e.g. 1-3,5 (all if omitted)")
        c.add_argument("--lang", help="auto (the default), ru, en, ru+en, ...")
        c.add_argument("--no-layout", action="store_true", help="read each page as one region")
        c.add_argument("--dpi", type=int, help="PDF render resolution")
        c.add_argument("--text-layer", choices=["auto", "off", "only"], help="use a PDF's own text")
        c.add_argument("--model", help="the recognizer to read with (GET /v1/models; default: the first)")

    def output_options(c: argparse.ArgumentParser) -> None:
        c.add_argument("--format", choices=["md", "json", "txt"], default="md")
        c.add_argument("--out", help="write each result into this folder instead of stdout")

    c = commands.add_parser("ocr", help="read files, folders, globs or URLs")
    c.add_argument("files", nargs="+", metavar="FILE")
    document_options(c)
    output_options(c)
    c.add_argument("--concurrency", type=positive, default=4, help="documents in flight at once (default 4)")
    c.add_argument("--job", action="store_true", help="read each as a job (needs storage; a bar over pages)")
    c.add_argument("--poll-s", type=float, default=1.0, help=argparse.SUPPRESS)

    j = commands.add_parser("jobs", help="submit, follow, fetch or cancel jobs")
    actions = j.add_subparsers(dest="action", required=True)
    s = actions.add_parser("submit", help="queue a document; prints the job id")
    s.add_argument("file", metavar="FILE")
    document_options(s)
    for action, text in (("status", "a job's view (JSON)"), ("wait", "wait for a job to end, with a bar"),
                         ("result", "a succeeded job's result"), ("cancel", "cancel a job")):  # fmt: skip
        a = actions.add_parser(action, help=text)
        a.add_argument("id")
        if action == "result":
            output_options(a)
        if action == "wait":
            a.add_argument("--poll-s", type=float, default=1.0, help=argparse.SUPPRESS)

    h = commands.add_parser("health", help="deployments, replicas, models, storage; exit 0 when ready")
    h.add_argument("--json", action="store_true")
    return p


async def run(args: argparse.Namespace) -> int:
    command = {"ocr": ocr, "jobs": jobs, "health": health}[args.command]
    concurrency = getattr(args, "concurrency", 1)
    async with AsyncClient(
        args.url, args.api_key, args.timeout, RETRIES, max_connections=concurrency
    ) as client:
        return await command(client, args)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (ServiceError, Failed, OSError) as exc:
        print(
            f"serve-app: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}",
            file=sys.stderr,
        )
    except httpx.HTTPError as exc:
        print(f"serve-app: {reason(exc, args.url)}", file=sys.stderr)
    except KeyboardInterrupt:
        # `ocr --job` cancelled what it had submitted; a job only waited for goes on.
        goes_on = " (the job goes on: serve-app jobs cancel ID)" if args.command == "jobs" else ""
        print(f"serve-app: interrupted{goes_on}", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
