"""The built-in demo corpus: structure, formats, determinism, idempotent skip and rebuilds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import soundfile as sf

from spotifai import database, demo_corpus
from spotifai.demo_corpus import build as demo_build
from spotifai.demo_corpus import catalogue, synthesis

N_SMALL = 24


def _rows(db: Path) -> tuple[list[dict], list[tuple[str, list[int]]]]:
    conn = database.connect(db, readonly=True)
    try:
        tracks = database.tracks(conn)
        names = database.playlist_names(conn)
        playlists = [(names[pid], database.playlist_tracks(conn, pid, with_audio=False)) for pid in sorted(names)]
    finally:
        conn.close()
    return tracks, playlists


def _digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo") / "corpus"
    summary = demo_corpus.build_demo_corpus(directory, seed=0, n_tracks=N_SMALL)
    return directory, summary


def test_summary_and_layout(small):
    directory, summary = small
    assert summary["skipped"] is False
    assert summary["tracks"] == N_SMALL
    assert summary["genres"] >= 4 and summary["artists"] >= 8
    assert summary["playlists"] >= 10 and summary["memberships"] > 0
    assert summary["seconds"] > 0 and 0 < summary["megabytes"] < 50
    for name in ("music.db", "curated.json", "corpus.json"):
        assert (directory / name).is_file()
    assert not list(directory.parent.glob(f".{directory.name}.building-*")), "temp build dir left behind"
    tracks, _ = _rows(directory / "music.db")
    for t in tracks:
        path = Path(t["audio_path"])
        assert path.is_absolute() and path.is_file()
        rel = path.relative_to(directory / "audio").parts  # genre / artist / album / "NN title.ext"
        assert len(rel) == 4 and rel[3][:2].isdigit()
        assert t["uri"].startswith("demo:") and t["genre"] and t["artist"] and t["album"] and t["title"]
        assert 0 <= t["popularity"] <= 100


def test_formats_decodable_and_long_enough(small):
    directory, _ = small
    tracks, _ = _rows(directory / "music.db")
    exts, rates, channels = set(), set(), set()
    for t in tracks:
        info = sf.info(t["audio_path"])
        exts.add(Path(t["audio_path"]).suffix)
        rates.add(info.samplerate)
        channels.add(info.channels)
        assert t["duration"] >= 20.0
        data, sr = sf.read(t["audio_path"], dtype="float32", always_2d=True)
        assert sr == info.samplerate and data.shape[0] / sr >= 20.0
        assert abs(data).max() > 0.01, f"{t['audio_path']}: silent"
    assert exts == {".wav", ".flac", ".ogg", ".mp3"}
    assert len(rates) >= 3 and channels == {1, 2}


def test_genres_artists_playlists(small):
    directory, _ = small
    tracks, playlists = _rows(directory / "music.db")
    genres = {t["genre"] for t in tracks}
    assert len(genres) >= 4 and genres <= set(demo_corpus.GENRES)
    artists_per_genre = {g: {t["artist"] for t in tracks if t["genre"] == g} for g in genres}
    assert all(len(a) >= 2 for a in artists_per_genre.values())
    albums = {(t["artist"], t["album"]) for t in tracks}
    assert len(albums) == 2 * sum(len(a) for a in artists_per_genre.values())
    assert playlists
    for name, members in playlists:
        assert 5 <= len(members) <= 40, name
        assert len(set(members)) == len(members), f"{name}: duplicated track"


def test_curated_shape(small):
    directory, _ = small
    curated = demo_corpus.load_curated(directory)
    assert [c["symbol"] for c in curated] == list(demo_corpus.CURATED)
    by = {c["symbol"]: c for c in curated}
    assert by["A1"]["artist"] == by["A2"]["artist"] == by["A3"]["artist"]
    assert len({by[s]["track_id"] for s in by}) == 9
    assert by["B"]["artist"] != by["A1"]["artist"] and by["B"]["genre"] == by["A1"]["genre"]
    g1 = by["A1"]["genre"]
    assert by["C"]["genre"] in demo_corpus.NEIGHBOURS[g1]
    assert by["D1"]["genre"] == by["D2"]["genre"] and by["E1"]["genre"] == by["E2"]["genre"]
    others = {by["D1"]["genre"], by["E1"]["genre"]}
    assert len(others) == 2 and not others & {g1, *demo_corpus.NEIGHBOURS[g1]}
    tracks, _ = _rows(directory / "music.db")
    ids = {t["id"]: t for t in tracks}
    for c in curated:
        assert ids[c["track_id"]]["title"] == c["title"] and ids[c["track_id"]]["artist"] == c["artist"]


def test_skip_complete_and_atomic_rebuild_of_half_built(small, monkeypatch):
    directory, summary = small
    again = demo_corpus.build_demo_corpus(directory, seed=0, n_tracks=N_SMALL)
    assert again["skipped"] is True and again["tracks"] == summary["tracks"]

    # a corpus without its completion marker is rebuilt; an interrupted rebuild leaves the old files alone
    marker = directory / "corpus.json"
    saved = marker.read_text()
    marker.unlink()
    db_before = _digest(directory / "music.db")

    def interrupted(tmp, *args):
        (tmp / "music.db").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_build, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo_corpus.build_demo_corpus(directory, seed=0, n_tracks=N_SMALL)
    assert _digest(directory / "music.db") == db_before
    assert not list(directory.parent.glob(f".{directory.name}.building-*"))
    marker.write_text(saved)


def test_force_rebuild_is_deterministic(small):
    directory, _ = small
    before_rows = _rows(directory / "music.db")
    sample = [t["audio_path"] for t in before_rows[0]]
    before_bytes = {p: _digest(p) for p in sample}
    before_curated = (directory / "curated.json").read_text()
    stray = directory / "audio" / "stray.txt"
    stray.write_text("left over")

    rebuilt = demo_corpus.build_demo_corpus(directory, seed=0, n_tracks=N_SMALL, force=True)
    assert rebuilt["skipped"] is False and not stray.exists()
    assert _rows(directory / "music.db") == before_rows
    assert {p: _digest(p) for p in sample} == before_bytes  # byte-identical files, every format
    assert (directory / "curated.json").read_text() == before_curated
    assert demo_corpus.build_demo_corpus(directory, seed=0, n_tracks=N_SMALL)["skipped"] is True


def test_plan_depends_on_seed_and_tiny_corpus_has_no_curated_list():
    artists0, tracks0 = catalogue.plan(0, 16)
    artists1, tracks1 = catalogue.plan(1, 16)
    assert [t["title"] for t in tracks0] != [t["title"] for t in tracks1]
    assert catalogue.curate(artists1, tracks1) == []  # 2 tracks per artist: no A1-A3
    playlists = catalogue.make_playlists(1, artists1, tracks1)
    assert playlists and all(5 <= len(m) <= 40 for _, m in playlists)


def test_refuses_foreign_directory_and_tiny_sizes(tmp_path):
    (tmp_path / "notes.txt").write_text("my files")
    with pytest.raises(FileExistsError, match="not a demo corpus"):
        demo_corpus.build_demo_corpus(tmp_path, n_tracks=16)
    assert (tmp_path / "notes.txt").read_text() == "my files"
    with pytest.raises(ValueError, match="at least 16"):
        demo_corpus.build_demo_corpus(tmp_path / "x", n_tracks=4)


def test_ogg_serial_fix_keeps_valid_crc():
    import io

    import numpy as np

    x = (0.1 * np.sin(np.arange(8000) / 5.0)).astype(np.float32)
    bio = io.BytesIO()
    sf.write(bio, x, 8000, format="OGG", subtype="VORBIS")
    raw = bio.getvalue()
    # the CRC of libsndfile's own first page must match ours (checks the CRC implementation)
    n_seg = raw[26]
    size = 27 + n_seg + sum(raw[27 : 27 + n_seg])
    page = bytearray(raw[:size])
    page[22:26] = b"\0\0\0\0"
    assert synthesis._ogg_crc(bytes(page)) == int.from_bytes(raw[22:26], "little")
    fixed = synthesis._fix_ogg_serial(raw, 1234)
    assert fixed[14:18] == (1234).to_bytes(4, "little")
    y, _ = sf.read(io.BytesIO(fixed), dtype="float32")
    assert len(y) == len(x)


@pytest.mark.slow
def test_full_corpus(tmp_path):
    summary = demo_corpus.build_demo_corpus(tmp_path / "full", seed=0)
    assert summary["tracks"] >= 320 and summary["genres"] >= 8 and summary["artists"] >= 32
    assert summary["playlists"] >= 150 and summary["curated"] == 9
    assert summary["megabytes"] <= 200
    assert set(summary["formats"]) == {"wav", "flac", "ogg", "mp3"}
    assert set(summary["sample_rates"]) == {"16000", "22050", "44100", "48000"}
    _, playlists = _rows(tmp_path / "full" / "music.db")
    assert all(5 <= len(m) <= 40 for _, m in playlists)
    assert sum(n.startswith("This is ") for n, _ in playlists) >= 16
