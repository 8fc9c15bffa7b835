"""Fill the music DB from a music folder, M3U/M3U8 and CSV playlists, and Spotify Million Playlist Dataset slices.

Sources and how they map to the DB (``spotifai/database.py``):

* **Folder**: every ``.wav .flac .ogg .mp3 .m4a .opus`` below it becomes a track with ``uri = 'file:<abs path>'``
  and ``audio_path = <abs path>``. Title / artist / album / genre come from the tags (mutagen), else from the
  path ``Artist/Album/NN Title.ext``. Duration (seconds) comes from libsndfile (``soundfile.info``), which also
  decodes the last frames to catch truncated files, else from mutagen (M4A). Unreadable files are skipped and
  listed with the reason.
* **M3U / M3U8**: one playlist per file (``source_key = 'm3u:<abs path>'``, name from ``#PLAYLIST:`` or the file
  name). Entries: relative (to the playlist's folder) or absolute paths, ``file://`` URLs, Windows backslashes;
  ``#EXTINF:<seconds>,<Artist> - <Title>`` is used when the path matches nothing. UTF-8 (BOM allowed), else
  Latin-1; any line ending. An entry pointing at an audio file not yet in the DB adds that file as a track.
* **CSV**: a header with ``playlist`` and ``path``, or ``playlist``, ``artist`` and ``title`` (both may be
  present: the path is tried first). Rows of one playlist keep their order. ``source_key = 'csv:<file>:<name>'``.
* **MPD**: ``mpd.slice.*.json`` files (or a folder of them): ``{"playlists": [{"pid", "name", "tracks": [{"pos",
  "track_uri", "track_name", "artist_name", "album_name", "duration_ms"}]}]}``; ``source_key = 'mpd:<pid>'``.
  Tracks are keyed by their Spotify URI and have no audio, unless an **audio map** (CSV with columns
  ``track_uri,path`` or JSON ``{uri: path}`` / ``[{"track_uri", "path"}]``) gives a file for some of them.
  A folder track (``file:`` URI) whose file is mapped to a Spotify track is merged into it.

Guarantees:

* Idempotent: ingesting the same sources again changes nothing (the summary then counts everything as
  unchanged). Re-ingesting a changed playlist replaces its membership.
* One transaction per source file (a folder counts as one source): a crash or a malformed file leaves the DB as
  it was before that file. Invalid JSON aborts its file with the file and the position of the error; malformed
  playlist lines are reported with file and line number and skipped; playlist entries that match no track are
  counted and listed, never silently dropped.
* Entry-level problems (an entry naming a file the system cannot look up, an unreadable audio file, a
  malformed line, a duplicate MPD ``pid``) are counted per entry with the file and line; the playlist keeps its
  other entries. Names are text whatever the source gives (MPD numbers, lists, objects: see :func:`.parsers.text`).
* After the sources, ``popularity`` of every track in a playlist is recounted from the DB when memberships
  changed since the last recount, also in a run killed before its recount (tracks in no playlist keep theirs).
* Where audio was found (the folders, and single files ingested from elsewhere) is recorded in the DB
  (``library_roots``): the web demo serves audio only from there.
* Everything reported is escaped and cut to a sane length (:mod:`.summary`).

Layout (one module per concern): :mod:`.parsers` reads M3U / CSV playlists and the audio map into entries and
errors (no database); :mod:`.audio_files` reads durations and tags; :mod:`.mpd` parses and writes MPD slices
(speed notes there; a batch of slices bigger than the DB runs as :meth:`Ingester.bulk_load`, see
``bench/ingest.py``); :mod:`.tracks` finds and writes tracks and playlists; :mod:`.db` holds the transactions,
the popularity recount and bulk-load mode; :mod:`.ingester` is the coordinator (:class:`Ingester`,
:func:`ingest`); :mod:`.summary` is what a run reports.
"""

from spotifai.ingest.ingester import Ingester, ingest
from spotifai.ingest.summary import IngestSummary

__all__ = ["Ingester", "IngestSummary", "ingest"]
