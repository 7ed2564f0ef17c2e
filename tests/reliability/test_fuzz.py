"""Schemathesis over the service's own OpenAPI, through Serve's proxy: over a thousand generated
requests across every route, no server error, every answer as the schema declares it (status,
content type, body), invalid input refused, and the service still ready and reading afterwards."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import httpx
import pytest

from scripts.s3_dev import SeaweedFS
from tests.conftest import DATA, reads_phototest
from tests.serve_fixtures import deploy, small_app_args

KEY = "fuzz-test-key-" + "k" * 16
EXAMPLES = 180  # per operation that takes input (six of them): over 1,000 requests in all


@pytest.fixture(scope="module")
def url(base_url: str, s3: SeaweedFS) -> Iterator[str]:
    """The CPU app with storage (so the job routes do their work) and an API key."""
    from ray import serve

    yield deploy(base_url, "fuzz", small_app_args(s3, auth={"api_keys": [KEY]}))
    serve.delete("fuzz")


def test_generated_requests_get_declared_answers_and_no_server_error(url: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.config import SchemathesisConfig
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # The key as schemathesis' own auth: its checks then also send each operation without it and
    # with a wrong one, and expect a 401 (the probes declare no security and are left alone).
    keys = {"APIKeyHeader": {"api_key": KEY}, "HTTPBearer": {"bearer": KEY}}
    config = SchemathesisConfig.from_dict({"auth": {"openapi": keys}})
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: dict[str, str] = {}

    def call(case) -> None:  # type: ignore[no-untyped-def]
        if isinstance(case.body, dict):
            if isinstance(case.body.get("url"), str):
                case.body["url"] = f"{url}/no-such.pdf"  # fetches stay on this machine (and are refused)
            if str(case.body.get("file")).startswith(("http://", "https://")):  # /layout-parsing's URL
                case.body["file"] = f"{url}/no-such.pdf"
            if case.body.get("timeout_s") is not None:
                # A deadline the client sets shorter than the work is a 504 by design, not a fault.
                case.body["timeout_s"] = 120
        try:
            # Schema-valid is not readable: random bytes that fit `format: binary` are still no
            # PDF, so a 415 or 422 for them is right; every other check applies.
            response = case.call_and_validate(
                base_url=url,
                excluded_checks=[positive_data_acceptance],
                timeout=60,
            )
            statuses[(case.operation.label, response.status_code)] += 1
        except BaseException as exc:  # schemathesis' failure groups are BaseExceptionGroups
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.setdefault(f"{case.operation.label}: {str(exc)[:200]}", str(exc)[:2000])

    for result in schema.get_all_operations():
        operation = result.ok()
        run = settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, not shrunk
            suppress_health_check=list(HealthCheck),
        )(given(case=operation.as_strategy())(call))
        run()

    report = "\n".join(f"{label} {status}: {n}" for (label, status), n in sorted(statuses.items()))
    print(f"{sum(statuses.values())} generated requests:\n{report}")  # shown with -s
    assert not failures, "\n\n".join(failures.values()) + "\n\n" + report
    assert sum(statuses.values()) >= 1000, report
    assert not [k for k in statuses if k[1] >= 500], report
    assert len({label for label, _ in statuses}) == len(list(schema.get_all_operations())), report
    # The service is ready afterwards and still reads a page.
    assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
    page = httpx.post(
        f"{url}/v1/ocr",
        files={"file": ("p.png", (DATA / "phototest.png").read_bytes())},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    )
    assert page.status_code == 200 and reads_phototest(page.json()["text"])
