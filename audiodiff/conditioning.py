"""Conditioners turn what the user asks for into the vector the U-Net is conditioned on.

Each conditioner maps a batch of requests to batch × ``dim`` and reserves a learned "null"
condition, used when training drops the condition (classifier-free guidance) and as the
unconditional branch when sampling with guidance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class UnknownLabelError(ValueError):
    """A label that the model was not trained on."""


class ClassLabelConditioner(nn.Module):
    """A learned embedding per class label, plus one for the null condition."""

    def __init__(self, labels: Sequence[str] | None = None, dim: int = 128) -> None:
        super().__init__()
        if not labels:
            raise ValueError("ClassLabelConditioner needs the list of label names (got none)")
        if len(set(labels)) != len(labels):
            raise ValueError(f"label names must be unique, got {list(labels)}")
        self.labels = [str(label) for label in labels]
        self.dim = dim
        self.embedding = nn.Embedding(len(self.labels) + 1, dim)

    @property
    def null_id(self) -> int:
        return len(self.labels)

    def label_id(self, label: str | int) -> int:
        """Index of a label given by name (or already as an index)."""
        if isinstance(label, int) and not isinstance(label, bool):
            if 0 <= label < len(self.labels):
                return label
        elif str(label) in self.labels:
            return self.labels.index(str(label))
        raise UnknownLabelError(f"unknown label {label!r}; this model knows: {', '.join(self.labels)}")

    def forward(self, label_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(label_ids)

    def null(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The null condition for ``batch`` items (batch × dim)."""
        return self.embedding(torch.full((batch,), self.null_id, dtype=torch.long, device=device))
