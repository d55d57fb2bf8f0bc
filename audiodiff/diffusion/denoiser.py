"""The one place where a trained network becomes a denoiser ``D(x, sigma) → x0`` for samplers,
with classifier-free guidance."""

from __future__ import annotations

import torch
from torch import nn

from audiodiff.conditioning import Conditioning
from audiodiff.diffusion.objective import DiffusionObjective
from audiodiff.diffusion.schedules import sigma_to_t


class Denoiser:
    """Wraps a network trained with a :class:`DiffusionObjective` (any prediction type) as a
    variance-exploding denoiser: ``x = x0 + sigma · noise`` in, estimate of ``x0`` out.

    With ``uncond`` given and ``guidance != 1`` it applies classifier-free guidance,
    ``x0 = x0_uncond + guidance · (x0_cond − x0_uncond)`` (Ho & Salimans, 2022), optionally with
    guidance rescale (Lin et al., 2023) to keep the guided estimate's spread at the conditional one's.
    """

    def __init__(self, net: nn.Module, objective: DiffusionObjective, cond: torch.Tensor | Conditioning | None = None,
                 uncond: torch.Tensor | Conditioning | None = None, guidance: float = 1.0,
                 guidance_rescale: float = 0.0) -> None:
        self.net = net
        self.objective = objective
        self.cond = cond
        self.uncond = uncond
        self.guidance = float(guidance)
        self.guidance_rescale = float(guidance_rescale)
        # The doubled condition batch is the same at every step: build it once.
        if self.guided:
            self._both = torch.cat([cond, uncond]) if isinstance(cond, torch.Tensor) else cond.cat(uncond)

    @property
    def guided(self) -> bool:
        return self.uncond is not None and self.guidance != 1.0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        t = sigma_to_t(sigma)
        x_t = x / torch.sqrt(1 + sigma**2)[:, None, None]
        if not self.guided:
            return self.objective.to_x0(self.net(x_t, t, self.cond), x_t, t)
        x_both, t_both = torch.cat([x_t, x_t]), torch.cat([t, t])
        both = self.net(x_both, t_both, self._both)
        x0_cond, x0_uncond = self.objective.to_x0(both, x_both, t_both).chunk(2)
        guided = x0_uncond + self.guidance * (x0_cond - x0_uncond)
        if self.guidance_rescale > 0:
            dims = tuple(range(1, x.ndim))
            ratio = x0_cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp(min=1e-8)
            guided = self.guidance_rescale * guided * ratio + (1 - self.guidance_rescale) * guided
        return guided
