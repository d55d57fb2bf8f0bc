"""The LightningDataModule that feeds diffusion (and later vocoder) training."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, random_split


class AudioDataModule(L.LightningDataModule):
    """Batches of ``{"audio": batch × channels × samples, "label": batch, "caption": list}``.

    ``dataset`` is any dataset with a ``labels`` attribute (:class:`SyntheticSounds`,
    :class:`AudioFolder`). Without ``val_dataset``, ``val_fraction`` of it is held out (with a fixed
    seed, so a resumed run validates on the same clips).
    """

    def __init__(self, dataset: Dataset, val_dataset: Dataset | None = None, val_fraction: float = 0.05,
                 batch_size: int = 32, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {num_workers}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.labels: list[str] = list(dataset.labels)
        if val_dataset is None:
            n_val = max(1, int(round(len(dataset) * val_fraction))) if len(dataset) > 1 else 0
            if n_val:
                dataset, val_dataset = random_split(dataset, [len(dataset) - n_val, n_val],
                                                    generator=torch.Generator().manual_seed(seed))
        self.train_set = dataset
        self.val_set = val_dataset
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle and len(dataset) > self.batch_size,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []
