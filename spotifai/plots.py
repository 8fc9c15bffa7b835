"""Every report figure, as a function that takes data and returns a matplotlib Figure.

No function here computes a metric or reads a file: notebooks load the data through the package and pass
it in, then save the returned figure with :func:`save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: papermill runs, CI, servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from spotifai import atomic  # noqa: E402


def figures_folder(figures_dir: str | Path | None, experiment: str | Path) -> Path:
    """Where a notebook writes its figures: ``figures_dir`` when given; else the report's ``figures/`` for the
    demo experiment (``experiments/demo`` under the working directory: the main job) and
    ``EXPERIMENT/figures`` for any other run, so an own-music run never overwrites the report's figures."""
    if figures_dir:
        return Path(figures_dir)
    if Path(experiment).resolve() == (Path.cwd() / "experiments" / "demo").resolve():
        return Path("figures")
    return Path(experiment) / "figures"


def save_figure(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    """Write ``fig`` as PNG atomically (:mod:`spotifai.atomic`) and return the path."""
    return atomic.write_with(path, lambda fh: fig.savefig(fh, dpi=dpi, bbox_inches="tight", format="png"))


def dataset_overview(durations_s: Sequence[float], playlist_sizes: Sequence[int]) -> Figure:
    """Histogram of track durations (seconds) beside the distribution of playlist sizes (tracks with audio)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.hist(np.asarray(durations_s, dtype=float), bins=30, color="#3b7dd8")
    left.set_xlabel("track duration (s)")
    left.set_ylabel("tracks")
    left.set_title(f"{len(durations_s)} tracks with audio")
    sizes = np.asarray(playlist_sizes, dtype=int)
    bins = np.arange(0, (sizes.max() if sizes.size else 1) + 2) - 0.5
    right.hist(sizes, bins=bins, color="#e07b39")
    right.set_xlabel("tracks per playlist")
    right.set_ylabel("playlists")
    right.set_title(f"{len(sizes)} playlists")
    fig.tight_layout()
    return fig


def loss_curves(history: pd.DataFrame, title: str | None = None) -> Figure:
    """Training and validation loss against step, and the retrieval probe's validation mAP when the run had one.

    ``history``: columns ``step``, ``split`` ("train" / "validation" / "validation_map"), ``loss`` (as in
    history.csv; for "validation_map" the value is the probe's playlist mAP, drawn on its own right-hand axis).
    """
    from spotifai.experiment import PROBE_SPLIT

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles = {"train": dict(color="#3b7dd8", lw=1.6), "validation": dict(color="#e07b39", lw=1.8, marker="o", ms=3)}
    losses = history[history["split"] != PROBE_SPLIT]
    for split_name, rows in losses.groupby("split"):
        rows = rows.sort_values("step")
        ax.plot(rows["step"], rows["loss"], label=f"{split_name} loss", **styles.get(split_name, {}))
    ax.set_xlabel("training step")
    ax.set_ylabel("Barlow Twins loss (playlist + track terms)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    probe = history[history["split"] == PROBE_SPLIT].sort_values("step")
    if len(probe):
        right = ax.twinx()
        (line,) = right.plot(probe["step"], probe["loss"], color="#2a9d4b", lw=1.8, marker="s", ms=3, ls="--")
        right.set_ylabel("validation playlist mAP (retrieval probe)")
        handles.append(line)
        labels.append("validation mAP (probe)")
    ax.legend(handles, labels)
    ax.set_title(title or "Loss curves")
    fig.tight_layout()
    return fig


def similarity_matrices(
    features: np.ndarray, projections: np.ndarray, symbols: Sequence[str], vmin: float = -1.0
) -> Figure:
    """Cosine similarity matrices of the curated tracks: features beside projections, one shared colour bar.

    ``features``: (n, model_dim), ``projections``: (n, projection_dim), any scale (rows are L2-normalized here).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), constrained_layout=True)
    for ax, vectors, name in zip(axes, (features, projections), ("features", "projections"), strict=True):
        v = np.asarray(vectors, dtype=np.float64)
        v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
        sim = pd.DataFrame(v @ v.T, index=list(symbols), columns=list(symbols))
        sns.heatmap(sim, vmin=vmin, vmax=1.0, cmap="viridis", annot=True, fmt=".2f", annot_kws={"fontsize": 7},
                    square=True, cbar=False, ax=ax)
        ax.tick_params(axis="y", rotation=0)
        ax.set_title(f"cosine similarity of {name}")
    fig.colorbar(axes[0].collections[0], ax=list(axes), shrink=0.85, label="cosine similarity")
    return fig


def retrieval_bars(
    table: pd.DataFrame,
    metrics: Sequence[str] = ("playlist_precision@10", "artist_precision@10", "genre_precision@10"),
    method_column: str = "method",
    scope: str = "heldout",
    intervals: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]] | None = None,
) -> Figure:
    """Grouped bar chart: one group per metric, one bar per method (rows of ``table``, all of one ``scope``:
    "heldout" ranks held-out tracks among themselves, "catalogue" among every track).

    ``intervals``: the ``"intervals"`` of :func:`spotifai.evaluate.evaluate_experiment`'s results
    ({method: {scope: {metric: [low, high]}}}); each bar then carries its 95 % bootstrap interval."""
    metrics = [m for m in metrics if m in table.columns]
    long = table.melt(id_vars=[method_column], value_vars=metrics, var_name="metric", value_name="value")
    long["metric"] = long["metric"].str.replace("_", " ")
    methods = list(dict.fromkeys(table[method_column]))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    sns.barplot(long, x="metric", y="value", hue=method_column, hue_order=methods, errorbar=None, ax=ax)
    for method, bars in zip(methods, ax.containers, strict=True):
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        bounds = ((intervals or {}).get(method) or {}).get(scope) or {}
        for metric, bar in zip(metrics, bars, strict=True):
            if metric in bounds and all(np.isfinite(bounds[metric])):
                x = bar.get_x() + bar.get_width() / 2
                ax.plot([x, x], bounds[metric], color="black", linewidth=0.9)
    ax.set_xlabel("")
    ax.set_ylabel("precision (held-out queries, " + ("whole catalogue)" if scope == "catalogue" else "held-out tracks)"))
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncols=2)
    ax.grid(True, axis="y", alpha=0.3)
    title = "Retrieval quality on held-out tracks" + (", catalogue scope" if scope == "catalogue" else "")
    ax.set_title(title + (" (lines: 95 % bootstrap intervals)" if intervals else ""))
    fig.tight_layout()
    return fig


def embedding_map(
    coords: np.ndarray, genres: Sequence[str], labels: Mapping[int, str] | None = None, title: str | None = None
) -> Figure:
    """2-D map of track vectors (e.g. UMAP of projections), coloured by genre.

    ``coords``: (n, 2); ``genres``: n genre names; ``labels``: {row index: text} drawn next to those points.
    """
    coords = np.asarray(coords, dtype=float)
    genres = np.asarray([g if g else "unknown" for g in genres])
    fig, ax = plt.subplots(figsize=(8, 6.5))
    cmap = plt.get_cmap("tab10" if len(set(genres)) <= 10 else "tab20")
    for i, genre in enumerate(sorted(set(genres))):
        mask = genres == genre
        ax.scatter(coords[mask, 0], coords[mask, 1], s=14, alpha=0.8, color=cmap(i % cmap.N), label=genre)
    for row, text in (labels or {}).items():
        ax.scatter(coords[row, 0], coords[row, 1], s=70, facecolors="none", edgecolors="black", linewidths=1.2)
        ax.annotate(text, coords[row], xytext=(4, 4), textcoords="offset points", fontsize=9, weight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=1.5, loc="best")
    ax.set_title(title or "Track projections (UMAP), coloured by genre")
    fig.tight_layout()
    return fig
