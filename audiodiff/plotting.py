"""Spectrogram pictures of clips (PNG), drawn with matplotlib: the optional ``plot`` extra."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


class PlottingUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlottingUnavailableError` with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlottingUnavailableError("spectrogram pictures need matplotlib: pip install 'audiodiff[plot]'") from None


def save_spectrogram(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, title: str = "") -> Path:
    """Write a PNG of the spectrogram (dB, 32 ms windows) of a channels × frames clip, atomically."""
    require_matplotlib()
    from matplotlib.figure import Figure

    mono = np.asarray(samples, dtype=np.float64).mean(axis=0)
    window = max(64, int(0.032 * sample_rate))
    fig = Figure(figsize=(6, 3), dpi=100)
    ax = fig.add_subplot()
    ax.specgram(mono, NFFT=window, Fs=sample_rate, noverlap=window * 3 // 4, cmap="magma", vmin=-120)
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    fig.tight_layout()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
