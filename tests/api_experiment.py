"""A small demo corpus with a trained tiny experiment, its vectors and index, plus demo files that are not in
its DB (the "new" files of the cold-start tests). Not a test module: tests/conftest.py makes it a fixture."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class DemoExperiment:
    root: Path
    database: Path
    experiment: Path
    new_files: list[Path]  # demo files of another seed, not in the DB


def build(root: Path, n_tracks: int = 32) -> DemoExperiment:
    from spotifai import embed, index, train
    from spotifai import experiment as experiments
    from spotifai.demo_corpus import build_demo_corpus

    build_demo_corpus(root / "demo", seed=0, n_tracks=n_tracks)
    build_demo_corpus(root / "other", seed=1, n_tracks=16)
    incoming = root / "incoming"
    incoming.mkdir()
    new_files = []
    for src in sorted(p for p in (root / "other" / "audio").rglob("*") if p.is_file())[:2]:
        new_files.append(Path(shutil.copy2(src, incoming / src.name)))
    experiment = root / "experiments" / "tiny"
    config = experiments.preset_config("tiny", root / "demo" / "music.db", steps=4)
    train.train_model(experiment, device="cpu", mixed_precision=False, multi_processing=False, config=config)
    embed.embed_experiment(experiment, progress=False, num_workers=0)
    index.build_index(experiment, progress=False)
    return DemoExperiment(root, root / "demo" / "music.db", experiment, new_files)
