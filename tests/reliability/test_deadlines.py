"""A request past its deadline, or whose client went away, stops using the model replicas: their
ongoing requests drop to none and stay there while the rest of its pages would still be read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import phototest_tiff
from tests.serve_fixtures import deploy, small_app_args, wait_for

APP = "deadlines"
PAGES = 96  # about 12 s of reading on 2 cores (24 pages now take 3 s): far longer than the deadlines
LONG = {"file": ("long.tif", phototest_tiff(PAGES))}


@pytest.fixture(scope="module")
def url(base_url: str) -> Iterator[str]:
    from ray import serve

    yield deploy(base_url, APP, small_app_args())
    serve.delete(APP)


def ongoing() -> dict[str, int]:
    """Requests each model replica of the app is working on, as Serve counts them."""
    import ray

    replicas = [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{APP}#")
    ]
    counts = {}
    for actor in replicas:
        deployment = actor["name"].split("#")[1]
        if deployment in ("Layout", "Recognizer"):
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            counts[deployment] = ray.get(handle.get_num_ongoing_requests.remote(), timeout=10)
    assert set(counts) == {"Layout", "Recognizer"}, replicas
    return counts


def stops_using_the_models(send: Callable[[], None]) -> None:
    """``send`` a long document: the replicas are busy with it while it is sent, and once it has
    ended (deadline, client gone) their ongoing requests drop to none and stay there."""
    busy: list[int] = []

    def watch() -> None:
        wait_for(lambda: busy.append(sum(ongoing().values())) or busy[-1] > 0, timeout_s=30, every_s=0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    send()
    watcher.join(timeout=30)
    assert busy and busy[-1] > 0, busy  # the document was being read
    # The calls in flight are called off. A call the router was handing to a replica as it was
    # cancelled can show there for a moment under load: quiet means none on two looks 0.5 s apart.
    pause = threading.Event()
    wait_for(lambda: sum(ongoing().values()) == 0 and not pause.wait(0.5) and sum(ongoing().values()) == 0, 5)
    samples = []
    for _ in range(12):  # six seconds in which the rest of its pages would have been read
        samples.append(ongoing())
        pause.wait(0.5)
    assert all(sum(s.values()) == 0 for s in samples), samples


def test_a_request_past_its_deadline_stops_using_the_models(url: str) -> None:
    def send() -> None:
        r = httpx.post(f"{url}/v1/ocr", files=LONG, data={"lang": "en", "timeout_s": "4"}, timeout=60)
        assert r.status_code == 504 and r.json()["type"].endswith("/deadline-exceeded")

    stops_using_the_models(send)


def test_a_client_that_goes_away_cancels_its_pages(url: str) -> None:
    def send() -> None:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            httpx.post(f"{url}/v1/ocr", files=LONG, data={"lang": "en"}, timeout=httpx.Timeout(60, read=4))

    stops_using_the_models(send)
