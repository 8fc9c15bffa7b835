"""A real-music development corpus from Debian's free game soundtracks (``spotifai real-corpus DIR``).

Not part of the main job or CI: it needs the Debian packages that ``scripts/real_corpus.sh`` installs (exactly
the packages of :data:`PACKAGES`; other music packages are kept for an independent check and never read here).

For every package: list its files (``dpkg -L``), keep music and drop sound effects (by folder: the deepest folder
named like ``music`` or like ``sfx``/``sounds`` decides; a few per-package patterns, read off each package's
layout, add music that lives elsewhere), open ``.pk3`` archives (zip) and render tracker modules with
``openmpt123`` (a Debian tool; once through, no repeat, capped at 6 minutes, no dither: deterministic) to FLAC, keep
tracks of at least ``min_seconds`` of decoded audio (as the project's ingestion measures it; a file it rejects is
decoded to FLAC with ffmpeg first), drop byte-identical files, the second format of the same track, SuperTuxKart's
"fast" variants and near-identical audio. None of these packages ships MIDI. Labels: album = the soundtrack (the game), composer from the tags and from the package's own credit files
(:data:`PACKAGES` cites which file says what; unknown = empty, never guessed).

Output (built in a temporary sibling folder, then renamed, so a failure never leaves a half corpus)::

    DIR/audio/<album>/<file>     hard links to the installed files (copies across file systems), or rendered files
    DIR/rendered/<package>/...   rendered modules, raw PCM and files extracted from archives
    DIR/playlists/*.m3u8         one playlist per album, one per composer heard on more than one album
    DIR/labels.csv               path,album,composer,package,title (path = the audio path in the DB)
    DIR/skipped.csv              every audio file left out, with the reason
    DIR/music.db                 built by spotifai.ingest from audio/ and playlists/
    DIR/summary.json             written last; its presence marks a complete corpus

Hard links rather than symlinks: the M3U ingestion resolves symlinks, so a symlinked file would be ingested twice
(once under audio/, once under its target). After ingestion each track's album is set to the soundtrack and its
artist to the composer (NULL when unknown, instead of the folder name ingest derives for untagged files).
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import mutagen
import numpy as np
import soundfile

SETUP_SCRIPT = "scripts/real_corpus.sh"
AUDIO_EXT = frozenset({".ogg", ".mp3", ".wav", ".flac", ".opus"})
MODULE_EXT = frozenset({".mod", ".xm", ".it", ".s3m"})
ARCHIVE_EXT = frozenset({".pk3"})
MUSIC_DIRS = frozenset({"music", "musics", "cdtracks"})
SFX_DIRS = frozenset({"sfx", "soundfx", "sound", "sounds", "effects", "voices", "wav", "audio", "titles"})
MAX_RENDER_SECONDS = 360
RENDER_RATE = 44100
NEAR_DUPLICATE_CORRELATION = 0.9


@dataclass(frozen=True)
class Raw:
    """Header-less PCM: soundfile RAW parameters."""

    samplerate: int
    channels: int
    subtype: str


@dataclass(frozen=True)
class Package:
    """One Debian package: its album, the music outside music folders, and credits read from its own files.

    ``music``: fnmatch patterns (on the installed path, or ``archive.pk3/member``) that are music whatever their
    folder. ``composers``: fnmatch pattern on the file name (or, with a ``/``, on the whole path) -> composer,
    each derived from the credit file cited beside it.
    ``raw``: file patterns -> PCM layout for header-less audio.
    """

    album: str
    music: tuple[str, ...] = ()
    composers: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Raw] = field(default_factory=dict)


# Composer spellings that name the same person in these packages' tags and credit files (the evidence beside each).
ALIASES = {
    # widelands-data: tags "Nikola Whallon (saturn)", "Klaus Halfmann aka Hasi50"; data/txts/developers.json,
    # "Musicians": "Nikola Whallon (Saturn)", "Klaus Halfmann (Hasi50)"
    "Nikola Whallon (saturn)": "Nikola Whallon",
    "Klaus Halfmann aka Hasi50": "Klaus Halfmann",
    # supertuxkart-data: music/West.music "Chris Leutwyler (Krobonil)"; Ozoneone/OzoneOne/0zone0ne in the .music
    # files; cocoa_river.ogg and Gran_Paradiso_*.ogg are tagged "Max Freeman" where their .music files say
    # "Ozoneone" / "0zone0ne"
    "Chris Leutwyler (Krobonil)": "Chris Leutwyler",
    "Krobonil": "Chris Leutwyler",
    "Ozoneone": "0zone0ne",
    "OzoneOne": "0zone0ne",
    "Max Freeman": "0zone0ne",
    "Keith Baylis aka Vim": "Keith Baylis",
    "Heuchi1 (contains material from NASA)": "Heuchi1",
    "http://opengameart.org, from bart": "bart",
    # nexuiz-music (tags of music.pk3): brainsukker.ogg artist "Gerd (elysis) Raudenbusch", album
    # "http://www.elysis.de"; neuronal-diving.ogg artist "elysis", album "(c) by Gerd Raudenbusch"
    "Gerd (elysis) Raudenbusch": "Gerd Raudenbusch",
    "elysis": "Gerd Raudenbusch",
    "www.elysis.de": "Gerd Raudenbusch",
    # ufoai-music: tags "Christian \"Crystan\" Hoffmann", "Manuel 'Vanethian' Marino"; debian/copyright lists
    # "Christian Hoffmann" and 'Manuel "Vanethian" Marino'
    'Christian "Crystan" Hoffmann': "Christian Hoffmann",
    "Manuel 'Vanethian' Marino": 'Manuel "Vanethian" Marino',
}
# Tag values that name no person.
_NOT_A_NAME = re.compile(r"^(https?://|www\.)|^<?unknown>?$|^n/?a$", re.IGNORECASE)

PACKAGES: dict[str, Package] = {
    # /usr/share/doc/asc-music/copyright: the package "consists of three mp3 files" (frontiers, time_to_strike,
    # machine_wars); "Files: * Copyright: 2002 Michael Kievernagel"
    "asc-music": Package("Advanced Strategic Command", composers={"*.mp3": "Michael Kievernagel"}),
    # /usr/share/doc/fb-music-high/copyright: "Upstream Author: Matthias Le Bidan" of its one file, the module
    # of frozen-mainzik-2p (frozen-bubble-data ships the same track as .ogg, which is kept and inherits this).
    "fb-music-high": Package("Frozen Bubble", music=("*/frozen-bubble/snd/*zik*",),
                             composers={"frozen-mainzik-2p.xm": "Matthias Le Bidan"}),
    "frozen-bubble-data": Package("Frozen Bubble", music=("*/frozen-bubble/snd/*zik*",)),
    "nexuiz-music": Package("Nexuiz"),  # composers from the tags only (debian/copyright names no composer)
    "planetblupi-music-ogg": Package("Planet Blupi"),  # no composer named per track
    # /usr/share/doc/ufoai-music/copyright lists each group of music files with its copyright holders; a file
    # is credited to the one holder of its group whose name or handle its file name carries.
    "ufoai-music": Package("UFO: Alien Invasion", composers={
        "van_*": 'Manuel "Vanethian" Marino', "David0*": "David Reeves (Destructavator)",
        "azrael1.ogg": "azrael1322", "karlmacklin_*": "Karl Macklin",  # group 1
        "Crystan-*": "Christian Hoffmann", "Marine*": '"Marine" Baklund', "TheThings-Slippycurb.ogg": "Slippycurb",
        "Psymong*": "Simon Green (Psymong)", "AlexFightmare.ogg": "Alex Parker", "ufo[12].ogg": "Paul Bee",
    }),  # ufo1/ufo2 are tagged "paulb"; group 3 lists "Paul Bee"
    # sounds/xbsng*.raw are the background songs (xblast's sdl_sound.c: "Backgr. song", stereo, unsigned 8-bit,
    # SAMPLE_RATE 22050); the other .raw files are effects.
    "xblast-tnt-musics": Package(
        "XBlast TNT", music=("*/sounds/xbsng*.raw",), raw={"*.raw": Raw(22050, 2, "PCM_U8")}),
    # /usr/share/doc/widelands-data/copyright: "Files: data/music/ingame_24.ogg ..._25 ..._26 Copyright: Stuart
    # Marshall"; the other composers from the tags
    "widelands-data": Package("Widelands", composers={"ingame_2[456].ogg": "Stuart Marshall"}),
    # data/base/titles/Credits.lua, MUSIC: "The Beginning" by 4t thieves, "Bleostrada" by stud (as tagged), Arvid
    # Picciani (tagged on his tracks), Nick "Nario" Hagman (no file named)
    "freedroidrpg-data": Package("FreedroidRPG"),
    # /usr/share/games/warmux/authors.xml: Olivier MILITON "Music", Mike ERRECART "Monkey bubble music",
    # Sébastien SABOURET "Musics: *ux"
    "warmux-data": Package("Warmux", composers={
        "Olivier_Militon.-.*": "Olivier Militon", "Mike_Errecart.-.Monkey-bubble.ogg": "Mike Errecart",
        "*ux.ogg": "Sébastien Sabouret"}),
    "flare-game": Package("Flare"),  # cutscenes/credits.txt lists two composers, no track per composer
    # music/readme ("Music Authors List ... composed:"); credits1-cp.ogg's own tag and the readme's e-mail
    # (kristianpicon@) spell the first name with a K, the readme's heading with a C.
    "extremetuxracer-data": Package("Extreme Tux Racer", composers={
        "*-jt.ogg": "Joseph Toscano", "credits1-cp.ogg": "Kristian Picon", "freezingpoint.ogg": "Grady O'Connell",
        "*-ks.ogg": "K. Schroeder"}),
    # /usr/share/games/megaglest/docs/AUTHORS.data.txt: "The Romans faction uses music tracks from Mattias
    # Westlund's album"; "Aminos for the indians and persian background music", "Margaras for the egypt
    # background music", "manolo camp for the background music (norsemen)"
    "megaglest-data": Package("MegaGlest", composers={
        "*/romans/music/*": "Mattias Westlund", "*/indian/music/*": "Aminos", "*/persian/music/*": "Aminos",
        "*/egypt/music/*": "Margaras", "*/norsemen/music/*": "manolo camp"}),
    "xmoto-data": Package("X-Moto"),  # composers from the tags only
    # music/default/default.xml: <song title="Robert van Herk - City Blues" ...>, "Pronobozo - Lincity"
    "lincity-ng-data": Package("LinCity-NG", composers={
        "01 - pronobozo - lincity.ogg": "Pronobozo", "0[23] - Robert van Herk - *": "Robert van Herk"}),
    "powermanga-data": Package("Powermanga", music=("*/sound/handheld_console/music_*",)),
    "scorched3d-data": Package("Scorched 3D"),
    "solarwolf": Package("SolarWolf"),
    # Track music outside data/music: the files named by the tracks' .music descriptors, which also give each
    # file's title and composer (read at build time by _music_descriptors).
    "supertuxkart-data": Package("SuperTuxKart", music=(
        "*/tracks/ancient_colosseum_labyrinth/Battle_Theme_1.ogg", "*/tracks/battleisland/Gran_Paradiso_*.ogg",
        "*/tracks/cave/beneath_the_rabbit_hole.ogg", "*/tracks/introcutscene2/intro2.ogg")),
}


class MissingPackage(RuntimeError):
    """A package of the corpus is not installed."""


# --------------------------------------------------------------------------------------------- classification


def classify(path: str, package: Package | None = None) -> str | None:
    """None when ``path`` (an installed path, or ``archive.pk3/member``) is music by its location, else the reason
    it is not: the deepest folder named like a music folder or a sound-effects folder decides; the package's
    ``music`` patterns override."""
    suffix = Path(path).suffix.lower()
    if suffix not in AUDIO_EXT | MODULE_EXT and not (package and any(fnmatch.fnmatch(path, p) for p in package.raw)):
        return "not audio"
    if package and any(fnmatch.fnmatch(path, p) for p in package.music):
        return None
    for part in reversed(Path(path).parts[:-1]):
        name = part.lower()
        if name in MUSIC_DIRS:
            return None
        if name in SFX_DIRS:
            return f"sound effects folder ({part}/)"
    return "not in a music folder"


def clean_name(name: str | None) -> str:
    """A composer name with whitespace and ``<url>`` removed and the known aliases folded; joint credits
    ("A & B", "A and B") as "A & B" in sorted order; "" for none or for a value that names no person (a URL)."""
    name = " ".join(re.sub(r"<[^>]*>", "", name or "").split())
    name = ALIASES.get(name, name)
    if _NOT_A_NAME.search(name):
        return ""
    parts = [ALIASES.get(p.strip(), p.strip()) for p in re.split(r" & | and ", name) if p.strip()]
    return " & ".join(sorted(set(parts))) if len(parts) > 1 else name


def _dpkg_list(package: str) -> list[str]:
    proc = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if proc.returncode != 0:
        raise MissingPackage(f"Debian package {package} is not installed; run `bash {SETUP_SCRIPT}` first")
    return [line for line in proc.stdout.splitlines() if line.startswith("/")]


def _music_descriptors(files: Iterable[str]) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """SuperTuxKart's ``*.music`` files: {audio file name: (title, composer)} and the names of the fast variants."""
    credits, fast = {}, set()
    for f in files:
        if not f.endswith(".music") or not os.path.isfile(f):
            continue
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError:
            continue
        name = root.get("file")
        if name:
            credits[name] = (root.get("title", ""), root.get("composer", ""))
        if root.get("fast-filename"):
            fast.add(root.get("fast-filename"))
    return credits, fast


# ------------------------------------------------------------------------------------------------ decoding


def playable(src: Path, out: Path) -> tuple[Path, float]:
    """(file, seconds): ``src`` when the project's ingestion accepts it (its duration decodes the end of the file),
    else ``src`` decoded by Debian's ffmpeg to FLAC at ``out`` (libsndfile over-counts the frames of some MP3s
    without a Xing header, and ingestion rejects those as truncated)."""
    from spotifai.ingest.audio_files import UnreadableAudio, read_audio_file

    try:
        return src, read_audio_file(src).duration
    except UnreadableAudio:
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([exe, "-v", "error", "-nostdin", "-y", "-i", str(src), "-map", "0:a:0", "-c:a", "flac",
                           "-map_metadata", "0", "-fflags", "+bitexact", "-flags:a", "+bitexact", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {src}: {proc.stderr.strip()[-300:]}")
    return out, read_audio_file(out).duration


def render_module(src: Path, dst: Path) -> None:
    """Render a tracker module once through (no repeat, at most MAX_RENDER_SECONDS) to 16-bit FLAC with Debian's
    openmpt123; no dither, so the output is the same on every run."""
    exe = shutil.which("openmpt123")
    if exe is None:
        raise MissingPackage(f"openmpt123 is not installed; run `bash {SETUP_SCRIPT}` first")
    dst.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "--batch", "--quiet", "--no-float", "--dither", "0", "--samplerate", str(RENDER_RATE),
           "--repeat", "0", "--end-time", str(MAX_RENDER_SECONDS), "--force", "-o", str(dst), "--", str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not dst.exists():
        raise RuntimeError(f"openmpt123 failed on {src}: {proc.stderr.strip()[-300:]}")


def render_raw(src: Path, dst: Path, raw: Raw) -> None:
    """Header-less PCM -> FLAC (the samples unchanged)."""
    data, rate = soundfile.read(str(src), samplerate=raw.samplerate, channels=raw.channels, subtype=raw.subtype,
                                format="RAW", dtype="int16")
    dst.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(dst), data, rate, format="FLAC", subtype="PCM_16")


def _tags(path: Path) -> dict[str, str]:
    try:
        tagged = mutagen.File(str(path), easy=True)
    except Exception:
        return {}
    out = {}
    for key in ("title", "artist", "composer", "album"):
        try:
            value = (tagged.tags or {}).get(key) if tagged is not None else None
        except (KeyError, ValueError, TypeError):
            value = None
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value and str(value).strip():
            out[key] = str(value).strip()
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ collecting


@dataclass
class Track:
    package: str
    source: str  # the installed path, or archive.pk3/member
    file: Path  # a playable audio file (installed, extracted or rendered)
    album: str
    composer: str = ""
    title: str = ""
    seconds: float = 0.0
    rendered: bool = False


def _collect(packages: dict[str, Package], list_files: Callable[[str], list[str]], rendered: Path,
             min_seconds: float, skipped: list[tuple[str, str, str]]) -> list[Track]:
    """Every music track of ``packages`` (rendering into ``rendered``), in package and path order."""
    tracks: list[Track] = []
    for name, pkg in packages.items():
        files = sorted(list_files(name))
        credits, fast = _music_descriptors(files)
        for f in files:
            if not os.path.isfile(f):
                continue
            if Path(f).suffix.lower() in ARCHIVE_EXT:
                tracks += _archive(name, pkg, Path(f), rendered / name, min_seconds, skipped)
                continue
            reason = classify(f, pkg)
            if reason == "not audio":
                continue
            if reason is None and os.path.basename(f) in fast:
                reason = "fast variant of another track (its .music file's fast-filename)"
            if reason is not None:
                skipped.append((name, f, reason))
                continue
            src, suffix = Path(f), Path(f).suffix.lower()
            try:
                raw = next((r for p, r in pkg.raw.items() if fnmatch.fnmatch(f, p)), None)
                if raw is not None or suffix in MODULE_EXT:
                    out = rendered / name / (src.stem + ".flac")
                    render_raw(src, out, raw) if raw is not None else render_module(src, out)
                    track = Track(name, f, out, pkg.album, rendered=True)
                else:
                    track = Track(name, f, src, pkg.album)
                file, track.seconds = playable(track.file, rendered / name / (src.stem + ".decoded.flac"))
                track.rendered |= file != track.file
                track.file = file
            except MissingPackage:
                raise
            except Exception as exc:
                skipped.append((name, f, f"unreadable ({type(exc).__name__}: {exc})"))
                continue
            if track.seconds < min_seconds:
                skipped.append((name, f, f"shorter than {min_seconds:g} s ({track.seconds:.1f} s)"))
                continue
            title, composer = credits.get(src.name, ("", ""))
            _label(track, pkg, title, composer)
            tracks.append(track)
    return tracks


def _archive(name: str, pkg: Package, archive: Path, out_dir: Path, min_seconds: float,
             skipped: list[tuple[str, str, str]]) -> list[Track]:
    """Music members of a Quake-style .pk3 (zip) archive, extracted unchanged into ``out_dir``."""
    tracks = []
    with zipfile.ZipFile(archive) as z:
        for member in sorted(z.namelist()):
            path = f"{archive}/{member}"
            if member.endswith("/"):
                continue
            reason = classify(path, pkg)
            if reason == "not audio":
                continue
            if reason is not None:
                skipped.append((name, path, reason))
                continue
            out = out_dir / Path(member).name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(member))
            track = Track(name, path, out, pkg.album, rendered=True)
            try:
                track.file, track.seconds = playable(out, out.with_suffix(".decoded.flac"))
            except Exception as exc:
                skipped.append((name, path, f"unreadable ({type(exc).__name__}: {exc})"))
                out.unlink()
                continue
            if track.seconds < min_seconds:
                skipped.append((name, path, f"shorter than {min_seconds:g} s ({track.seconds:.1f} s)"))
                out.unlink()
                continue
            _label(track, pkg, "", "")
            tracks.append(track)
    return tracks


def _label(track: Track, pkg: Package, title: str, composer: str) -> None:
    """Title and composer: the package's credits first (mapping, then descriptor), then the tags."""
    tags = _tags(track.file)
    base = Path(track.source).name
    credited = next((c for p, c in pkg.composers.items()
                     if fnmatch.fnmatchcase(track.source if "/" in p else base, p)), "")
    track.composer = (clean_name(credited or composer) or clean_name(tags.get("composer"))
                      or clean_name(tags.get("artist")))
    track.title = " ".join((title or tags.get("title") or Path(base).stem.replace("_", " ")).split())


def _deduplicate(tracks: list[Track], skipped: list[tuple[str, str, str]]) -> list[Track]:
    """Drop byte-identical files; then a second format of the same track (same album and file stem; an audio
    recording is kept over a rendered module, and inherits its composer); then near-identical audio (same album,
    same length to 0.1 s, waveform correlation > NEAR_DUPLICATE_CORRELATION over the first minute)."""
    by_hash: dict[str, Track] = {}
    for t in tracks:
        h = _sha256(t.file)
        if h in by_hash:
            skipped.append((t.package, t.source, f"identical to {by_hash[h].source}"))
        else:
            by_hash[h] = t
    order = {id(t): i for i, t in enumerate(tracks)}
    kept: dict[tuple[str, str], Track] = {}
    for t in sorted(by_hash.values(), key=lambda t: (Path(t.source).suffix.lower() in MODULE_EXT, order[id(t)])):
        key = (t.album, Path(t.source).stem.lower())
        if key in kept:
            skipped.append((t.package, t.source, f"another format of {kept[key].source}"))
            kept[key].composer = kept[key].composer or t.composer
        else:
            kept[key] = t
    out: list[Track] = []
    for t in sorted(kept.values(), key=lambda t: order[id(t)]):
        twin = next((u for u in out if u.album == t.album and abs(u.seconds - t.seconds) < 0.1), None)
        r = _correlation(twin.file, t.file) if twin is not None else 0.0
        if r > NEAR_DUPLICATE_CORRELATION:
            skipped.append((t.package, t.source, f"near-identical audio to {twin.source} (correlation {r:.2f})"))
        else:
            out.append(t)
    return out


def _correlation(a: Path, b: Path, seconds: float = 60.0) -> float:
    """Pearson correlation of the mono waveforms of ``a`` and ``b`` over their first ``seconds``."""
    xs = []
    for path in (a, b):
        with soundfile.SoundFile(str(path)) as f:
            x = f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True).mean(axis=1)
        xs.append(x)
    n = min(len(xs[0]), len(xs[1]))
    if n < 2 or not xs[0][:n].std() or not xs[1][:n].std():
        return 0.0
    return float(np.corrcoef(xs[0][:n], xs[1][:n])[0, 1])


# ------------------------------------------------------------------------------------------------- writing


def _safe(name: str) -> str:
    return re.sub(r"[/\\\x00:]+", "-", name).strip(" .") or "untitled"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_playlists(folder: Path, tracks: list[Track], audio_paths: list[str]) -> list[Path]:
    """One M3U8 per album, one per composer heard on more than one album; entries relative to the playlist."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tracks):
        groups[f"album: {t.album}"].append(i)
    albums_of: dict[str, set[str]] = defaultdict(set)
    for t in tracks:
        if t.composer:
            albums_of[t.composer].add(t.album)
    for i, t in enumerate(tracks):
        if t.composer and len(albums_of[t.composer]) > 1:
            groups[f"composer: {t.composer}"].append(i)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, idx in sorted(groups.items()):
        path = folder / (_safe(name.replace(": ", " - ")) + ".m3u8")
        lines = ["#EXTM3U", f"#PLAYLIST:{name}"]
        for i in idx:
            t = tracks[i]
            lines.append(f"#EXTINF:{round(t.seconds)},{t.composer + ' - ' if t.composer else ''}{t.title}")
            lines.append(os.path.relpath(audio_paths[i], folder))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(path)
    return out


def _write_csv(path: Path, header: list[str], rows: Iterable[Iterable]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _build_db(work: Path, final: Path, playlists: list[Path], tracks: list[Track], audio_paths: list[str]):
    """music.db by the project's ingestion, then album = soundtrack and artist = composer (NULL when unknown); the
    paths the DB holds are rewritten from the temporary folder to the final one."""
    from spotifai import database
    from spotifai.ingest import ingest

    conn = database.connect(work / "music.db")
    try:
        summary = ingest(conn, folders=[work / "audio"], m3u=playlists)
        old, new = str(work.resolve()), str(final)
        with conn:
            for t, path in zip(tracks, audio_paths, strict=True):
                row = conn.execute("SELECT id FROM tracks WHERE audio_path = ?", (path,)).fetchone()
                if row is None:
                    continue
                artist = database.get_or_create_artist(conn, t.composer) if t.composer else None
                album = database.get_or_create_album(conn, t.album, None)
                conn.execute("UPDATE tracks SET artist_id = ?, album_id = ? WHERE id = ?", (artist, album, row[0]))
            n = len(old) + 1
            conn.execute("UPDATE tracks SET audio_path = ? || substr(audio_path, ?), uri = 'file:' || ? || "
                         "substr(uri, ?) WHERE audio_path LIKE ? || '/%'", (new, n, new, n + 5, old))
            conn.execute("UPDATE playlists SET source_key = 'm3u:' || ? || substr(source_key, ?) "
                         "WHERE source_key LIKE 'm3u:' || ? || '/%'", (new, n + 4, old))
            conn.execute("DELETE FROM albums WHERE id NOT IN (SELECT album_id FROM tracks WHERE album_id IS NOT NULL)")
            conn.execute("DELETE FROM artists WHERE id NOT IN (SELECT artist_id FROM tracks WHERE artist_id IS NOT NULL)"
                         " AND id NOT IN (SELECT artist_id FROM albums WHERE artist_id IS NOT NULL)")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    return summary


def build_real_corpus(directory: str | Path, *, force: bool = False, min_seconds: float = 30.0,
                      packages: dict[str, Package] | None = None,
                      list_files: Callable[[str], list[str]] = _dpkg_list) -> dict:
    """Build the corpus into ``directory`` (see the module docstring) and return the summary. A complete corpus
    (summary.json present) is kept as it is unless ``force``."""
    final = Path(directory).resolve()
    if (final / "summary.json").exists() and not force:
        summary = json.loads((final / "summary.json").read_text())
        return {**summary, "reused": True}
    packages = PACKAGES if packages is None else packages
    for name in packages:  # fail before any work when a package is missing
        list_files(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.build-", dir=final.parent))
    try:
        skipped: list[tuple[str, str, str]] = []
        tracks = _deduplicate(_collect(packages, list_files, work / "rendered", min_seconds, skipped), skipped)
        names: set[str] = set()
        audio_rel, audio_paths = [], []
        for t in tracks:
            stem, suffix = Path(t.source).stem, t.file.suffix.lower()
            rel = f"audio/{_safe(t.album)}/{_safe(stem)}{suffix}"
            k = 2
            while rel.lower() in names:
                rel, k = f"audio/{_safe(t.album)}/{_safe(stem)} ({k}){suffix}", k + 1
            names.add(rel.lower())
            _link(t.file, work / rel)
            audio_rel.append(rel)
            audio_paths.append(str(work.resolve() / rel))
        playlists = _write_playlists(work / "playlists", tracks, audio_paths)
        final_paths = [str(final / rel) for rel in audio_rel]
        _write_csv(work / "labels.csv", ["path", "album", "composer", "package", "title"],
                   ([p, t.album, t.composer, t.package, t.title] for p, t in zip(final_paths, tracks, strict=True)))
        _write_csv(work / "skipped.csv", ["package", "path", "reason"], skipped)
        ingest_summary = _build_db(work, final, playlists, tracks, audio_paths)
        summary = _summary(tracks, skipped, playlists, ingest_summary)
        (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
        work.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


def _summary(tracks: list[Track], skipped, playlists: list[Path], ingest_summary) -> dict:
    per_album = Counter(t.album for t in tracks)
    reasons = Counter(re.sub(r" \(.*\)$", "", r) if not r.startswith("sound effects") else r for _, _, r in skipped)
    return {
        "tracks": len(tracks),
        "albums": len(per_album),
        "hours": round(sum(t.seconds for t in tracks) / 3600, 2),
        "tracks_with_composer": sum(1 for t in tracks if t.composer),
        "composers": dict(sorted(Counter(t.composer for t in tracks if t.composer).items())),
        "tracks_per_album": dict(sorted(per_album.items())),
        "hours_per_album": {a: round(sum(t.seconds for t in tracks if t.album == a) / 3600, 2)
                            for a in sorted(per_album)},
        "playlists": len(playlists),
        "rendered": sum(1 for t in tracks if t.rendered),
        "skipped": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "skipped_files": len(skipped),
        "ingest": {"tracks_added": ingest_summary.tracks_added, "skipped_files": ingest_summary.skipped_files,
                   "unmatched_entries": ingest_summary.unmatched_entries, "errors": ingest_summary.error_count},
    }
