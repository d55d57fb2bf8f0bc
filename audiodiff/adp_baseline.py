"""The outside baseline of ``audiodiff-bench --vs-adp``: audio-diffusion-pytorch's waveform model.

Its README model (``DiffusionModel`` with ``UNetV0``, ``VDiffusion`` and ``VSampler``: 217M
parameters, 9 levels with factors 1, 4, 4, 4, 2, 2, 2, 2, 2) with every level's width scaled by one
factor, and the modulation and attention widths narrowed, until its parameter count is closest to
ours. It is not a project dependency: ``pip install 'audiodiff[bench]'`` brings it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

README_CHANNELS = (8, 32, 64, 128, 256, 512, 512, 1024, 1024)
FACTORS = (1, 4, 4, 4, 2, 2, 2, 2, 2)
ITEMS = (1, 2, 2, 2, 2, 2, 2, 4, 4)
ATTENTIONS = (0, 0, 0, 0, 0, 1, 1, 1, 1)
GROUPS = 8  # UNetV0's GroupNorm groups: every width must be a multiple of it


class BaselineMissingError(RuntimeError):
    """audio-diffusion-pytorch is not installed."""


def build_adp_model(scale: float) -> nn.Module:
    """audio-diffusion-pytorch's README waveform model (mono) with every level's width times ``scale``
    (rounded to a multiple of 8) and 256-wide modulation, 4 heads of 32 in attention (the README
    uses 1024 and 8 × 64, which alone outweigh a 5M-parameter model)."""
    try:
        from audio_diffusion_pytorch import DiffusionModel, UNetV0, VDiffusion, VSampler
    except ImportError:
        raise BaselineMissingError("--vs-adp needs audio-diffusion-pytorch: pip install 'audiodiff[bench]' "
                                   "(or pip install audio-diffusion-pytorch)") from None
    channels = [max(GROUPS, round(c * scale / GROUPS) * GROUPS) for c in README_CHANNELS]
    return DiffusionModel(net_t=UNetV0, in_channels=1, channels=channels, factors=list(FACTORS), items=list(ITEMS),
                          attentions=list(ATTENTIONS), attention_heads=4, attention_features=32,
                          modulation_features=256, diffusion_t=VDiffusion, sampler_t=VSampler).eval()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def adp_model_like(parameters: int) -> nn.Module:
    """The scaled baseline whose parameter count is closest to ``parameters``: scales from 1/16 up
    a log grid (the count grows with the scale), stopping at the first one past the target."""
    best, best_gap = None, math.inf
    for scale in (2 ** (i / 4) for i in range(-16, 9)):  # 1/16 to 4
        model = build_adp_model(scale)
        count = count_parameters(model)
        gap = abs(math.log(count / parameters))
        if gap < best_gap:
            best, best_gap = model, gap
        if count > parameters:
            break
    return best


def adp_generate(model: nn.Module, batch: int, samples: int, steps: int, seed: int = 0) -> torch.Tensor:
    """``batch`` clips (batch × 1 × samples; padded up to a multiple of the U-Net's total factor of
    2048 and cut back) from ``steps`` steps of its VSampler, one network call per step."""
    multiple = math.prod(FACTORS)
    padded = -(-samples // multiple) * multiple
    noise = torch.randn(batch, 1, padded, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return model.sample(noise, num_steps=steps)[..., :samples]
