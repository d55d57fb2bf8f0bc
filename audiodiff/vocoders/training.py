"""Lightning training of the neural vocoder: mel L1 and multi-resolution STFT losses on resynthesised
audio, plus (optionally, after a warm-up) adversarial and feature-matching losses from multi-period
and multi-resolution discriminators."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from audiodiff.model_files import build, load_vocoder, save_vocoder
from audiodiff.training import warmup_cosine
from audiodiff.vocoders.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from audiodiff.vocoders.losses import LogMelDistance, MultiResolutionSTFTDistance
from audiodiff.vocoders.vocos import MelSettingsMismatch, VocosVocoder

log = logging.getLogger(__name__)


class VocoderTask(L.LightningModule):
    """Trains the vocoder built from ``vocoder`` (a ``_target_`` config dict, kept in every checkpoint).

    The generator loss is ``mel_weight`` · log-mel L1 + ``stft_weight`` · multi-resolution STFT
    distance. With ``adversarial=true``, from step ``adversarial_start`` on, multi-period and
    multi-resolution discriminators are trained too and add ``adversarial_weight`` · LSGAN loss +
    ``feature_weight`` · feature matching. Each training clip is scaled by a random gain in
    ``gain_db`` (dB) so the vocoder sees every level. ``grad_clip`` bounds the gradient norm (the
    task clips itself, so ``trainer.gradient_clip_val`` must be null). The learning rate warms up
    linearly for ``warmup_steps`` and then follows a cosine down to ``min_lr_ratio`` · ``lr`` at
    ``trainer.max_steps`` (``lr_decay=false`` keeps it constant). ``init_from`` (a vocoder folder,
    training checkpoint or shipped name such as ``vocos-22k``, with the same architecture and mel
    settings) starts a new run from its weights: fine-tuning on your own sounds, or training longer.
    """

    starting_weights: ClassVar[tuple[str, ...]] = ("init_from",)  # read by a new run only, not on resume

    def __init__(self, vocoder: dict, lr: float = 1e-3, betas: tuple[float, float] = (0.8, 0.99),
                 weight_decay: float = 0.0, warmup_steps: int = 200, lr_decay: bool = True,
                 min_lr_ratio: float = 0.05, mel_weight: float = 1.0, stft_weight: float = 1.0,
                 gain_db: tuple[float, float] = (-24.0, 0.0), grad_clip: float = 10.0, adversarial: bool = False,
                 adversarial_start: int = 2000, adversarial_weight: float = 1.0, feature_weight: float = 2.0,
                 init_from: str | None = None) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not gain_db[0] <= gain_db[1]:
            raise ValueError(f"gain_db must be (low, high) with low <= high, got {gain_db}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.vocoder: VocosVocoder = build(vocoder, "task.vocoder")
        if not isinstance(self.vocoder, VocosVocoder):
            raise ValueError(f"task.vocoder builds {type(self.vocoder).__name__}; only a neural vocoder "
                             "(audiodiff.vocoders.VocosVocoder) is trained")
        if init_from is not None:
            self._load_starting_weights(init_from)
        self.mel = self.vocoder.settings.transform()
        self.mel_distance = LogMelDistance(self.vocoder.settings)
        self.stft_distance = MultiResolutionSTFTDistance()
        if adversarial:
            self.period_discriminator = MultiPeriodDiscriminator()
            self.resolution_discriminator = MultiResolutionDiscriminator()

    def _load_starting_weights(self, path: str) -> None:
        start = load_vocoder(path)  # float32, whatever precision the file stores
        if start.settings != self.vocoder.settings:
            raise MelSettingsMismatch(
                f"task.init_from={path}: its mel settings differ from the configured vocoder's (theirs vs "
                f"configured: {start.settings.differences(self.vocoder.settings)}); start from a vocoder with "
                "these settings or train from scratch (task.init_from=null)")
        try:
            self.vocoder.load_state_dict(start.state_dict())
        except RuntimeError as err:
            raise ValueError(f"task.init_from={path}: its weights do not fit the configured vocoder ({err})") from None
        log.info("starting from the weights of %s", path)

    @classmethod
    def from_run_config(cls, cfg: DictConfig, datamodule: L.LightningDataModule) -> VocoderTask:
        """Build from the ``task`` node of an ``audiodiff-train`` config."""
        args = OmegaConf.to_container(cfg.task, resolve=True)
        args.pop("_target_", None)
        task = cls(**args)
        log.info("vocoder: %.2fM parameters, mel settings %s", task.vocoder.num_parameters / 1e6,
                 task.vocoder.settings.as_dict())
        return task

    def run_callbacks(self, cfg: DictConfig) -> list[L.Callback]:
        return []

    def export(self, directory: str | Path) -> Path:
        """Write the trained vocoder as ``config.yaml`` + ``model.safetensors``."""
        return save_vocoder(self.vocoder, directory)

    def _discriminate(self, wave: torch.Tensor) -> list:
        return self.period_discriminator(wave) + self.resolution_discriminator(wave)

    def _clip_and_step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        wave = batch["audio"].mean(dim=1, keepdim=True)
        low, high = hp.gain_db
        gain_db = torch.empty(wave.shape[0], 1, 1, device=wave.device).uniform_(low, high)
        wave = wave * 10.0 ** (gain_db / 20.0)
        with torch.no_grad():
            mel = self.mel(wave.squeeze(1))
        fake = self.vocoder(mel, wave.shape[-1])
        mel_loss = self.mel_distance(fake, wave)
        stft_loss = self.stft_distance(fake, wave)
        loss = hp.mel_weight * mel_loss + hp.stft_weight * stft_loss
        optimizers = self.optimizers()
        generator_opt = optimizers[0] if isinstance(optimizers, list) else optimizers
        adversarial_now = hp.adversarial and self.global_step >= hp.adversarial_start
        if adversarial_now:
            # The critic's optimizer is stepped through the plain torch optimizer: Lightning counts
            # every wrapped optimizer step as a training step, which would halve max_steps.
            critic_opt = optimizers[1].optimizer
            critic_loss = discriminator_loss(self._discriminate(wave), self._discriminate(fake.detach()))
            critic_opt.zero_grad(set_to_none=True)
            self.manual_backward(critic_loss)
            self.clip_gradients(critic_opt, gradient_clip_val=hp.grad_clip, gradient_clip_algorithm="norm")
            critic_opt.step()
            real_out, fake_out = self._discriminate(wave), self._discriminate(fake)
            adv_loss, fm_loss = generator_loss(fake_out), feature_matching_loss(real_out, fake_out)
            loss = loss + hp.adversarial_weight * adv_loss + hp.feature_weight * fm_loss
            self.log_dict({"train/critic": critic_loss, "train/adversarial": adv_loss, "train/features": fm_loss})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"vocoder loss became {loss.item()} at step {self.global_step}; "
                                     "lower task.lr or check the data for NaN samples")
        self._clip_and_step(generator_opt, loss)
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        for scheduler in schedulers[: 2 if adversarial_now else 1]:
            scheduler.step()
        self.log_dict({"train/loss": loss, "train/mel_l1": mel_loss, "train/mrstft": stft_loss}, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        wave = batch["audio"].mean(dim=1, keepdim=True)
        fake = self.vocoder(self.mel(wave.squeeze(1)), wave.shape[-1])
        mel_loss, stft_loss = self.mel_distance(fake, wave), self.stft_distance(fake, wave)
        n = wave.shape[0]
        self.log("val/mel_l1", mel_loss, batch_size=n)
        self.log("val/mrstft", stft_loss, batch_size=n)
        self.log("val/loss", self.hparams.mel_weight * mel_loss + self.hparams.stft_weight * stft_loss,
                 prog_bar=True, batch_size=n)

    def _schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        total = self.trainer.max_steps if self.hparams.lr_decay and self.trainer.max_steps > 0 else None
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(self.hparams.warmup_steps, total, self.hparams.min_lr_ratio))

    def configure_optimizers(self):
        hp = self.hparams
        generator_opt = torch.optim.AdamW(self.vocoder.parameters(), lr=hp.lr, betas=tuple(hp.betas),
                                          weight_decay=hp.weight_decay)
        if not hp.adversarial:
            return {"optimizer": generator_opt, "lr_scheduler": self._schedule(generator_opt)}
        critics = list(self.period_discriminator.parameters()) + list(self.resolution_discriminator.parameters())
        critic_opt = torch.optim.AdamW(critics, lr=hp.lr, betas=tuple(hp.betas))
        return [generator_opt, critic_opt], [self._schedule(generator_opt), self._schedule(critic_opt)]
