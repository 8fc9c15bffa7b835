"""Ingestion of real audio files (WAV, FLAC, OGG, MP3), M3U, CSV and MPD JSON sources; idempotence; bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.easyid3 import EasyID3

from spotifai import database
from spotifai.cli import main as cli_main
from spotifai.ingest import Ingester, ingest
from spotifai.ingest.audio_files import read_audio_file

RATE = 16000


def _write(path: Path, seconds: float = 1.0, freq: float = 440.0, tags: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    audio = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}[path.suffix]
    sub = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt]
    sf.write(str(path), audio, RATE, format=fmt, subtype=sub)
    if tags:
        if path.suffix == ".mp3":
            f = EasyID3()
            for k, v in tags.items():
                f[k] = v
            f.save(str(path))
        else:
            f = mutagen.File(str(path), easy=True)
            for k, v in tags.items():
                f[k] = v
            f.save()
    return path


@pytest.fixture()
def library(tmp_path: Path) -> dict:
    music = tmp_path / "music"
    files = {
        "wav": _write(music / "Arctic Monkeys" / "Whatever People Say" / "01 Dancing Shoes.wav", 1.0, 330),
        "flac": _write(
            music / "x" / "y" / "track.flac", 1.5, 440,
            tags={"title": "Fluorescent Adolescent", "artist": "Arctic Monkeys", "album": "Favourite Worst Nightmare",
                  "genre": "Indie"},
        ),
        "ogg": _write(music / "Björk" / "Homogenic" / "02-Jóga.ogg", 1.2, 550),
        "mp3": _write(music / "misc" / "song.mp3", 1.3, 660, tags={"title": "Teardrop", "artist": "Massive Attack"}),
    }
    (music / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    good = (music / "x" / "y" / "track.flac").read_bytes()
    bad = music / "broken"
    bad.mkdir()
    (bad / "truncated.flac").write_bytes(good[: len(good) // 2])
    (bad / "empty.mp3").write_bytes(b"")
    (bad / "garbage.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    return {"root": tmp_path, "music": music, "files": files}


def _snapshot(conn: sqlite3.Connection) -> dict:
    out = {}
    for table in ("tracks", "artists", "albums", "playlists", "playlist_tracks"):
        out[table] = [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return out


def _mpd_slice(path: Path, playlists: list[dict]) -> Path:
    path.write_text(json.dumps({"info": {"slice": "0-1"}, "playlists": playlists}))
    return path


def _mpd_track(pos: int, n: int) -> dict:
    return {
        "pos": pos, "track_uri": f"spotify:track:{n:04d}", "track_name": f"Song {n}", "artist_name": f"Band {n % 3}",
        "album_name": f"Record {n % 2}", "duration_ms": 200000 + n,
    }


def test_read_audio_file_tags_and_path_fallback(library):
    files = library["files"]
    wav = read_audio_file(files["wav"], library["music"])
    assert (wav.title, wav.artist, wav.album) == ("Dancing Shoes", "Arctic Monkeys", "Whatever People Say")
    assert wav.duration == pytest.approx(1.0, abs=1e-3)
    flac = read_audio_file(files["flac"], library["music"])
    assert (flac.title, flac.artist, flac.album, flac.genre) == (
        "Fluorescent Adolescent", "Arctic Monkeys", "Favourite Worst Nightmare", "Indie")
    ogg = read_audio_file(files["ogg"], library["music"])
    assert (ogg.title, ogg.artist, ogg.album) == ("Jóga", "Björk", "Homogenic")
    assert ogg.duration == pytest.approx(1.2, abs=0.01)
    mp3 = read_audio_file(files["mp3"], library["music"])
    assert (mp3.title, mp3.artist) == ("Teardrop", "Massive Attack")
    assert mp3.duration == pytest.approx(1.3, abs=0.1)


def test_folder_m3u_csv_mpd_and_idempotence(library, tmp_path):
    music = library["music"]
    files = library["files"]
    m3u = music / "mix.m3u8"
    m3u.write_bytes(
        (
            "\ufeff#EXTM3U\r\n#PLAYLIST:Evening Mix\r\n"
            "#EXTINF:1,Arctic Monkeys - Dancing Shoes\r\n"
            "Arctic Monkeys\\Whatever People Say\\01 Dancing Shoes.wav\r\n"  # relative, Windows separators
            "# a comment\r\n"
            f"{files['mp3']}\r\n"  # absolute
            "#EXTINF:200,Massive Attack - Teardrop\r\n"
            "C:\\Users\\me\\Music\\gone\\missing.mp3\r\n"  # matches by EXTINF
            "does/not/exist.flac\r\n"  # unknown
            "#EXTINF:abc\r\n"  # malformed
            "x/y/track.flac\r\n"
        ).encode()
    )
    csv_file = tmp_path / "lists.csv"
    csv_file.write_text(
        "playlist,path,artist,title\n"
        "Road,music/Björk/Homogenic/02-Jóga.ogg,,\n"
        "Road,,Arctic Monkeys,Fluorescent Adolescent\n"
        "Road,,Nobody,Nothing\n"
        "Road,too,many,fields,here\n"
        "Quiet,music/misc/song.mp3,,\n"
    )
    mpd = _mpd_slice(
        tmp_path / "mpd.slice.0-1.json",
        [
            {"pid": 0, "name": "Throwbacks", "tracks": [_mpd_track(i, i) for i in range(5)]},
            {"pid": 1, "name": "Gym", "tracks": [_mpd_track(i, i + 3) for i in range(4)] + [_mpd_track(4, 3)]},
        ],
    )
    audio_map = tmp_path / "map.csv"
    audio_map.write_text(
        f"track_uri,path\nspotify:track:0001,{files['ogg']}\nspotify:track:9999,{files['wav']}\n"
        "spotify:track:0002,music/broken/truncated.flac\n"
    )

    db = tmp_path / "music.db"
    conn = database.connect(db)
    summary = ingest(conn, folders=[music], m3u=[m3u], csv_files=[csv_file], mpd=[mpd], mpd_audio_map=audio_map)
    text = summary.to_text()

    # the folder: 4 good files, 3 broken ones skipped with reasons
    skipped = dict(summary.skipped)
    assert summary.skipped_files == 4  # three in the folder + the truncated file named by the audio map
    assert "truncated" in skipped[str(music / "broken" / "truncated.flac")]
    assert skipped[str(music / "broken" / "empty.mp3")] == "empty file"
    assert str(music / "broken" / "garbage.wav") in skipped
    assert "truncated.flac" in text and "empty file" in text

    # 4 folder tracks + 7 MPD tracks; the folder's ogg track merged into spotify:track:0001 by the audio map
    c = database.counts(conn)
    assert c["tracks"] == 4 + 7 - 1
    assert c["tracks_with_audio"] == 4
    by_uri = {t["uri"]: t for t in database.tracks(conn)}
    assert by_uri["spotify:track:0001"]["audio_path"] == str(files["ogg"])
    assert by_uri["spotify:track:0001"]["title"] == "Song 1"  # names stay those of the dataset
    assert f"file:{files['ogg']}" not in by_uri
    assert by_uri["spotify:track:0003"]["duration"] == pytest.approx(200.003)

    names = {v: k for k, v in database.playlist_names(conn).items()}
    assert set(names) == {"Evening Mix", "Road", "Quiet", "Throwbacks", "Gym"}
    uri_of = {t["id"]: t["uri"] for t in database.tracks(conn)}
    evening = [uri_of[t] for t in database.playlist_tracks(conn, names["Evening Mix"], with_audio=False)]
    assert evening == [f"file:{files['wav']}", f"file:{files['mp3']}", f"file:{files['flac']}"]
    road = [uri_of[t] for t in database.playlist_tracks(conn, names["Road"], with_audio=False)]
    assert road == ["spotify:track:0001", f"file:{files['flac']}"]
    gym = conn.execute(
        "SELECT t.uri FROM playlist_tracks pt JOIN tracks t ON t.id = pt.track_id WHERE pt.playlist_id = ?"
        " ORDER BY pt.position", (names["Gym"],)).fetchall()
    assert [r[0] for r in gym] == [f"spotify:track:{n:04d}" for n in (3, 4, 5, 6, 3)]  # duplicates kept

    # unmatched entries and malformed lines name file and line
    unmatched = {(Path(f).name, line) for f, line, _ in summary.unmatched}
    assert ("mix.m3u8", 9) in unmatched  # does/not/exist.flac
    assert ("mix.m3u8", 8) not in unmatched  # C:\...missing.mp3 matched through #EXTINF
    assert ("lists.csv", 4) in unmatched  # Nobody - Nothing
    assert ("map.csv", 3) in unmatched  # spotify:track:9999
    assert any(e.startswith(f"{m3u}:10:") and "EXTINF" in e for e in summary.errors)
    assert any(e.startswith(f"{csv_file}:5:") and "fields" in e for e in summary.errors)
    assert summary.sources_failed == 0

    # popularity = number of playlist entries
    assert by_uri["spotify:track:0003"]["popularity"] == 3.0

    # ingesting everything again changes nothing
    before = _snapshot(conn)
    again = ingest(conn, folders=[music], m3u=[m3u], csv_files=[csv_file], mpd=[mpd], mpd_audio_map=audio_map)
    assert _snapshot(conn) == before
    assert (again.tracks_added, again.tracks_updated, again.playlists_added, again.playlists_updated) == (0, 0, 0, 0)
    assert again.playlists_unchanged == 5
    assert again.memberships_written == 0
    conn.close()


def test_broken_json_aborts_the_file_and_leaves_db_unchanged(tmp_path):
    db = tmp_path / "m.db"
    conn = database.connect(db)
    good = _mpd_slice(tmp_path / "mpd.slice.0-0.json", [{"pid": 7, "name": "A", "tracks": [_mpd_track(0, 1)]}])
    ingest(conn, mpd=[good])
    before = _snapshot(conn)
    broken = tmp_path / "mpd.slice.1-1.json"
    text = json.dumps({"playlists": [{"pid": 8, "name": "B", "tracks": [_mpd_track(0, 2)]}]}, indent=1)
    broken.write_text(text[:-20])  # cut off
    summary = ingest(conn, mpd=[broken])
    assert summary.sources_failed == 1
    (message,) = summary.errors
    assert message.startswith(f"{broken}: invalid JSON at line ") and "column" in message and "char" in message
    assert _snapshot(conn) == before
    # a valid slice in the same folder still goes in; the broken one is reported again
    summary = ingest(conn, mpd=[tmp_path])
    assert summary.sources_failed == 1 and summary.sources_ingested == 1
    assert _snapshot(conn) == before
    conn.close()


def test_failure_inside_a_file_rolls_back_that_file(tmp_path, monkeypatch):
    conn = database.connect(tmp_path / "m.db")
    ing = Ingester(conn)
    first = _mpd_slice(tmp_path / "mpd.slice.0-0.json", [{"pid": 1, "name": "A", "tracks": [_mpd_track(0, 1)]}])
    ing.mpd_file(first)
    before = _snapshot(conn)
    second = _mpd_slice(tmp_path / "mpd.slice.1-1.json", [{"pid": 2, "name": "B", "tracks": [_mpd_track(0, 2)]}])
    real_executemany = conn.executemany

    class Crash(sqlite3.OperationalError):
        pass

    def crash(sql, rows):  # the membership insert fails after tracks and playlists were written
        if sql.startswith("INSERT INTO playlist_tracks"):
            raise Crash("disk I/O error (simulated)")
        return real_executemany(sql, rows)

    wrapper = type("C", (), {})()
    for name in ("execute", "commit", "rollback"):
        setattr(wrapper, name, getattr(conn, name))
    wrapper.executemany = crash
    type(wrapper).in_transaction = property(lambda self: conn.in_transaction)
    ing.conn = wrapper
    ing.mpd_file(second)
    assert ing.summary.sources_failed == 1 and "simulated" in ing.summary.errors[-1]
    assert _snapshot(conn) == before
    ing.conn = conn
    ing.mpd_file(second)  # caches were dropped: the retry works
    assert database.counts(conn)["playlists"] == 2
    conn.close()


def test_bad_csv_header_and_missing_sources(tmp_path):
    conn = database.connect(tmp_path / "m.db")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,file\nx,y\n")
    summary = ingest(conn, csv_files=[bad], m3u=[tmp_path / "nope.m3u"])
    assert summary.sources_failed == 2
    assert any(e.startswith(f"{bad}:1: CSV header needs") for e in summary.errors)
    assert any("nope.m3u" in e and "cannot read" in e for e in summary.errors)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ingest(conn, mpd=[tmp_path / "missing.json"])
    conn.close()


def test_cli_ingest_and_search(library, tmp_path, capsys):
    db = tmp_path / "cli.db"
    assert cli_main(["ingest", "--db", str(db), "--folder", str(library["music"])]) == 0
    out = capsys.readouterr().out
    assert "tracks: 4 added" in out and "skipped audio files: 3" in out and "tracks 4" in out
    assert cli_main(["search", "--db", str(db), "dancng shoes", "--limit", "1"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results[0]["title"] == "Dancing Shoes"


def test_large_mpd_slice_is_searchable(tmp_path):
    """Slices with many new tracks index them for search in one statement (deferred trigger)."""
    from spotifai.search import search

    conn = database.connect(tmp_path / "m.db")
    slice_ = _mpd_slice(tmp_path / "mpd.slice.0-0.json",
                        [{"pid": 1, "name": "Big", "tracks": [_mpd_track(i, i) for i in range(300)]}])
    summary = ingest(conn, mpd=[slice_])
    assert summary.tracks_added == 300 and summary.memberships_written == 300
    conn.execute("INSERT INTO track_search(track_search) VALUES ('integrity-check')")
    assert database.get_meta(conn, "search_index_deferred") is None
    assert search(conn, "song 123")[0]["title"] == "Song 123"
    assert search(conn, "sogn 123 band")[0]["title"] == "Song 123"
    conn.close()


def test_bulk_load_matches_file_by_file_and_restores_indexes(tmp_path):
    """Ingester.bulk_load() drops secondary indexes while loading; the result equals a plain file-by-file load."""
    from spotifai.search import search

    def slices(folder: Path) -> list[Path]:
        folder.mkdir()
        return [
            _mpd_slice(folder / f"mpd.slice.{k}.json", [
                {"pid": k * 10 + i, "name": f"P{k}-{i}", "tracks": [_mpd_track(j, (k * 97 + i * 31 + j) % 400)
                                                                    for j in range(5 + 7 * i)]}
                for i in range(10)
            ])
            for k in range(3)
        ]

    def schema(conn):
        return sorted(r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))

    plain = database.connect(tmp_path / "plain.db")
    ing = Ingester(plain)
    for f in slices(tmp_path / "a"):
        ing.mpd_file(f)
    plain_summary = ing.finish()

    bulk = database.connect(tmp_path / "bulk.db")
    ing = Ingester(bulk)
    files = slices(tmp_path / "b")
    with ing.bulk_load():
        indexes = {r[0] for r in bulk.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "playlist_tracks_track" not in indexes and "tracks_popularity" not in indexes
        for f in files:
            ing.mpd_file(f)
        broken = tmp_path / "b" / "mpd.slice.9.json"
        broken.write_text('{"playlists": [{"pid": 99, "tracks": [')
        before = _snapshot(bulk)
        ing.mpd_file(broken)
        assert _snapshot(bulk) == before and ing.summary.sources_failed == 1
    bulk_summary = ing.finish()

    assert _snapshot(bulk) == _snapshot(plain)
    assert schema(bulk) == schema(plain)
    assert bulk_summary.memberships_written == plain_summary.memberships_written > 0
    assert bulk.execute("SELECT COUNT(*) FROM tracks WHERE popularity > 0").fetchone()[0] == len(_snapshot(bulk)["tracks"])
    bulk.execute("INSERT INTO track_search(track_search) VALUES ('integrity-check')")
    assert search(bulk, "song 123") == search(plain, "song 123")
    # re-ingesting as a bulk load changes nothing
    ing = Ingester(bulk)
    ing.mpd_files(files)
    again = ing.finish()
    assert again.playlists_unchanged == 30 and again.memberships_written == 0
    assert _snapshot(bulk) == _snapshot(plain)


def test_mpd_malformed_parts_skipped_and_same_result_as_well_formed(tmp_path):
    """A slice with bad playlists / entries (lenient orjson path) is ingested like the same slice without them
    (msgspec fast path); entries are ordered by "pos"; each bad part is reported with the file."""
    good = [
        {"pid": 1, "name": "A", "tracks": [_mpd_track(2, 3), _mpd_track(0, 1), _mpd_track(1, 2)]},
        {"pid": "x", "tracks": [_mpd_track(0, 2), _mpd_track(1, 4)]},
    ]
    bad = [
        {"pid": 1, "name": "A", "tracks": [_mpd_track(2, 3), {"pos": 3, "track_uri": ""}, _mpd_track(0, 1),
                                           {"pos": 4}, _mpd_track(1, 2)]},
        {"name": "no pid", "tracks": []},
        7,
        {"pid": "x", "tracks": [_mpd_track(0, 2), _mpd_track(1, 4)]},
    ]
    results = []
    for name, playlists in (("good", good), ("bad", bad)):
        conn = database.connect(tmp_path / f"{name}.db")
        summary = ingest(conn, mpd=[_mpd_slice(tmp_path / f"mpd.slice.{name}.json", playlists)])
        assert summary.sources_ingested == 1 and summary.sources_failed == 0
        results.append((_snapshot(conn), summary.error_count, summary.errors))
        conn.close()
    (snap_good, n_good, _), (snap_bad, n_bad, errors) = results
    assert snap_good == snap_bad and n_good == 0 and n_bad == 4
    assert all(str(tmp_path / "mpd.slice.bad.json") in e for e in errors)
    uris = dict((r[0], r[1]) for r in snap_good["tracks"])
    first = [uris[t] for p, _, t in sorted(snap_good["playlist_tracks"]) if p == 1]
    assert first == ["spotify:track:0001", "spotify:track:0002", "spotify:track:0003"]
