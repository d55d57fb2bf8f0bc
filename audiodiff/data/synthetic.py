"""Built-in synthetic sound effects: eight classes a listener tells apart, each rendered with random
pitch, length, envelope and level, reproducible from (seed, index)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import signal
from torch.utils.data import Dataset

CLASSES = ("beep", "chirp_up", "chirp_down", "noise_burst", "kick", "snare", "hihat", "coin")

# Captions are drawn from templates × descriptions × adjectives, so a text-conditioned model sees
# many wordings of each class. HELD_OUT_PROMPTS are worded differently from every caption these can
# produce; they measure whether a model generalises to phrasings it never saw.
DESCRIPTIONS = {
    "beep": ("beep", "bleep", "short tone", "electronic tone", "sine beep", "alert tone", "pure tone"),
    "chirp_up": ("rising chirp", "upward sweep", "pitch going up", "ascending whistle", "rising tone",
                 "upward glide"),
    "chirp_down": ("falling chirp", "downward sweep", "pitch going down", "descending whistle", "falling tone",
                   "downward glide"),
    "noise_burst": ("burst of white noise", "hiss", "static burst", "noise blast", "radio static", "white noise",
                    "air hiss"),
    "kick": ("kick drum", "bass drum", "kick", "deep drum hit", "boomy thump", "low drum hit"),
    "snare": ("snare drum", "snare hit", "snare", "rattling drum hit", "crisp drum crack", "snare drum hit"),
    "hihat": ("closed hi-hat", "hi-hat tick", "cymbal tick", "hi-hat", "short cymbal", "closed hat"),
    "coin": ("coin pickup", "coin sound", "video game coin", "two-note chime", "collect sound", "coin collect"),
}
ADJECTIVES = ("short", "quick", "clean", "soft", "loud", "bright", "8-bit", "simple")
TEMPLATES = ("{d}", "a {d}", "the sound of a {d}", "{a} {d}", "a {a} {d}", "{d} sound effect", "{a} {d} for a game")
HELD_OUT_PROMPTS = {
    "beep": ("a monotone buzzer signal", "a single flat synth note", "one steady computer blip"),
    "chirp_up": ("a siren climbing higher", "a whoop that goes upward", "a tone gliding to a higher pitch"),
    "chirp_down": ("a slide whistle dropping low", "a tone gliding to a lower pitch", "a descending pew"),
    "noise_burst": ("TV static crackle", "a short rush of noise", "a blast of static"),
    "kick": ("a low thud", "a booming drum", "an 808 boom"),
    "snare": ("a sharp backbeat drum", "a rimshot crack", "a marching drum smack"),
    "hihat": ("a ticking cymbal", "a tight hat click", "a crisp metallic tick"),
    "coin": ("a retro arcade reward ding", "money collected in a platformer", "an item collected ding"),
}


def caption(label: str, rng: np.random.Generator) -> str:
    """A random caption for a clip of class ``label``."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    descriptions = DESCRIPTIONS[label]
    return template.format(d=descriptions[int(rng.integers(len(descriptions)))],
                           a=ADJECTIVES[int(rng.integers(len(ADJECTIVES)))])


def all_captions(label: str) -> set[str]:
    """Every caption :func:`caption` can produce for ``label``."""
    return {t.format(d=d, a=a) for t in TEMPLATES for d in DESCRIPTIONS[label] for a in ADJECTIVES}


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _envelope(n: int, sample_rate: int, attack: float = 0.005, release: float = 0.02) -> np.ndarray:
    env = np.ones(n)
    a, r = max(1, int(attack * sample_rate)), max(1, int(release * sample_rate))
    env[:a] = np.linspace(0, 1, a)
    env[-r:] *= np.linspace(1, 0, r)
    return env


def _tone(freq: np.ndarray, sample_rate: int, third: float = 0.0) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    return np.sin(phase) + third * np.sin(3 * phase)


def _filtered_noise(rng: np.random.Generator, n: int, sample_rate: int, low: float | None,
                    high: float | None) -> np.ndarray:
    noise = rng.standard_normal(n)
    nyquist = sample_rate / 2
    if low and high:
        sos = signal.butter(4, [low / nyquist, min(high / nyquist, 0.99)], "bandpass", output="sos")
    elif low:
        sos = signal.butter(4, min(low / nyquist, 0.99), "highpass", output="sos")
    elif high:
        sos = signal.butter(4, min(high / nyquist, 0.99), "lowpass", output="sos")
    else:
        return noise
    return signal.sosfilt(sos, noise)


def render_sound(label: str, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One random instance of class ``label`` as a mono float array (its own natural length)."""
    sr = sample_rate
    if label == "beep":
        n = int(rng.uniform(0.15, 0.45) * sr)
        return _tone(np.full(n, _log_uniform(rng, 500, 1500)), sr, third=0.2) * _envelope(n, sr)
    if label in ("chirp_up", "chirp_down"):
        n = int(rng.uniform(0.25, 0.6) * sr)
        ratio = rng.uniform(3, 5)
        if label == "chirp_up":
            f0 = _log_uniform(rng, 250, 600)
            freq = f0 * ratio ** np.linspace(0, 1, n)
        else:
            f0 = _log_uniform(rng, 1200, 2400)
            freq = f0 * ratio ** -np.linspace(0, 1, n)
        return _tone(freq, sr) * _envelope(n, sr)
    if label == "noise_burst":
        n = int(rng.uniform(0.3, 0.7) * sr)
        sound = _filtered_noise(rng, n, sr, None, rng.uniform(0.3, 0.45) * sr)
        return sound / (np.abs(sound).max() + 1e-9) * _envelope(n, sr, 0.01, 0.05)
    if label == "kick":
        n = int(0.4 * sr)
        t = np.arange(n) / sr
        freq = 45 + (rng.uniform(120, 180) - 45) * np.exp(-t / 0.04)
        return _tone(freq, sr) * np.exp(-t / rng.uniform(0.08, 0.15)) * _envelope(n, sr, 0.002, 0.02)
    if label == "snare":
        n = int(0.35 * sr)
        t = np.arange(n) / sr
        noise = _filtered_noise(rng, n, sr, 1000, 5000)
        noise = noise / (np.abs(noise).max() + 1e-9) * np.exp(-t / rng.uniform(0.06, 0.12))
        body = 0.5 * _tone(np.full(n, rng.uniform(180, 220)), sr) * np.exp(-t / 0.05)
        return (noise + body) * _envelope(n, sr, 0.001, 0.02)
    if label == "hihat":
        n = int(0.2 * sr)
        t = np.arange(n) / sr
        noise = _filtered_noise(rng, n, sr, min(7000, 0.4 * sr), None)
        return noise / (np.abs(noise).max() + 1e-9) * np.exp(-t / rng.uniform(0.015, 0.04)) * _envelope(n, sr, 0.001)
    if label == "coin":
        f0 = _log_uniform(rng, 700, 1000)
        n1, n2 = int(rng.uniform(0.08, 0.12) * sr), int(rng.uniform(0.2, 0.35) * sr)
        freq = np.concatenate([np.full(n1, f0), np.full(n2, f0 * 2 ** (7 / 12))])
        decay = np.concatenate([np.ones(n1), np.exp(-np.arange(n2) / sr / 0.12)])
        return _tone(freq, sr, third=0.3) * decay * _envelope(n1 + n2, sr)
    raise ValueError(f"unknown synthetic class {label!r}; valid: {', '.join(CLASSES)}")


def synthesize(label: str, rng: np.random.Generator, sample_rate: int, seconds: float) -> np.ndarray:
    """A ``seconds``-long clip (1 × samples, float32): the sound after a short random delay, at a
    random peak level between -10 and -1 dBFS, then silence. A sound longer than the clip allows is
    shortened with a fade-out so that it still ends before the clip does. The last 5%, at least
    60 ms, stay silent: a mel frame's 64 ms window (1024 samples at 16 kHz) spreads a sound's end over
    half a window, and the decoded clip must still fall silent before it ends."""
    total = int(round(seconds * sample_rate))
    sound = render_sound(label, rng, sample_rate)
    sound = sound / (np.abs(sound).max() + 1e-9) * 10 ** (rng.uniform(-10, -1) / 20)
    start = int(rng.uniform(0, 0.03) * sample_rate)
    room = max(0, total - start - max(int(0.05 * total), int(0.06 * sample_rate)))
    if len(sound) > room:
        fade = min(room, int(0.03 * sample_rate))
        sound = sound[:room].copy()
        if fade:
            sound[room - fade :] *= np.linspace(1.0, 0.0, fade)
    clip = np.zeros(total, dtype=np.float32)
    clip[start : start + len(sound)] = sound
    return clip[None]


class SyntheticSounds(Dataset):
    """``num_items`` clips of ``seconds`` seconds at ``sample_rate`` Hz, classes in turn.

    Item ``i`` is rendered from the random stream seeded by (``seed``, ``i``), so the dataset is the
    same on every machine and in every worker (rendering takes well under a millisecond a clip).
    Each item is a dict with ``audio`` (1 × samples), ``label`` (int), ``caption`` (str) and
    ``seconds``. Indexing with ``(i, seconds)`` renders item ``i`` at another length (the sound
    fitted inside it), for duration-conditioned training.
    """

    def __init__(self, num_items: int = 4096, seconds: float = 1.0, sample_rate: int = 16000, seed: int = 0,
                 classes: list[str] | None = None) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be positive, got {num_items}")
        if not 0.05 <= seconds <= 60:
            raise ValueError(f"seconds must be between 0.05 and 60, got {seconds}")
        self.classes = list(classes) if classes else list(CLASSES)
        unknown = set(self.classes) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown synthetic classes {sorted(unknown)}; valid: {', '.join(CLASSES)}")
        self.num_items = num_items
        self.seconds = seconds
        self.sample_rate = sample_rate
        self.seed = seed

    @property
    def labels(self) -> list[str]:
        return self.classes

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, key: int | tuple[int, float]) -> dict:
        index, seconds = key if isinstance(key, tuple) else (key, self.seconds)
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} items")
        rng = np.random.default_rng([self.seed, index])
        label = index % len(self.classes)
        name = self.classes[label]
        audio = synthesize(name, rng, self.sample_rate, seconds)
        return {"audio": torch.from_numpy(audio), "label": label, "caption": caption(name, rng),
                "seconds": float(seconds)}
