"""The LightningDataModule that feeds diffusion (and later vocoder) training."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, random_split

log = logging.getLogger(__name__)

MAX_BATCH_SIZE = 4096


class DurationBatchSampler(Sampler[list[tuple[int, float]]]):
    """Shuffled batches of ``(index, seconds)`` keys with one length per batch, drawn uniformly from
    ``seconds_range`` (in steps of ``quantum`` seconds), so that a duration-conditioned model sees
    every length while each batch stays one tensor. ``seed`` and the epoch fix the draws."""

    def __init__(self, num_items: int, batch_size: int, seconds_range: Sequence[float], shuffle: bool = True,
                 drop_last: bool = True, seed: int = 0, quantum: float = 0.05) -> None:
        low, high = (float(x) for x in seconds_range)
        if not 0 < low <= high:
            raise ValueError(f"seconds_range must be [min, max] with 0 < min <= max, got {list(seconds_range)}")
        self.num_items, self.batch_size, self.low, self.high = num_items, batch_size, low, high
        self.shuffle, self.drop_last, self.seed, self.quantum = shuffle, drop_last, seed, quantum
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(self.num_items, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += self.shuffle
        order = torch.randperm(self.num_items, generator=gen) if self.shuffle else torch.arange(self.num_items)
        steps = int(round((self.high - self.low) / self.quantum))
        for b in range(len(self)):
            seconds = self.low + self.quantum * int(torch.randint(steps + 1, (1,), generator=gen))
            yield [(int(i), round(seconds, 6)) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]


class AudioDataModule(L.LightningDataModule):
    """Batches of ``{"audio": batch × channels × samples, "label": batch, "caption": list,
    "seconds": batch}``.

    ``dataset`` is any dataset with a ``labels`` attribute (:class:`SyntheticSounds`,
    :class:`AudioFolder`). Without ``val_dataset``, ``val_fraction`` of it is held out (with a fixed
    seed, so a resumed run validates on the same clips). With ``seconds_range`` ([min, max] in
    seconds), each batch has its own clip length in that range (for duration conditioning).
    """

    def __init__(self, dataset: Dataset, val_dataset: Dataset | None = None, val_fraction: float = 0.05,
                 batch_size: int = 32, num_workers: int = 0, seed: int = 0,
                 seconds_range: Sequence[float] | None = None) -> None:
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
        if batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"batch_size={batch_size} is too large; use at most {MAX_BATCH_SIZE}")
        if batch_size > len(dataset):
            log.warning("batch_size=%d is larger than the %d training clips; using %d", batch_size, len(dataset),
                        len(dataset))
            batch_size = len(dataset)
        self.train_set = dataset
        self.val_set = val_dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.seconds_range = list(seconds_range) if seconds_range is not None else None
        if self.seconds_range is not None:
            DurationBatchSampler(1, 1, self.seconds_range)  # checks the range before any work

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        drop_last = shuffle and len(dataset) > self.batch_size
        if self.seconds_range is not None:
            sampler = DurationBatchSampler(len(dataset), self.batch_size, self.seconds_range, shuffle=shuffle,
                                           drop_last=drop_last, seed=self.seed)
            return DataLoader(_Keyed(dataset), batch_sampler=sampler, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=drop_last, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []


class _Keyed(Dataset):
    """Passes ``(index, seconds)`` keys through a :class:`~torch.utils.data.Subset` to its dataset."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, float]) -> dict:
        index, seconds = key
        if isinstance(self.dataset, Subset):
            return self.dataset.dataset[(self.dataset.indices[index], seconds)]
        return self.dataset[(index, seconds)]
