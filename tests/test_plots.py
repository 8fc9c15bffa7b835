"""The retrieval figure draws each bar's bootstrap interval where it is given, at the bar's own x."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spotifai import plots


def test_retrieval_bars_draw_each_methods_interval_on_its_bar():
    table = pd.DataFrame({
        "method": ["trained-projections", "logmel-stats"],
        "scope": ["catalogue", "catalogue"],
        "album_precision@5": [0.44, 0.27],
        "composer_precision@5": [0.23, 0.10],
    })
    intervals = {
        "trained-projections": {"catalogue": {"album_precision@5": [0.33, 0.55], "composer_precision@5": [0.15, 0.31]}},
        "logmel-stats": {"catalogue": {"album_precision@5": [0.20, 0.35]}},  # one interval missing: no line
    }
    fig = plots.retrieval_bars(table, metrics=["album_precision@5", "composer_precision@5"], scope="catalogue",
                               intervals=intervals)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
    assert sorted(tuple(np.round(line.get_ydata(), 2)) for line in lines) == [(0.15, 0.31), (0.2, 0.35), (0.33, 0.55)]
    centres = {round(b.get_x() + b.get_width() / 2, 6): round(b.get_height(), 2)
               for bars in ax.containers for b in bars}
    for line in lines:  # every interval stands on the bar whose height lies inside it
        x = round(float(line.get_xdata()[0]), 6)
        low, high = line.get_ydata()
        assert low <= centres[x] <= high
    assert "intervals" in ax.get_title()
    plain = plots.retrieval_bars(table, metrics=["album_precision@5"], scope="catalogue")
    assert not [line for line in plain.axes[0].get_lines() if len(line.get_xdata()) == 2]
