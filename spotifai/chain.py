"""Run the notebook chain (notebooks/NN_*.ipynb, in order) with papermill.

Each notebook gets the subset of ``parameters`` that its ``parameters`` cell declares (papermill would
otherwise inject unknown names too). Executed copies go to ``output_dir``; figures are written by the
notebooks themselves. The chain stops at the first failing notebook with papermill's error, which names
the notebook and the failing cell; executed copies of the earlier notebooks and their figures stay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


class ChainError(RuntimeError):
    """A notebook of the chain failed; the message names the notebook and papermill's cell error."""


@dataclass(frozen=True)
class NotebookRun:
    name: str
    seconds: float
    output: Path


def notebooks(directory: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The chain's notebooks in execution order (``NN_name.ipynb``)."""
    found = sorted(p for p in Path(directory).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"{directory}: no notebooks named NN_*.ipynb")
    return found


def declared_parameters(notebook: str | Path) -> set[str]:
    """Names assigned in the notebook's ``parameters`` cell."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)).keys())


def run_chain(
    parameters: Mapping[str, object] | None = None,
    *,
    output_dir: str | Path = ROOT / "output" / "notebooks",
    only: Sequence[str] | None = None,
    notebook_dir: str | Path = NOTEBOOK_DIR,
    cwd: str | Path = ROOT,
) -> list[NotebookRun]:
    """Execute the chain; returns the time per notebook.

    ``parameters``: values passed to every notebook that declares them (e.g. data_dir, experiment,
    figures_dir, device, force); a name no notebook declares is a ValueError listing the declared ones (a typo
    such as ``devise`` must not silently train on the CPU). ``only``: run just these notebooks (names like
    ``"03_loss_curves"``); an unknown name is a ValueError listing the chain's notebooks.
    Relative paths inside the notebooks resolve against ``cwd`` (the repository root by default).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    chain_notebooks = notebooks(notebook_dir)
    names = [nb.stem for nb in chain_notebooks]
    wanted = None if only is None else {name.removesuffix(".ipynb") for name in only}
    unknown = sorted((wanted or set()) - set(names))
    if unknown:
        raise ValueError(f"unknown notebook(s) {', '.join(map(repr, unknown))}: the chain has {', '.join(names)}")
    declared_by = {nb.stem: declared_parameters(nb) for nb in chain_notebooks}
    every = set().union(*declared_by.values())
    unknown = sorted(set(parameters or {}) - every)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))}: the notebooks declare "
                         f"{', '.join(sorted(every))}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    runs: list[NotebookRun] = []
    for notebook in chain_notebooks:
        if wanted is not None and notebook.stem not in wanted:
            continue
        declared = declared_by[notebook.stem]
        given = {k: v for k, v in (parameters or {}).items() if k in declared}
        output = output_dir / notebook.name
        log.info("running %s with %s", notebook.name, given)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(output), parameters=given, cwd=str(cwd), progress_bar=False, kernel_name="python3"
            )
        except PapermillExecutionError as exc:
            raise ChainError(
                f"{notebook.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                f"executed copy with the traceback: {output}"
            ) from exc
        seconds = time.perf_counter() - start
        runs.append(NotebookRun(notebook.stem, seconds, output))
        log.info("%s done in %.1f s", notebook.name, seconds)
    return runs
