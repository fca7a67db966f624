"""A real browser for page tests: Debian's chromium (``/usr/bin/chromium``) driven by playwright.

Playwright's own browser download is not used (no network beyond package registries on CI); the Debian
package is installed by scripts/test.sh. Import the fixtures into a test module (or a conftest) with
``from browser import browser, browser_page  # noqa: F401`` and use ``browser_page`` for a fresh page
(own context: no cookies or storage shared between tests), or ``browser`` to open several contexts (two
customers side by side, say). ``screenshot(page, name)`` writes ``docs/images/<name>.png`` when
``B2B_SCREENSHOTS=1`` (how the docs' images are refreshed), and always into pytest's tmp folder otherwise.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("B2B_CHROMIUM", "/usr/bin/chromium")
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless chromium per test module (starting one costs ~1 s)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium refuses its sandbox.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser_page(browser) -> Iterator[object]:  # noqa: ANN001
    """A page in a fresh context (1280 x 900), closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def screenshot(page, name: str, tmp_path: Path, element=None) -> Path:  # noqa: ANN001
    """Save a full-page PNG (or of ``element`` only, a locator): into docs/images when B2B_SCREENSHOTS=1,
    else beside the test's tmp files."""
    folder = DOCS_IMAGES if os.environ.get("B2B_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    if element is not None:
        element.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path


def log_in_to_airflow(page, stack: Any) -> None:  # noqa: ANN001
    """Airflow's own login form (SimpleAuthManager) as admin, as an engineer logs in; waits for the
    navigation to show the Integrations page."""
    passwords = json.loads((stack.home / "simple_auth_manager_passwords.json.generated").read_text())
    page.goto(stack.url + "/")
    page.get_by_label(re.compile("username", re.I)).fill("admin")
    page.get_by_label(re.compile("password", re.I)).fill(passwords["admin"])
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    page.get_by_role("link", name="Integrations").wait_for(
        timeout=120_000
    )  # the UI loads slowly on a busy host
