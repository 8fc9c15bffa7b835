"""The tracks the figures label: a curated file when there is one, else picked from the DB."""

from __future__ import annotations

import json

import pytest

from spotifai import curated, database


@pytest.fixture()
def conn(tmp_path):
    conn = database.connect(tmp_path / "music.db")
    ids = {}
    for i in range(8):
        ids[i] = database.upsert_track(conn, uri=f"test:{i}", title=f"Song {i}", artist=f"Composer {i % 2}",
                                       album="Game A" if i < 5 else "Game B", audio_path=f"/music/{i}.ogg",
                                       duration=60.0, popularity=float(i))
    database.upsert_playlist(conn, "test:a", "Game A", [ids[i] for i in range(5)])
    database.upsert_playlist(conn, "test:b", "Game B", [ids[i] for i in range(5, 8)])
    database.upsert_playlist(conn, "test:tiny", "Tiny", [ids[0]])
    conn.commit()
    yield conn
    conn.close()


def test_pick_tracks_takes_the_most_popular_of_the_largest_playlists(conn):
    picked = curated.pick_tracks(conn, n_playlists=3, per_playlist=2)
    assert [c["symbol"] for c in picked] == ["A1", "A2", "B1", "B2"]  # "Tiny" has fewer than 2 tracks
    assert [c["title"] for c in picked] == ["Song 4", "Song 3", "Song 7", "Song 6"]
    assert all(c["genre"] == c["album"] for c in picked)  # no genre: the album labels the figures
    assert set(curated.FIELDS) <= set(picked[0])


def test_curated_file_wins_and_bad_files_are_errors(conn, tmp_path):
    path = tmp_path / "curated.json"
    assert curated.curated_tracks(conn, path)[1].startswith("picked")
    row = conn.execute("SELECT t.id, t.title, ar.name FROM tracks t LEFT JOIN artists ar ON ar.id = t.artist_id"
                       " ORDER BY t.id LIMIT 1").fetchone()
    mine = [{"symbol": "X", "track_id": row[0], "title": row[1], "artist": row[2] or "", "genre": "g"}]
    path.write_text(json.dumps(mine))
    assert curated.curated_tracks(conn, path) == (mine, f"curated in {path}")
    path.write_text(json.dumps({"symbol": "X"}))
    with pytest.raises(ValueError, match="curated.json: expected a JSON list"):
        curated.curated_tracks(conn, path)


def test_a_curated_file_of_another_database_is_not_used(conn, tmp_path):
    """Issue 14: the demo corpus's curated.json must not label another library's tracks by id."""
    path = tmp_path / "curated.json"
    demo = [{"symbol": "A1", "track_id": 1, "title": "Comet of Pastel", "artist": "Violet Mirage", "genre": "dream pop"}]
    path.write_text(json.dumps(demo))
    tracks, origin = curated.curated_tracks(conn, path)
    assert origin.startswith("picked") and "describes another database" in origin
    assert all(c["title"] != "Comet of Pastel" for c in tracks) and tracks == curated.pick_tracks(conn)
    assert curated.default_path(tmp_path / "lib" / "music.db") == tmp_path / "lib" / "curated.json"
