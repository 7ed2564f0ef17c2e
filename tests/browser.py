"""The browser fixtures, shared through tests/conftest.py: a real headless Chromium (Debian's
``chromium``, which scripts/setup.sh installs) driven by Playwright's Python wheel, whose driver
ships in it: nothing is downloaded. Each test gets a fresh browser context (its own localStorage);
an uncaught script error fails the test; screenshots go to ``.artifacts/e2e/`` to be looked at."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parents[1] / ".artifacts" / "e2e"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: scripts/setup.sh installs it (make test)"
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="en-US")
    context.set_default_timeout(30_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # What the page's Content-Security-Policy refused: the page must live within its own policy.
    opened.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield opened
    context.close()
    assert not errors, f"the page's scripts failed: {errors}"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
