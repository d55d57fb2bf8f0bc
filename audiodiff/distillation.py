"""Step distillation: a trained model (the teacher) teaches a copy of itself (the student) to render
in a few deterministic steps what the teacher renders in many.

Each training step picks one interval ``[s_i, s_next]`` of the student's noise-level grid (``steps``
Karras levels, then 0), noises a data batch to ``s_i``, and lets the teacher solve the probability-flow
ODE across the interval in ``teacher_substeps`` DPM++ 2M steps, with classifier-free guidance
``guidance`` folded in. The student learns the clean-signal estimate ``d`` for which one DDIM step from
``s_i`` lands where the teacher did: ``x_next = d + (x − d)·s_next/s_i``. This is progressive
distillation (Salimans & Ho, 2022) done in one round with a multi-step teacher, as in TRACT
(Berthelot et al., 2023); a guided teacher makes the student guidance-free, so it also needs one
network call per step instead of two.

The student is exported as an ordinary model folder whose ``sampling`` settings (DDIM, ``steps``
Karras steps, guidance 1) are what :class:`~audiodiff.AudioDiffusion` and ``audiodiff-render`` use
by default.

Guidance distillation (:class:`GuidanceDistillationTask`, Meng et al., 2023, its first stage) keeps
the teacher's sampler and steps and takes away the second network call of classifier-free guidance:
the student is given the guidance scale as a condition and learns the teacher's guided clean-signal
estimate ``x0_uncond + w·(x0_cond − x0_uncond)`` at every noise level, for scales ``w`` from 1 to
``max_guidance``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from audiodiff.conditioning import Conditioning
from audiodiff.diffusion import Denoiser, get_sampler, make_sigmas
from audiodiff.diffusion.schedules import t_to_sigma
from audiodiff.model import AudioDiffusionModel
from audiodiff.pipeline import SamplerSettings
from audiodiff.training import (
    AudioSampleLogger,
    check_finite,
    drop_conditions,
    ema_update,
    load_weights,
    warmup_cosine_optimizer,
)

log = logging.getLogger(__name__)


def ddim_target(x: torch.Tensor, x_next: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """The clean-signal estimate for which one DDIM step from ``x`` at ``sigma`` lands on ``x_next`` at
    ``sigma_next`` (variance-exploding noise levels, ``sigma_next < sigma``)."""
    ratio = sigma_next / sigma
    return (x_next - ratio * x) / (1 - ratio)


class StudentTask(L.LightningModule):
    """What every distillation shares: a frozen ``teacher`` and its student ``model`` with an EMA
    copy (the export), the teacher's data in its model space, and the training schedule."""

    teacher: AudioDiffusionModel
    model: AudioDiffusionModel
    ema: AudioDiffusionModel

    def _start_ema(self) -> None:
        # The exported student and any .ckpt load as a plain model from this config.
        self.hparams["model"] = self.model.config
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.register_buffer("ema_updates", torch.tensor(0, dtype=torch.long))

    @classmethod
    def from_run_config(cls, cfg: DictConfig, datamodule: L.LightningDataModule) -> StudentTask:
        """Build from an ``audiodiff-train`` config (``experiment=... teacher=PATH``): the ``task``
        node's arguments; the data must be the teacher's kind at its sample rate."""
        args = OmegaConf.to_container(cfg.task, resolve=True)
        args.pop("_target_", None)
        task = cls(**args)
        task._check_data(cfg, datamodule)
        log.info("distilling %s: %s", args["teacher"], task.describe())
        return task

    def describe(self) -> str:
        """What this student learns, for the log."""
        raise NotImplementedError

    def _check_data(self, cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
        rate = self.teacher.sample_rate
        if int(cfg.sample_rate) != rate:
            raise ValueError(f"the teacher works at {rate} Hz but sample_rate={cfg.sample_rate}: add "
                             f"sample_rate={rate} (and its training data, data=... )")
        missing = sorted(set(datamodule.labels) - set(self.teacher.labels)) if self.teacher.labels else []
        if missing:
            raise ValueError(f"the data has labels the teacher does not know: {', '.join(missing)}; "
                             f"the teacher's: {', '.join(self.teacher.labels)}")

    def run_callbacks(self, cfg: DictConfig) -> list[L.Callback]:
        """Renders clips while training, with the student's own sampler."""
        sampler = SamplerSettings(**self.model.sampling) if self.model.sampling else None
        return [AudioSampleLogger(**OmegaConf.to_container(cfg.audio_log, resolve=True), sampler=sampler)]

    def export(self, directory: str | Path) -> Path:
        """Write the EMA student as ``config.yaml`` + ``model.safetensors``."""
        return self.ema.save_pretrained(directory)

    def _label_ids(self, batch: dict) -> torch.Tensor | None:
        # The data's label indices follow the data's label list; the teacher may list more labels.
        if self.teacher.conditioner.label is None:
            return None
        names = self.trainer.datamodule.labels
        return torch.tensor([self.teacher.conditioner.label_id(names[int(i)]) for i in batch["label"]])

    def _encode(self, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher.representation.encode(batch["audio"])

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        ema_update(self.ema, self.model, self.ema_updates, self.hparams.ema_decay)

    def _parameter_groups(self) -> list:
        return list(self.model.parameters())

    def configure_optimizers(self):
        total = self.trainer.max_steps if self.hparams.lr_decay and self.trainer.max_steps > 0 else None
        return warmup_cosine_optimizer(self._parameter_groups(), self.hparams.lr, 0.0, self.hparams.warmup_steps,
                                       total, self.hparams.min_lr_ratio)


class DistillationTask(StudentTask):
    """Trains a student of the model at ``teacher`` (a model folder or training checkpoint) to sample
    in ``steps`` DDIM steps on a Karras grid. ``guidance`` is the teacher's classifier-free guidance
    the student learns to reproduce without guidance (1: none). ``cond_dropout`` drops labels and
    prompts as in training, so the student still renders from a label alone or a prompt alone.
    ``student_from`` starts the student from an earlier student of the same step count (one distilled
    from an earlier version of the teacher, say) instead of from the teacher."""

    starting_weights: ClassVar[tuple[str, ...]] = ("student_from",)  # read by a new run only, not on resume

    def __init__(self, teacher: str, steps: int = 8, teacher_substeps: int = 4, guidance: float = 1.0,
                 lr: float = 1e-4, warmup_steps: int = 100, lr_decay: bool = True, min_lr_ratio: float = 0.1,
                 ema_decay: float = 0.999, cond_dropout: float = 0.1, val_batches_seed: int = 0,
                 student_from: str | None = None) -> None:
        super().__init__()
        if not 1 <= int(steps) <= 64 or int(steps) != steps:
            raise ValueError(f"steps (the student's) must be an integer from 1 to 64, got {steps}")
        if not 1 <= int(teacher_substeps) <= 64 or int(teacher_substeps) != teacher_substeps:
            raise ValueError(f"teacher_substeps must be an integer from 1 to 64, got {teacher_substeps}")
        if not guidance >= 0:
            raise ValueError(f"guidance must be a number >= 0, got {guidance}")
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.save_hyperparameters()
        self.teacher = AudioDiffusionModel.load(teacher).requires_grad_(False).eval()
        if not self.teacher.representation.statistics_fitted:
            raise ValueError(f"{teacher}: the teacher was never trained (its normalisation is not fitted)")
        self.model = copy.deepcopy(self.teacher).requires_grad_(True).train()
        if student_from is not None:
            earlier = (load_weights(self.model, student_from, "task.student_from").get("sampling") or {}).get("steps")
            if earlier != int(steps):
                raise ValueError(f"task.student_from={student_from} samples in {earlier} steps, not {int(steps)}: "
                                 f"a student continues only at its own step count")
        self.sampler = SamplerSettings(name="ddim", steps=int(steps), schedule="karras", guidance=1.0)
        self.model.sampling = {"name": "ddim", "steps": int(steps), "schedule": "karras", "guidance": 1.0}
        self.model.config = {**self.teacher.config, "sampling": self.model.sampling}
        self._start_ema()
        s = self.sampler
        self.register_buffer("sigmas", make_sigmas(s.schedule, s.steps, s.sigma_min, s.sigma_max, s.rho),
                             persistent=False)

    def describe(self) -> str:
        return (f"{self.sampler.steps} DDIM steps (teacher: {self.hparams.teacher_substeps} DPM++ 2M steps per "
                f"student step, guidance {self.hparams.guidance:g})")

    def _targets(self, x0: torch.Tensor, cond: Conditioning, uncond: Conditioning | None, interval: int,
                 noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Noised input at the interval's start, the student's target and the start's noise level."""
        sigma, sigma_next = float(self.sigmas[interval]), float(self.sigmas[interval + 1])
        x = x0 + sigma * noise
        teacher = Denoiser(self.teacher.net, self.teacher.objective, cond, uncond, self.hparams.guidance)
        with torch.no_grad():
            if sigma_next == 0:
                return x, teacher(x, x.new_tensor(sigma)), sigma
            fine = torch.exp(torch.linspace(torch.log(torch.tensor(sigma)), torch.log(torch.tensor(sigma_next)),
                                            self.hparams.teacher_substeps + 1)).to(x)
            x_next = get_sampler("dpmpp_2m")(teacher, x, fine, disable=True)
        return x, ddim_target(x, x_next, sigma, sigma_next), sigma

    def _loss(self, model: AudioDiffusionModel, x0: torch.Tensor, batch: dict, labels: torch.Tensor | None,
              prompts: list, interval: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Student ``model``'s loss on one interval, for model-space clips ``x0`` of ``batch``."""
        cond = self.teacher.conditioning(labels, prompts, batch["seconds"], len(x0))
        guided = self.hparams.guidance != 1.0
        uncond = self.teacher.conditioning(None, None, batch["seconds"], len(x0)) if guided else None
        noise = torch.randn_like(x0) if noise is None else noise
        x, target, sigma = self._targets(x0, cond, uncond, interval, noise)
        student_cond = model.conditioning(labels, prompts, batch["seconds"], len(x0))
        student = Denoiser(model.net, model.objective, student_cond)
        return F.mse_loss(student(x, x.new_tensor(sigma)), target)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels, prompts = drop_conditions(self.model.conditioner, self._label_ids(batch), list(batch["caption"]),
                                          self.hparams.cond_dropout)
        interval = int(torch.randint(0, self.sampler.steps, ()))
        loss = self._loss(self.model, self._encode(batch), batch, labels, prompts, interval)
        check_finite(loss, self.global_step, "lower the learning rate (task.lr)")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # Every interval with fixed noise, so evaluations are comparable.
        gen = torch.Generator().manual_seed(self.hparams.val_batches_seed + batch_idx)
        labels = self._label_ids(batch)
        prompts = [text or None for text in batch["caption"]]
        x0 = self._encode(batch)
        losses = []
        for interval in range(self.sampler.steps):
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            losses.append(self._loss(self.ema, x0, batch, labels, prompts, interval, noise))
        self.log("val/loss", torch.stack(losses).mean(), prog_bar=True, batch_size=len(batch["audio"]))


class GuidanceDistillationTask(StudentTask):
    """Trains a student of the model at ``teacher`` to give, in one network call, the teacher's
    classifier-free guided estimate at any guidance scale from 1 to ``max_guidance`` (the scale
    enters as a condition, :class:`~audiodiff.conditioning.GuidanceEmbedding`). The student keeps
    the teacher's sampler and steps and costs half as much per step when guided.

    A fraction ``unguided_fraction`` of the items is trained at scale 1, where the target is the
    teacher's own unguided estimate, so the student keeps both branches that true guidance needs
    (for negative prompts). ``cond_dropout`` drops labels and prompts as in training.

    ``lr`` moves the teacher's weights and ``embedding_lr`` the new guidance embedding. The guidance
    term is small beside what the network already gives, so the teacher's weights need a learning
    rate near the end of the teacher's own schedule: at 3e-4 the student drifted from the teacher
    by more than the guidance term itself (README, *Guidance distillation*)."""

    def __init__(self, teacher: str, max_guidance: float = 5.0, unguided_fraction: float = 0.2, lr: float = 5e-5,
                 embedding_lr: float = 1e-3, warmup_steps: int = 100, lr_decay: bool = True,
                 min_lr_ratio: float = 0.1, ema_decay: float = 0.999, cond_dropout: float = 0.1,
                 val_batches_seed: int = 0) -> None:
        super().__init__()
        if not max_guidance > 1:
            raise ValueError(f"max_guidance must be above 1, got {max_guidance}")
        if not 0 <= unguided_fraction < 1:
            raise ValueError(f"unguided_fraction must be in [0, 1), got {unguided_fraction}")
        if lr <= 0 or embedding_lr <= 0:
            raise ValueError(f"lr and embedding_lr must be positive, got {lr} and {embedding_lr}")
        self.save_hyperparameters()
        self.teacher = AudioDiffusionModel.load(teacher).requires_grad_(False).eval()
        if self.teacher.guidance_distilled:
            raise ValueError(f"{teacher} is already guidance-distilled; distil its own teacher instead")
        if not self.teacher.conditioner.parts:
            raise ValueError(f"{teacher} has neither labels nor text, so it has no guidance to distil")
        config = copy.deepcopy(self.teacher.config)
        config["conditioner"]["guidance"] = {"_target_": "audiodiff.conditioning.GuidanceEmbedding",
                                             "_partial_": True, "max_guidance": float(max_guidance)}
        self.model = AudioDiffusionModel.from_config(config, f"{teacher} with a guidance embedding").train()
        missing, unexpected = self.model.load_state_dict(self.teacher.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("conditioner.guidance.") for k in missing), (missing, unexpected)
        self._start_ema()

    def describe(self) -> str:
        return f"its guidance at scales 1 to {self.hparams.max_guidance:g} in one network call per step"

    def _loss(self, model: AudioDiffusionModel, x0: torch.Tensor, batch: dict, labels: torch.Tensor | None,
              prompts: list, generator: torch.Generator | None = None) -> torch.Tensor:
        n = len(x0)
        objective = self.teacher.objective
        t = torch.rand(n, generator=generator).to(x0) * (objective.t_max - objective.t_min) + objective.t_min
        sigma = t_to_sigma(t)
        x = x0 + sigma[:, None, None] * torch.randn(x0.shape, generator=generator).to(x0)
        scale = 1 + (self.hparams.max_guidance - 1) * torch.rand(n, generator=generator).to(x0)
        scale = torch.where(torch.rand(n, generator=generator).to(x0) < self.hparams.unguided_fraction, 1.0, scale)
        with torch.no_grad():
            cond = self.teacher.conditioning(labels, prompts, batch["seconds"], n)
            uncond = self.teacher.conditioning(None, None, batch["seconds"], n)
            both = Denoiser(self.teacher.net, objective, cond.cat(uncond))(torch.cat([x, x]), torch.cat([sigma, sigma]))
            x0_cond, x0_uncond = both.chunk(2)
            target = x0_uncond + scale[:, None, None] * (x0_cond - x0_uncond)
        student = Denoiser(model.net, model.objective, model.conditioning(labels, prompts, batch["seconds"], n, scale))
        return F.mse_loss(student(x, sigma), target)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels, prompts = drop_conditions(self.model.conditioner, self._label_ids(batch), list(batch["caption"]),
                                          self.hparams.cond_dropout)
        loss = self._loss(self.model, self._encode(batch), batch, labels, prompts)
        check_finite(loss, self.global_step, "lower the learning rate (task.lr)")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # Fixed noise levels, noise and scales, so evaluations are comparable.
        gen = torch.Generator().manual_seed(self.hparams.val_batches_seed + batch_idx)
        prompts = [text or None for text in batch["caption"]]
        loss = self._loss(self.ema, self._encode(batch), batch, self._label_ids(batch), prompts, gen)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["audio"]))

    def _parameter_groups(self) -> list:
        new = list(self.model.conditioner.guidance.parameters())
        rest = [p for p in self.model.parameters() if all(p is not q for q in new)]
        return [{"params": rest}, {"params": new, "lr": self.hparams.embedding_lr}]
