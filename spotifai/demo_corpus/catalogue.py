"""The catalogue of the demo corpus: artist, album and track names, the plan of artists and tracks, the
playlists and the curated tracks of the similarity figure (all from the seed, no audio)."""

from __future__ import annotations

import re

import numpy as np

from spotifai.demo_corpus.genres import GENRES, NEIGHBOURS
from spotifai.demo_corpus.instruments import artist_traits

ARTISTS_PER_GENRE = 4
ALBUMS_PER_ARTIST = 2
MIN_SECONDS = 20.6
MAX_SECONDS = 24.5

#: The curated tracks for the similarity figure: symbol -> what it is.
CURATED: dict[str, str] = {
    "A1": "artist A (genre 1), track 1",
    "A2": "artist A (genre 1), track 2",
    "A3": "artist A (genre 1), track 3",
    "B": "artist B: another artist of genre 1",
    "C": "a track of a genre neighbouring genre 1",
    "D1": "genre 3 (not genre 1 nor a neighbour of it), track 1",
    "D2": "genre 3, track 2 (another artist when possible)",
    "E1": "genre 4 (not genre 1 nor a neighbour of it), track 1",
    "E2": "genre 4, track 2 (another artist when possible)",
}

# ================================================================================================ names

_ADJ = ("Silver Velvet Hollow Golden Quiet Electric Paper Neon Crimson Distant Lunar Glass Wild Slow Northern "
        "Faded Burning Broken Secret Amber Violet Winter Midnight Static Coral Iron Copper Gentle Restless Pale "
        "Hidden Endless Lucky Little Ancient Sleepless Open Blue Tender Hazy").split()
_NOUN = ("Harbor Garden River Signal Mirror Lantern Orchard Comet Meadow Engine Tide Canyon Pilot Feather Circuit "
         "Ember Horizon Island Shadow Window Forest Highway Ocean Letter Compass Cathedral Satellite Valley Thunder "
         "Sparrow Parade Ribbon Atlas Echo Fountain Glacier Monsoon Prairie Station Orbit").split()
_PLURAL = ("Wolves Lanterns Pilots Sparrows Ghosts Satellites Rivers Machines Strangers Hearts Tides Comets "
           "Dreamers Painters Giants Foxes Owls Saints Engines Drifters").split()
_FIRST = ("Mara Jonah Elise Theo Nadia Felix Ruth Otis Iris Silas Vera Linus June Arlo Greta Emil Hazel Rafael "
          "Clara Milo Ada Oscar Leni Hugo Noor Bruno Ines Caspar Lotte Ivo").split()
_LAST = ("Holloway Marsh Abernathy Quill Sandoval Okafor Lindqvist Romero Whitlock Delacroix Hartley Moreau "
         "Castellan Finch Novak Brennan Aalto Ferreira Kowalski Vance Everly Sato Lindgren Ashby").split()
_GENRE_WORDS = {
    "metal": "Grave Iron Abyss Throne Venom Obsidian Wrath Serpent Cinder Doom".split(),
    "dream pop": "Haze Velvet Cloud Mirage Pastel Halo Glow Drift Lull Bloom".split(),
    "singer-songwriter": "Porch Letters Kitchen Railway Sunday Cabin Almanac Harvest Attic Lantern".split(),
    "techno": "Pulse Grid Vector Module Sector Kinetic Voltage Dataflow Bunker Phase".split(),
    "jazz": "Blue Note Smoke Swing Velvet Bourbon Cellar Uptown Quartet Trio Avenue".split(),
    "classical strings": "Sonata Adagio Nocturne Elegy Cantata Fugue Serenade Rondo Aria Suite".split(),
    "hip hop": "Block Cipher Hustle Corner Concrete Flow Crown Verse Boombox Legacy".split(),
    "ambient": "Drift Tundra Aurora Stillness Vapor Horizon Solstice Fathom Lumen Ether".split(),
}
_PLAYLIST_MOODS = ("Late Night,Morning,Rainy Day,Focus,Workout,Roadtrip,Chill,Deep,Essential,Fresh,Golden Hour,"
                   "Weekend,Sunday,Midnight,Study,Evening,Summer,Winter,Coffeehouse").split(",")


def _title(rng: np.random.Generator, words: list[str]) -> str:
    pick = lambda seq: str(seq[int(rng.integers(len(seq)))])  # noqa: E731
    form = int(rng.integers(6))
    if form == 0:
        return f"{pick(_ADJ)} {pick(_NOUN)}"
    if form == 1:
        return f"{pick(_NOUN)} of {pick(words)}"
    if form == 2:
        return f"The {pick(words)} {pick(_NOUN)}"
    if form == 3:
        return pick(words) + " " + pick(["Song", "Waltz", "Blues", "Theme", "Reprise", "Dance", "Lullaby", "Run"])
    if form == 4:
        return f"{pick(_ADJ)} {pick(words)}"
    return f"{pick(_NOUN)} {pick(['No. 1', 'No. 2', 'Part II', 'at Dawn', 'in Blue', 'Again'])}"


def _artist_name(rng: np.random.Generator, genre: str, taken: set[str]) -> str:
    pick = lambda seq: str(seq[int(rng.integers(len(seq)))])  # noqa: E731
    words = _GENRE_WORDS[genre]
    for _ in range(100):
        form = int(rng.integers(5))
        if form == 0:
            name = f"The {pick(_ADJ)} {pick(_PLURAL)}"
        elif form == 1:
            name = f"{pick(_FIRST)} {pick(_LAST)}"
        elif form == 2:
            name = f"{pick(words)} {pick(_NOUN)}"
        elif form == 3:
            groups = {"jazz": ["Trio", "Quartet", "Quintet"], "classical strings": ["Ensemble", "String Quartet"]}
            suffix = pick(groups.get(genre, ["Band", "& The " + pick(_PLURAL)]))
            name = f"{pick(_FIRST)} {pick(_LAST)} {suffix}"
        else:
            name = f"{pick(_ADJ)} {pick(words)}"
        if name not in taken:
            taken.add(name)
            return name
    raise RuntimeError("could not make a unique artist name")  # pragma: no cover


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9 .&-]", "", name).strip() or "untitled"


# ============================================================================================ the plan


_SMALL_ORDER = ["dream pop", "ambient", "jazz", "techno", "hip hop", "metal", "singer-songwriter", "classical strings"]


def plan(seed: int, n_tracks: int) -> tuple[list[dict], list[dict]]:
    """Artists (with traits) and tracks (metadata + render settings), deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 1])
    # small corpora: fewer artists per genre, and below 48 tracks fewer genres (in an order that still
    # allows the curated shape: genre 1, a neighbour, two others)
    n_genres = len(GENRES) if n_tracks >= 48 else max(4, n_tracks // 6)
    genres = [g for g in _SMALL_ORDER if g in GENRES][:n_genres]
    genres.sort(key=list(GENRES).index)
    per_genre = min(ARTISTS_PER_GENRE, max(2, n_tracks // 40))
    taken: set[str] = set()
    artists = []
    for j in range(per_genre):
        for genre in genres:
            arng = np.random.default_rng([seed, 2, list(GENRES).index(genre), j])
            name = _artist_name(arng, genre, taken)
            albums, titles = [], set()
            while len(albums) < ALBUMS_PER_ARTIST:
                t = _title(arng, _GENRE_WORDS[genre])
                if t not in titles:
                    titles.add(t)
                    albums.append(t)
            artists.append(dict(name=name, genre=genre, albums=albums, traits=artist_traits(arng, genre)))
    # formats / rates / channels: balanced so every format is present even in small corpora
    fmt_cycle = ["mp3", "ogg", "flac", "wav", "flac", "ogg", "wav", "flac", "mp3", "flac", "wav", "ogg", "flac", "wav",
                 "mp3"]
    fmts = [fmt_cycle[i % len(fmt_cycle)] for i in range(n_tracks)]
    rng.shuffle(fmts)
    rates = {"wav": ([16000, 22050], [0.6, 0.4], 0.0), "flac": ([16000, 22050, 44100], [0.5, 0.4, 0.1], 0.12),
             "ogg": ([16000, 22050, 44100, 48000], [0.35, 0.35, 0.15, 0.15], 0.3),
             "mp3": ([16000, 22050, 44100, 48000], [0.35, 0.35, 0.15, 0.15], 0.3)}
    popularity_w = rng.lognormal(0.0, 1.2, n_tracks)
    tracks = []
    per_album: dict[tuple[int, int], int] = {}
    titles_by_artist: dict[int, set[str]] = {}
    for i in range(n_tracks):
        a = i % len(artists)
        art = artists[a]
        k = i // len(artists)
        album = k % ALBUMS_PER_ARTIST
        no = per_album[(a, album)] = per_album.get((a, album), 0) + 1
        seen = titles_by_artist.setdefault(a, set())
        title = _title(rng, _GENRE_WORDS[art["genre"]])
        while title in seen:
            title = _title(rng, _GENRE_WORDS[art["genre"]])
        seen.add(title)
        ext = fmts[i]
        srs, p, stereo_p = rates[ext]
        tracks.append(dict(
            index=i, artist=a, genre=art["genre"], album=art["albums"][album], number=no, title=title, ext=ext,
            sr=int(rng.choice(srs, p=p)), channels=2 if rng.random() < stereo_p else 1,
            seconds=round(float(rng.uniform(MIN_SECONDS, MAX_SECONDS)), 2), weight=float(popularity_w[i]),
            popularity=round(float(100 * popularity_w[i] / popularity_w.max()), 2),
        ))
    return artists, tracks


def _sample(rng: np.random.Generator, pool: list[int], weights: np.ndarray, k: int) -> list[int]:
    k = min(k, len(pool))
    w = weights[pool]
    return [int(x) for x in rng.choice(pool, size=k, replace=False, p=w / w.sum())]


def make_playlists(seed: int, artists: list[dict], tracks: list[dict]) -> list[tuple[str, list[int]]]:
    """[(name, [track indices])]: genre, neighbour-mix, artist-focused, artist-radio and party playlists."""
    rng = np.random.default_rng([seed, 3])
    w = np.array([t["weight"] for t in tracks])
    by_genre: dict[str, list[int]] = {}
    by_artist: dict[int, list[int]] = {}
    for t in tracks:
        by_genre.setdefault(t["genre"], []).append(t["index"])
        by_artist.setdefault(t["artist"], []).append(t["index"])
    genres = sorted(by_genre, key=list(GENRES).index)
    n_lists = max(150, len(tracks) // 2) if len(tracks) >= 300 else max(12, len(tracks) // 2)
    out: list[tuple[str, list[int]]] = []
    names: set[str] = set()

    def add(name: str, members: list[int]) -> None:
        if len(members) < 5:
            return
        base, k = name, 2
        while name in names:
            name, k = f"{base} {k}", k + 1
        names.add(name)
        out.append((name, members[:40]))

    # every artist gets one artist-focused playlist when the corpus is big enough for it
    for a, members in sorted(by_artist.items()):
        if len(members) >= 5:
            add(f"This is {artists[a]['name']}", [int(x) for x in rng.permutation(members)])
    while len(out) < n_lists:
        r = rng.random()
        genre = genres[int(rng.integers(len(genres)))]
        length = int(np.clip(rng.lognormal(np.log(14), 0.5), 5, 40))
        pretty = genre.title() if genre != "hip hop" else "Hip Hop"
        if r < 0.55:
            add(f"{rng.choice(_PLAYLIST_MOODS)} {pretty}", _sample(rng, by_genre[genre], w, length))
        elif r < 0.78:
            nbs = [g for g in NEIGHBOURS[genre] if g in by_genre]
            if not nbs:
                continue
            other = nbs[int(rng.integers(len(nbs)))]
            k1 = max(3, int(length * rng.uniform(0.5, 0.75)))
            mem = _sample(rng, by_genre[genre], w, k1) + _sample(rng, by_genre[other], w, length - k1)
            other_p = other.title() if other != "hip hop" else "Hip Hop"
            add(f"{rng.choice(_PLAYLIST_MOODS)} {pretty} & {other_p}", [int(x) for x in rng.permutation(mem)])
        elif r < 0.93:
            a = int(rng.integers(len(artists)))
            if a not in by_artist:
                continue
            own = _sample(rng, by_artist[a], w, int(rng.integers(3, 7)))
            rest = [i for i in by_genre[artists[a]["genre"]] if i not in own]
            mem = own + _sample(rng, rest, w, max(5 - len(own), int(rng.integers(2, 10))))
            add(f"{artists[a]['name']} Radio", [int(x) for x in rng.permutation(mem)])
        else:
            gs = rng.choice(genres, size=min(3, len(genres)), replace=False)
            mem = [i for g in gs for i in _sample(rng, by_genre[str(g)], w, max(2, length // 3))]
            add(f"{rng.choice(['Party', 'Shuffle', 'Eclectic', 'Everything'])} Mix", [int(x) for x in rng.permutation(mem)])
    return out


def curate(artists: list[dict], tracks: list[dict]) -> list[tuple[str, int]]:
    """[(symbol, track index)] shaped like the original report's nine tracks; [] if the corpus is too small."""
    by_artist: dict[int, list[int]] = {}
    for t in tracks:
        by_artist.setdefault(t["artist"], []).append(t["index"])
    genre_of = {a: artists[a]["genre"] for a in by_artist}
    preference = ["dream pop", "jazz", "singer-songwriter", "metal", "techno", "hip hop", "classical strings", "ambient"]
    for g1 in preference:
        a_cands = [a for a in by_artist if genre_of[a] == g1 and len(by_artist[a]) >= 3]
        b_cands = [a for a in by_artist if genre_of[a] == g1 and a not in a_cands[:1]]
        c_cands = sorted((a for a in by_artist if genre_of[a] in NEIGHBOURS[g1]),
                         key=lambda a: NEIGHBOURS[g1].index(genre_of[a]))
        if not a_cands or not b_cands or not c_cands:
            continue
        a, b, c = a_cands[0], b_cands[0], c_cands[0]
        excluded = {g1, *NEIGHBOURS[g1]}
        others = [g for g in preference if g not in excluded]
        picks: list[list[int]] = []
        for g in others:
            arts = [x for x in by_artist if genre_of[x] == g]
            if len(arts) >= 2:
                picks.append([by_artist[arts[0]][0], by_artist[arts[1]][0]])
            elif arts and len(by_artist[arts[0]]) >= 2:
                picks.append(by_artist[arts[0]][:2])
            if len(picks) == 2:
                break
        if len(picks) < 2:
            continue
        sel = by_artist[a][:3] + [by_artist[b][0], by_artist[c][0]] + picks[0] + picks[1]
        return list(zip(CURATED, sel, strict=True))
    return []


