"""The notebook chain: committed notebooks are clean, and the whole chain runs with tiny parameters."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from spotifai import chain

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ["history.png", "similarity.png", "retrieval.png", "embedding_map.png", "app.png"]


@pytest.mark.parametrize("path", chain.notebooks(), ids=lambda p: p.name)
def test_committed_notebook_is_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one 'parameters' cell, found {len(tagged)}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: committed with outputs"
            assert cell.execution_count is None, f"{path.name}: committed with execution counts"
    assigned = {
        node.targets[0].id
        for node in ast.parse(tagged[0].source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    # papermill silently ignores parameter lines it cannot parse (e.g. quotes in a comment)
    assert chain.declared_parameters(path) == assigned, f"{path.name}: papermill does not see every parameter"
    text = path.read_text()
    assert "/work/" not in text and "/home/" not in text and "/root/" not in text, f"{path.name}: machine path"


def test_chain_order_and_names():
    names = [p.stem for p in chain.notebooks()]
    assert names == sorted(names)
    assert names[:6] == ["01_dataset", "02_train", "03_loss_curves", "04_similarity", "05_index", "06_evaluate"]


@pytest.mark.slow
def test_whole_chain_with_tiny_parameters(tmp_path: Path):
    figures = tmp_path / "figures"
    params = {
        "data_dir": str(tmp_path / "corpus"),
        "database": str(tmp_path / "corpus" / "music.db"),
        "experiment": str(tmp_path / "experiments" / "tiny"),
        "figures_dir": str(figures),
        "n_tracks": 48,
        "steps": 6,
        "preset": "tiny",
        "multi_processing": False,
        "umap_neighbors": 5,
    }
    runs = chain.run_chain(params, output_dir=tmp_path / "executed")
    assert [r.name for r in runs] == [p.stem for p in chain.notebooks()]
    for name in FIGURES:
        figure = figures / name
        assert figure.is_file() and figure.stat().st_size > 5_000, f"{name} missing or empty"
    for run in runs:
        executed = nbformat.read(run.output, as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{run.name}: {json.dumps(errors)[:500]}"
    # A second run reuses the corpus and the finished training instead of redoing them.
    again = chain.run_chain(params, output_dir=tmp_path / "executed2", only=["01_dataset", "02_train"])
    assert sum(r.seconds for r in again) < sum(r.seconds for r in runs[:2])


def test_failing_notebook_is_named(tmp_path: Path):
    bad_dir = tmp_path / "nbs"
    bad_dir.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, bad_dir / "01_bad.ipynb")
    with pytest.raises(chain.ChainError, match=r"01_bad.ipynb failed in cell .*ValueError: boom"):
        chain.run_chain({"x": 2}, notebook_dir=bad_dir, output_dir=tmp_path / "out", cwd=tmp_path)
    assert (tmp_path / "out" / "01_bad.ipynb").is_file()
