"""Several audio datasets drawn from as one, without labels (for training that needs none, such as
the vocoder's)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

from torch.utils.data import Dataset


class AudioMixture(Dataset):
    """Concatenates ``datasets`` (each yielding ``{"audio": channels × samples, ...}`` items of one
    length), each repeated ``repeats[i]`` times per epoch so that a small folder of recordings is
    not drowned by a large synthetic set. Every item gets the single label ``audio``."""

    labels = ["audio"]

    def __init__(self, datasets: Sequence[Dataset], repeats: Sequence[int] | None = None) -> None:
        if not datasets:
            raise ValueError("AudioMixture needs at least one dataset")
        repeats = list(repeats) if repeats is not None else [1] * len(datasets)
        if len(repeats) != len(datasets) or any(int(r) != r or r < 1 for r in repeats):
            raise ValueError(f"repeats must hold one positive integer per dataset ({len(datasets)}), got {repeats}")
        self.datasets = list(datasets)
        self.sizes = [len(d) * int(r) for d, r in zip(self.datasets, repeats, strict=True)]
        self.offsets = [0, *accumulate(self.sizes)]

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = next(i for i, end in enumerate(self.offsets[1:]) if index < end)
        dataset = self.datasets[part]
        item = dataset[(index - self.offsets[part]) % len(dataset)]
        return {"audio": item["audio"], "label": 0, "caption": item.get("caption", "")}
