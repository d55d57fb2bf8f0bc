"""Discriminators for adversarial vocoder training: multi-period (HiFi-GAN) and multi-resolution
(UnivNet / Vocos) critics with least-squares GAN and feature-matching losses.

Each discriminator maps a waveform (batch × 1 × samples) to a list of (score map, features) pairs,
one per sub-discriminator.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Outputs = list[tuple[torch.Tensor, list[torch.Tensor]]]


class _ConvStack(nn.Module):
    """2D convolutions with leaky ReLUs and a one-channel score map at the end."""

    def __init__(self, channels: Sequence[int], kernel: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2)
        chans = [1, *channels]
        self.convs = nn.ModuleList(weight_norm(nn.Conv2d(a, b, kernel, stride, pad)) for a, b in pairwise(chans))
        self.score = weight_norm(nn.Conv2d(chans[-1], 1, (3, 3) if kernel[1] > 1 else (3, 1),
                                           padding=(1, 1) if kernel[1] > 1 else (1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
            features.append(x)
        x = self.score(x)
        features.append(x)
        return x, features


class MultiPeriodDiscriminator(nn.Module):
    """Looks at the waveform folded into ``period`` columns, for several prime periods, so that
    periodic structure at each of them is judged (Kong et al., 2020)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: Sequence[int] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.periods = list(periods)
        self.stacks = nn.ModuleList(_ConvStack(channels, (5, 1), (3, 1)) for _ in self.periods)

    def forward(self, wave: torch.Tensor) -> Outputs:
        outputs = []
        for period, stack in zip(self.periods, self.stacks, strict=True):
            x = nn.functional.pad(wave, (0, (-wave.shape[-1]) % period), mode="reflect")
            outputs.append(stack(x.view(x.shape[0], 1, -1, period)))
        return outputs


class MultiResolutionDiscriminator(nn.Module):
    """Looks at log-magnitude spectrograms at several STFT resolutions (``(n_fft, hop)`` in samples)."""

    def __init__(self, resolutions: Sequence[tuple[int, int]] = ((512, 128), (1024, 256), (2048, 512)),
                 channels: Sequence[int] = (16, 32, 32, 32)) -> None:
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        self.stacks = nn.ModuleList(_ConvStack(channels, (3, 9), (1, 2)) for _ in self.resolutions)

    def forward(self, wave: torch.Tensor) -> Outputs:
        outputs = []
        for (n_fft, hop), stack in zip(self.resolutions, self.stacks, strict=True):
            window = torch.hann_window(n_fft, device=wave.device)
            spec = torch.stft(wave.squeeze(1), n_fft, hop, n_fft, window, return_complex=True).abs()
            outputs.append(stack(torch.log(spec.clamp(min=1e-5)).unsqueeze(1).transpose(2, 3)))
        return outputs


def discriminator_loss(real: Outputs, fake: Outputs) -> torch.Tensor:
    """Least-squares GAN loss of the critic: real scores towards 1, generated towards 0."""
    return sum(((1 - r) ** 2).mean() + (f**2).mean() for (r, _), (f, _) in zip(real, fake, strict=True)) / len(real)


def generator_loss(fake: Outputs) -> torch.Tensor:
    """Least-squares GAN loss of the generator: its scores towards 1."""
    return sum(((1 - f) ** 2).mean() for f, _ in fake) / len(fake)


def feature_matching_loss(real: Outputs, fake: Outputs) -> torch.Tensor:
    """Mean L1 distance between the critic's intermediate features on real and generated audio."""
    terms = [(fr.detach() - ff).abs().mean() for (_, r), (_, f) in zip(real, fake, strict=True)
             for fr, ff in zip(r, f, strict=True)]
    return sum(terms) / len(terms)
