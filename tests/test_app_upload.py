"""The web demo's "similar to my file" in real headless Chromium, against `spotifai serve` on a trained tiny
experiment: choose a file, the similar list appears and plays; bad uploads get a clear message and the server
keeps serving; the uploaded file is never kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from spotifai.app.screenshot import CHROMIUM, free_port, launch_chromium, stop_process

pytestmark = pytest.mark.slow

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - the project's setup installs it
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)


def _wait_until(page, expression: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(50)


@pytest.fixture(scope="module")
def server(demo_experiment, tmp_path_factory):
    root = tmp_path_factory.mktemp("upload_server")
    tmp = root / "tmp"  # the server's TMPDIR: must stay empty
    tmp.mkdir()
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotifai.cli", "serve", "--database", str(demo_experiment.database),
         "--experiment", str(demo_experiment.experiment), "--port", str(port), "--max-upload-mb", "8"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": str(tmp)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {(root / 'server.log').read_text()}")
            try:
                health = httpx.get(f"{url}/api/health", timeout=1).json()
                if health["uploads"] != "loading" and health["index"] != "loading":
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.1)
        assert health == {"status": "ok", "index": "ready", "uploads": "ready"}, health
        yield url, tmp
    finally:
        stop_process(proc)
        log.close()


def test_upload_a_file_and_play_its_similar_songs(server, demo_experiment, tmp_path):
    url, tmp = server
    new = demo_experiment.new_files[0]
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("these are my notes, not music\n" * 50)
    big = tmp_path / "huge.wav"
    big.write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + bytes(9 * 1024 * 1024))
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            sync_api.expect.set_options(timeout=30_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.set_input_files("#file", str(new))
            sync_api.expect(page.locator("#similar li")).to_have_count(10)
            sync_api.expect(page.locator("#sel-title")).to_have_text(new.name)
            values = [float(s) for s in page.locator("#similar li .sim").all_text_contents()]
            assert values == sorted(values, reverse=True)
            widths = page.locator("#similar li .bar span").evaluate_all("els => els.map(e => e.style.width)")
            assert len(set(widths)) > 1  # the bars differ: relative to the 50th neighbour
            page.locator("#similar li .play").first.click()
            _wait_until(page, "document.getElementById('preview-audio').readyState > 0")
            assert page.evaluate("document.getElementById('preview-audio').duration") > 1.0

            page.set_input_files("#file", str(not_audio))
            sync_api.expect(page.locator("#upload-status")).to_contain_text("notes.mp3: not an audio file")
            page.set_input_files("#file", str(big))
            sync_api.expect(page.locator("#upload-status")).to_contain_text("huge.wav: the file is larger than 8 MB")

            page.set_input_files("#file", str(demo_experiment.new_files[1]))  # still serving
            sync_api.expect(page.locator("#sel-title")).to_have_text(demo_experiment.new_files[1].name)
            sync_api.expect(page.locator("#similar li")).to_have_count(10)
        finally:
            browser.close()
    assert not errors
    assert list(tmp.iterdir()) == []  # no upload kept


def test_upload_api_refuses_what_it_should(server, demo_experiment):
    url, tmp = server
    data = demo_experiment.new_files[0].read_bytes()
    ok = httpx.post(f"{url}/api/similar-to-file?k=5", content=data,
                    headers={"content-type": "application/octet-stream"}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 5
    assert "x-content-type-options" in ok.headers
    simple = httpx.post(f"{url}/api/similar-to-file", content=data, headers={"content-type": "text/plain"})
    assert simple.status_code == 415 and "Content-Type" in simple.json()["detail"]
    form = httpx.post(f"{url}/api/similar-to-file", files={"f": ("a.wav", data)})
    assert form.status_code == 415
    broken = httpx.post(f"{url}/api/similar-to-file", content=b"RIFF\x00\x00\x00\x00WAVE" + b"\x01" * 5000,
                        headers={"content-type": "audio/wav"}, timeout=60)
    assert broken.status_code == 422 and "could not read the audio" in broken.json()["detail"]
    assert str(tmp) not in broken.json()["detail"] and "spotifai-upload" not in broken.json()["detail"]
    foreign = httpx.post(f"{url}/api/similar-to-file", content=data, headers={
        "content-type": "application/octet-stream", "host": "evil.example"})
    assert foreign.status_code == 400
    assert httpx.get(f"{url}/api/health").json()["status"] == "ok"
    assert list(tmp.iterdir()) == []
