"""A small label classifier trained on a reference set's embeddings, to tell which label a clip sounds like.

``audiodiff-eval`` trains it on the reference folder's training clips and asks it about generated
clips and about held-out real clips: the second figure is what a perfect model's clips would score.
A one-hidden-layer MLP, trained full-batch with Adam on the standardised embedding: a second or two
on the CPU, and the same weights for the same data and seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class LabelClassifier:
    """MLP (``hidden`` units, GELU, dropout) over standardised embedding vectors.

    Classes are weighted by the inverse of their count, so a label with many training clips
    (tabla: 84) does not win the doubtful cases over one with few (coin: 16).
    """

    def __init__(self, hidden: int = 128, epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-3,
                 dropout: float = 0.2, seed: int = 0) -> None:
        self.hidden_units = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.seed = seed
        self.labels: list[str] = []
        self.net: nn.Sequential | None = None

    def fit(self, features: np.ndarray, labels: Sequence[str]) -> LabelClassifier:
        """Train on N × dim ``features`` with one label each."""
        self.labels = sorted(set(labels))
        if len(self.labels) < 2:
            raise ValueError(f"a label classifier needs at least two labels, got {self.labels}")
        self.mean = features.mean(axis=0)
        self.std = features.std(axis=0) + 1e-6
        x = self._standardise(features)
        index = {label: i for i, label in enumerate(self.labels)}
        y = torch.tensor([index[label] for label in labels])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # the initial weights and the dropout masks
            self.net = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(x.shape[1], self.hidden_units), nn.GELU(),
                                     nn.Dropout(self.dropout), nn.Linear(self.hidden_units, len(self.labels)))
            weight = len(y) / (len(self.labels) * torch.bincount(y, minlength=len(self.labels)).clamp(min=1))
            loss_fn = nn.CrossEntropyLoss(weight=weight.float())
            optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            self.net.train()
            for _ in range(self.epochs):
                optimizer.zero_grad()
                loss_fn(self.net(x), y).backward()
                optimizer.step()
        self.net.eval()
        return self

    def _standardise(self, features: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((np.asarray(features, dtype=np.float64) - self.mean) / self.std).float()

    def _check_fitted(self) -> nn.Sequential:
        if self.net is None:
            raise RuntimeError("the classifier is not trained yet; call fit() first")
        return self.net

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> list[str]:
        """The most likely label of each row of N × dim ``features``."""
        logits = self._check_fitted()(self._standardise(features))
        return [self.labels[i] for i in logits.argmax(dim=1).tolist()]

    @torch.no_grad()
    def hidden(self, features: np.ndarray) -> np.ndarray:
        """The hidden layer's activations (N × ``hidden``) of N × dim ``features``."""
        net = self._check_fitted()
        return net[:3](self._standardise(features)).double().numpy()
