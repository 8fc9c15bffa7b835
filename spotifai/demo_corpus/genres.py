"""The eight genres of the demo corpus: scales, musical character per genre, and which genres neighbour."""

from __future__ import annotations

MODES: dict[str, list[int]] = {
    "major": [0, 2, 4, 5, 7, 9, 11],
    "minor": [0, 2, 3, 5, 7, 8, 10],
    "dorian": [0, 2, 3, 5, 7, 9, 10],
    "phrygian": [0, 1, 3, 5, 7, 8, 10],
    "mixolydian": [0, 2, 4, 5, 7, 9, 10],
    "lydian": [0, 2, 4, 6, 7, 9, 11],
    "harmonic_minor": [0, 2, 3, 5, 7, 8, 11],
}

#: Genre -> musical character. Ranges are (low, high); lists are the options artists draw from.
GENRES: dict[str, dict] = {
    "metal": dict(
        tempo=(130, 185), meters=[4], modes=["phrygian", "minor", "harmonic_minor"], swing=(0.0, 0.0),
        drums="metal", bass=["follow"], chords=["power"], lead=["guitar", "none"], texture=["none"],
        reverb=(0.05, 0.25), rt=(0.6, 1.6), drive=(1.5, 3.5), progs=[[0, 1, 0, 6], [0, 5, 6, 0], [0, 0, 5, 4],
        [0, 3, 1, 0]], ext=["triad"], lead_oct=5, bar_chords=1,
    ),
    "dream pop": dict(
        tempo=(78, 112), meters=[4, 4, 3], modes=["major", "lydian", "mixolydian"], swing=(0.0, 0.08),
        drums="pop", bass=["pedal", "root8"], chords=["pad", "arp"], lead=["vocal"], texture=["none", "tape"],
        reverb=(0.45, 0.8), rt=(2.2, 4.5), drive=(0.2, 0.8), progs=[[0, 4, 5, 3], [0, 3, 0, 4], [0, 5, 3, 4],
        [3, 0, 4, 5]], ext=["add9", "7th", "triad"], lead_oct=5, bar_chords=1,
    ),
    "singer-songwriter": dict(
        tempo=(72, 126), meters=[4, 3], modes=["major", "mixolydian", "major"], swing=(0.0, 0.15),
        drums="folk", bass=["pedal", "none"], chords=["strum", "piano_arp"], lead=["vocal"], texture=["none", "room"],
        reverb=(0.08, 0.3), rt=(0.5, 1.4), drive=(0.1, 0.5), progs=[[0, 4, 5, 3], [0, 3, 4, 0], [5, 3, 0, 4],
        [0, 5, 3, 4]], ext=["triad", "sus"], lead_oct=5, bar_chords=1,
    ),
    "techno": dict(
        tempo=(122, 136), meters=[4], modes=["minor", "phrygian", "dorian"], swing=(0.0, 0.06),
        drums="techno", bass=["acid"], chords=["stab", "pad"], lead=["none", "seq"], texture=["none"],
        reverb=(0.1, 0.35), rt=(0.8, 2.0), drive=(1.0, 2.5), progs=[[0, 0, 0, 0], [0, 0, 6, 6], [0, 5, 0, 5]],
        ext=["triad", "7th"], lead_oct=5, bar_chords=2,
    ),
    "jazz": dict(
        tempo=(100, 190), meters=[4], modes=["dorian", "major", "mixolydian"], swing=(0.45, 0.66),
        drums="jazz", bass=["walk"], chords=["comp"], lead=["sax", "vibes", "trumpet"], texture=["none", "room"],
        reverb=(0.1, 0.3), rt=(0.8, 1.8), drive=(0.1, 0.4), progs=[[1, 4, 0, 0], [0, 5, 1, 4], [2, 5, 1, 4],
        [1, 4, 2, 5]], ext=["7th", "9th"], lead_oct=5, bar_chords=1,
    ),
    "classical strings": dict(
        tempo=(60, 112), meters=[4, 3, 3], modes=["major", "minor", "harmonic_minor"], swing=(0.0, 0.0),
        drums=None, bass=["cello"], chords=["section", "pizz"], lead=["violin"], texture=["none"],
        reverb=(0.3, 0.55), rt=(1.6, 3.0), drive=(0.0, 0.2), progs=[[0, 3, 4, 0], [0, 5, 1, 4], [0, 4, 5, 2],
        [0, 3, 6, 4]], ext=["triad", "7th"], lead_oct=5, bar_chords=1,
    ),
    "hip hop": dict(
        tempo=(78, 98), meters=[4], modes=["minor", "dorian"], swing=(0.05, 0.3),
        drums="hiphop", bass=["808", "synco"], chords=["rhodes"], lead=["rap"], texture=["vinyl", "none"],
        reverb=(0.05, 0.25), rt=(0.6, 1.5), drive=(0.6, 1.8), progs=[[0, 5], [1, 4], [0, 3, 5, 4], [5, 4]],
        ext=["7th", "9th"], lead_oct=4, bar_chords=1,
    ),
    "ambient": dict(
        tempo=(50, 80), meters=[4, 3], modes=["lydian", "major", "dorian"], swing=(0.0, 0.0),
        drums=None, bass=["drone"], chords=["pad"], lead=["chimes", "none"], texture=["wind", "none"],
        reverb=(0.55, 0.85), rt=(3.0, 6.0), drive=(0.0, 0.2), progs=[[0, 3], [0, 5, 3, 0], [0, 4], [3, 0]],
        ext=["add9", "7th"], lead_oct=6, bar_chords=2,
    ),
}

#: Genre neighbourhood (symmetric): mixes and the curated "C" track come from neighbours.
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "metal": ("techno", "dream pop"),
    "dream pop": ("ambient", "singer-songwriter", "metal"),
    "singer-songwriter": ("dream pop", "jazz", "classical strings"),
    "techno": ("hip hop", "ambient", "metal"),
    "jazz": ("singer-songwriter", "hip hop", "classical strings"),
    "classical strings": ("ambient", "jazz", "singer-songwriter"),
    "hip hop": ("techno", "jazz"),
    "ambient": ("dream pop", "classical strings", "techno"),
}
