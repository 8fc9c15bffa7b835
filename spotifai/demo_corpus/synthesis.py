"""Synthesis of one demo track: the song (arrangement, drums, bass, chords, melody, texture), its production and
mastering, and writing the audio file (:func:`render_track`, run in worker processes)."""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from spotifai.demo_corpus.genres import GENRES, MODES
from spotifai.demo_corpus.instruments import Voice, band, drum_kit, fast_len, place, shaped_noise

# ============================================================================================ a song


def _chord_notes(scale: list[int], key: int, degree: int, ext: str, voicing: str, base: int = 55) -> list[int]:
    degs = [degree, degree + 2, degree + 4]
    if ext == "sus":
        degs[1] = degree + 3
    if ext in ("7th", "9th"):
        degs.append(degree + 6)
    if ext in ("9th", "add9"):
        degs.append(degree + 8)
    notes = [key + 12 * (d // 7) + scale[d % 7] for d in degs]
    root = notes[0]
    while root < base - 6:
        notes = [n + 12 for n in notes]
        root += 12
    while root > base + 6:
        notes = [n - 12 for n in notes]
        root -= 12
    if voicing == "open" and len(notes) >= 3:
        notes[-2] -= 12
    elif voicing == "spread":
        notes = [notes[0] - 12] + [n + (12 if i % 2 else 0) for i, n in enumerate(notes[1:])]
    elif voicing == "shell" and len(notes) >= 4:
        notes = [notes[0], notes[1], notes[3]]
    return sorted(notes)


class _Song:
    """Renders one track: events for every layer on a swung 16th grid, then a stereo mix at ``sr``."""

    def __init__(self, job: dict, sr: int):
        self.job, self.sr = job, sr
        self.tr = tr = job["artist"]
        self.rng = np.random.default_rng([job["seed"], 7919, job["index"]])
        rng = self.rng
        self.tempo = rng.uniform(*tr["tempo"])
        self.steps = tr["steps"]
        self.step_s = 60.0 / self.tempo / 4
        self.n = int(job["seconds"] * sr)
        self.n_bars = int(math.ceil(job["seconds"] / (self.steps * self.step_s))) + 1
        self.key = tr["key"] + int(rng.choice([0, 0, 0, 2, -2, 5, -5, 7]))
        self.scale = MODES[tr["mode"]]
        prog = GENRES[tr["genre"]]["progs"][tr["progs"][int(rng.integers(2))]]
        per = tr["bar_chords"]
        self.chord_deg = [prog[(b // per) % len(prog)] for b in range(self.n_bars)]
        self.chords = [_chord_notes(self.scale, self.key, d, tr["ext"], tr["voicing"]) for d in self.chord_deg]
        self.swing = tr["swing"] * rng.uniform(0.8, 1.2)
        self.loose = tr["loose"]
        self.legato = float(np.clip(tr["legato"] + rng.normal(0, 0.08), 0.2, 1.0))
        self.sections = self._arrangement()

    # --- timing
    def t(self, bar: int, step: float) -> float:
        """Time (s) of ``step`` (16ths) in ``bar``, with swing on off-beat 8ths and human looseness."""
        pos = (bar * self.steps + step) * self.step_s
        if self.swing > 0 and int(step) % 4 == 2 and step == int(step):
            pos += self.swing * 2 * self.step_s * 0.5
        if self.loose > 0:
            pos += self.rng.normal(0, self.loose)
        return max(pos, 0.0)

    def _arrangement(self) -> list[dict[str, bool]]:
        """Which layers play in each bar (sections of 4 bars)."""
        rng, style = self.rng, self.tr["arrangement"]
        layers = ["drums", "bass", "chords", "lead", "texture"]
        out = []
        n_sec = int(math.ceil(self.n_bars / 4))
        for s in range(n_sec):
            on = {name: True for name in layers}
            if style == "build" and s == 0:
                on.update(drums=False, lead=False, bass=rng.random() < 0.5)
            elif style == "breaks" and s % 3 == 2:
                on.update(drums=False, bass=rng.random() < 0.3)
            if rng.random() < 0.25:
                on[str(rng.choice(["lead", "chords", "bass"]))] = False
            if not any(on[k] for k in ("bass", "chords", "lead")):
                on["chords"] = True
            out.extend([on] * 4)
        return out

    def _deg_midi(self, degree: int) -> int:
        """MIDI note of scale ``degree`` (0 = the key's tonic, 7 = an octave up)."""
        return self.key + 12 * (degree // 7) + self.scale[degree % 7]

    def on(self, bar: int, layer: str) -> bool:
        return self.sections[min(bar, len(self.sections) - 1)][layer]

    # --- layers
    def drums(self) -> np.ndarray:
        buf = np.zeros(self.n, np.float32)
        pats = self.tr["drums"]
        if not pats:
            return buf
        kit = drum_kit(self.rng, self.tr["kit"], self.sr)
        fill_p = self.rng.uniform(0.0, 0.4)
        for bar in range(self.n_bars):
            if not self.on(bar, "drums"):
                continue
            for name, hits in pats.items():
                if name == "roll":
                    for s in hits:
                        for k in range(3):
                            place(buf, self.t(bar, s + k / 3) * self.sr, kit["hat"], 0.5)
                    continue
                for step, v in hits:
                    if self.rng.random() < 0.05:
                        continue
                    place(buf, self.t(bar, step) * self.sr, kit[name], v * self.rng.uniform(0.85, 1.0))
            if bar % 4 == 3 and self.rng.random() < fill_p and "snare" in kit:
                for s in range(self.steps - 4, self.steps):
                    place(buf, self.t(bar, s) * self.sr, kit["snare"], 0.4 + 0.15 * (s % 4))
            if bar % 4 == 0 and self.tr["genre"] in ("metal", "pop", "dream pop") and bar > 0:
                place(buf, self.t(bar, 0) * self.sr, kit["crash"], 0.8)
        return buf

    def bass(self) -> np.ndarray:
        buf = np.zeros(self.n, np.float32)
        style = self.tr["bass"]
        if style == "none" or "bass" not in self.tr["voices"]:
            return buf
        voice = Voice(self.tr["voices"]["bass"], self.sr, self.rng)
        st, S = self.step_s, self.steps
        for bar in range(self.n_bars):
            if not self.on(bar, "bass"):
                continue
            root = self.chords[bar][0]
            while root > 45:
                root -= 12
            nxt = self.chords[min(bar + 1, self.n_bars - 1)][0]
            if style in ("pedal", "drone", "cello"):
                n_hits = 1 if style == "drone" else int(self.rng.choice([1, 2]))
                for k in range(n_hits):
                    dur = S / n_hits * st * (1.2 if style == "drone" else 0.95)
                    place(buf, self.t(bar, k * S // n_hits) * self.sr, voice.note(root, dur), 0.6)
            elif style in ("root8", "follow"):
                mask = self.tr["riff_mask"] if style == "follow" else list(range(0, S, 2))
                for s in mask:
                    off = self.tr["riff"][s] if style == "follow" else 0
                    place(buf, self.t(bar, s) * self.sr, voice.note(root + off, 2 * st * self.legato), 0.5)
            elif style == "walk":
                d = self.chord_deg[bar]
                third = self._deg_midi(d + 2) - self._deg_midi(d)
                fifth = self._deg_midi(d + 4) - self._deg_midi(d)
                nxt_root = root + ((nxt - root) % 12)
                approach = nxt_root - 1 if self.rng.random() < 0.6 else nxt_root + 1
                tones = [root, root + third, root + fifth, approach if approach - root < 12 else approach - 12]
                for k in range(S // 4):
                    pitch = tones[k % 4] if k < 4 else root
                    pitch += int(self.rng.choice([0, 0, 2, -1]))
                    place(buf, self.t(bar, 4 * k) * self.sr, voice.note(pitch, 4 * st * 0.9), 0.6)
            elif style == "acid":
                for s in range(S):
                    if s not in self.tr["bass_mask"] and self.rng.random() > 0.1:
                        continue
                    acc = self.tr["acid_acc"][s]
                    place(buf, self.t(bar, s) * self.sr, voice.note(root + self.tr["bass_oct"][s], st * 0.9), 0.3 + 0.4 * acc)
            elif style in ("808", "synco"):
                mask = [s for s, _ in self.tr["drums"].get("kick", [])] if style == "808" else self.tr["bass_mask"]
                for i, s in enumerate(mask):
                    end = mask[i + 1] if i + 1 < len(mask) else S
                    place(buf, self.t(bar, s) * self.sr, voice.note(root, (end - s) * st * 0.95), 0.7)
        return buf

    def chords_layer(self) -> np.ndarray:
        buf = np.zeros(self.n, np.float32)
        style = self.tr["chords"]
        voice = Voice(self.tr["voices"]["chords"], self.sr, self.rng)
        st, S, rng = self.step_s, self.steps, self.rng
        for bar in range(self.n_bars):
            if not self.on(bar, "chords"):
                continue
            notes = self.chords[bar]
            if style in ("pad", "section"):
                per = self.tr["bar_chords"]
                if bar % per:
                    continue
                hits = [0] if style == "pad" else [0, S // 2]
                for h in hits:
                    dur = (S * per if style == "pad" else S / 2) * st
                    for nt in notes:
                        place(buf, self.t(bar, h) * self.sr, voice.note(nt, dur), 0.25)
            elif style == "strum":
                for i, d in enumerate(self.tr["strum"]):
                    if d == "-":
                        continue
                    strings = notes + [notes[0] + 12] if d == "D" else (notes + [notes[0] + 12])[-3:][::-1]
                    t0 = self.t(bar, 2 * i)
                    for k, nt in enumerate(strings):
                        place(buf, (t0 + k * 0.012) * self.sr, voice.note(nt, 2 * st * 2), 0.22 if d == "D" else 0.15)
            elif style in ("arp", "piano_arp"):
                pat, rate = self.tr["arp"], self.tr["arp_rate"]
                tones = notes + [n + 12 for n in notes]
                for i, s in enumerate(range(0, S, rate)):
                    nt = tones[pat[i % len(pat)] % len(tones)]
                    place(buf, self.t(bar, s) * self.sr, voice.note(nt, rate * st * (1 + 2 * self.legato)), 0.3)
            elif style in ("comp", "rhodes", "stab", "pizz"):
                mask = self.tr["stab_mask"] if style == "stab" else self.tr["comp_mask"]
                if style == "rhodes":
                    mask = [0]
                if style == "pizz":
                    mask = list(range(0, S, 4 if rng.random() < 0.7 else 2))
                for s in mask:
                    if style == "comp" and rng.random() < 0.15:
                        continue
                    dur = (S * st) if style == "rhodes" else (2 * st * self.legato + 0.05)
                    for nt in notes:
                        place(buf, (self.t(bar, s) + rng.uniform(0, 0.006)) * self.sr, voice.note(nt + 12 * (style == "stab"),
                                                                                           dur), 0.22)
            elif style == "power":
                root = self.chords[bar][0] - 12
                while root > 52:
                    root -= 12
                for s in self.tr["riff_mask"]:
                    pm = self.tr["palm"][s]
                    dur = st * (0.8 if pm else 1.8)
                    place(buf, self.t(bar, s) * self.sr, voice.note(root + self.tr["riff"][s], dur, int(pm)), 0.3)
        return buf

    def _melody(self) -> list[tuple[int, float, int, float]]:
        """(bar, step, midi, steps) notes: phrases of 2 bars in the artist's form, from rhythm cells."""
        rng, tr, S = self.rng, self.tr, self.steps
        phrases: dict[str, list[tuple[int, float, int, float]]] = {}
        lo = 12 * tr["lead_oct"] + self.key % 12 - 5
        out = []
        for p_i in range(int(math.ceil(self.n_bars / 2))):
            label = tr["phrase_form"][p_i % 4]
            if label not in phrases:
                notes, pos, deg = [], 0.0, int(rng.integers(0, 5))
                while pos < 2 * S:
                    for d in tr["cells"][int(rng.integers(len(tr["cells"])))]:
                        if pos >= 2 * S:
                            break
                        if rng.random() > tr["p_rest"]:
                            deg += int(rng.choice([-1, 1])) if rng.random() < tr["p_step"] else int(rng.integers(-4, 5))
                            deg = int(np.clip(deg, 0, 10))
                            notes.append((int(pos // S), pos % S, deg, min(d, 2 * S - pos)))
                        pos += d
                phrases[label] = notes
            for bar_off, step, deg, d in phrases[label]:
                bar = 2 * p_i + bar_off
                midi = lo + 12 * (deg // 7) + self.scale[deg % 7]
                out.append((bar, step, midi, d))
        return out

    def lead(self) -> np.ndarray:
        buf = np.zeros(self.n, np.float32)
        style = self.tr["lead"]
        if style == "none" or "lead" not in self.tr["voices"]:
            return buf
        voice = Voice(self.tr["voices"]["lead"], self.sr, self.rng)
        st, rng = self.step_s, self.rng
        if style == "rap":
            for bar in range(self.n_bars):
                if not self.on(bar, "lead"):
                    continue
                for s in self.tr["flow"]:
                    if rng.random() < 0.12:
                        continue
                    pitch = self.tr["flow_pitch"] + int(rng.choice([0, 0, 2, -2, 3]))
                    place(buf, self.t(bar, s) * self.sr, voice.note(pitch, st * 0.8, int(rng.integers(10))), 0.5)
            return buf
        if style == "chimes":
            pent = [0, 2, 4, 7, 9]
            for bar in range(self.n_bars):
                for _ in range(int(rng.integers(0, 4))):
                    s = int(rng.integers(self.steps))
                    midi = 12 * self.tr["lead_oct"] + self.key % 12 + pent[int(rng.integers(5))] + 12 * int(rng.integers(0, 2))
                    place(buf, self.t(bar, s) * self.sr, voice.note(midi, 2.0), 0.2)
            return buf
        for bar, step, midi, d in self._melody():
            if bar >= self.n_bars or not self.on(bar, "lead"):
                continue
            place(buf, self.t(bar, step) * self.sr, voice.note(midi, d * st * self.legato, int(rng.integers(5))), 0.3)
        return buf

    def texture(self) -> np.ndarray:
        kind, n, sr, rng = self.tr["texture"], self.n, self.sr, self.rng
        if kind == "none":
            return np.zeros(n, np.float32)

        def loop(lo: float | None, hi: float | None) -> np.ndarray:  # a 3 s shaped-noise loop, tiled
            return np.resize(shaped_noise(rng, 3 * sr, sr, lo, hi).astype(np.float32), n)

        if kind == "vinyl":
            buf = loop(200, 3000) * 0.02
            pops = rng.integers(0, n, size=int(self.job["seconds"] * rng.uniform(5, 25)))
            buf[pops] += rng.uniform(0.1, 0.5, len(pops)) * rng.choice([-1, 1], len(pops))
        elif kind == "wind":
            lfo = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * np.arange(n) / sr + rng.uniform(0, 6))
            buf = loop(200, rng.uniform(800, 2500)) * lfo.astype(np.float32) * 0.15
        elif kind == "tape":
            buf = loop(2000, None) * 0.02
        else:  # room tone
            buf = loop(50, 600) * 0.04
        return buf.astype(np.float32)

    def mix(self) -> np.ndarray:
        """(2, n) float stereo mix of all layers with per-track gains and pans."""
        rng = self.rng
        layers = {"drums": self.drums(), "bass": self.bass(), "chords": self.chords_layer(), "lead": self.lead(),
                  "texture": self.texture()}
        base_gain = {"drums": 0.8, "bass": 0.7, "chords": 0.6, "lead": 0.7, "texture": 0.5}
        out = np.zeros((2, self.n), np.float32)
        for name, sig in layers.items():
            g = base_gain[name] * 10 ** (rng.uniform(-5, 5) / 20)
            pan = rng.uniform(-0.6, 0.6) if name in ("chords", "lead", "texture") else rng.uniform(-0.1, 0.1)
            out[0] += sig * g * math.sqrt((1 - pan) / 2)
            out[1] += sig * g * math.sqrt((1 + pan) / 2)
        fade = min(self.n, int(1.5 * self.sr))
        out[:, -fade:] *= np.linspace(1, 0, fade, dtype=np.float32) ** 2
        return out


# ======================================================================================= production


#: How wide the per-track EQ randomization is (tilt and bell in dB are scaled by it). 0.6 puts the log-mel
#: mean/std baseline at genre-p@5 ~0.65 and artist-p@5 ~0.4 on the full corpus (seed 0).
PRODUCTION_SPREAD = 0.6


def _production(rng: np.random.Generator, tr: dict) -> dict:
    """Per-track production: wide enough that the average spectrum is only a weak artist clue."""
    k = PRODUCTION_SPREAD
    return dict(
        tilt=k * rng.uniform(-2.5, 1.5),  # dB per octave around 1 kHz
        hp=float(rng.choice([20, 40, 60, 100, 150])),
        lp=float(rng.choice([None, None, None, 11000, 9000, 7000, 5500]) or 0),
        wet=float(np.clip(tr["reverb"] + rng.normal(0, 0.1), 0.0, 0.9)),
        rt=float(tr["rt"] * rng.uniform(0.7, 1.4)),
        drive=float(max(tr["drive"] + rng.normal(0, 0.4), 0.0)),
        gain_db=rng.uniform(-12, -1),
        noise_db=rng.uniform(-85, -50),
        hum=bool(rng.random() < 0.1),
        width=rng.uniform(0.2, 1.0),
        bump_f=float(np.exp(rng.uniform(np.log(150), np.log(6000)))),
        bump_db=k * rng.uniform(-5, 5),
    )


def _master(mix: np.ndarray, sr_syn: int, sr_out: int, channels: int, prod: dict, rng: np.random.Generator,
            n_out: int) -> np.ndarray:
    """Reverb + EQ + band limits + resampling (one FFT per channel), drive, gain, noise floor.

    ``mix`` (2, n) at ``sr_syn``; returns (n_out, channels) float32 at ``sr_out``.
    """
    n = mix.shape[1]
    if channels == 1:
        mix = mix.mean(axis=0, keepdims=True)
    else:
        mid, side = mix.mean(axis=0), (mix[0] - mix[1]) / 2 * prod["width"]
        mix = np.stack([mid + side, mid - side])
    rt = max(prod["rt"], 0.2)
    ir_n = int(min(rt, 3.5) * sr_syn)
    nfft = fast_len(n + ir_n)
    f = np.fft.rfftfreq(nfft, 1.0 / sr_syn)
    ir_t = np.arange(ir_n) / sr_syn
    eq = (np.maximum(f, 20.0) / 1000.0) ** (prod["tilt"] / 6.02)
    eq *= band(f, prod["hp"], prod["lp"] or None)
    eq *= 1 + (10 ** (prod["bump_db"] / 20) - 1) * np.exp(-0.5 * (np.log2(np.maximum(f, 1) / prod["bump_f"]) / 0.6) ** 2)
    eq = eq.astype(np.float32)
    wet_band = band(f, 200, 5000, 1).astype(np.float32)
    ratio = sr_out // sr_syn
    nfft_out = nfft * ratio
    outs = []
    for ch in range(mix.shape[0]):
        ir = rng.standard_normal(ir_n) * np.exp(-6.9 * ir_t / rt)
        ir[: int(0.015 * sr_syn)] = 0.0  # pre-delay
        H = np.fft.rfft(ir.astype(np.float32), nfft) * wet_band
        H *= prod["wet"] * 0.7 / (np.sqrt(np.mean(np.abs(H) ** 2)) + 1e-9)
        H += 1 - prod["wet"]
        X = np.fft.rfft(mix[ch].astype(np.float32), nfft)
        X *= H
        X *= eq
        if ratio > 1:
            X = np.concatenate([X, np.zeros(nfft_out // 2 + 1 - len(X), X.dtype)])
        outs.append(np.fft.irfft(X, nfft_out)[:n_out] * ratio)
    y = np.stack(outs, axis=1)
    y /= np.abs(y).max() + 1e-9
    if prod["drive"] > 0.05:
        y = np.tanh(y * (1 + prod["drive"])) / np.tanh(1 + prod["drive"])
    y *= 10 ** (prod["gain_db"] / 20)
    noise = rng.standard_normal(y.shape) * 10 ** (prod["noise_db"] / 20)
    if prod["hum"]:
        t = np.arange(n_out) / sr_out
        hz = float(rng.choice([50.0, 60.0]))
        noise += (sum(np.sin(2 * np.pi * hz * k * t) / k for k in (1, 2, 3)) * 10 ** ((prod["noise_db"] + 6) / 20))[:, None]
    ramp = np.minimum(np.arange(n_out) / (0.01 * sr_out), 1.0)[:, None]
    return np.clip((y + noise) * ramp, -1, 1).astype(np.float32)


# ============================================================================================ writing

_SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}
_FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0) via zlib on bit-reversed bytes."""
    raw = zlib.crc32(page.translate(_BITREV), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _fix_ogg_serial(data: bytes, serial: int) -> bytes:
    """Replace libsndfile's random Ogg stream serial number (so files are byte-reproducible)."""
    buf = bytearray(data)
    pos = 0
    while pos + 27 <= len(buf) and buf[pos : pos + 4] == b"OggS":
        n_seg = buf[pos + 26]
        size = 27 + n_seg + sum(buf[pos + 27 : pos + 27 + n_seg])
        buf[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        buf[pos + 22 : pos + 26] = b"\0\0\0\0"
        buf[pos + 22 : pos + 26] = _ogg_crc(bytes(buf[pos : pos + size])).to_bytes(4, "little")
        pos += size
    return bytes(buf)


def render_track(job: dict) -> dict:
    """Synthesize and write one track (runs in worker processes). Returns index, duration, bytes."""
    sr_out, ch = job["sr"], job["channels"]
    sr_syn = sr_out if sr_out <= 24000 else sr_out // 2
    song = _Song(job, sr_syn)
    mix = song.mix()
    prod = _production(song.rng, job["artist"])
    n_out = int(job["seconds"] * sr_out)
    y = _master(mix, sr_syn, sr_out, ch, prod, song.rng, n_out)
    path = Path(job["write_path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = job["ext"]
    data = y[:, 0] if ch == 1 else y
    if ext == "ogg":
        bio = io.BytesIO()
        sf.write(bio, data, sr_out, format="OGG", subtype="VORBIS")
        path.write_bytes(_fix_ogg_serial(bio.getvalue(), 0x5D0 + job["index"]))
    else:
        sf.write(path, data, sr_out, format=_FORMATS[ext], subtype=_SUBTYPES[ext])
    info = sf.info(str(path))
    return dict(index=job["index"], duration=float(info.frames / info.samplerate), bytes=path.stat().st_size)


