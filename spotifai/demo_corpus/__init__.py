"""The built-in demo corpus: deterministic, procedurally synthesized music with playlists.

``build_demo_corpus(DIR)`` writes, from nothing but a seed:

* ``DIR/audio/<genre>/<artist>/<album>/NN title.<ext>``: real audio files (WAV, FLAC, OGG Vorbis, MP3) at
  16 kHz, 22.05 kHz, 44.1 kHz and 48 kHz, mono and stereo, each 20.6-24.5 s long;
* ``DIR/music.db``: the spotifai music DB (tracks with uri ``demo:<n>``, artist, album, absolute audio path,
  duration in seconds, popularity 0-100, genre; playlists with source key ``demo:<n>``);
* ``DIR/curated.json``: nine tracks for the similarity figure (symbols A1 A2 A3 B C D1 D2 E1 E2, see
  :data:`CURATED`);
* ``DIR/corpus.json``: the completion marker, written last (seed, requested size, version, summary).

How the music is made (all vectorized numpy, one ``numpy.random.Generator`` per artist and per track, so a
seed gives byte-identical files and DB rows on every run, in any process order):

* 8 genres (:data:`GENRES`) with clearly different character: tempo, meter, mode, drum style (or none),
  bass style, accompaniment style, lead style, textures, reverb and mastering.
* 4 artists per genre, each with *temporal* traits drawn once: drum patterns per bar (16th grid, with
  velocity accents), swing, timing looseness, bass rhythm, strum/comp/arpeggio patterns, riff, melody
  rhythm cells and interval habits, note articulation (legato), vibrato rate/depth, chord voicing,
  instrument combination and timbres (wavetable harmonic recipes, FM ratios, drum-sound parameters).
* every track draws its own tempo (in the artist's range), key (near the artist's), progression, melody,
  arrangement (which layers play in which 4-bar section), mix and production (EQ tilt, band limits, gain,
  reverb amount and length, drive, noise floor or hum, stereo width). The per-track production is
  deliberately wide so the average spectrum alone is a weak clue to the artist: telling artists apart
  takes the temporal traits above.

Synthesis building blocks: band-limited wavetables built from harmonic recipes (additive), two-table
crossfades driven by an envelope (a cheap subtractive "filter envelope"), FM (electric piano, bells,
stabs), formant tables (sung and rapped vowels), tanh distortion (metal guitars), noise shaped in the
frequency domain (drums, breath, vinyl, wind), and one FFT per channel that applies reverb (a noise
impulse response), EQ and band limits and resamples to the output rate.

Playlists (:func:`.catalogue.make_playlists`): genre playlists, neighbouring-genre mixes (:data:`NEIGHBOURS`),
artist-focused ("This is <artist>") and artist-radio playlists, and a few party mixes; lengths 5-40;
tracks drawn with a heavy-tailed per-track popularity weight so popular tracks appear in more playlists.

The build renders into a temporary sibling directory and renames it into place, so an interrupted build
never leaves a half corpus; a complete corpus built with the same settings is not rebuilt (unless
``force``). Nothing else in spotifai needs this module.

Layout: :mod:`.genres` (the genre table), :mod:`.instruments` (DSP helpers, voices, drums, artist traits),
:mod:`.synthesis` (one song, its production and its file), :mod:`.catalogue` (names, the plan, playlists, the
curated tracks), :mod:`.build` (:func:`build_demo_corpus`, :func:`load_curated`).
"""

from spotifai.demo_corpus.build import DEFAULT_TRACKS, VERSION, build_demo_corpus, load_curated
from spotifai.demo_corpus.catalogue import CURATED
from spotifai.demo_corpus.genres import GENRES, MODES, NEIGHBOURS

__all__ = ["CURATED", "DEFAULT_TRACKS", "GENRES", "MODES", "NEIGHBOURS", "VERSION", "build_demo_corpus", "load_curated"]
