"""Spectral distances between a reconstructed and a reference waveform (batch × 1 × samples):
the training losses of the neural vocoder and the measures its recipe reports."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from audiodiff.vocoders.base import MelSettings

MAGNITUDE_FLOOR = 1e-5  # linear magnitude floor before the log (-100 dB)

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) in samples


class LogMelDistance(nn.Module):
    """Mean absolute difference of the natural log of mel magnitudes (square root of mel power,
    floored at 1e-5), the "mel L1" of HiFi-GAN and Vocos."""

    def __init__(self, settings: MelSettings) -> None:
        super().__init__()
        self.mel = settings.transform()

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """batch × 1 × samples → batch × n_mels × frames, ln mel magnitude."""
        return 0.5 * torch.log(self.mel(wave.squeeze(1).float()).clamp(min=MAGNITUDE_FLOOR**2))

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(estimate) - self.log_mel(reference)).abs().mean()


class MultiResolutionSTFTDistance(nn.Module):
    """Spectral convergence (relative Frobenius error of the magnitude) plus the mean absolute
    difference of log magnitudes, averaged over several STFT resolutions (Yamamoto et al., 2020)."""

    def __init__(self, resolutions: Sequence[tuple[int, int]] = RESOLUTIONS) -> None:
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _magnitude(self, wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        spec = torch.stft(wave.squeeze(1).float(), n_fft, hop, n_fft, getattr(self, f"window_{n_fft}"),
                          return_complex=True)
        return spec.abs().clamp(min=MAGNITUDE_FLOOR)

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for n_fft, hop in self.resolutions:
            est, ref = self._magnitude(estimate, n_fft, hop), self._magnitude(reference, n_fft, hop)
            convergence = torch.linalg.norm(ref - est) / torch.linalg.norm(ref).clamp(min=MAGNITUDE_FLOOR)
            total = total + convergence + (est.log() - ref.log()).abs().mean()
        return total / len(self.resolutions)
