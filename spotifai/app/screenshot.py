"""A screenshot of the Song Recommender page, taken with headless Chromium (Playwright for Python).

Starts the demo server in a thread on a free loopback port, types a query, picks the first result, waits for
its similar songs and writes a PNG. Used for ``figures/app.png``::

    python -m spotifai.app.screenshot --database DB --experiment EXP --out figures/app.png [--query "..."]

The browser is the system's Chromium (``/usr/bin/chromium`` by default): nothing is downloaded
(never ``playwright install``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spotifai import atomic, database

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop a server subprocess: SIGTERM, then SIGKILL if it has not exited after ``timeout_s`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


@contextmanager
def running_server(app, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a background thread; yields its base URL, stops it on exit."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="spotifai-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def find_browser(browser: str | Path | None = None) -> tuple[str | None, str]:
    """(Chromium executable, "") when a screenshot can be taken, else (None, why not): ``browser`` when given,
    else :data:`CHROMIUM` or ``chromium`` / ``chromium-browser`` / ``google-chrome`` on the PATH; and Playwright
    for Python (the dev extra) must be importable."""
    import shutil

    if browser:
        found = str(browser) if Path(browser).is_file() else None
        if found is None:
            return None, f"{browser}: no such browser executable"
    else:
        names = ("chromium", "chromium-browser", "google-chrome")
        found = CHROMIUM if Path(CHROMIUM).is_file() else next(filter(None, map(shutil.which, names)), None)
        if found is None:
            return None, "no Chromium found (install chromium, or pass its path as the browser parameter)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "Playwright for Python is not installed (pip install -e '.[dev]')"
    return found, ""


def launch_chromium(playwright, executable_path: str = CHROMIUM):
    """The system Chromium, headless, no network side traffic."""
    if not Path(executable_path).exists():
        raise FileNotFoundError(f"{executable_path}: Chromium not found (install the Debian package `chromium`)")
    return playwright.chromium.launch(executable_path=executable_path, headless=True, args=CHROMIUM_ARGS)


def default_query(database_path: str | Path) -> str:
    """The title of the most popular track with audio (a query that surely finds something)."""
    conn = database.connect(database_path, readonly=True)
    try:
        row = conn.execute(
            "SELECT title FROM tracks WHERE audio_path IS NOT NULL AND duration > 0"
            " ORDER BY popularity DESC, id LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        raise ValueError(f"{database_path}: no track with audio to search for")
    return str(row[0])


def capture(
    url: str,
    out: str | Path,
    query: str,
    *,
    width: int = 1280,
    height: int = 900,
    executable_path: str = CHROMIUM,
    timeout_ms: int = 20_000,
) -> Path:
    """Open the page at ``url``, search ``query``, select the first result, wait for its similar songs and
    write a PNG to ``out`` (atomically). Returns the path."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p, executable_path)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            page.fill("#q", query)
            page.wait_for_selector("#results li .track")
            page.click("#results li .track >> nth=0")
            page.wait_for_selector("#similar li")
            expect(page.locator("#similar-status")).to_have_text("")
            page.evaluate("document.activeElement && document.activeElement.blur()")
            png = page.screenshot(full_page=False)
        finally:
            browser.close()
    return atomic.write_bytes(out, png)


def screenshot(
    database_path: str | Path,
    experiment: str | Path,
    out: str | Path,
    query: str | None = None,
    **kwargs,
) -> Path:
    """Start the demo on ``database_path`` / ``experiment``'s index and :func:`capture` it to ``out``."""
    from spotifai.app.server import create_app

    app = create_app(database_path, experiment)
    with running_server(app) as url:
        # Playwright's sync API refuses to run inside a running asyncio loop (a Jupyter kernel has one):
        # drive the browser from a thread of its own, which has no loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(capture, url, out, query or default_query(database_path), **kwargs).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--experiment", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("figures/app.png"))
    parser.add_argument("--query", default=None, help="default: the most popular track's title")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = screenshot(
            args.database, args.experiment, args.out, args.query,
            width=args.width, height=args.height, executable_path=args.chromium,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"screenshot: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
