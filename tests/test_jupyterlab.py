"""JupyterLab from the project venv: `jupyter lab --no-browser` on loopback lists the notebooks, and a kernel
starts and imports spotifai."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from spotifai.app.screenshot import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_jupyter_lab_lists_the_notebooks_and_runs_spotifai(tmp_path):
    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.is_file(), "jupyter is not installed in the project venv (pip install -e '.[dev]')"
    token = secrets.token_hex(16)
    port = free_port()
    runtime = tmp_path / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ROOT}", "--ServerApp.port_retries=0",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}
    kernel_id = None
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()}")
            try:
                if httpx.get(f"{url}/api/status", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "jupyter lab never answered"
            time.sleep(0.2)
        assert httpx.get(f"{url}/lab", headers=headers, timeout=10).status_code == 200  # the JupyterLab page
        assert httpx.get(f"{url}/api/contents/notebooks", timeout=5).status_code == 403  # no token, no access
        listing = httpx.get(f"{url}/api/contents/notebooks", headers=headers, timeout=10).json()
        names = {item["name"] for item in listing["content"]}
        assert {"01_dataset.ipynb", "02_train.ipynb", "07_demo_app.ipynb", "08_explore.ipynb"} <= names
        specs = httpx.get(f"{url}/api/kernelspecs", headers=headers, timeout=10).json()
        assert "python3" in specs["kernelspecs"]
        kernel = httpx.post(f"{url}/api/kernels", headers=headers, json={"name": "python3"}, timeout=60).json()
        kernel_id = kernel["id"]
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            outputs: list[str] = []
            reply = client.execute_interactive(
                "import sys, spotifai; print(sys.executable, spotifai.__version__, spotifai.__file__)",
                timeout=60, output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
            )
        finally:
            client.stop_channels()
        assert reply["content"]["status"] == "ok", reply["content"]
        printed = "".join(outputs).split()
        assert Path(printed[0]).parent == Path(sys.executable).parent and printed[1] == "0.1.0"
        assert Path(printed[2]).resolve().is_relative_to(ROOT / "spotifai")
    finally:
        if kernel_id is not None:
            httpx.delete(f"{url}/api/kernels/{kernel_id}", headers=headers, timeout=30)
        stop_process(proc)
        log.close()
    assert proc.poll() is not None  # stopped
