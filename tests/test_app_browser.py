"""The web demo in real headless Chromium (system /usr/bin/chromium driven by Playwright for Python).

The server runs as `spotifai serve` in a subprocess on a free port over a small corpus with a ChromaDB index.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from spotifai import index
from spotifai.app.screenshot import CHROMIUM, free_port, launch_chromium, stop_process

try:  # tests/ as a package or as a plain folder on sys.path
    from .app_corpus import XSS_TITLE, build_corpus
except ImportError:
    from app_corpus import XSS_TITLE, build_corpus  # type: ignore[no-redef]


pytestmark = pytest.mark.slow

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - the project's setup installs it
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)


def _wait_until(page, expression: str, timeout_s: float = 20.0) -> None:
    """Poll a JS expression with page.evaluate (wait_for_function evaluates strings with eval, which the
    page's Content-Security-Policy forbids, as it should)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(50)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_browser")
    corpus = build_corpus(root)
    experiment = root / "experiments" / "browser"
    experiment.mkdir(parents=True)
    ids = np.array(sorted(corpus.vectors), dtype=np.int64)
    vectors = np.stack([corpus.vectors[int(i)] for i in ids])
    index.open_index(experiment).build_space(
        "projections", ids, vectors, [{"track_id": int(i)} for i in ids], checkpoint_id="test", progress=False
    )
    port = free_port()
    log = (root / "server.log").open("w")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotifai.cli", "serve", "--database", str(corpus.db_path),
         "--experiment", str(experiment), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = None
        while time.perf_counter() - start < 60:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {(root / 'server.log').read_text()}")
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    ready = time.perf_counter() - start
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert ready is not None, "server never became ready"
        print(f"server ready in {ready:.2f} s")
        yield url, corpus, ready
    finally:
        stop_process(proc)
        log.close()


def test_search_select_play_paginate_escape(server, tmp_path):
    url, corpus, ready = server
    assert ready < 10  # generous on a shared machine; bench/app.py and the report give the real figure
    dialogs: list[str] = []
    page_errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            sync_api.expect.set_options(timeout=30_000)  # a busy shared machine can be slow
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(url)

            # type a misspelled multi-word query (searches as you type, debounced)
            page.locator("#q").press_sequentially("midnigt harbr", delay=40)
            first = page.locator("#results li .title").first
            sync_api.expect(first).to_have_text("Midnight Harbor Lights")

            # select it: shown as the selected song, ten similar tracks listed
            page.locator("#results li .track").first.click()
            sync_api.expect(page.locator("#sel-title")).to_have_text("Midnight Harbor Lights")
            sync_api.expect(page.locator("#similar li")).to_have_count(10)
            similar_titles = page.locator("#similar li .title").all_text_contents()
            assert "Midnight Harbor Lights" not in similar_titles
            sims = page.locator("#similar li .sim").all_text_contents()
            values = [float(s) for s in sims]
            assert values == sorted(values, reverse=True) and all(-1 <= v <= 1 for v in values)

            # press play: the audio element loads the stream
            tid = corpus.ids["Midnight Harbor Lights"]
            assert page.locator("#sel-audio").get_attribute("src") == f"/api/tracks/{tid}/audio"
            page.locator("#sel-play").click()
            _wait_until(page, "document.getElementById('sel-audio').readyState > 0")
            assert page.evaluate("document.getElementById('sel-audio').duration") > 1.0
            # a similar track's play button streams too
            page.locator("#similar li .play").first.click()
            _wait_until(page, "document.getElementById('preview-audio').readyState > 0")

            # the next page of results
            page.locator("#q").fill("filler song")
            sync_api.expect(page.locator("#results li")).to_have_count(20)
            sync_api.expect(page.locator("#more")).to_be_visible()
            page.locator("#more").click()
            sync_api.expect(page.locator("#results li")).to_have_count(40)
            page.locator("#more").click()
            sync_api.expect(page.locator("#results li")).to_have_count(45)
            sync_api.expect(page.locator("#more")).to_be_hidden()
            ids = page.locator("#results li").evaluate_all("els => els.map(e => e.dataset.id)")
            assert len(set(ids)) == 45

            # a hostile title renders as text, in the results and as the selected song
            page.locator("#q").fill("onerror alert")
            sync_api.expect(page.locator("#results li .title").first).to_have_text(XSS_TITLE)
            page.locator("#results li .track").first.click()
            sync_api.expect(page.locator("#sel-title")).to_have_text(XSS_TITLE)
            sync_api.expect(page.locator("#sel-meta")).to_have_text('Script & <Kiddie> · Escapes "quoted"')
            sync_api.expect(page.locator("#similar li")).to_have_count(10)
            assert page.locator("img").count() == 0
            page.wait_for_timeout(300)

            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert dialogs == [], f"a dialog fired: {dialogs}"
    assert page_errors == []


@pytest.mark.parametrize(
    "target",
    [
        "/api/tracks/../../etc/passwd",
        "/api/tracks/../../etc/passwd/audio",
        "/api/tracks/..%2F..%2Fetc%2Fpasswd/audio",
        "/static/../../../../etc/passwd",
        "/../../../../etc/passwd",
    ],
)
def test_raw_path_traversal_over_the_wire(server, target):
    """Request targets sent verbatim (no client-side dot-segment normalization) to the real server."""
    import socket
    from urllib.parse import urlsplit

    url, _, _ = server
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"404", head
    assert b"application/json" in head.lower()
    assert b"root:" not in body and b"detail" in body
