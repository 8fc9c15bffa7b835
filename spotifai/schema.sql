-- spotifai music database. Applied by spotifai.database.connect(); every statement is idempotent.
-- Times are seconds. A track may have no audio (playlist datasets list many tracks nobody has the audio of).

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Where ingestion found audio: resolved folders given to `spotifai ingest --folder`, and resolved single files
-- ingested from elsewhere (playlist entries, the MPD audio map, symbolic links leading out of a folder). The web
-- demo serves a track's audio only when its real path is one of these or lies below one of these folders.
CREATE TABLE IF NOT EXISTS library_roots (
    path TEXT PRIMARY KEY
) WITHOUT ROWID;

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
CREATE INDEX IF NOT EXISTS tracks_popularity ON tracks(popularity);    -- search: most popular matches first
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

-- Full-text search over title / artist / album (spotifai/search.py explains the design). Word tokens
-- (unicode61, case and diacritics folded), external content: the FTS index stores no copy of the text, it reads
-- it from the view track_text. rowid = track id. Kept in sync with tracks by triggers (artist names and album
-- titles never change: artists and albums are identified by them). track_search_vocab lists the indexed words
-- (the vocabulary the typo-tolerant search corrects query words against).
CREATE VIEW IF NOT EXISTS track_text AS
    SELECT t.id AS id, t.title AS title, ar.name AS artist, al.title AS album
    FROM tracks t LEFT JOIN artists ar ON ar.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id;
CREATE VIRTUAL TABLE IF NOT EXISTS track_search USING fts5(
    title, artist, album, content = 'track_text', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS track_search_vocab USING fts5vocab(track_search, 'row');

-- Bulk ingestion (spotifai/ingest.py, MPD slices) defers indexing of new tracks to one INSERT ... SELECT per
-- transaction (5x faster than a trigger per row) by setting meta 'search_index_deferred' inside that transaction.
CREATE TRIGGER IF NOT EXISTS track_search_insert AFTER INSERT ON tracks
WHEN NOT EXISTS (SELECT 1 FROM meta WHERE key = 'search_index_deferred') BEGIN
    INSERT INTO track_search(rowid, title, artist, album) VALUES (
        new.id, new.title,
        (SELECT name FROM artists WHERE id = new.artist_id),
        (SELECT title FROM albums WHERE id = new.album_id));
END;
CREATE TRIGGER IF NOT EXISTS track_search_update AFTER UPDATE OF title, artist_id, album_id ON tracks BEGIN
    INSERT INTO track_search(track_search, rowid, title, artist, album) VALUES (
        'delete', old.id, old.title,
        (SELECT name FROM artists WHERE id = old.artist_id),
        (SELECT title FROM albums WHERE id = old.album_id));
    INSERT INTO track_search(rowid, title, artist, album) VALUES (
        new.id, new.title,
        (SELECT name FROM artists WHERE id = new.artist_id),
        (SELECT title FROM albums WHERE id = new.album_id));
END;
CREATE TRIGGER IF NOT EXISTS track_search_delete AFTER DELETE ON tracks BEGIN
    INSERT INTO track_search(track_search, rowid, title, artist, album) VALUES (
        'delete', old.id, old.title,
        (SELECT name FROM artists WHERE id = old.artist_id),
        (SELECT title FROM albums WHERE id = old.album_id));
END;

-- Databases made before this index existed had a trigram table 'tracks_fts': build the new index from the
-- tracks once, then drop the old one.
INSERT INTO track_search(track_search)
    SELECT 'rebuild' WHERE EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'tracks_fts');
DROP TRIGGER IF EXISTS tracks_fts_insert;
DROP TRIGGER IF EXISTS tracks_fts_update;
DROP TRIGGER IF EXISTS tracks_fts_delete;
DROP TABLE IF EXISTS tracks_fts;
