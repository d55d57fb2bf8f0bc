"""Noise schedules.

Training uses a variance-preserving cosine schedule in continuous time t ∈ [0, 1]:
``x_t = alpha(t) x0 + sigma(t) noise`` with ``alpha = cos(πt/2)``, ``sigma = sin(πt/2)``.
Samplers work in the equivalent variance-exploding form ``x = x0 + s · noise`` (k-diffusion's
convention) where the noise level ``s = sigma/alpha = tan(πt/2)``; the functions here convert
between the two and build the decreasing noise-level sequences that samplers step through.
"""

from __future__ import annotations

import math

import torch

SIGMA_MIN = 0.002  # noise level at the last denoising step (≈ t = 0.0013)
SIGMA_MAX = 80.0  # noise level at the first sampling step (≈ t = 0.992)


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine schedule signal and noise scales at time t ∈ [0, 1]."""
    angle = t * (math.pi / 2)
    return torch.cos(angle), torch.sin(angle)


def sigma_to_t(sigma: torch.Tensor) -> torch.Tensor:
    """Variance-exploding noise level → cosine-schedule time."""
    return torch.atan(sigma) * (2 / math.pi)


def t_to_sigma(t: torch.Tensor) -> torch.Tensor:
    """Cosine-schedule time → variance-exploding noise level."""
    return torch.tan(t * (math.pi / 2))


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def _check(steps: int, sigma_min: float, sigma_max: float) -> None:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def sigmas_cosine(steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """The training schedule's own spacing: uniform in cosine time t, then a final 0."""
    _check(steps, sigma_min, sigma_max)
    t_max = sigma_to_t(torch.tensor(sigma_max, dtype=torch.float64))
    t_min = sigma_to_t(torch.tensor(sigma_min, dtype=torch.float64))
    return _append_zero(t_to_sigma(torch.linspace(t_max.item(), t_min.item(), steps, dtype=torch.float64))).float()


def sigmas_karras(steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022): uniform in sigma^(1/rho), then a final 0."""
    _check(steps, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho).float()


def sigmas_exponential(steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """Uniform in log sigma, then a final 0."""
    _check(steps, sigma_min, sigma_max)
    return _append_zero(
        torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64))
    ).float()


SCHEDULES = {"cosine": sigmas_cosine, "karras": sigmas_karras, "exponential": sigmas_exponential}


def make_sigmas(schedule: str, steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                rho: float = 7.0) -> torch.Tensor:
    """Decreasing noise levels (length steps + 1, ending in 0) from the named schedule."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule == "karras":
        return sigmas_karras(steps, sigma_min, sigma_max, rho)
    return SCHEDULES[schedule](steps, sigma_min, sigma_max)
