"""The README's Python API example runs as written (on a trained tiny demo experiment)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- the test suite runs this block: tests/test_readme.py -->\n```python\n(.*?)```", text, re.S)
    assert match, "README: the Python API example is missing"
    return match.group(1)


def test_readme_python_example_runs(demo_experiment, tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "demo").symlink_to(demo_experiment.experiment, target_is_directory=True)
    samples, rate = sf.read(demo_experiment.new_files[0], dtype="float32")
    sf.write(tmp_path / "my_song.wav", samples, rate)
    script = tmp_path / "example.py"
    script.write_text(_example())
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Model(") and [line[:2] for line in lines[1:6]] == ["1.", "2.", "3.", "4.", "5."]
    assert "['no_such_file.mp3']" in run.stdout
