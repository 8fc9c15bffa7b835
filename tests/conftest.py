"""Shared fixtures: a trained tiny experiment on a small demo corpus (built once per test session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_experiment import DemoExperiment, build  # noqa: E402


@pytest.fixture(scope="session")
def demo_experiment(tmp_path_factory) -> DemoExperiment:
    return build(tmp_path_factory.mktemp("demo_experiment"))
