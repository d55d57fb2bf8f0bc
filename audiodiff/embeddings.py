"""Audio embeddings that ``audiodiff-eval`` compares generated and real clips in.

An embedding turns clips (mono float arrays at any rate) into fixed-size vectors: N × dim. It is
picked by name (:data:`EMBEDDINGS`, :func:`get_embedding`); one that learns from the reference
data (``classifier``) is fitted first (:meth:`Embedding.fit`): ``audiodiff-eval`` fits it on the
held-out clips, never on the training clips of the model under test.

The default, ``logmel_stats``, has fixed settings that do not depend on the model being evaluated
nor on the reference data, so its figures compare across models and runs; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import librosa
import numpy as np

from audiodiff.audio import peak_normalize, resample
from audiodiff.label_classifier import LabelClassifier
from audiodiff.postprocess import trim_silence

# Clips are trimmed of leading and trailing audio this far under their peak before embedding, as the
# recipes' prepare scripts trim their clips: a generated clip rendered longer than its sound is not
# told apart from a real one by its silent tail.
TRIM_BELOW_PEAK_DB = 50.0


class Embedding:
    """Clips → vectors. Subclasses set ``name`` and implement :meth:`embed`."""

    name = ""

    def fit(self, clips: Sequence[np.ndarray], sample_rate: int, labels: Sequence[str]) -> Embedding:
        """Learn from reference clips, where the embedding learns anything (default: nothing)."""
        return self

    def embed(self, clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """N × dim float64 vectors of ``clips`` (each samples or 1 × samples, mono, at ``sample_rate`` Hz)."""
        raise NotImplementedError


class LogMelStats(Embedding):
    """Statistics over time of a log-mel spectrogram with fixed settings: per mel band the mean and
    standard deviation of the level (dB) and the mean and standard deviation of its frame-to-frame
    change (librosa delta), plus the log of the clip's sounding length: 4 × ``n_mels`` + 1 values.

    Each clip is resampled to 22050 Hz, trimmed of audio more than 50 dB under its peak and
    peak-normalised (as the recipes prepare real clips), so level and trailing silence do not count.
    """

    name = "logmel_stats"

    def __init__(self, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 64,
                 top_db: float = 80.0) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.top_db = top_db

    @property
    def dim(self) -> int:
        return 4 * self.n_mels + 1

    def embed(self, clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        return np.stack([self._one(np.asarray(c, dtype=np.float32).reshape(1, -1), sample_rate) for c in clips])

    def _one(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = resample(audio, sample_rate, self.sample_rate)
        audio, _ = trim_silence(audio, self.sample_rate, TRIM_BELOW_PEAK_DB)
        seconds = audio.shape[-1] / self.sample_rate
        if np.abs(audio).max() > 0:
            audio = peak_normalize(audio, -1.0)
        # At least one FFT window long (silence after the sound), which librosa would otherwise warn about.
        audio = np.pad(audio, ((0, 0), (0, max(0, self.n_fft - audio.shape[-1]))))
        mel = librosa.feature.melspectrogram(y=audio[0], sr=self.sample_rate, n_fft=self.n_fft,
                                             hop_length=self.hop_length, n_mels=self.n_mels)
        # Relative to a fixed reference (the clips are peak-normalised), floored top_db under it.
        level = librosa.power_to_db(mel, ref=1.0, amin=1e-10)
        level = np.maximum(level, level.max() - self.top_db)
        # mode="nearest" works for clips of a few frames (the default interpolation needs 9).
        delta = librosa.feature.delta(level, width=3, mode="nearest")
        return np.concatenate([level.mean(axis=1), level.std(axis=1), delta.mean(axis=1), delta.std(axis=1),
                               [np.log(max(seconds, 1e-3))]]).astype(np.float64)


class ClassifierEmbedding(Embedding):
    """The hidden layer of a :class:`LabelClassifier` (one MLP) trained on reference clips'
    ``logmel_stats`` (in ``audiodiff-eval``: the held-out clips): an embedding that stresses what tells
    the reference labels apart."""

    name = "classifier"

    def __init__(self, seed: int = 0, base: LogMelStats | None = None) -> None:
        self.base = base or LogMelStats()
        self.classifier = LabelClassifier(seed=seed, members=1)

    def fit(self, clips: Sequence[np.ndarray], sample_rate: int, labels: Sequence[str]) -> ClassifierEmbedding:
        self.classifier.fit(self.base.embed(clips, sample_rate), labels)
        return self

    def embed(self, clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        return self.classifier.hidden(self.base.embed(clips, sample_rate))


EMBEDDINGS: dict[str, Callable[..., Embedding]] = {
    LogMelStats.name: lambda seed=0: LogMelStats(),
    ClassifierEmbedding.name: lambda seed=0: ClassifierEmbedding(seed=seed),
}


def get_embedding(name: str, seed: int = 0) -> Embedding:
    """A new embedding by name (see :data:`EMBEDDINGS`); ``seed`` for those that learn."""
    if name not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {name!r}; valid: {', '.join(EMBEDDINGS)}")
    return EMBEDDINGS[name](seed=seed)
