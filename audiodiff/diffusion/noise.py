"""Per-item seeded noise, so that an item's audio depends on its own seed only, not on the batch
it was generated in."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class SeededNoise:
    """Draws standard normal noise for a batch, item ``i`` from its own generator seeded ``seeds[i]``.

    Calling it with a tensor shaped batch × ... returns fresh noise of that shape; successive calls
    continue each item's stream, as a sampler's steps need.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.generators = []
        for seed in seeds:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(seed))
            self.generators.append(gen)

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        if like.shape[0] != len(self.generators):
            raise ValueError(f"noise for {like.shape[0]} items requested from {len(self.generators)} seeds")
        items = [
            torch.randn(like.shape[1:], generator=gen, device=self.device, dtype=torch.float32)
            for gen in self.generators
        ]
        return torch.stack(items).to(device=like.device, dtype=like.dtype)
