"""A feature check that tells which built-in synthetic class a clip sounds like.

No learned model: eight hand-crafted acoustic features (spectral centroid, noisiness, pitch slope,
pitch range, pitch steadiness, sounding length, decay and low-band share) are compared with those of
clean clips rendered by the generator itself, and the clip takes the majority class of its nearest
reference clips. It is how tests and recipes measure whether generated audio follows its label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import librosa
import numpy as np
from scipy.ndimage import median_filter

from audiodiff.data.synthetic import CLASSES, synthesize

if TYPE_CHECKING:
    from audiodiff.model import AudioDiffusionModel
    from audiodiff.pipeline import SamplerSettings

FEATURE_NAMES = (
    "log2_centroid_hz",
    "flatness",
    "pitch_slope_oct_per_s",
    "pitch_range_oct",
    "pitch_steadiness",
    "active_seconds",
    "decay_db",
    "low_band_share",
)


def acoustic_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The eight features of a mono clip (samples or 1 × samples), in FEATURE_NAMES order."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    hop, n_fft = 128, 1024
    spec = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop)) + 1e-10
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    energy = (spec**2).sum(axis=0)
    energy_db = 10 * np.log10(energy + 1e-12)
    active = energy_db > energy_db.max() - 30
    if active.sum() < 2 or energy.max() < 1e-8:
        return np.array([10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    s = spec[:, active]
    power = (s**2).sum(axis=1)
    centroid = float((freqs * power).sum() / power.sum())
    flatness = float(librosa.feature.spectral_flatness(S=s).mean())
    # Median-filtered over 5 frames (40 ms at 16 kHz) so that a glitch in one frame is not a pitch change.
    peak = median_filter(np.log2(np.maximum(freqs[1:][s[1:].argmax(axis=0)], 20.0)), size=5, mode="nearest")
    times = np.flatnonzero(active) * hop / sample_rate
    slope = float(np.clip(np.polyfit(times, peak, 1)[0], -30, 30)) if np.ptp(times) > 0 else 0.0
    pitch_range = float(np.percentile(peak, 90) - np.percentile(peak, 10))
    steadiness = float((np.abs(np.diff(peak)) < 0.05).mean())
    idx = np.flatnonzero(active)
    active_seconds = float((idx[-1] - idx[0] + 1) * hop / sample_rate)
    region = energy[idx[0] : idx[-1] + 1]
    half = max(1, len(region) // 2)
    decay = float(10 * np.log10((region[half:].mean() + 1e-12) / (region[:half].mean() + 1e-12)))
    low_share = float(power[freqs < 250].sum() / power.sum())
    return np.array([np.log2(max(centroid, 20.0)), flatness, slope, pitch_range, steadiness, active_seconds,
                     max(decay, -60.0), low_share])


class SyntheticClassCheck:
    """Assigns clips to the built-in synthetic classes by k-nearest neighbours in standardised
    acoustic-feature space, against ``per_class`` clean reference clips of each class."""

    def __init__(self, sample_rate: int = 16000, seconds: float = 1.0, per_class: int = 40, k: int = 5,
                 classes: Sequence[str] = CLASSES, seed: int = 12345) -> None:
        self.sample_rate = sample_rate
        self.classes = list(classes)
        self.k = k
        feats, labels = [], []
        for c, name in enumerate(self.classes):
            for i in range(per_class):
                rng = np.random.default_rng([seed, c, i])
                feats.append(acoustic_features(synthesize(name, rng, sample_rate, seconds), sample_rate))
                labels.append(c)
        feats = np.stack(feats)
        self.mean = feats.mean(axis=0)
        self.std = feats.std(axis=0) + 1e-6
        self.reference = (feats - self.mean) / self.std
        self.reference_labels = np.array(labels)

    def predict(self, clips: Sequence[np.ndarray]) -> list[str]:
        """The class name each clip (mono, at ``sample_rate``) is closest to."""
        names = []
        for clip in clips:
            z = (acoustic_features(clip, self.sample_rate) - self.mean) / self.std
            nearest = np.argsort(((self.reference - z) ** 2).sum(axis=1))[: self.k]
            votes = np.bincount(self.reference_labels[nearest], minlength=len(self.classes))
            names.append(self.classes[int(votes.argmax())])
        return names

    def accuracy(self, clips: Sequence[np.ndarray], labels: Sequence[str]) -> float:
        """Fraction of clips assigned to their intended class."""
        predicted = self.predict(clips)
        return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))


def sounding_end(audio: np.ndarray, sample_rate: int, floor_db: float = 40.0, frame_seconds: float = 0.01) -> float:
    """Time in seconds at which the clip's sound ends: the end of the last 10 ms frame whose energy
    is within ``floor_db`` dB of the loudest frame (0 for a silent clip)."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop = max(1, int(frame_seconds * sample_rate))
    frames = len(audio) // hop
    if frames == 0:
        return 0.0
    energy = (audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    if energy.max() <= 0:
        return 0.0
    loud = np.flatnonzero(10 * np.log10(energy / energy.max() + 1e-30) > -floor_db)
    return float((loud[-1] + 1) * hop / sample_rate)


def render_prompts(model: AudioDiffusionModel, prompts: Sequence[str], seeds: Sequence[int], seconds: float,
                   settings: SamplerSettings, batch_size: int = 32) -> np.ndarray:
    """Clips (N × channels × samples) of a text-conditioned model, one per (prompt, seed)."""
    clips = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        waves = model.sample(None, list(seeds[chunk]), seconds, prompts=list(prompts[chunk]), sampler=settings.name,
                             steps=settings.steps, schedule=settings.schedule, guidance=settings.guidance,
                             guidance_rescale=settings.guidance_rescale, sampler_options=settings.options,
                             sigma_range=(settings.sigma_min, settings.sigma_max, settings.rho), progress=False)
        clips.extend(waves.float().cpu().numpy())
    return np.stack(clips)


def prompt_accuracy(model: AudioDiffusionModel, check: SyntheticClassCheck, prompts: Mapping[str, Sequence[str]],
                    seeds_per_prompt: int, settings: SamplerSettings) -> tuple[float, dict[str, float]]:
    """How often clips rendered from each class's prompts (``seeds_per_prompt`` seeds each, at the
    model's default length) are assigned to that class: overall and per class."""
    texts, intended = [], []
    for label, phrasings in prompts.items():
        for prompt in phrasings:
            texts += [prompt] * seeds_per_prompt
            intended += [label] * seeds_per_prompt
    clips = render_prompts(model, texts, list(range(len(texts))), model.seconds, settings)
    hits = np.array([p == t for p, t in zip(check.predict(list(clips)), intended, strict=True)])
    per_class = {label: float(hits[[t == label for t in intended]].mean()) for label in prompts}
    return float(hits.mean()), per_class
