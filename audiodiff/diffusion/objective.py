"""What the network predicts (epsilon, v or x0) and the training loss that follows."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiodiff.conditioning import Conditioning
from audiodiff.diffusion.schedules import alpha_sigma

PREDICTIONS = ("v", "epsilon", "x0")


class DiffusionObjective(nn.Module):
    """Continuous-time diffusion loss on the cosine schedule.

    ``prediction`` picks the network target: ``v = alpha·noise − sigma·x0`` (Salimans & Ho, 2022),
    ``epsilon`` (the noise) or ``x0`` (the clean signal). Times are drawn uniformly from
    [t_min, t_max] to keep away from the schedule's singular ends.
    """

    def __init__(self, prediction: str = "v", t_min: float = 1e-3, t_max: float = 0.999) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.prediction = prediction
        self.t_min = t_min
        self.t_max = t_max

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "x0":
            return x0
        alpha, sigma = (s[:, None, None] for s in alpha_sigma(t))
        return alpha * noise - sigma * x0

    def to_x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Network output at time t → estimate of the clean signal."""
        if self.prediction == "x0":
            return output
        alpha, sigma = (s[:, None, None] for s in alpha_sigma(t))
        if self.prediction == "v":
            return alpha * x_t - sigma * output
        return (x_t - sigma * output) / alpha.clamp(min=1e-4)

    def loss(self, net: nn.Module, x0: torch.Tensor, cond: torch.Tensor | Conditioning | None = None,
             t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error of the network's prediction at random (or given) times."""
        if t is None:
            t = torch.empty(x0.shape[0], device=x0.device).uniform_(self.t_min, self.t_max)
        if noise is None:
            noise = torch.randn_like(x0)
        alpha, sigma = (s[:, None, None] for s in alpha_sigma(t))
        x_t = alpha * x0 + sigma * noise
        return F.mse_loss(net(x_t, t, cond), self.target(x0, noise, t))
