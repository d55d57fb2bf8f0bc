"""Synthetic game lasers and explosions for the default model's training data.

The real recordings hold only four lasers and two explosions (before augmentation), too few for the
model to learn their shape: its lasers came out as flat tonal bursts, not the falling "pew" of every
real one. These renderers draw many variants of what the real clips share, with random parameters:

- laser: a harmonic-rich tone (square or sawtooth, sometimes with a second voice an octave up) gliding
  down 1-2.3 octaves from 0.6-3.5 kHz in 0.12-0.45 s, decaying as it falls;
- explosion: a low thump under broadband noise whose high bands die faster than its low ones, with
  sparse crackle, 0.7-2 s.

Everything is generated here from a seed, so the clips carry no one else's licence.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

LABELS = ("laser", "explosion")


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _band_limited(phase: np.ndarray, freq: np.ndarray, sample_rate: int, odd_only: bool) -> np.ndarray:
    """A square (``odd_only``) or sawtooth wave from its harmonics, each dropped where it would pass
    Nyquist, so the glide does not alias."""
    out = np.zeros_like(phase)
    for k in range(1, 40, 2 if odd_only else 1):
        out += np.where(k * freq < 0.45 * sample_rate, np.sin(k * phase) / k, 0.0)
    return out


def render_laser(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One laser shot, mono float32 in [-1, 1] at ``sample_rate`` Hz."""
    seconds = rng.uniform(0.12, 0.45)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    start = _log_uniform(rng, 600.0, 3500.0)
    drop = _log_uniform(rng, 2.0, 5.0)
    bend = rng.uniform(0.5, 1.5)  # < 1: falls fast then settles; > 1: falls late
    freq = start * drop ** (-((t / seconds) ** bend))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    odd_only = bool(rng.integers(2))
    tone = _band_limited(phase, freq, sample_rate, odd_only)
    if rng.random() < 0.35:
        tone += rng.uniform(0.3, 0.7) * _band_limited(2 * phase, 2 * freq, sample_rate, odd_only)
    decay = rng.uniform(1.0, 4.0)  # nepers over the clip
    envelope = np.exp(-decay * t / seconds) * np.minimum(1.0, t / 0.002) * np.minimum(1.0, (seconds - t) / 0.01)
    return _peak(tone * envelope)


def render_explosion(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One explosion, mono float32 in [-1, 1] at ``sample_rate`` Hz."""
    seconds = rng.uniform(0.7, 2.0)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal(n)
    out = np.zeros(n)
    # Three bands of one noise, each with its own decay: the highs die first, the rumble last.
    bands = ((None, 250.0, 1.0, 0.45), (250.0, 2000.0, 0.8, 0.25), (2000.0, None, 0.6, 0.12))
    for low, high, level, tau in bands:
        if low is None:
            sos = signal.butter(4, high, "lowpass", fs=sample_rate, output="sos")
        elif high is None:
            sos = signal.butter(4, low, "highpass", fs=sample_rate, output="sos")
        else:
            sos = signal.butter(4, (low, high), "bandpass", fs=sample_rate, output="sos")
        band = signal.sosfilt(sos, noise)
        band /= np.abs(band).max() + 1e-9
        out += level * band * np.exp(-t / (tau * seconds * rng.uniform(0.7, 1.4)))
    thump_freq = rng.uniform(40.0, 90.0) * np.exp(-t / 0.15) + 30.0
    out += rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * np.cumsum(thump_freq) / sample_rate) * np.exp(-t / 0.25)
    crackles = rng.random(n) < rng.uniform(20.0, 120.0) / sample_rate
    out += 0.2 * signal.lfilter([1.0], [1.0, -0.9], crackles * rng.standard_normal(n)) * np.exp(-t / (0.5 * seconds))
    out *= np.minimum(1.0, t / 0.003) * np.minimum(1.0, (seconds - t) / 0.05)
    return _peak(out)


def _peak(audio: np.ndarray) -> np.ndarray:
    return (audio / (np.abs(audio).max() + 1e-9)).astype(np.float32)


RENDERERS = {"laser": render_laser, "explosion": render_explosion}
