"""The chat page in a real browser: headless Chromium driven by Playwright.

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright`` Python package
(its bundled driver; ``playwright install`` is never run). When either is missing the test
installs them if it runs as root with ``$CI`` or ``$MTREC_INSTALL_BROWSER`` set, else skips.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.agent.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _ensure_browser() -> None:
    have_chromium = os.path.exists(CHROMIUM)
    have_playwright = importlib.util.find_spec("playwright") is not None
    if have_chromium and have_playwright:
        return
    allowed = os.geteuid() == 0 and (
        os.environ.get("CI") or os.environ.get("MTREC_INSTALL_BROWSER")
    )
    missing = [
        n for n, ok in (("chromium", have_chromium), ("playwright", have_playwright)) if not ok
    ]
    if not allowed:
        pytest.skip(
            f"browser test skipped: {' and '.join(missing)} missing (install with "
            "`apt-get install -y chromium` and `pip install playwright`, or run as root with "
            "CI=1 or MTREC_INSTALL_BROWSER=1 to let this test install them)"
        )
    if not have_chromium:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env)
    if not have_playwright:
        subprocess.run([sys.executable, "-m", "pip", "install", "playwright"], check=True)
        importlib.invalidate_caches()


@pytest.fixture(scope="module")
def live_url(trained_workspace) -> Iterator[str]:
    """The app under a real uvicorn on a free loopback port (in a thread of this process)."""
    import uvicorn

    from agent.recommender import Recommender
    from agent.server import create_app

    _ensure_browser()
    rec = Recommender.load(trained_workspace, llm="none")
    port = free_port()
    config = uvicorn.Config(
        create_app(rec=rec, llm="none"), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def page(live_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        try:
            pg = browser.new_page()
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(live_url + "/")
            yield pg
            assert not errors, errors
        finally:
            browser.close()


def _items(answer) -> list[tuple[str, str]]:
    items = answer.locator("li.item")
    return [
        (
            items.nth(i).get_attribute("data-item-id") or "",
            items.nth(i).locator(".explanation").inner_text(),
        )
        for i in range(items.count())
    ]


def test_chat_page_recommend_then_dislike(page):
    page.fill("#message", "comedies from the 90s")
    page.press("#message", "Enter")
    answers = page.locator('[data-testid="answer"]')
    answers.first.wait_for(timeout=60_000)
    first = answers.nth(0)
    assert "Comedy" in first.locator(".reply").inner_text()
    shown = _items(first)
    assert len(shown) == 5
    assert all(text.strip() for _, text in shown), shown  # every item explained
    assert all("Comedy" in m for m in first.locator(".meta").all_inner_texts())
    # Icons are drawn (SVG), not emoji that need a font; diagnostics stay folded away.
    assert first.locator("button.like svg").count() == 5
    assert first.locator("details").count() == 1
    assert not first.locator("details").evaluate("d => d.open")

    disliked = shown[0][0]
    first.locator("li.item").first.locator("button.dislike").click()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=\"answer\"]').length >= 2", timeout=60_000
    )
    second = answers.nth(1)
    after = [i for i, _ in _items(second)]
    assert len(after) == 5 and disliked not in after
    assert after != [i for i, _ in shown]
    assert first.locator("li.item").first.get_attribute("class") == "item rated"
    assert page.locator('[data-testid="error"]').count() == 0
