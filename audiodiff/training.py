"""Lightning training of :class:`AudioDiffusionModel`: the LightningModule (with EMA weights and
condition dropout for classifier-free guidance) and the callback that renders audio while training."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from audiodiff.audio import save_audio
from audiodiff.conditioning import Conditioner
from audiodiff.model import AudioDiffusionModel
from audiodiff.model_files import read_model_files
from audiodiff.pipeline import SamplerSettings
from audiodiff.prompts import slug

log = logging.getLogger(__name__)


def warmup_cosine(warmup_steps: int, total_steps: int | None, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate factor of a step: linear warm-up over ``warmup_steps``, then a cosine down to
    ``min_ratio`` at ``total_steps`` (constant 1 after the warm-up when ``total_steps`` is None)."""
    warmup = max(1, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if total_steps is None:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def warmup_cosine_optimizer(params, lr: float, weight_decay: float, warmup_steps: int, max_steps: int | None,
                            min_lr_ratio: float) -> dict:
    """AdamW with :func:`warmup_cosine` stepped every optimizer step, as Lightning's
    ``configure_optimizers`` returns it (``max_steps`` None: constant after the warm-up)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup_steps, max_steps, min_lr_ratio))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def load_weights(model: AudioDiffusionModel, path: str, key: str) -> dict:
    """Load a trained model's weights (a checkpoint's EMA) into ``model`` and return that model's
    config. Only the weights: the model is not built from its files, so its text encoder need not be
    installed here. A mismatch is a ValueError naming the config ``key``."""
    config, state = read_model_files(path)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as err:
        raise ValueError(f"{key}={path}: its weights do not fit the configured model ({err})") from None
    log.info("starting from the weights of %s", path)
    return config


def check_finite(loss: torch.Tensor, step: int, advice: str) -> torch.Tensor:
    """``loss``, or a FloatingPointError naming the step and what to do when it is NaN or infinite."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()} at step {step}; {advice}")
    return loss


def drop_conditions(conditioner: Conditioner, labels: torch.Tensor | None, prompts: list[str | None],
                    probability: float) -> tuple[torch.Tensor | None, list[str | None]]:
    """Condition dropout for classifier-free guidance: each of the model's condition parts (label,
    text) is replaced by its null with probability ``probability ** (1 / parts)``, so the null
    condition as a whole comes up with ``probability`` and a label or a prompt alone also occurs."""
    p = probability ** (1 / max(1, conditioner.parts))
    if conditioner.label is not None and labels is not None and p > 0:
        drop = torch.rand(labels.shape, device=labels.device) < p
        labels = torch.where(drop, torch.full_like(labels, conditioner.label.null_id), labels)
    if conditioner.text is not None:
        drop = (torch.rand(len(prompts)) < p).tolist()
        prompts = [None if d or not text else text for d, text in zip(drop, prompts, strict=True)]
    return labels, prompts


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, updates: torch.Tensor, decay: float) -> None:
    """Move ``ema``'s weights towards ``model``'s; the decay is warmed up as
    ``min(decay, (1 + n) / (10 + n))`` after n updates (counted in the ``updates`` buffer)."""
    n = int(updates)
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - min(decay, (1 + n) / (10 + n)))
    updates += 1


class DiffusionTask(L.LightningModule):
    """Trains the model built from ``model`` (a resolved config dict, saved in every checkpoint).

    ``ema_decay`` is the decay of the exponential moving average of the weights (warmed up as
    ``min(decay, (1 + n) / (10 + n))`` after n updates so short runs are not dominated by the
    initial weights); the EMA weights are the ones validated, rendered and exported.
    ``cond_dropout`` is the probability of training an item on the null condition; a model with
    both labels and text drops each of them with probability ``cond_dropout ** 0.5``, so it also
    learns from a label alone and from a prompt alone. After
    ``warmup_steps`` of linear warm-up the learning rate follows a cosine down to ``min_lr_ratio``
    times ``lr`` at ``trainer.max_steps`` (``lr_decay=false`` keeps it constant). ``init_from`` (a
    model folder or checkpoint of the same config) starts a new run from its weights, without its
    optimizer state: fine-tuning, or moving a run to a machine its checkpoint cannot travel to.
    """

    starting_weights: ClassVar[tuple[str, ...]] = ("init_from",)  # read by a new run only, not on resume

    def __init__(self, model: dict, lr: float = 3e-4, weight_decay: float = 0.0, warmup_steps: int = 100,
                 lr_decay: bool = True, min_lr_ratio: float = 0.1, ema_decay: float = 0.999,
                 cond_dropout: float = 0.1, stats_batches: int = 4, val_noise_levels: int = 8,
                 init_from: str | None = None) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if not 0 <= cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {cond_dropout}")
        self.save_hyperparameters()
        self.model = AudioDiffusionModel.from_config(model, vocoder_files=True)
        # with the text encoder's identity filled in, and a loaded vocoder kept as its architecture
        self.hparams["model"] = self.model.config
        if init_from is not None:
            load_weights(self.model, init_from, "task.init_from")
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.register_buffer("ema_updates", torch.tensor(0, dtype=torch.long))

    @classmethod
    def from_run_config(cls, cfg: DictConfig, datamodule: L.LightningDataModule) -> DiffusionTask:
        """Build from an ``audiodiff-train`` config: the ``model`` node, with the dataset's labels,
        and the ``task`` node's arguments."""
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        conditioner = model_cfg["conditioner"]
        if conditioner.get("label") is not None:
            conditioner["label"]["labels"] = datamodule.labels
        if cfg.seconds_range is not None and conditioner.get("duration") is None:
            low, high = (float(x) for x in cfg.seconds_range)
            if not low <= cfg.seconds <= high:
                raise ValueError(f"seconds={cfg.seconds} (the default length) must lie in seconds_range={[low, high]}")
            conditioner["duration"] = {"_target_": "audiodiff.conditioning.DurationEmbedding", "_partial_": True,
                                       "min_seconds": low, "max_seconds": high}
        args = OmegaConf.to_container(cfg.task, resolve=True)
        args.pop("_target_", None)
        task = cls(model=model_cfg, **args)
        n_params = sum(p.numel() for p in task.model.net.parameters())
        log.info("U-Net: %.2fM parameters; labels: %s; text: %s", n_params / 1e6, ", ".join(datamodule.labels),
                 task.model.conditioner.text.encoder.identity if task.model.has_text else "none")
        return task

    def run_callbacks(self, cfg: DictConfig) -> list[L.Callback]:
        """Renders clips while training, with the ``sampler`` and ``audio_log`` settings."""
        sampler = SamplerSettings(**OmegaConf.to_container(cfg.sampler, resolve=True))
        return [AudioSampleLogger(**OmegaConf.to_container(cfg.audio_log, resolve=True), sampler=sampler)]

    def export(self, directory: str | Path) -> Path:
        """Write the EMA model as ``config.yaml`` + ``model.safetensors``."""
        return self.ema.save_pretrained(directory)

    def on_fit_start(self) -> None:
        representation = self.model.representation
        if representation.statistics_fitted:
            return
        loader = self.trainer.datamodule.train_dataloader()
        waves = []
        for i, batch in enumerate(loader):
            if i >= self.hparams.stats_batches:
                break
            waves.append(batch["audio"])
        # Batches may differ in length (duration conditioning): join the clips end to end.
        joined = torch.cat([w.transpose(0, 1).reshape(1, w.shape[1], -1) for w in waves], dim=-1)
        representation.fit_statistics(joined.to(self.device))
        self.ema.representation.load_state_dict(representation.state_dict())
        log.info("fixed the representation's normalisation from %d clips", sum(len(w) for w in waves))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels, prompts = drop_conditions(self.model.conditioner, batch["label"], list(batch["caption"]),
                                          self.hparams.cond_dropout)
        loss = check_finite(self.model.loss(batch["audio"], labels, prompts, batch["seconds"]), self.global_step,
                            "lower the learning rate or check the data for NaN samples")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # Fixed noise levels and noise make the validation loss comparable between evaluations.
        gen = torch.Generator(device="cpu").manual_seed(batch_idx)
        x0 = self.ema.representation.encode(batch["audio"])
        prompts = [text or None for text in batch["caption"]]
        cond = self.ema.conditioning(batch["label"], prompts, batch["seconds"], len(x0))
        levels = self.hparams.val_noise_levels
        losses = []
        for t_value in torch.linspace(0.05, 0.95, levels):
            t = torch.full((x0.shape[0],), float(t_value), device=self.device)
            noise = torch.randn(x0.shape, generator=gen).to(self.device)
            losses.append(self.ema.objective.loss(self.ema.net, x0, cond, t=t, noise=noise))
        self.log("val/loss", torch.stack(losses).mean(), prog_bar=True, batch_size=x0.shape[0])

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        ema_update(self.ema, self.model, self.ema_updates, self.hparams.ema_decay)

    def configure_optimizers(self):
        total = self.trainer.max_steps if self.hparams.lr_decay and self.trainer.max_steps > 0 else None
        return warmup_cosine_optimizer(self.model.parameters(), self.hparams.lr, self.hparams.weight_decay,
                                       self.hparams.warmup_steps, total, self.hparams.min_lr_ratio)


class ProgressLog(L.Callback):
    """One log line every ``every_seconds`` (and at the end): step, steps per second, time left and
    the latest losses. For runs whose output goes to a file, where a progress bar writes nothing
    readable."""

    def __init__(self, every_seconds: float = 30.0) -> None:
        self.every_seconds = every_seconds
        self.started = self.last = 0.0
        self.first_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = self.last = time.monotonic()
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_seconds:
            self.last = now
            self._report(trainer, now)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, time.monotonic())

    def _report(self, trainer: L.Trainer, now: float) -> None:
        step, total = trainer.global_step, trainer.max_steps
        rate = (step - self.first_step) / max(now - self.started, 1e-9)
        where = f"step {step}" if total is None or total < 0 else f"step {step}/{total} ({100 * step / total:.0f}%)"
        left = ""
        if total and total > step and rate > 0:
            left = f", {_duration((total - step) / rate)} left"
        losses = ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(trainer.callback_metrics.items())
                           if k.endswith("loss"))
        log.info("%s, %.2f steps/s%s%s", where, rate, left, f"; {losses}" if losses else "")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class AudioSampleLogger(L.Callback):
    """Every ``every_n_steps`` optimizer steps, renders one clip per prompt of ``prompts`` (for a
    text-conditioned model) or else per label (up to ``max_labels``) with the EMA model and
    ``sampler`` settings, writes them as WAVs under ``<run>/samples/step_NNNNNN/`` and adds them to
    TensorBoard when that is the logger."""

    def __init__(self, every_n_steps: int = 500, max_labels: int = 8, sampler: SamplerSettings | None = None,
                 seed: int = 0, prompts: list[str] | None = None) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.max_labels = max_labels
        self.sampler = sampler or SamplerSettings()
        self.seed = seed
        self.prompts = list(prompts or [])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: DiffusionTask, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        model = pl_module.ema
        if model.has_text and self.prompts:
            names, label_ids, prompts = self.prompts, None, self.prompts
        else:
            names = model.labels[: self.max_labels]
            label_ids, prompts = list(range(len(names))), None
        if not names:
            return
        was_training = model.training
        model.eval()
        s = self.sampler
        waves = model.sample(label_ids, [self.seed + i for i in range(len(names))], prompts=prompts,
                             sampler=s.name, steps=s.steps, schedule=s.schedule, guidance=s.guidance,
                             guidance_rescale=s.guidance_rescale, sampler_options=s.options,
                             sigma_range=(s.sigma_min, s.sigma_max, s.rho), progress=False)
        model.train(was_training)
        out_dir = Path(trainer.default_root_dir) / "samples" / f"step_{step:06d}"
        for i, (name, wave) in enumerate(zip(names, waves, strict=True)):
            stem = f"{i:02d}_{slug(name)}"
            save_audio(out_dir / f"{stem}.wav", wave, model.sample_rate)
            if isinstance(trainer.logger, TensorBoardLogger):
                trainer.logger.experiment.add_audio(f"samples/{stem}", wave.float().cpu(), step,
                                                    sample_rate=model.sample_rate)
