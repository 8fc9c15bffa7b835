"""The real-music development corpus builder on a fake package tree (no Debian packages needed), plus one build
from the installed packages that skips when they are not there."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile

from spotifai import database
from spotifai import real_corpus as rc

RATE = 8000


def _noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32) * 0.1


def _write(path: Path, seconds: float, seed: int, *, tags: dict | None = None, signal=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), _noise(seconds, seed) if signal is None else signal, RATE)
    if tags:
        f = mutagen.File(str(path), easy=True)
        for k, v in tags.items():
            f[k] = v
        f.save()


@pytest.fixture
def fake(tmp_path):
    """Two fake games: their installed files and the Package entries that describe them."""
    root = tmp_path / "usr/share/games"
    _write(root / "alpha/music/theme.ogg", 31, 0, tags={"artist": "Ann Author", "title": "Alpha Theme"})
    shutil.copy(root / "alpha/music/theme.ogg", root / "alpha/music/theme_copy.ogg")  # byte-identical
    _write(root / "alpha/music/theme.wav", 31, 1)  # another format of theme (same stem)
    _write(root / "alpha/music/battle.flac", 32, 2, tags={"artist": "www.example.com"})  # a URL is no name
    _write(root / "alpha/music/battle_mix.flac", 32, 3, signal=_noise(32, 2) + 0.1 * _noise(32, 3))  # ~ battle
    _write(root / "alpha/music/jingle.ogg", 5, 4)  # too short
    _write(root / "alpha/sounds/explosion.wav", 40, 5)  # sound effect, however long
    _write(root / "alpha/snd/intro_zik.ogg", 33, 6)  # music outside a music folder, by the package's pattern
    _write(root / "beta/data/music/menu.ogg", 34, 7, tags={"composer": "Bo Writer"})
    _write(root / "beta/data/music/credits.ogg", 35, 8)
    _write(root / "beta/data/sound/music/deep.ogg", 36, 9)  # the deepest named folder decides: music
    raw = (np.random.default_rng(10).integers(0, 256, size=31 * 11025 * 2)).astype(np.uint8)
    (root / "beta/songs").mkdir(parents=True)
    raw.tofile(root / "beta/songs/song1.raw")
    packages = {
        "alpha-data": rc.Package("Alpha Game", music=("*/alpha/snd/*zik*",), composers={"battle*.flac": "Cy Credit"}),
        "beta-music": rc.Package("Beta Game", music=("*/beta/songs/*.raw",),
                                 composers={"credits.ogg": "Ann Author"},
                                 raw={"*.raw": rc.Raw(11025, 2, "PCM_U8")}),
    }
    listing = {"alpha-data": root / "alpha", "beta-music": root / "beta"}

    def list_files(name):
        if name not in listing:
            raise rc.MissingPackage(f"Debian package {name} is not installed; run `bash {rc.SETUP_SCRIPT}` first")
        base = listing[name]
        return [str(base)] + [str(p) for p in sorted(base.rglob("*"))]

    return packages, list_files, tmp_path / "corpus"


def test_classify_folders_and_patterns():
    stk = rc.PACKAGES["supertuxkart-data"]
    assert rc.classify("/usr/share/freedroidrpg/data/sound/music/town.ogg") is None
    assert rc.classify("/usr/share/freedroidrpg/data/sound/effects/x.ogg") == "sound effects folder (effects/)"
    assert rc.classify("/usr/share/games/megaglest/tilesets/forest/sounds/night.ogg").startswith("sound effects")
    assert rc.classify("/usr/share/games/megaglest/techs/megapack/factions/magic/music/m.ogg") is None
    assert rc.classify("/usr/share/games/nexuiz/data/music.pk3/sound/cdtracks/stairs.ogg") is None
    assert rc.classify("/usr/share/games/xmoto/Textures/Musics/menu.ogg") is None
    assert rc.classify("/usr/share/games/supertuxkart/data/sfx/horn.ogg").startswith("sound effects")
    assert rc.classify("/usr/share/games/supertuxkart/data/tracks/cave/beneath_the_rabbit_hole.ogg", stk) is None
    assert rc.classify("/usr/share/games/supertuxkart/data/tracks/scotland/sheep.ogg", stk) == "not in a music folder"
    assert rc.classify("/usr/share/games/x/music/readme.txt") == "not audio"
    assert rc.classify("/usr/share/games/solarwolf/data/music/arg.xm") is None


def test_clean_name_aliases_urls_and_joint_credits():
    assert rc.clean_name("  Nikola   Whallon (saturn) ") == "Nikola Whallon"
    assert rc.clean_name("Krobonil & OzoneOne") == rc.clean_name("Ozoneone and Krobonil") == "0zone0ne & Chris Leutwyler"
    assert rc.clean_name("Alexandr Zhelanov <https://soundcloud.com/alexandr-zhelanov>") == "Alexandr Zhelanov"
    assert rc.clean_name("www.karlmacklin.com") == rc.clean_name("<Unknown>") == rc.clean_name(None) == ""


def test_build_on_a_fake_tree(fake):
    packages, list_files, out = fake
    summary = rc.build_real_corpus(out, packages=packages, list_files=list_files)
    labels = list(csv.DictReader(open(out / "labels.csv", encoding="utf-8")))
    by_name = {Path(r["path"]).name: r for r in labels}
    assert sorted(by_name) == ["battle.flac", "credits.ogg", "deep.ogg", "intro_zik.ogg", "menu.ogg", "song1.flac",
                               "theme.ogg"]
    assert summary["tracks"] == 7 and summary["tracks_per_album"] == {"Alpha Game": 3, "Beta Game": 4}
    skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(open(out / "skipped.csv"))}
    assert skipped["theme_copy.ogg"].startswith("identical to")
    assert skipped["theme.wav"].startswith("another format of")
    assert skipped["battle_mix.flac"].startswith("near-identical audio to")
    assert skipped["jingle.ogg"].startswith("shorter than 30 s")
    assert skipped["explosion.wav"] == "sound effects folder (sounds/)"
    # composers: the package's credit mapping beats the tags; tags otherwise; unknown stays empty
    assert by_name["theme.ogg"]["composer"] == "Ann Author" and by_name["theme.ogg"]["title"] == "Alpha Theme"
    assert by_name["battle.flac"]["composer"] == "Cy Credit"
    assert by_name["menu.ogg"]["composer"] == "Bo Writer"
    assert by_name["credits.ogg"]["composer"] == "Ann Author"
    assert by_name["deep.ogg"]["composer"] == by_name["intro_zik.ogg"]["composer"] == ""
    assert by_name["song1.flac"]["package"] == "beta-music"
    assert soundfile.info(by_name["song1.flac"]["path"]).samplerate == 11025
    # playlists: one per album, one for the composer heard on both albums (and none for one-album composers)
    names = sorted(p.name for p in (out / "playlists").iterdir())
    assert names == ["album - Alpha Game.m3u8", "album - Beta Game.m3u8", "composer - Ann Author.m3u8"]
    text = (out / "playlists/composer - Ann Author.m3u8").read_text()
    assert "#PLAYLIST:composer: Ann Author" in text and text.count("../audio/") == 2
    # the DB: every labelled path, album = soundtrack, artist = composer or none, paths in the final folder
    conn = database.connect(out / "music.db", readonly=True)
    rows = {r["audio_path"]: r for r in conn.execute(
        "SELECT t.audio_path, t.uri, ar.name AS artist, al.title AS album FROM tracks t"
        " LEFT JOIN artists ar ON ar.id = t.artist_id LEFT JOIN albums al ON al.id = t.album_id")}
    assert set(rows) == {r["path"] for r in labels}
    for r in labels:
        assert os.path.isfile(r["path"]) and rows[r["path"]]["uri"] == "file:" + r["path"]
        assert rows[r["path"]]["album"] == r["album"] and (rows[r["path"]]["artist"] or "") == r["composer"]
    assert {r[0] for r in conn.execute("SELECT name FROM artists")} == {"Ann Author", "Bo Writer", "Cy Credit"}
    assert {r[0] for r in conn.execute("SELECT title FROM albums")} == {"Alpha Game", "Beta Game"}
    assert {r[0] for r in conn.execute("SELECT name FROM playlists")} == {
        "album: Alpha Game", "album: Beta Game", "composer: Ann Author"}
    assert all(k.startswith(f"m3u:{out.resolve()}/playlists/") for (k,) in conn.execute("SELECT source_key FROM playlists"))
    conn.close()
    assert json.loads((out / "summary.json").read_text())["tracks"] == 7
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    # a second run keeps the complete corpus; force rebuilds it the same
    before = (out / "labels.csv").read_text()
    assert rc.build_real_corpus(out, packages=packages, list_files=list_files)["reused"] is True
    again = rc.build_real_corpus(out, packages=packages, list_files=list_files, force=True)
    assert "reused" not in again and (out / "labels.csv").read_text() == before


def test_failure_leaves_no_half_corpus(fake, monkeypatch):
    packages, list_files, out = fake
    with pytest.raises(rc.MissingPackage, match="real_corpus.sh"):
        rc.build_real_corpus(out, packages={**packages, "gamma-music": rc.Package("G")}, list_files=list_files)
    assert not out.exists()

    def broken(*args):
        raise RuntimeError("ingest broke")

    monkeypatch.setattr(rc, "_build_db", broken)
    with pytest.raises(RuntimeError, match="ingest broke"):
        rc.build_real_corpus(out, packages=packages, list_files=list_files)
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_missing_package_names_the_setup_script():
    if shutil.which("dpkg") is None:
        pytest.skip("no dpkg")
    with pytest.raises(rc.MissingPackage, match="no-such-spotifai-package.*scripts/real_corpus.sh"):
        rc._dpkg_list("no-such-spotifai-package")


def _installed(pkg: str) -> bool:
    return shutil.which("dpkg") is not None and subprocess.run(
        ["dpkg", "-s", pkg], capture_output=True).returncode == 0


@pytest.mark.skipif(not (_installed("lincity-ng-data") and _installed("solarwolf") and shutil.which("openmpt123")),
                    reason="the corpus packages are not installed (bash scripts/real_corpus.sh)")
def test_build_from_installed_packages(tmp_path):
    subset = {k: rc.PACKAGES[k] for k in ("lincity-ng-data", "solarwolf")}
    summary = rc.build_real_corpus(tmp_path / "real", packages=subset)
    assert summary["tracks_per_album"] == {"LinCity-NG": 3, "SolarWolf": 3}
    labels = list(csv.DictReader(open(tmp_path / "real/labels.csv", encoding="utf-8")))
    assert sorted(r["composer"] for r in labels if r["album"] == "LinCity-NG") == [
        "Pronobozo", "Robert van Herk", "Robert van Herk"]
    rendered = [r for r in labels if r["path"].endswith(".flac")]
    assert len(rendered) == 2 and all(soundfile.info(r["path"]).duration <= rc.MAX_RENDER_SECONDS for r in rendered)
