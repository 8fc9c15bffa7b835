"""The playlist-file parsers of spotifai.ingest: pure functions of a file's content, tested without a DB."""

import json
from pathlib import Path

from spotifai.ingest import mpd, parsers

P = Path("/lists/x.m3u8")


def test_m3u_entries_names_and_extinf():
    text = "#EXTM3U\n#PLAYLIST: Road trip\n#EXTINF:123,Artist - Title\nmusic/a.flac\r\n\n#EXTINF:bad\nb.mp3\nc.ogg\n"
    pl = parsers.parse_m3u(P, text)
    assert pl.name == "Road trip"
    assert [(e.line, e.entry, e.extinf) for e in pl.entries] == [
        (4, "music/a.flac", "Artist - Title"), (7, "b.mp3", None), (8, "c.ogg", None)]
    assert pl.errors == [f"{P}:6: malformed #EXTINF line (expected #EXTINF:<seconds>,<title>)"]


def test_m3u_nul_byte_line_is_an_error_and_name_defaults_to_the_file():
    pl = parsers.parse_m3u(P, "a.wav\nb\x00.wav\n")
    assert pl.name == "x" and [e.entry for e in pl.entries] == ["a.wav"]
    assert pl.errors == [f"{P}:2: malformed line (NUL byte)"]


def test_decode_text_utf8_bom_else_latin1():
    assert parsers.decode_text("\ufeffé".encode()) == "é"
    assert parsers.decode_text("é".encode("latin-1")) == "é"


def test_csv_entries_and_row_errors():
    path = Path("/lists/p.csv")
    text = "Playlist,path,artist,title\nA,a.wav,,\nA,,X,Y\n,b.wav,,\nB,,X,\nB,c.wav\n\nB,d.wav,,\n"
    parsed = parsers.parse_csv(path, text)
    assert parsed.failure is None
    assert [(e.line, e.playlist, e.path, e.artist, e.title) for e in parsed.entries] == [
        (2, "A", "a.wav", "", ""), (3, "A", "", "X", "Y"), (8, "B", "d.wav", "", "")]
    assert parsed.errors == [f"{path}:6: expected 4 fields, found 2", f"{path}:4: empty playlist name",
                             f"{path}:5: neither a path nor a title"]


def test_csv_without_the_needed_columns_fails_the_file():
    parsed = parsers.parse_csv(Path("/p.csv"), "name,file\nx,y\n")
    assert parsed.failure == ("/p.csv:1: CSV header needs columns playlist and path, or playlist, artist and title"
                              " (found: name, file)")
    assert parsed.entries == []


def test_audio_map_csv_and_json():
    csv_map = parsers.parse_audio_map(Path("/m.csv"), b"track_uri,path\nspotify:track:a,a.wav\nbad\n")
    assert csv_map.pairs == [(2, "spotify:track:a", "a.wav")] and csv_map.errors == ["/m.csv:3: expected track_uri,path"]
    data = [{"track_uri": "u1", "path": "x.flac"}, {"track_uri": "u2"}, {"track_uri": "u3", "audio_path": "y.ogg"}]
    json_map = parsers.parse_audio_map(Path("/m.json"), json.dumps(data).encode())
    assert json_map.pairs == [(1, "u1", "x.flac"), (3, "u3", "y.ogg")]
    assert json_map.errors == ["/m.json: entry 2: expected a track_uri and a path"]
    assert parsers.parse_audio_map(Path("/m.json"), json.dumps({"u": "p.wav"}).encode()).pairs == [(1, "u", "p.wav")]
    broken = parsers.parse_audio_map(Path("/m.json"), b"{")
    assert broken.failure is not None and broken.failure.startswith("/m.json: invalid JSON at line 1")


def test_text_of_json_values():
    assert [parsers.text(v) for v in ("a", 42, 1.5, True, ["y"], {}, None, "")] == [
        "a", "42", "1.5", "true", '["y"]', None, None, None]
    assert parsers.norm("  The  BEATLES ") == "the beatles"


def test_mpd_slice_fast_and_lenient_paths():
    good = {"playlists": [{"pid": 1, "name": "P", "tracks": [
        {"pos": 1, "track_uri": "u:b"}, {"pos": 0, "track_uri": "u:a", "track_name": "A"}]}]}
    parsed = mpd.parse_slice(Path("/s.json"), json.dumps(good).encode())
    assert parsed.failure is None and parsed.errors == []
    assert [t.track_uri for t in parsed.playlists[0].tracks] == ["u:a", "u:b"]  # sorted by pos
    bad = {"playlists": [{"name": "no pid", "tracks": []}, {"pid": 2, "tracks": [{"track_uri": 5}, {"track_uri": "u:c"}]}]}
    parsed = mpd.parse_slice(Path("/s.json"), json.dumps(bad).encode())
    assert [t.track_uri for p in parsed.playlists for t in p.tracks] == ["u:c"]
    assert parsed.errors == ['/s.json: playlist #0: not an object with "pid" and a "tracks" list; skipped',
                             '/s.json: playlist 2: a track without "track_uri"; skipped']
    assert mpd.parse_slice(Path("/s.json"), b"[]").failure == '/s.json: not an MPD slice (no top-level "playlists" list)'
    assert "invalid JSON at line 1" in mpd.parse_slice(Path("/s.json"), b'{"playlists": [').failure
