"""Issue 14's own-music defects, each through the real `spotifai` command (or papermill for the notebooks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spotifai import chain, plots
from spotifai.cli import PIPELINE, build_parser
from spotifai.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def _library(tmp_path: Path) -> tuple[Path, list[Path]]:
    music = tmp_path / "music"
    music.mkdir()
    t = np.arange(16000 * 2) / 16000
    for i in range(4):
        sf.write(music / f"song{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), 16000)
    lists = []
    for j in range(2):
        m3u = tmp_path / f"list{j}.m3u8"
        m3u.write_text("".join(f"music/song{i}.wav\n" for i in range(j, j + 3)))
        lists.append(m3u)
    return music, lists


def test_several_values_per_path_option(tmp_path, capsys):
    music, lists = _library(tmp_path)
    db = tmp_path / "music.db"
    # `--m3u a.m3u8 b.m3u8` (what a shell glob gives) and two folders after one flag
    assert cli_main(["ingest", "--database", str(db), "--folder", str(music), str(music), "--m3u", *map(str, lists),
                     "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)["database"]
    assert totals["tracks"] == 4 and totals["playlists"] == 2
    assert cli_main(["ingest", "--db", str(db), "--m3u", str(lists[0]), "--m3u", str(lists[1])]) == 0  # old spelling


def test_one_flag_name_per_concept_with_the_old_spellings_kept():
    parser = build_parser()
    for command in (["ingest"], ["search", "x"]):
        assert parser.parse_args([*command, "--database", "a.db"]).database == Path("a.db")
        assert parser.parse_args([*command, "--db", "a.db"]).database == Path("a.db")
    for command in (["index", "E"], ["recommend", "E", "1"], ["similar", "E", "f.wav"]):
        new = parser.parse_args([*command, "--chroma-host", "h", "--chroma-port", "1", "--index", "d"])
        old = parser.parse_args([*command, "--host", "h", "--port", "1", "--path", "d"])
        assert (new.chroma_host, new.chroma_port, new.index) == (old.chroma_host, old.chroma_port, old.index) == (
            "h", 1, Path("d"))
    serve = parser.parse_args(["serve", "--database", "a.db", "--experiment", "E", "--chroma-host", "h"])
    assert serve.chroma_host == "h" and serve.host == "127.0.0.1"


def test_version_help_order_and_description(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == "spotifai 0.1.0"
    help_text = build_parser().format_help()
    assert "``" not in help_text and "Argument parsing only" not in help_text
    positions = [help_text.index(f"    {name} ") for name in PIPELINE]
    assert positions == sorted(positions)
    assert PIPELINE[:6] == ("demo-corpus", "real-corpus", "ingest", "search", "train", "embed")


def test_chain_rejects_unknown_notebooks_and_parameters(tmp_path, capsys):
    assert cli_main(["chain", "--only", "03_loss_curve", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown notebook(s) '03_loss_curve'" in err and "03_loss_curves" in err
    assert cli_main(["chain", "--param", 'devise="cuda"', "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) 'devise'" in err and "device" in err
    with pytest.raises(ValueError, match="unknown parameter"):
        chain.run_chain({"devise": "cuda"}, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["recommend", "{exp}", "1"], ["similar", "{exp}", "x.wav"], ["embed", "{exp}"], ["index", "{exp}"],
    ["evaluate", "{exp}"], ["export", "{exp}", "{tmp}/model.pt"],
])
def test_missing_experiment_is_an_error_and_nothing_is_created(tmp_path, capsys, command):
    missing = tmp_path / "experiments" / "typo_exp"
    args = [a.format(exp=missing, tmp=tmp_path) for a in command]
    assert cli_main(args) == 2
    assert "typo_exp: no such experiment folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@NO_CUDA
@pytest.mark.parametrize("command", [["embed", "{exp}"], ["train", "{exp}"], ["similar", "{exp}", "x.wav"],
                                     ["evaluate", "{exp}"]])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_clear_error(tmp_path, capsys, command, device):
    exp = tmp_path / "exp"
    exp.mkdir()
    assert cli_main([a.format(exp=exp) for a in command] + ["--device", device]) == 2
    err = capsys.readouterr().err
    assert f"device '{device}': CUDA is not available on this machine" in err
    assert "checkpoint" not in err and err.count("\n") == 1
    assert list(exp.iterdir()) == []


def test_device_names(monkeypatch):
    from spotifai.devices import check_device

    assert check_device("cpu") == "cpu" and check_device("CPU") == "cpu"
    for bad in ("gpu", "cuda:x", "cpu:0", "cuda:-1"):
        with pytest.raises(ValueError, match="expected cpu, cuda or cuda:N"):
            check_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda:1") == "cuda:1" and check_device("cuda") == "cuda"
    with pytest.raises(ValueError, match="has 2 GPU"):
        check_device("cuda:2")


def test_figures_of_a_non_demo_run_go_to_the_experiment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plots.figures_folder(None, "experiments/demo") == Path("figures")
    assert plots.figures_folder(None, "experiments/mine") == Path("experiments/mine/figures")
    assert plots.figures_folder("out", "experiments/mine") == Path("out")
    for name in ("01_dataset", "03_loss_curves", "04_similarity", "06_evaluate", "07_demo_app"):
        assert chain.declared_parameters(ROOT / "notebooks" / f"{name}.ipynb") >= {"figures_dir", "experiment"}
        text = (ROOT / "notebooks" / f"{name}.ipynb").read_text()
        assert 'figures_dir = \\"figures\\"' not in text and "figures_folder(figures_dir, experiment)" in text
    for name in ("04_similarity", "05_index", "06_evaluate", "07_demo_app"):
        text = (ROOT / "notebooks" / f"{name}.ipynb").read_text()
        assert "data_dir) / \\\"curated.json" not in text and "cur.default_path(" in text


@pytest.mark.slow
def test_screenshot_notebook_skips_without_a_browser(tmp_path):
    import papermill
    from app_corpus import build_corpus

    corpus = build_corpus(tmp_path)
    out = tmp_path / "07.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "07_demo_app.ipynb"), str(out), cwd=str(ROOT), progress_bar=False,
        kernel_name="python3", parameters={"database": str(corpus.db_path), "experiment": str(tmp_path / "exp"),
                                           "browser": str(tmp_path / "no-such-chromium")},
    )
    text = out.read_text()
    assert "Skipping the screenshot:" in text and "no-such-chromium: no such browser executable" in text
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("flags, preset", [([], "full"), (["--preset", "cpu"], "cpu"), (["--demo"], "demo"),
                                           (["--preset", "tiny"], "tiny")])
def test_train_preset_flag_picks_the_new_experiments_config(tmp_path, monkeypatch, flags, preset):
    """`spotifai train EXP --database DB --preset NAME` creates EXP with that preset's config (--demo = demo)."""
    from spotifai import experiment as experiments
    from spotifai import train

    seen = {}
    monkeypatch.setattr(train, "train_model", lambda exp, **kw: seen.update(kw) or {"steps": 0})
    db = tmp_path / "music.db"
    assert cli_main(["train", str(tmp_path / "exp"), "--database", str(db), *flags]) == 0
    assert seen["config"] == experiments.preset_config(preset, db)
