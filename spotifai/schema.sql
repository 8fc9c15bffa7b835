-- spotifai music database. Applied by spotifai.database.connect(); every statement is idempotent.
-- Times are seconds. A track may have no audio (playlist datasets list many tracks nobody has the audio of).

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS artists (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS albums (
    id        INTEGER PRIMARY KEY,
    title     TEXT NOT NULL,
    artist_id INTEGER REFERENCES artists(id),
    UNIQUE (title, artist_id)
);

CREATE TABLE IF NOT EXISTS tracks (
    id          INTEGER PRIMARY KEY,
    uri         TEXT NOT NULL UNIQUE,          -- stable source key: 'file:<abs path>', 'spotify:track:…', 'demo:…'
    title       TEXT NOT NULL,
    artist_id   INTEGER REFERENCES artists(id),
    album_id    INTEGER REFERENCES albums(id),
    audio_path  TEXT UNIQUE,                   -- absolute path of a readable audio file, NULL when none
    duration    REAL,                          -- seconds of audio, NULL when unknown / no audio
    popularity  REAL NOT NULL DEFAULT 0,       -- higher = more popular (e.g. number of playlists)
    genre       TEXT                           -- evaluation only, where known
);
CREATE INDEX IF NOT EXISTS tracks_artist ON tracks(artist_id);
CREATE INDEX IF NOT EXISTS tracks_album ON tracks(album_id);
CREATE INDEX IF NOT EXISTS tracks_with_audio ON tracks(id) WHERE audio_path IS NOT NULL AND duration > 0;

CREATE TABLE IF NOT EXISTS playlists (
    id         INTEGER PRIMARY KEY,
    source_key TEXT NOT NULL UNIQUE,           -- e.g. 'm3u:<abs path>', 'csv:<file>:<name>', 'mpd:<pid>', 'demo:<n>'
    name       TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS playlist_tracks (
    playlist_id INTEGER NOT NULL REFERENCES playlists(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    track_id    INTEGER NOT NULL REFERENCES tracks(id),
    PRIMARY KEY (playlist_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS playlist_tracks_track ON playlist_tracks(track_id);

-- Full-text search over title / artist / album, rowid = track id. Trigram tokenizer: substring matches and
-- typo tolerance (see spotifai/search.py for the query side). Kept in sync with tracks by triggers.
CREATE VIRTUAL TABLE IF NOT EXISTS tracks_fts USING fts5(title, artist, album, tokenize = 'trigram');

CREATE TRIGGER IF NOT EXISTS tracks_fts_insert AFTER INSERT ON tracks BEGIN
    INSERT INTO tracks_fts(rowid, title, artist, album) VALUES (
        new.id, new.title,
        (SELECT name FROM artists WHERE id = new.artist_id),
        (SELECT title FROM albums WHERE id = new.album_id));
END;
CREATE TRIGGER IF NOT EXISTS tracks_fts_update AFTER UPDATE OF title, artist_id, album_id ON tracks BEGIN
    DELETE FROM tracks_fts WHERE rowid = old.id;
    INSERT INTO tracks_fts(rowid, title, artist, album) VALUES (
        new.id, new.title,
        (SELECT name FROM artists WHERE id = new.artist_id),
        (SELECT title FROM albums WHERE id = new.album_id));
END;
CREATE TRIGGER IF NOT EXISTS tracks_fts_delete AFTER DELETE ON tracks BEGIN
    DELETE FROM tracks_fts WHERE rowid = old.id;
END;
