"""Griffin-Lim phase reconstruction: the training-free vocoder."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from audiodiff.vocoders.base import MelSettings


class GriffinLim(nn.Module):
    """Mel power spectrogram → waveform by inverting the mel filterbank (least squares) and then
    iterating Griffin-Lim phase estimates (Griffin & Lim, 1984)."""

    def __init__(self, n_iter: int = 64, momentum: float = 0.99) -> None:
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"GriffinLim n_iter must be at least 1, got {n_iter}")
        self.n_iter = n_iter
        self.momentum = momentum
        self.settings: MelSettings | None = None

    @property
    def config(self) -> dict:
        """Constructor arguments as a ``_target_`` node."""
        return {"_target_": "audiodiff.vocoders.GriffinLim", "n_iter": self.n_iter, "momentum": self.momentum}

    def bind(self, settings: MelSettings) -> None:
        """Configure for the mel settings of the representation this vocoder serves."""
        self.settings = settings
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=settings.n_fft // 2 + 1,
            n_mels=settings.n_mels,
            sample_rate=settings.sample_rate,
            f_min=settings.f_min,
            f_max=settings.f_max,
            norm="slaney",
            mel_scale="slaney",
        )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=settings.n_fft,
            hop_length=settings.hop_length,
            power=2.0,
            n_iter=self.n_iter,
            momentum=self.momentum,
            rand_init=False,  # a random initial phase would make the same seed give different audio
        )

    def forward(self, mel_power: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """batch × n_mels × frames mel power → batch × 1 × samples waveform."""
        if self.settings is None:
            raise RuntimeError("GriffinLim.bind(settings) must be called before decoding")
        linear = self.inverse_mel(mel_power.float()).clamp(min=0.0)
        wave = self.griffin_lim(linear)
        if num_samples is not None:
            wave = torch.nn.functional.pad(wave, (0, max(0, num_samples - wave.shape[-1])))[..., :num_samples]
        return wave.unsqueeze(1)
