"""Regression tests of issue 11's defects outside the web server (D1-D7, D9, D10 and the minor ones); the web
ones (D8, D11, the 503 body, the Range answer) are in tests/test_adversarial.py. Each test failed before its fix.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spotifai import database
from spotifai.cli import main as cli_main
from spotifai.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def _wav(path: Path, seconds: float = 0.5, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), RATE, subtype="PCM_16")
    return path


def _popularity_matches_counts(conn: sqlite3.Connection) -> list[tuple]:
    """Tracks in a playlist whose popularity is not their number of playlist entries (empty: all right)."""
    return conn.execute(
        "SELECT t.id, t.popularity, c.n FROM tracks t JOIN (SELECT track_id, COUNT(*) AS n FROM playlist_tracks"
        " GROUP BY track_id) c ON c.track_id = t.id WHERE t.popularity != c.n"
    ).fetchall()


# ------------------------------------------------------------------------------------------------ D1: entries


def test_d1_bad_entries_are_counted_per_entry_and_the_playlist_kept(tmp_path, capsys):
    music = tmp_path / "music"
    a, b = _wav(music / "a.wav"), _wav(music / "b.wav", freq=550)
    m3u = tmp_path / "list.m3u"
    long_name = "x" * 300 + ".mp3"  # longer than the file-name limit: OSError at the lookup
    huge = "y" * 20_000_000 + ".flac"  # a 20 MB line
    m3u.write_text(f"{a}\n{long_name}\n{b}\n{huge}\n")
    csv_file = tmp_path / "lists.csv"
    csv_file.write_text(f"playlist,path\nRoad,{a}\nRoad,{'z' * 300}.wav\nRoad,{'w' * 200_000}.ogg\nRoad,{b}\n")
    conn = database.connect(tmp_path / "m.db")
    summary = ingest(conn, folders=[music], m3u=[m3u], csv_files=[csv_file])
    assert summary.sources_failed == 0, summary.errors
    names = {v: k for k, v in database.playlist_names(conn).items()}
    for name in ("list", "Road"):
        assert len(database.playlist_tracks(conn, names[name], with_audio=False)) == 2
    assert any(e.startswith(f"{m3u}:2: ") and "too long" in e for e in summary.errors), summary.errors
    assert any(e.startswith(f"{m3u}:4: ") for e in summary.errors)
    assert any(e.startswith(f"{csv_file}:3: ") for e in summary.errors)
    assert any(e.startswith(f"{csv_file}:4: ") for e in summary.errors)
    assert summary.error_count == 4 and summary.unmatched_entries == 0
    text = summary.to_text()
    assert len(text) < 10_000 and "yyyy" not in text  # the 20 MB line is not echoed
    conn.close()
    # the command prints a bounded summary too
    assert cli_main(["ingest", "--db", str(tmp_path / "m2.db"), "--m3u", str(m3u)]) == 0
    out = capsys.readouterr()
    assert len(out.out) + len(out.err) < 50_000


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_d1_entry_in_an_unreadable_folder_is_an_entry_error(tmp_path):
    music = tmp_path / "music"
    a = _wav(music / "a.wav")
    locked = tmp_path / "locked"
    hidden = _wav(locked / "inner" / "c.wav")
    locked.chmod(0o000)
    try:
        m3u = tmp_path / "list.m3u"
        m3u.write_text(f"{a}\n{hidden}\n")
        conn = database.connect(tmp_path / "m.db")
        summary = ingest(conn, m3u=[m3u])
        assert summary.sources_failed == 0 and summary.playlists_added == 1
        assert any(e.startswith(f"{m3u}:2: ") for e in summary.errors) or summary.unmatched_entries == 1
    finally:
        locked.chmod(0o755)


# ------------------------------------------------------------------------------------------------ D2: MPD names


def test_d2_mpd_names_of_any_json_type_are_text_and_reingest_works(tmp_path):
    tracks = [
        {"pos": 0, "track_uri": "spotify:track:a", "track_name": "Song A", "artist_name": 42, "album_name": 7},
        {"pos": 1, "track_uri": "spotify:track:b", "track_name": 1.5, "artist_name": {"x": 1}, "album_name": ["y"]},
        {"pos": 2, "track_uri": "spotify:track:c", "track_name": "Song C", "artist_name": True, "album_name": None},
    ]
    slice_ = tmp_path / "mpd.slice.0-2.json"
    slice_.write_text(json.dumps({"playlists": [
        {"pid": 1, "name": 123, "tracks": tracks},
        {"pid": 2, "name": "Two", "tracks": tracks[:2]},
        {"pid": 1, "name": "Duplicate", "tracks": tracks[1:]},  # the same pid again in this file
    ]}))
    conn = database.connect(tmp_path / "m.db")
    first = ingest(conn, mpd=[slice_])
    assert first.sources_failed == 0, first.errors
    assert [e for e in first.errors if "pid 1 again" in e] and first.error_count == 1
    assert first.playlists_added == 2 and first.playlists_updated == 0
    assert database.counts(conn)["playlists"] == 2 and database.counts(conn)["memberships"] == 5
    assert sorted(r[0] for r in conn.execute("SELECT name FROM artists")) == ["42", "true", '{"x":1}']
    assert {r[0] for r in conn.execute("SELECT typeof(name) FROM artists")} == {"text"}
    by_uri = {t["uri"]: t for t in database.tracks(conn)}
    assert by_uri["spotify:track:b"]["title"] == "1.5" and by_uri["spotify:track:b"]["album"] == '["y"]'
    assert set(database.playlist_names(conn).values()) == {"123", "Two"}
    again = ingest(conn, mpd=[slice_])  # failed forever with "UNIQUE constraint failed: artists.name"
    assert again.sources_failed == 0, again.errors
    assert again.playlists_unchanged == 2 and again.tracks_unchanged == 3
    conn.close()


def test_d2_a_failed_file_counts_nothing_as_written(tmp_path, monkeypatch):
    from spotifai import ingest as ingest_module

    slice_ = tmp_path / "mpd.slice.0-0.json"
    slice_.write_text(json.dumps({"playlists": [
        {"pid": 5, "name": "P", "tracks": [{"pos": 0, "track_uri": "spotify:track:z", "track_name": "Z"}]}]}))

    def boom(self, path, playlists):
        self.summary.playlists_added += 1
        self.summary.tracks_added += 1
        raise sqlite3.IntegrityError("UNIQUE constraint failed")

    monkeypatch.setattr(ingest_module.Ingester, "_mpd_write", boom)
    conn = database.connect(tmp_path / "m.db")
    summary = ingest(conn, mpd=[slice_])
    assert summary.sources_failed == 1 and summary.playlists_added == 0 and summary.tracks_added == 0
    assert database.counts(conn)["playlists"] == 0
    conn.close()


# ------------------------------------------------------------------------------------ D3: popularity after kill -9

_KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
from spotifai import database, ingest
original = ingest.Ingester._run_source
done = []

def run_source(self, label, work):
    ok = original(self, label, work)
    done.append(label)
    if len(done) == 3:  # the folder and two playlists are committed: kill -9 before the third one
        os.kill(os.getpid(), signal.SIGKILL)
    return ok

ingest.Ingester._run_source = run_source
conn = database.connect(sys.argv[1])
ingest.ingest(conn, folders=[sys.argv[2]], m3u=sys.argv[3:])
"""


def test_d3_popularity_is_right_after_a_kill_between_playlist_commits(tmp_path):
    music = tmp_path / "music"
    files = [_wav(music / f"t{i}.wav", freq=300 + 40 * i) for i in range(6)]
    lists = []
    for n, members in enumerate([(0, 1, 2), (1, 3), (4, 5, 0)]):
        m3u = tmp_path / f"list{n}.m3u"
        m3u.write_text("".join(f"{files[i]}\n" for i in members))
        lists.append(m3u)
    db = tmp_path / "m.db"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT.format(root=str(ROOT)), str(db), str(music), *map(str, lists)],
        capture_output=True, timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    conn = database.connect(db)
    assert database.counts(conn)["playlists"] == 2  # killed between the second and the third playlist
    assert _popularity_matches_counts(conn)  # the killed run never recounted
    again = ingest(conn, folders=[music], m3u=lists)
    assert again.playlists_unchanged == 2 and again.playlists_added == 1
    assert _popularity_matches_counts(conn) == []
    pop = {Path(t["audio_path"]).name: t["popularity"] for t in database.tracks(conn)}
    assert pop == {"t0.wav": 2, "t1.wav": 2, "t2.wav": 1, "t3.wav": 1, "t4.wav": 1, "t5.wav": 1}
    assert database.get_meta(conn, "popularity_stale") is None
    conn.close()


# ------------------------------------------------------------------------------------ D4: terminal escapes


def test_d4_escape_sequences_from_input_are_printed_escaped(tmp_path, capsys):
    music = tmp_path / "music"
    a = _wav(music / "a.wav")
    m3u = tmp_path / "evil.m3u"
    m3u.write_text(f"{a}\n\x1b[2J\x1b[31mred\x1b[0m.flac\n\x1b]0;owned\x07title.mp3\n#EXTINF:x\x1b[1m\n{a}\n")
    assert cli_main(["ingest", "--db", str(tmp_path / "m.db"), "--m3u", str(m3u)]) == 0
    out = capsys.readouterr()
    assert "\x1b" not in out.out and "\x07" not in out.out and "\x1b" not in out.err
    assert "\\x1b[2J\\x1b[31mred\\x1b[0m.flac" in out.out and "\\x07title.mp3" in out.out
    assert cli_main(["ingest", "--db", str(tmp_path / "m.db"), "--m3u", str(m3u), "--json"]) == 0
    assert "\x1b" not in capsys.readouterr().out


def test_d4_printable_escapes_and_cuts():
    from spotifai.printable import printable

    assert printable("a\x1b[31mb\x00\u202ec\x9b") == "a\\x1b[31mb\\x00\\u202ec\\x9b"
    assert printable("Björk – Jóga ✓ 日本") == "Björk – Jóga ✓ 日本"
    cut = printable("\x1b" * 1000, 10)
    assert cut.startswith("\\x1b" * 10) and cut.endswith("(990 more characters)")


# --------------------------------------------------------------------------------- minor: dangling symlinks, headers


def test_dangling_symlinks_are_listed_among_skipped_files(tmp_path):
    music = tmp_path / "music"
    _wav(music / "a.wav")
    (music / "ghost.flac").symlink_to(music / "gone.flac")
    conn = database.connect(tmp_path / "m.db")
    summary = ingest(conn, folders=[music])
    skipped = dict(summary.skipped)
    assert "dangling" in skipped[str(music / "ghost.flac")] and summary.skipped_files == 1
    assert summary.tracks_added == 1
    conn.close()


def _mp3_with_overstated_header(path: Path, seconds: float = 3.0, extra_frames: int = 30) -> tuple[Path, float]:
    """An MP3 whose Xing header counts ``extra_frames`` MPEG frames more than the file holds (libsndfile then
    reports more frames than decode, like some real OGG / MP3 files); returns the path and the real seconds."""
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, format="MP3",
             subtype="MPEG_LAYER_III")
    data = bytearray(path.read_bytes())
    at = data.find(b"Xing")
    assert at > 0 and int.from_bytes(data[at + 4 : at + 8], "big") & 1  # the frame-count field is present
    frames = int.from_bytes(data[at + 8 : at + 12], "big")
    data[at + 8 : at + 12] = (frames + extra_frames).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path, seconds


def test_file_whose_header_overstates_its_length_is_used_with_its_decoded_duration(tmp_path):
    from spotifai import audio

    music = tmp_path / "music"
    music.mkdir()
    path, seconds = _mp3_with_overstated_header(music / "long_header.mp3")
    with sf.SoundFile(str(path)) as f:
        assert f.frames / f.samplerate > seconds + 0.5  # the header overstates the length
    conn = database.connect(tmp_path / "m.db")
    summary = ingest(conn, folders=[music])
    assert summary.skipped_files == 0 and summary.tracks_added == 1, summary.skipped
    assert summary.warning_count == 1 and "using the decoded length" in summary.warnings[0]
    duration = database.tracks(conn)[0]["duration"]
    assert duration == pytest.approx(seconds, abs=0.1)
    assert audio.load_audio(path).numel() / audio.SAMPLE_RATE == pytest.approx(duration, abs=0.1)
    conn.close()


def test_long_file_with_overstated_header_decodes_whole(tmp_path, monkeypatch):
    """Whole-file reads split into parallel windows by the header's length: a window past the real end must
    not fail the file (embedding and the patch cache read files whole)."""
    from spotifai import audio

    monkeypatch.setattr(audio, "PARALLEL_DECODE_MIN_SECONDS", 1.0)
    monkeypatch.setattr(audio, "DECODE_THREADS", 4)
    path, seconds = _mp3_with_overstated_header(tmp_path / "over.mp3", seconds=3.0, extra_frames=60)
    with sf.SoundFile(str(path)) as f:
        assert f.frames / f.samplerate > seconds + 2  # four 1.3 s windows: the last starts past the real end
    assert audio.load_audio(path).numel() / audio.SAMPLE_RATE == pytest.approx(seconds, abs=0.1)


def test_file_cut_in_the_middle_is_still_rejected(tmp_path):
    music = tmp_path / "music"
    good = tmp_path / "good.flac"
    t = np.arange(int(1.5 * RATE)) / RATE
    sf.write(str(good), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, format="FLAC")
    music.mkdir()
    (music / "cut.flac").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    conn = database.connect(tmp_path / "m.db")
    summary = ingest(conn, folders=[music])
    assert summary.skipped_files == 1 and "truncated" in summary.skipped[0][1]
    conn.close()


# ------------------------------------------------------------------------------------------ D5: config values


@pytest.fixture(scope="module")
def synth_db(tmp_path_factory):
    from synth_playlists import make_corpus

    return make_corpus(tmp_path_factory.mktemp("synth"), n_playlists=6, tracks_per_playlist=4, seconds=2.0)


def _small_config(db, **sections) -> dict:
    from spotifai import experiment as experiments

    cfg = experiments.tiny_config(db)
    cfg["data"]["cache_dir"] = str(Path(db).parent / "cache")
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("optimizer.weight_decay", float("nan")),
        ("training.lambd", float("nan")),
        ("optimizer.grad_clip", float("nan")),
        ("optimizer.weight_decay", float("inf")),
        ("data.validation_fraction", float("nan")),
        ("model.dropout", float("nan")),
        ("data.audio.max_time_padding", float("nan")),
        ("training.patches_per_playlist", 10**12),
        ("training.playlists_per_step", 10**9),
        ("data.num_workers", 10**6),
        ("progress.val_batches", 10**12),
    ],
)
def test_d5_nonfinite_and_oversized_config_values_are_errors_naming_file_and_key(synth_db, tmp_path, key, value):
    from spotifai import experiment as experiments

    cfg = _small_config(synth_db)
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value
    with pytest.raises(experiments.ConfigError, match=key.replace(".", r"\.")):
        experiments.validate_config(cfg)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.json").write_text(json.dumps(cfg))  # NaN / Infinity literals, as json writes them
    with pytest.raises(experiments.ConfigError) as info:
        experiments.load_config(tmp_path / "exp")
    assert "config.json" in str(info.value) and key in str(info.value)


def test_d5_batch_size_beyond_what_the_db_can_give_is_an_error(synth_db, tmp_path):
    from spotifai import experiment as experiments
    from spotifai import train

    cfg = _small_config(synth_db, training={"patches_per_playlist": 2048, "track_weight": 0.0})
    with pytest.raises(experiments.ConfigError, match=r"training\.patches_per_playlist = 2048: .* usable tracks"):
        train.train_model(tmp_path / "exp", config=cfg, multi_processing=False)
    assert not (tmp_path / "exp" / "config.json").exists()


def test_d5_nonfinite_losses_on_an_fp32_run_do_not_advise_fp32(synth_db, tmp_path, monkeypatch):
    from spotifai import train

    monkeypatch.setattr(train, "playlist_and_track_loss",
                        lambda z_a, z_b, groups, track_weight, lambd: (z_a.sum() + z_b.sum()) * float("nan"))
    cfg = _small_config(synth_db, training={"steps": 10, "max_nonfinite_steps": 2, "precision": "fp32"},
                        progress={"val_period": 0})
    with pytest.raises(RuntimeError, match="2 non-finite losses in a row") as info:
        train.train_model(tmp_path / "exp", config=cfg, multi_processing=False)
    assert "fp32" not in str(info.value) and "learning_rate" in str(info.value)


# ------------------------------------------------------------------------------- D6: corrupt latest.pt, D9: modes


@pytest.mark.slow
def test_d6_corrupt_latest_falls_back_for_inference_and_is_repaired_by_train(synth_db, tmp_path, caplog):
    from spotifai import checkpoint as checkpoints
    from spotifai import train

    exp = tmp_path / "exp"
    cfg = _small_config(synth_db, training={"steps": 4},
                        progress={"val_period": 2, "save_period": 2, "checkpoint_period": 2, "loss_window": 2})
    assert train.train_model(exp, config=cfg, multi_processing=False)["steps"] == 4
    latest, kept = exp / "checkpoints" / "latest.pt", exp / "checkpoints" / "step_0000004.pt"
    latest.write_bytes(latest.read_bytes()[:100])  # damaged after the run finished
    _, info = checkpoints.load_encoder(exp)  # inference: the newest readable kept checkpoint, with a warning
    assert info["step"] == 4 and info["path"] == str(kept)
    assert "step_0000004.pt" in caplog.text
    assert latest.read_bytes() != kept.read_bytes()  # inference writes nothing
    summary = train.train_model(exp, multi_processing=False)  # "resuming from step 4": repairs latest.pt
    assert summary["steps"] == 4
    assert latest.read_bytes() == kept.read_bytes()
    assert checkpoints.load_encoder(exp)[1]["path"] == str(latest)


def test_d9_experiment_outputs_follow_the_umask(synth_db, tmp_path):
    import matplotlib.pyplot as plt

    from spotifai import atomic, embeddings_file, plots, sampling, train
    from spotifai import checkpoint as checkpoints
    from spotifai import experiment as experiments
    from spotifai.audio import AudioConfig

    old = os.umask(0o022)
    try:
        exp = tmp_path / "exp"
        cfg = train.create_experiment(exp, _small_config(synth_db, data={"cache_dir": str(tmp_path / "cache")}))
        experiments.write_history(exp, [(1, "train", 1.0)])
        checkpoints.save(exp, {"step": 3, "config": cfg.to_dict()}, kept=True)
        checkpoints.save_best(exp, {}, cfg.to_dict(), 3, 1.0)
        emb = embeddings_file.Embeddings(track_ids=np.arange(3), features=np.zeros((3, 4)), projections=np.zeros((3, 2)),
                               checkpoint_id="x", step=3)
        embeddings_file.save_embeddings(exp, emb)
        atomic.write_text(exp / "evaluation.json", "{}\n")  # what evaluate.evaluate_experiment writes with
        source = sampling.CachedPatchSource(AudioConfig(n_mels=32, patch_frames=64), tmp_path / "cache")
        conn = database.connect(synth_db, readonly=True)
        source.mel(database.tracks(conn)[0]["audio_path"])
        conn.close()
        (tmp_path / "bad.wav").write_bytes(b"RIFF garbage")
        with pytest.raises(Exception):  # noqa: B017 - an AudioError; its .bad marker is what is checked
            source.mel(str(tmp_path / "bad.wav"))
        fig = plt.figure()
        plots.save_figure(fig, tmp_path / "figures" / "f.png")
        plt.close(fig)
        files = [exp / "config.json", exp / "history.csv", exp / "checkpoints" / "latest.pt",
                 exp / "checkpoints" / "step_0000003.pt", exp / "checkpoints" / "best.pt", exp / "embeddings.npz", exp / "evaluation.json",
                 *(tmp_path / "cache").iterdir(), tmp_path / "figures" / "f.png"]
        assert any(f.suffix == ".npy" for f in files) and any(f.suffix == ".bad" for f in files)
        modes = {f.name: oct(f.stat().st_mode & 0o777) for f in files}
        assert set(modes.values()) == {"0o644"}, modes
        os.umask(0o077)
        atomic.write_text(exp / "private.txt", "x")
        assert (exp / "private.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# ------------------------------------------------------------------------- D7: read-only commands create nothing


def _indexed_experiment(root: Path, name: str = "exp") -> tuple[Path, list[int]]:
    from spotifai import index

    experiment = root / name
    experiment.mkdir(parents=True)
    ids = list(range(1, 21))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), 8)).astype(np.float32)
    index.open_index(experiment).build_space("projections", np.array(ids), vectors, [{"track_id": i} for i in ids],
                                             checkpoint_id="t", progress=False)
    return experiment, ids


def test_d7_recommend_on_a_missing_experiment_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "experiments" / "dmeo"  # misspelled
    assert cli_main(["recommend", str(missing), "1"]) == 2
    assert "no such experiment folder" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "experiments").exists()
    bare = tmp_path / "bare"  # an experiment folder without an index
    bare.mkdir()
    assert cli_main(["recommend", str(bare), "1"]) == 2
    assert "no ChromaDB index" in capsys.readouterr().err
    assert list(bare.iterdir()) == []


def test_d7_search_on_a_missing_database_creates_nothing(tmp_path, capsys):
    assert cli_main(["search", "--db", str(tmp_path / "nowhere" / "music.db"), "x"]) == 2
    assert not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------- minor: the index survives renaming and copying


def test_index_is_found_after_renaming_or_copying_the_experiment(tmp_path):
    import shutil

    from spotifai import index

    experiment, ids = _indexed_experiment(tmp_path)
    want = [r["track_id"] for r in index.recommend(experiment, ids[0], k=5)]
    renamed = tmp_path / "renamed"
    experiment.rename(renamed)
    assert [r["track_id"] for r in index.recommend(renamed, ids[0], k=5)] == want
    copy = tmp_path / "copy"
    shutil.copytree(renamed, copy)
    assert [r["track_id"] for r in index.recommend(copy, ids[0], k=5)] == want
    assert [r["track_id"] for r in index.recommend(renamed, ids[0], k=5)] == want


def test_index_built_before_prefixes_were_stored_is_still_found(tmp_path):
    from spotifai import index

    experiment = tmp_path / "old-exp"
    experiment.mkdir()
    ids = list(range(1, 11))
    vectors = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    # the old naming: spotifai-<folder name>, no index.json
    index.TrackIndex(experiment / "chroma", collection_prefix="spotifai-old-exp").build_space(
        "projections", np.array(ids), vectors, [{"track_id": i} for i in ids], checkpoint_id="t", progress=False)
    want = [r["track_id"] for r in index.recommend(experiment, 1, k=3)]
    assert not (experiment / index.INDEX_FILE).exists()  # reading wrote nothing
    renamed = tmp_path / "renamed-old"
    experiment.rename(renamed)
    assert [r["track_id"] for r in index.recommend(renamed, 1, k=3)] == want  # its only collection pair


# ------------------------------------------------------------------------ D10: read-only folder, WAL database


def _read_as_other_user(db: Path) -> tuple[int, str]:
    """Open ``db`` read-only and search it in a forked child that cannot write to its folder (as root: as the user
    nobody, for whom the folder is read-only); returns (exit status, output)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on
        status = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            from spotifai.search import search

            conn = database.connect(db, readonly=True)
            rows = search(conn, "song", limit=5)
            message = f"{len(rows)} {database.counts(conn)['tracks']}"
            status = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            message = f"{type(exc).__name__}: {exc}"
        os.write(write, message.encode())
        os._exit(status)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


def test_d10_wal_database_in_a_read_only_folder_can_be_searched(tmp_path):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="spotifai-ro-", dir="/tmp"))  # reachable for the user nobody
    try:
        base.chmod(0o755)
        folder = base / "library"
        folder.mkdir()
        db = folder / "music.db"
        conn = database.connect(db)
        with conn:
            for i in range(5):
                database.upsert_track(conn, uri=f"t:{i}", title=f"Song {i}", artist="Band")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        assert not (folder / "music.db-shm").exists()  # the last connection removed the side files
        db.chmod(0o644)
        folder.chmod(0o555)
        code, out = _read_as_other_user(db)
        assert code == 0, out
        assert out == "5 5"
        assert sorted(p.name for p in folder.iterdir()) == ["music.db"]
    finally:
        folder.chmod(0o755)
        import shutil

        shutil.rmtree(base, ignore_errors=True)
