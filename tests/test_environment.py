"""environment.yml (for conda users) and pyproject.toml must list the same dependencies."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    listed = {
        line.strip()[2:].strip()
        for line in lines[start + 1 :]
        if line.strip().startswith("- ") and not line.strip().startswith("- -e")
    }
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    assert "- python=3.11" in (ROOT / "environment.yml").read_text()


def test_schema_sql_is_packaged():
    assert (ROOT / "spotifai" / "schema.sql").is_file()
