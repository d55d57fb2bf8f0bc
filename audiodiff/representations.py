"""The model space: waveform → normalised features the U-Net sees, and back.

Both representations map batch × audio channels × samples to batch × channels × frames and back,
so the diffusion model and the samplers never need to know which one they work on.
"""

from __future__ import annotations

import torch
from torch import nn

from audiodiff.vocoders.base import MelSettings

DB_FLOOR = -100.0  # dB; silence maps here instead of -inf


class Representation(nn.Module):
    """Interface: ``encode`` a waveform into model space and ``decode`` it back."""

    sample_rate: int
    channels: int

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, features: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """Model-space frames for a clip of ``num_samples`` audio samples."""
        raise NotImplementedError

    def fit_statistics(self, wave: torch.Tensor) -> None:
        """Fix the normalisation from a batch of training audio (no-op where there is none)."""

    @property
    def statistics_fitted(self) -> bool:
        return True


class Waveform(Representation):
    """Raw waveform: model channels are audio channels, one frame per sample."""

    def __init__(self, sample_rate: int = 16000, audio_channels: int = 1, scale: float = 1.0) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.channels = audio_channels
        self.scale = scale

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        return wave * self.scale

    def decode(self, features: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        wave = (features / self.scale).clamp(-1.0, 1.0)
        return wave if num_samples is None else wave[..., :num_samples]

    def num_frames(self, num_samples: int) -> int:
        return num_samples


class MelSpectrogram(Representation):
    """Log-mel power spectrogram in dB, standardised with statistics fixed at training start.

    Model space is batch × n_mels × frames with roughly zero mean and unit variance. Decoding undoes
    the normalisation and hands the mel power to a vocoder (Griffin-Lim unless another is given).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        vocoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        f_max = float(f_max) if f_max is not None else sample_rate / 2
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(
                f"mel f_min/f_max must satisfy 0 <= f_min < f_max <= sample_rate/2 = {sample_rate / 2} Hz, "
                f"got f_min={f_min}, f_max={f_max}"
            )
        if hop_length <= 0 or n_fft < hop_length:
            raise ValueError(f"need 0 < hop_length <= n_fft, got hop_length={hop_length}, n_fft={n_fft}")
        self.settings = MelSettings(sample_rate, n_fft, hop_length, n_mels, float(f_min), f_max)
        self.sample_rate = sample_rate
        self.channels = n_mels
        self.hop_length = hop_length
        self.mel = self.settings.transform()
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("std", torch.tensor(1.0))
        self.register_buffer("fitted", torch.tensor(False))
        self.vocoder = vocoder if vocoder is not None else _default_vocoder()
        self.vocoder.bind(self.settings)

    def set_vocoder(self, vocoder: nn.Module) -> None:
        """Swap the vocoder used by :meth:`decode`; it is bound to this representation's settings."""
        vocoder.bind(self.settings)
        self.vocoder = vocoder

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """batch × 1 × samples → batch × n_mels × frames, in dB (floored at -100 dB)."""
        power = self.mel(wave.mean(dim=1).float())
        return 10.0 * torch.log10(power.clamp(min=10.0 ** (DB_FLOOR / 10.0)))

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(wave) - self.mean) / self.std

    def decode(self, features: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        db = (features.float() * self.std + self.mean).clamp(DB_FLOOR, 40.0)
        return self.vocoder(10.0 ** (db / 10.0), num_samples)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1

    def fit_statistics(self, wave: torch.Tensor) -> None:
        # One mean and spread for all bins: per-bin statistics were tried and learned the labels
        # more slowly on the synthetic data.
        db = self.log_mel(wave)
        self.mean.fill_(db.mean().item())
        self.std.fill_(max(db.std().item(), 1e-3))
        self.fitted.fill_(True)

    @property
    def statistics_fitted(self) -> bool:
        return bool(self.fitted)


def _default_vocoder() -> nn.Module:
    from audiodiff.vocoders.griffin_lim import GriffinLim

    return GriffinLim()
