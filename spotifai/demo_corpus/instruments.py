"""Instruments of the demo corpus: DSP helpers, wavetable / FM / formant voices, drum kits and patterns, and
the traits and instruments each artist draws once."""

from __future__ import annotations

import numpy as np

from spotifai.demo_corpus.genres import GENRES

# ========================================================================================= DSP helpers

TABLE_SIZE = 2048
VOWELS = {  # formant frequencies (Hz) and bandwidths
    "a": ((800, 1150, 2900), (80, 90, 120)),
    "e": ((400, 1600, 2700), (60, 80, 120)),
    "i": ((300, 2300, 3000), (50, 90, 120)),
    "o": ((450, 800, 2830), (70, 80, 100)),
    "u": ((325, 700, 2530), (50, 60, 170)),
}


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def band(f: np.ndarray, lo: float | None, hi: float | None, order: int = 2) -> np.ndarray:
    """Butterworth-like magnitude response: high-pass at ``lo`` Hz, low-pass at ``hi`` Hz."""
    g = np.ones_like(f)
    if lo:
        g /= np.sqrt(1.0 + (lo / np.maximum(f, 1e-3)) ** (2 * order))
    if hi:
        g /= np.sqrt(1.0 + (f / hi) ** (2 * order))
    return g


def shaped_noise(rng: np.random.Generator, n: int, sr: int, lo: float | None, hi: float | None) -> np.ndarray:
    x = np.fft.rfft(rng.standard_normal(n))
    x *= band(np.fft.rfftfreq(n, 1.0 / sr), lo, hi)
    y = np.fft.irfft(x, n)
    return y / (np.abs(y).max() + 1e-9)


def _table(amps: np.ndarray) -> np.ndarray:
    """One cycle (TABLE_SIZE,) with harmonic k+1 at amplitude amps[k] (sine phase), RMS-normalized."""
    spec = np.zeros(TABLE_SIZE // 2 + 1, complex)
    h = min(len(amps), TABLE_SIZE // 2 - 1)
    spec[1 : 1 + h] = -1j * np.asarray(amps[:h])
    tab = np.fft.irfft(spec, TABLE_SIZE)
    return tab / (np.sqrt(np.mean(tab**2)) + 1e-9) * 0.35


def _recipe(n: int, rolloff: float, even: float) -> np.ndarray:
    k = np.arange(1, n + 1, dtype=float)
    return k**-rolloff * np.where(k % 2 == 0, even, 1.0)


def _formant_amps(f0: float, vowel: str, n: int, tilt: float) -> np.ndarray:
    freqs, bws = VOWELS[vowel]
    fk = f0 * np.arange(1, n + 1)
    amp = sum(np.exp(-0.5 * ((fk - fc) / (bw * 1.6)) ** 2) * (1.0 / (i + 1)) for i, (fc, bw) in
              enumerate(zip(freqs, bws, strict=True)))
    return (amp + 0.03) * (fk / 200.0) ** -tilt


def _adsr(n: int, sr: int, a: float, d: float, s: float, r: float, hold: float) -> np.ndarray:
    a = max(a, 1e-3)
    hold = max(hold, a + 1e-3)
    t = np.arange(n) / sr
    dec = s + (1 - s) * np.exp(-np.maximum(t - a, 0) / max(d, 1e-3))
    env = np.where(t < a, t / a, dec)
    rel = np.exp(-np.maximum(t - hold, 0) / max(r, 1e-3) * 3.0)
    return env * np.where(t > hold, rel, 1.0)


class Voice:
    """A pitched instrument: renders notes (cached by pitch, length, variant) as float arrays at ``sr``.

    kinds: ``table`` (wavetable with bright/dark crossfade envelope, vibrato, unison detune, breath noise),
    ``fm`` (2-operator FM), ``formant`` (sung/rapped vowel tables), ``power`` (distorted power chord).
    """

    def __init__(self, p: dict, sr: int, rng: np.random.Generator):
        self.p, self.sr = p, sr
        self.cache: dict[tuple, np.ndarray] = {}
        self.breath = shaped_noise(rng, sr, sr, 800, 5000) if p.get("breath", 0) > 0 else None

    def _phase(self, f: float, t: np.ndarray, glide: float = 0.0) -> np.ndarray:
        p = self.p
        depth, rate, delay = p.get("vib_depth", 0.0), p.get("vib_rate", 5.0), p.get("vib_delay", 0.2)
        if depth <= 0 and glide == 0:
            return f * t
        ramp = np.clip((t - delay) / 0.25, 0, 1) if depth > 0 else 0.0
        cents = depth * ramp * np.sin(2 * np.pi * rate * t) + glide * 1200 * np.exp(-t / 0.06)
        inst = f * 2.0 ** (cents / 1200.0)
        return np.cumsum(inst) / self.sr

    def _tab(self, key: tuple, amps: np.ndarray) -> np.ndarray:
        tab = self.cache.get(key)
        if tab is None:
            tab = self.cache[key] = _table(amps)
        return tab

    def note(self, midi: float, dur: float, variant: int = 0) -> np.ndarray:
        key = ("n", round(midi * 4), round(dur * 50), variant)
        out = self.cache.get(key)
        if out is None:
            out = self.cache[key] = self._render(midi, round(dur * 50) / 50.0, variant)
        return out

    def _render(self, midi: float, dur: float, variant: int) -> np.ndarray:
        p, sr = self.p, self.sr
        rel = p.get("r", 0.1)
        n = max(int((dur + rel) * sr), 16)
        t = np.arange(n) / sr
        f = _hz(midi)
        nh = max(1, min(p.get("harm", 24), int(0.45 * sr / f)))
        kind = p["kind"]
        env = _adsr(n, sr, p.get("a", 0.005), p.get("d", 0.3), p.get("s", 0.6), rel, dur)
        if kind == "fm":
            idx = p["index"] * (p.get("index_floor", 0.1) + np.exp(-t / p.get("index_decay", 0.3)))
            y = np.sin(2 * np.pi * f * t + idx * np.sin(2 * np.pi * p["ratio"] * f * t))
            if p.get("tremolo", 0) > 0:
                y *= 1 - p["tremolo"] * (0.5 + 0.5 * np.sin(2 * np.pi * p.get("trem_rate", 5.0) * t))
            return (y * env).astype(np.float32)
        if kind == "power":
            y = np.zeros(n)
            tab = self._tab(("saw", nh), _recipe(nh, 1.0, 1.0))
            for iv in (0, 7, 12):
                ph = _hz(midi + iv) * t * (1 + 0.002 * iv)
                y += tab[(ph * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)]
            y = np.tanh(p["drive"] * y) * env
            return y.astype(np.float32)
        if kind == "formant":
            vowel = "aeiou"[variant % 5]
            nh = max(1, min(40, int(0.45 * sr / f)))
            tab = self._tab(("v", vowel, round(f)), _formant_amps(f, vowel, nh, p.get("tilt", 0.6)))
            ph = self._phase(f, t, p.get("glide", 0.0) * (1 if variant % 2 else -1))
            y = tab[(ph * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)] * env
        else:  # table
            bright = self._tab(("b", nh), _recipe(nh, p["roll_b"], p.get("even", 1.0)))
            dark = self._tab(("d", nh), _recipe(nh, p["roll_d"], p.get("even", 1.0)))
            fenv = p.get("f_sus", 0.3) + (1 - p.get("f_sus", 0.3)) * np.exp(-t / p.get("f_dec", 0.2))
            base = self._phase(f, t)
            y = np.zeros(n)
            dets = p.get("detune", [0.0])
            for i, det in enumerate(dets):
                idx = ((base * 2.0 ** (det / 1200.0) + 0.37 * i) * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)
                db_, dd_ = bright[idx], dark[idx]
                y += dd_ + fenv * (db_ - dd_)
            y *= env / len(dets) ** 0.5
        if self.breath is not None:
            m = min(n, len(self.breath))
            y[:m] += p["breath"] * self.breath[:m] * env[:m]
        return y.astype(np.float32)


def place(buf: np.ndarray, start: float, sig: np.ndarray, gain: float) -> None:
    """Add ``sig * gain`` into ``buf`` from sample ``start`` (clipped at the end)."""
    s = int(start)
    if s >= len(buf) or s < 0:
        return
    m = min(len(sig), len(buf) - s)
    buf[s : s + m] += gain * sig[:m]


# ================================================================================================ drums


def drum_kit(rng: np.random.Generator, kp: dict, sr: int) -> dict[str, np.ndarray]:
    """Per-track drum samples from the artist's kit parameters ``kp`` (slightly jittered)."""
    j = lambda v: v * rng.uniform(0.9, 1.1)  # noqa: E731
    kit: dict[str, np.ndarray] = {}
    n = int(0.6 * sr)
    t = np.arange(n) / sr
    f = j(kp["kick_f1"]) + (j(kp["kick_f0"]) - kp["kick_f1"]) * np.exp(-t / j(kp["kick_tp"]))
    kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / j(kp["kick_ta"]))
    kick += kp["kick_click"] * shaped_noise(rng, n, sr, 1000, None) * np.exp(-t / 0.004)
    kit["kick"] = np.tanh(kp["kick_drive"] * kick).astype(np.float32)
    n = int(0.4 * sr)
    t = np.arange(n) / sr
    tone = np.sin(2 * np.pi * j(kp["snare_f"]) * t) * np.exp(-t / 0.05)
    noise = shaped_noise(rng, n, sr, j(kp["snare_lo"]), min(j(kp["snare_hi"]), 0.45 * sr))
    kit["snare"] = (kp["snare_tone"] * tone + noise * np.exp(-t / j(kp["snare_dec"]))).astype(np.float32)
    clap = shaped_noise(rng, n, sr, 900, min(3500, 0.45 * sr))
    cenv = sum(np.exp(-np.maximum(t - d, 0) / 0.008) * (t >= d) for d in (0.0, 0.011, 0.022))
    kit["clap"] = (clap * (cenv + np.exp(-np.maximum(t - 0.03, 0) / 0.09) * (t >= 0.03))).astype(np.float32) * 0.6
    hat_lo = min(kp["hat_lo"], 0.3 * sr)
    hn = shaped_noise(rng, n, sr, hat_lo, None)
    metal = sum(np.sign(np.sin(2 * np.pi * kp["hat_f"] * r * t)) for r in (1.0, 1.34, 1.71, 2.13, 2.49))
    metal = np.fft.irfft(np.fft.rfft(metal) * band(np.fft.rfftfreq(n, 1 / sr), hat_lo, None), n) / 5
    hat = (1 - kp["hat_metal"]) * hn + kp["hat_metal"] * metal
    kit["hat"] = (hat * np.exp(-t / j(kp["hat_dec"]))).astype(np.float32) * 0.5
    kit["ohat"] = (hat * np.exp(-t / 0.16)).astype(np.float32) * 0.45
    n2 = int(1.2 * sr)
    t2 = np.arange(n2) / sr
    ride = sum(np.sin(2 * np.pi * kp["ride_f"] * r * t2) for r in (1.0, 1.47, 2.09, 2.76, 3.41))
    ride = ride / 5 + 0.3 * shaped_noise(rng, n2, sr, min(5000, 0.3 * sr), None)
    kit["ride"] = (ride * np.exp(-t2 / 0.45) * 0.35).astype(np.float32)
    crash = shaped_noise(rng, n2, sr, min(3000, 0.3 * sr), None)
    kit["crash"] = (crash * np.exp(-t2 / 0.5) * 0.5).astype(np.float32)
    n3 = int(0.25 * sr)
    t3 = np.arange(n3) / sr
    brush = shaped_noise(rng, n3, sr, 1500, min(6000, 0.45 * sr))
    kit["brush"] = (brush * np.minimum(t3 / 0.02, 1) * np.exp(-t3 / 0.08) * 0.35).astype(np.float32)
    shaker = shaped_noise(rng, n3, sr, min(4000, 0.3 * sr), None)
    kit["shaker"] = (shaker * np.minimum(t3 / 0.012, 1) * np.exp(-t3 / 0.05) * 0.3).astype(np.float32)
    rim = np.sin(2 * np.pi * 1700 * t3) * np.exp(-t3 / 0.012) + shaped_noise(rng, n3, sr, 2000, None) * np.exp(
        -t3 / 0.004)
    kit["rim"] = (rim * 0.4).astype(np.float32)
    return kit


def _mask(rng: np.random.Generator, steps: int, base: list[int], add_p: float, drop_p: float) -> list[int]:
    """A step pattern: ``base`` steps kept with prob 1-drop_p, other steps added with prob add_p."""
    out = [s for s in base if s < steps and rng.random() >= drop_p]
    out += [s for s in range(steps) if s not in base and rng.random() < add_p]
    return sorted(set(out))


def _drum_patterns(rng: np.random.Generator, style: str, steps: int) -> dict:
    """The artist's drum patterns: {sound: [(step, velocity), ...]} per bar, main and variation."""
    q = steps // 4 if steps % 4 == 0 else 4  # steps per beat
    beats = list(range(0, steps, q))

    def vel(pat: list[int], accent: float) -> list[tuple[int, float]]:
        acc = rng.uniform(1 - accent, 1.0, steps)
        return [(s, float(acc[s])) for s in pat]

    if style == "metal":
        kick = list(range(steps)) if rng.random() < 0.5 else _mask(rng, steps, beats + [s + 2 for s in beats], 0.3, 0)
        snare = [beats[1], beats[3]] if rng.random() < 0.6 and len(beats) >= 4 else [steps // 2]
        cym = "ride" if rng.random() < 0.4 else "hat"
        pats = dict(kick=vel(kick, 0.2), snare=vel(snare, 0.1), **{cym: vel(list(range(0, steps, 2)), 0.5)})
    elif style == "pop":
        kick = _mask(rng, steps, [0, steps // 2] + ([beats[2] + 2] if len(beats) > 2 else []), 0.12, 0.0)
        snare = [b for i, b in enumerate(beats) if i % 2 == 1]
        hat_step = int(rng.choice([1, 2, 2]))
        pats = dict(kick=vel(kick, 0.2), snare=vel(snare, 0.2), hat=vel(list(range(0, steps, hat_step)), 0.7))
        if rng.random() < 0.4:
            pats["shaker"] = vel(list(range(1, steps, 2)), 0.6)
    elif style == "folk":
        pats = dict(shaker=vel(list(range(0, steps, int(rng.choice([1, 2])))), 0.8))
        if rng.random() < 0.6:
            pats["kick"] = vel([0] + ([steps // 2] if rng.random() < 0.5 else []), 0.1)
        if rng.random() < 0.5:
            pats["rim"] = vel([b for i, b in enumerate(beats) if i % 2 == 1], 0.2)
    elif style == "techno":
        pats = dict(kick=vel(beats, 0.05), ohat=vel([b + 2 for b in beats], 0.2),
                    hat=vel(_mask(rng, steps, list(range(steps)), 0.0, rng.uniform(0, 0.5)), 0.8))
        if rng.random() < 0.7:
            pats["clap"] = vel([b for i, b in enumerate(beats) if i % 2 == 1], 0.1)
        pats["rim"] = vel(_mask(rng, steps, [], rng.uniform(0.1, 0.3), 0), 0.5)
    elif style == "jazz":
        ride = [0, beats[1], beats[1] + 3, beats[2], beats[3], beats[3] + 3] if rng.random() < 0.7 else beats
        pats = dict(ride=vel(ride, 0.4), hat=vel([beats[1], beats[3]], 0.2),
                    kick=vel(_mask(rng, steps, [], 0.08, 0), 0.5))
        pats["brush" if rng.random() < 0.5 else "snare"] = vel(_mask(rng, steps, [], 0.15, 0), 0.6)
    elif style == "hiphop":
        trap = rng.random() < 0.45
        kick = _mask(rng, steps, [0, 7 if steps >= 8 else 2, 10 % steps], 0.1, 0.1)
        pats = dict(kick=vel(kick, 0.2), snare=vel([beats[1], beats[3]], 0.1) if not trap else vel([steps // 2], 0.1))
        pats["hat"] = vel(list(range(0, steps, 1 if trap else 2)), 0.8)
        pats["roll"] = [int(rng.integers(steps))] if trap else []
    else:
        pats = {}
    pats.setdefault("roll", [])
    return pats


# ========================================================================================= artist traits


def artist_traits(rng: np.random.Generator, genre: str) -> dict:
    """Everything that makes an artist recognisable (plain data: picklable, JSON-able)."""
    g = GENRES[genre]
    meter = int(rng.choice(g["meters"]))
    steps = meter * 4
    lo, hi = g["tempo"]
    centre = rng.uniform(lo, hi)
    width = (hi - lo) * 0.18
    tr: dict = dict(
        genre=genre, meter=meter, steps=steps, tempo=(max(lo * 0.9, centre - width), centre + width),
        key=int(rng.integers(12)), mode=str(rng.choice(g["modes"])), swing=float(rng.uniform(*g["swing"])),
        loose=float(rng.uniform(0.0, 0.012)), ext=str(rng.choice(g["ext"])),
        voicing=str(rng.choice(["close", "open", "spread", "shell"])),
        progs=[int(i) for i in rng.choice(len(g["progs"]), size=2, replace=False)],
        bass=str(rng.choice(g["bass"])), chords=str(rng.choice(g["chords"])), lead=str(rng.choice(g["lead"])),
        texture=str(rng.choice(g["texture"])), reverb=float(rng.uniform(*g["reverb"])), rt=float(rng.uniform(*g["rt"])),
        drive=float(rng.uniform(*g["drive"])), lead_oct=g["lead_oct"] + int(rng.integers(-1, 1)),
        legato=float(rng.uniform(0.35, 1.0)), bar_chords=g["bar_chords"],
        arrangement=str(rng.choice(["build", "full", "breaks"])),
    )
    # rhythm: the melody's rhythm cells (step durations) and interval habits
    cell_pool = [[4], [2, 2], [3, 1], [1, 1, 2], [2, 1, 1], [1, 3], [6, 2], [1, 1, 1, 1], [3, 3, 2], [8], [2, 4, 2]]
    tr["cells"] = [cell_pool[i] for i in rng.choice(len(cell_pool), size=3, replace=False)]
    tr["p_step"] = float(rng.uniform(0.4, 0.9))
    tr["p_rest"] = float(rng.uniform(0.05, 0.3))
    tr["phrase_form"] = str(rng.choice(["AABA", "ABAB", "AAAB", "ABAC"]))
    # patterns
    tr["drums"] = _drum_patterns(rng, g["drums"], steps) if g["drums"] else {}
    tr["kit"] = dict(
        kick_f0=rng.uniform(90, 220), kick_f1=rng.uniform(38, 62), kick_tp=rng.uniform(0.01, 0.05),
        kick_ta=rng.uniform(0.08, 0.45 if genre == "hip hop" else 0.25), kick_click=rng.uniform(0.0, 0.5),
        kick_drive=rng.uniform(1.0, 3.0), snare_f=rng.uniform(160, 260), snare_tone=rng.uniform(0.2, 0.8),
        snare_lo=rng.uniform(500, 2000), snare_hi=rng.uniform(4000, 10000), snare_dec=rng.uniform(0.06, 0.2),
        hat_lo=rng.uniform(5000, 9000), hat_dec=rng.uniform(0.02, 0.07), hat_metal=rng.uniform(0, 0.6),
        hat_f=rng.uniform(300, 600), ride_f=rng.uniform(400, 800),
    )
    tr["bass_mask"] = _mask(rng, steps, [0], rng.uniform(0.15, 0.45), 0)
    tr["bass_oct"] = [int(x) for x in rng.choice([0, 0, 0, 12, 7], size=steps)]
    tr["acid_acc"] = [float(x) for x in rng.uniform(0.2, 1.0, size=steps)]
    tr["riff"] = [int(x) for x in rng.choice([0, 0, 0, 0, 1, 3, 5, 6, 7, 12], size=steps)]
    tr["riff_mask"] = _mask(rng, steps, list(range(0, steps, 2)), rng.uniform(0.2, 0.7), rng.uniform(0, 0.3))
    tr["palm"] = [bool(x) for x in rng.random(steps) < rng.uniform(0.3, 0.9)]
    tr["comp_mask"] = _mask(rng, steps, [], rng.uniform(0.12, 0.3), 0) or [0]
    tr["strum"] = [str(x) for x in rng.choice(["D", "U", "-"], size=steps // 2, p=[0.45, 0.35, 0.2])]
    tr["strum"][0] = "D"
    n_arp = int(rng.choice([3, 4, 6, 8]))
    tr["arp"] = [int(x) for x in rng.integers(0, 4, size=n_arp)]
    tr["arp_rate"] = int(rng.choice([1, 2, 2, 3]))
    tr["stab_mask"] = _mask(rng, steps, [], rng.uniform(0.1, 0.3), 0) or [2]
    tr["flow"] = _mask(rng, steps, [], rng.uniform(0.45, 0.85), 0)
    tr["flow_pitch"] = float(rng.uniform(47, 57))
    tr["voices"] = _artist_voices(rng, tr)
    return tr


def _artist_voices(rng: np.random.Generator, tr: dict) -> dict:
    """Instrument timbres for the artist's layers (voice parameter dicts)."""
    u = rng.uniform
    v: dict[str, dict] = {}
    # accompaniment
    c = tr["chords"]
    if c == "pad":
        v["chords"] = dict(kind="table", roll_b=u(0.7, 1.3), roll_d=u(1.8, 3.0), even=u(0.3, 1.0), a=u(0.3, 1.2),
                           d=1.0, s=0.8, r=u(0.5, 1.5), f_sus=u(0.2, 0.6), f_dec=u(0.4, 2.0),
                           detune=[-u(4, 14), 0.0, u(4, 14)], vib_depth=u(0, 6), vib_rate=u(0.3, 1.0))
    elif c in ("arp", "piano_arp", "strum", "pizz"):
        v["chords"] = dict(kind="table", roll_b=u(0.6, 1.2), roll_d=u(1.8, 3.2), even=u(0.4, 1.0), a=0.002,
                           d=u(0.15, 0.8) * (0.3 if c == "pizz" else 1.0), s=0.0, r=u(0.05, 0.3),
                           f_sus=0.05, f_dec=u(0.03, 0.15), detune=[0.0] if rng.random() < 0.5 else [-4.0, 4.0])
    elif c == "comp" or c == "rhodes":
        v["chords"] = dict(kind="fm", ratio=float(rng.choice([1.0, 2.0, 3.0, 4.0])), index=u(0.5, 2.5),
                           index_decay=u(0.1, 0.6), a=0.003, d=u(0.3, 1.2), s=u(0.0, 0.3), r=u(0.1, 0.4),
                           tremolo=u(0, 0.5) if c == "rhodes" else 0.0, trem_rate=u(3, 7))
    elif c == "stab":
        v["chords"] = dict(kind="table", roll_b=u(0.5, 1.0), roll_d=u(2.0, 3.5), even=u(0.2, 1.0), a=0.003,
                           d=u(0.08, 0.3), s=u(0.0, 0.3), r=0.05, f_sus=u(0.0, 0.2), f_dec=u(0.02, 0.1),
                           detune=[-u(5, 20), u(5, 20)])
    elif c == "section":
        v["chords"] = dict(kind="table", roll_b=u(0.8, 1.2), roll_d=u(1.5, 2.2), even=u(0.6, 1.0), a=u(0.08, 0.4),
                           d=0.5, s=0.85, r=u(0.2, 0.6), f_sus=0.6, f_dec=0.3, detune=[-u(3, 9), 0.0, u(3, 9)],
                           vib_depth=u(8, 20), vib_rate=u(4.5, 6.5), vib_delay=0.15)
    elif c == "power":
        v["chords"] = dict(kind="power", drive=u(3, 12), a=0.002, d=u(0.1, 0.4), s=u(0.3, 0.8), r=0.04, harm=30)
    # bass
    b = tr["bass"]
    if b in ("808", "drone"):
        v["bass"] = dict(kind="table", roll_b=u(2.5, 4.0), roll_d=4.0, even=1.0, a=0.005 if b == "808" else 0.8,
                         d=u(0.3, 1.0), s=u(0.4, 0.9), r=u(0.1, 0.6), f_sus=1.0, harm=6)
    elif b == "acid":
        v["bass"] = dict(kind="table", roll_b=u(0.7, 1.1), roll_d=u(2.5, 4.0), even=u(0.0, 1.0), a=0.002,
                         d=u(0.08, 0.2), s=u(0.3, 0.7), r=0.03, f_sus=u(0.0, 0.2), f_dec=u(0.03, 0.15))
    elif b == "cello":
        v["bass"] = dict(kind="table", roll_b=u(0.9, 1.3), roll_d=1.8, even=0.8, a=u(0.05, 0.2), d=0.5, s=0.8,
                         r=0.3, f_sus=0.7, f_dec=0.3, vib_depth=u(6, 15), vib_rate=u(4.5, 6.0), detune=[-4.0, 4.0])
    elif b != "none":
        v["bass"] = dict(kind="table", roll_b=u(1.2, 2.0), roll_d=u(2.5, 3.5), even=u(0.5, 1.0), a=0.004,
                         d=u(0.15, 0.6), s=u(0.2, 0.6), r=u(0.05, 0.2), f_sus=0.2, f_dec=u(0.05, 0.2))
    # lead
    ld = tr["lead"]
    vib = dict(vib_depth=u(10, 45), vib_rate=u(3.8, 7.5), vib_delay=u(0.05, 0.35))
    if ld == "vocal":
        v["lead"] = dict(kind="formant", a=u(0.02, 0.12), d=0.4, s=0.8, r=u(0.08, 0.3), tilt=u(0.3, 1.0),
                         breath=u(0.0, 0.25), glide=u(0.0, 0.8), **vib)
    elif ld == "rap":
        v["lead"] = dict(kind="formant", a=0.01, d=0.1, s=0.6, r=0.04, tilt=u(0.3, 0.8), breath=u(0.1, 0.3),
                         glide=u(1.0, 3.0), vib_depth=0.0)
    elif ld in ("sax", "trumpet", "violin", "guitar"):
        roll = dict(sax=(1.0, 2.0), trumpet=(0.7, 1.6), violin=(0.9, 1.5), guitar=(0.8, 1.4))[ld]
        v["lead"] = dict(kind="table", roll_b=u(*roll) - 0.3, roll_d=u(*roll) + 0.6,
                         even=u(0.2, 0.6) if ld == "sax" else u(0.6, 1.0), a=u(0.02, 0.1), d=0.4, s=0.75,
                         r=u(0.05, 0.2), f_sus=0.5, f_dec=u(0.05, 0.3), breath=u(0.0, 0.15) if ld != "guitar" else 0,
                         **vib)
        if ld == "guitar":
            v["lead"]["kind"] = "power"
            v["lead"].update(drive=u(2, 6), harm=30)
    elif ld in ("vibes", "chimes"):
        v["lead"] = dict(kind="fm", ratio=float(rng.choice([3.5, 4.0, 5.19, 7.0])), index=u(0.5, 3.0),
                         index_decay=u(0.05, 0.4), index_floor=0.0, a=0.002, d=u(0.5, 2.5), s=0.0, r=0.5,
                         tremolo=u(0.0, 0.6), trem_rate=u(3, 7))
    elif ld == "seq":
        v["lead"] = dict(kind="table", roll_b=u(0.5, 1.0), roll_d=u(2.0, 3.0), even=u(0.0, 1.0), a=0.002,
                         d=u(0.05, 0.2), s=0.0, r=0.05, f_sus=0.0, f_dec=u(0.02, 0.08))
    return v


