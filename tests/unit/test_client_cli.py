"""``serve_app.client`` and the ``serve-app`` CLI against the real API over in-process engines, served
by uvicorn on 127.0.0.1 (no Ray): files, folders and globs read, errors as one line and exit 1.
The job commands are tested against real jobs in tests/integration/test_storage.py."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from bench.textmetrics import cer
from serve_app import cli
from serve_app.api import create_api
from serve_app.client import AsyncClient, Client, ServiceError
from tests.conftest import DATA
from tests.serve_fixtures import free_port
from tests.unit.engines_fixture import EngineBackend

PHOTOTEST = DATA / "phototest.png"
TRUTH = (DATA / "phototest.gt.txt").read_text()


@pytest.fixture(scope="module")
def url(engines) -> Iterator[str]:
    from serve_app.config import load_args

    backend = EngineBackend(*engines)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_api(load_args({}, environ={}), backend), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    with Client(f"http://127.0.0.1:{port}") as c:
        for _ in range(200):
            if server.started and c.ready():
                break
            threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_client_reads_a_path_bytes_and_reports_problems(url: str) -> None:
    with Client(url) as c:
        assert c.ready() is True and c.health()["status"] == "ready"
        body = c.ocr(PHOTOTEST, lang="en", layout=False)
        assert cer(body["text"], TRUTH) < 0.05 and len(body["pages"][0]["blocks"]) == 1
        assert c.ocr(("p.png", PHOTOTEST.read_bytes()))["document"]["media_type"] == "image/png"
        with pytest.raises(ServiceError) as err:
            c.ocr(b"plain text, not a document")
        assert err.value.status == 415 and err.value.type == "unsupported-media-type"
        assert err.value.problem["request_id"] and "PDF" in err.value.detail
        with pytest.raises(ServiceError) as err:
            c.ocr(PHOTOTEST, pages="7")
        assert err.value.status == 400 and err.value.type == "invalid-page-range"


async def test_async_client_reads_concurrently(url: str) -> None:
    import asyncio

    async with AsyncClient(url) as c:
        bodies = await asyncio.gather(*(c.ocr(PHOTOTEST, lang="en") for _ in range(3)))
        assert all(cer(b["text"], TRUTH) < 0.05 for b in bodies)
        with pytest.raises(ServiceError) as err:
            await c.job("x")
        assert err.value.status == 400  # jobs need storage, and this service has none


def test_cli_reads_a_folder_and_a_glob_into_files(url: str, tmp_path: Path, capsys) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    shutil.copy(PHOTOTEST, docs / "a.png")
    shutil.copy(PHOTOTEST, docs / "sub" / "a.png")  # the same stem twice: a second name, not overwritten
    (docs / "notes.txt").write_text("not a document; a folder's other files are left alone")
    out = tmp_path / "out"
    argv = ["--url", url, "ocr", str(docs), str(docs / "*.png"), "--out", str(out), "--format", "txt"]
    assert cli.main([*argv, "--lang", "en", "--concurrency", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a-2.txt", "a.txt"]
    assert all(cer(p.read_text(), TRUTH) < 0.05 for p in out.iterdir())
    assert capsys.readouterr().err == ""
    # A pattern takes only documents, and one that matches none fails with its own line.
    assert cli.main(["--url", url, "ocr", str(docs / "*"), str(docs / "*.jpg"), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"serve-app: {docs / '*.jpg'}: No such file or directory\n"


def test_cli_prints_one_document_to_stdout_in_each_format(url: str, capsys) -> None:
    import json

    assert cli.main(["--url", url, "ocr", str(PHOTOTEST), "--format", "json", "--no-layout"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["pages"][0]["blocks"]) == 1 and cer(body["text"], TRUTH) < 0.05
    assert cli.main(["--url", url, "ocr", str(PHOTOTEST)]) == 0
    assert "quick brown dog" in capsys.readouterr().out


def test_cli_fails_with_one_line_per_bad_input_and_exit_1(url: str, tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("plain text")
    missing = tmp_path / "missing.pdf"
    assert (
        cli.main(["--url", url, "ocr", str(PHOTOTEST), str(text), str(missing), "--out", str(tmp_path)]) == 1
    )
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"serve-app: {text}: 415 unsupported-media-type: "
        "unsupported document type: send a PDF or a PNG, JPEG, TIFF, WebP or BMP image",
        f"serve-app: {missing}: No such file or directory",
    ]
    assert (tmp_path / "phototest.md").exists()  # the good one was read all the same


def test_cli_health_and_an_unreachable_service(url: str, capsys) -> None:
    assert cli.main(["--url", url, "health"]) == 0
    assert capsys.readouterr().out.startswith("ready  version ")
    assert cli.main(["--url", f"http://127.0.0.1:{free_port()}", "health"]) == 1
    assert capsys.readouterr().err.startswith("serve-app: no answer from http://127.0.0.1:")
    with pytest.raises(SystemExit) as usage:
        cli.main(["ocr", "x.pdf", "--concurrency", "0"])
    assert usage.value.code == 2


def test_the_progress_bar_is_drawn_on_a_terminal_only_and_notes_go_above_it() -> None:
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = cli.Bar("pages", 0, screen)
    bar.follow({"progress": {"pages_done": 1, "pages_total": 4}})
    bar.update(2)
    bar.close()
    assert screen.getvalue() == (f"\r[{'#' * 7}{'.' * 23}] 1/4 pages\r[{'#' * 15}{'.' * 15}] 2/4 pages\n")
    piped = io.StringIO()
    bar = cli.Bar("documents", 3, piped)
    bar.update(1)
    bar.close()
    assert piped.getvalue() == ""
