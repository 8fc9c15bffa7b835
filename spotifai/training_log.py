"""What a training run records as it goes: :class:`History`, the (step, split, loss) rows behind history.csv,
and :class:`Throughput`, the patches per second of the progress bar and the run's summary."""

from __future__ import annotations

import math
import time
from pathlib import Path

from spotifai.experiment import HISTORY_FILE, format_history_row, write_history


class History:
    """The (step, split, loss) rows of a run; on rank 0 (``write``) history.csv is rewritten from them when the
    run starts (rows after the resumed checkpoint are dropped) and each new row is appended as it comes."""

    def __init__(self, experiment: Path, write: bool):
        self.experiment, self.write = experiment, write
        self.rows: list[tuple[int, str, float]] = []
        self._fh = None

    def __enter__(self) -> History:
        if self.write:
            write_history(self.experiment, self.rows)
            self._fh = (self.experiment / HISTORY_FILE).open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def add(self, step: int, split: str, loss: float) -> None:
        self.rows.append((step, split, loss))
        if self._fh is not None:
            self._fh.write(format_history_row((step, split, loss)))
            self._fh.flush()

    def last(self, split: str) -> float | None:
        return next((v for _, sp, v in reversed(self.rows) if sp == split), None)

    def best_validation(self) -> float:
        """The lowest finite validation loss so far (inf when there is none)."""
        return min((v for _, sp, v in self.rows if sp == "validation" and math.isfinite(v)), default=math.inf)


class Throughput:
    """Patches per second: a smoothed rate for the progress bar and the steady-state mean (steps after the
    first, pauses for validation and checkpoints left out)."""

    def __init__(self, patches_per_step: int):
        self.patches_per_step = patches_per_step
        self.rate = 0.0
        self.patches, self.seconds, self.first = 0, 0.0, True
        self.previous = time.perf_counter()

    def step(self) -> None:
        now = time.perf_counter()
        elapsed = max(now - self.previous, 1e-9)
        if self.first:
            self.first = False
        else:
            self.patches += self.patches_per_step
            self.seconds += now - self.previous
        current = self.patches_per_step / elapsed
        self.rate = current if self.rate == 0 else 0.9 * self.rate + 0.1 * current
        self.previous = now

    def paused(self) -> None:
        """The time since the last step was not training (validation, checkpoint): leave it out."""
        self.previous = time.perf_counter()

    @property
    def steady(self) -> float | None:
        return self.patches / self.seconds if self.seconds > 0 else None
