"""Rendering spread over several processes or devices through Lightning's predict loop.

Every process composes the same batches (see :mod:`audiodiff.rendering`) and takes every N-th of
them (batch i goes to rank i mod N), so each file is generated in the same batch, and written with
the same bytes, whatever the number of processes. Imported only when more than one device is asked
for: importing Lightning costs seconds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from audiodiff.rendering import BatchRenderer, RenderJob, RenderReport, compose_batches

NO_BATCH = -1  # the item of a rank with no batch of its own, so that it still takes part in the gathering


class RenderTask(L.LightningModule):
    """Predict-loop wrapper: each item is the index of a composed batch; ``predict_step`` renders it."""

    def __init__(self, renderer: BatchRenderer, batches: Sequence[Sequence[RenderJob]], threads: int = 0,
                 progress: bool | None = None) -> None:
        super().__init__()
        self.renderer = renderer
        self.model = renderer.pipe.model  # a submodule, so that Lightning moves it to this rank's device
        self.batches = list(batches)
        self.threads = threads
        self.progress = progress
        self.report = RenderReport()
        self.reports: list[RenderReport] = []

    def predict_dataloader(self) -> DataLoader:
        mine = list(range(self.global_rank, len(self.batches), self.trainer.world_size))
        return DataLoader(mine or [NO_BATCH], batch_size=None)

    def on_predict_start(self) -> None:
        from tqdm.auto import tqdm

        if self.threads:
            torch.set_num_threads(self.threads)  # Lightning splits the cores between processes; keep the asked count
        self.done = self.renderer.done()
        mine = [job for i in range(self.global_rank, len(self.batches), self.trainer.world_size)
                for job in self.batches[i]]
        show = self.global_rank == 0 and (self.progress is None or self.progress)
        self.bar = tqdm(total=sum(job.file not in self.done for job in mine), unit="clip",
                        disable=None if show else True, desc=f"rendering (rank 0 of {self.trainer.world_size})")

    def predict_step(self, index: int, batch_idx: int) -> None:
        if index != NO_BATCH:
            self.bar.update(self.renderer.render(self.batches[index], self.done, self.report))

    def on_predict_epoch_end(self) -> None:
        self.bar.close()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, self.report)
            self.reports = gathered
        else:
            self.reports = [self.report]


def render_distributed(renderer: BatchRenderer, jobs: Sequence[RenderJob], batch_size: int, devices: int,
                       accelerator: str = "auto", strategy: str = "ddp", threads: int = 0,
                       progress: bool | None = None) -> RenderReport | None:
    """Render ``jobs`` with ``devices`` processes (``strategy`` ``ddp`` relaunches this command for
    ranks 1..N-1). Returns the merged report of all ranks on rank 0, None on the others."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no tips and banners in a render log
    warnings.filterwarnings("ignore", message=".*predict returned None.*")
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    task = RenderTask(renderer, compose_batches(jobs, batch_size), threads, progress)
    trainer.predict(task, return_predictions=False)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # A process group left for interpreter exit to tear down can abort the process ("terminate
        # called without an active exception") after every file is written: close it here.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if trainer.global_rank != 0:
        return None
    merged = RenderReport()
    for report in task.reports:
        merged.merge(report)
    return merged
