"""``audiodiff-train``: Hydra entry point for training.

    audiodiff-train experiment=quickstart trainer.max_steps=2000 data.batch_size=16

Runs live in ``runs/<name>/`` (``name`` defaults to the experiment's). Running the same command
again resumes from ``runs/<name>/checkpoints/last.ckpt``; ``resume=false`` refuses to touch a run
folder that already holds checkpoints. At the end the EMA model is exported to ``runs/<name>/model/``
(``config.yaml`` + ``model.safetensors``), ready for ``audiodiff-render`` and ``from_pretrained``.
A vocoder experiment (``experiment=vocoder_22k``) trains and exports the neural vocoder the same way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("audiodiff.train")
T = TypeVar("T")


def train(cfg: DictConfig, run_dir: Path) -> Path:
    """Train as configured, in ``run_dir``; returns the exported model directory.

    ``task._target_`` names the LightningModule (the diffusion model's or the vocoder's); it builds
    itself from the config (``from_run_config``), adds its callbacks (``run_callbacks``) and writes
    the exported folder (``export``). Its ``starting_weights`` names the ``task`` keys that point at
    weights a new run starts from (not read again on resume).
    """
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

    from audiodiff.distillation import DistillationTask, GuidanceDistillationTask
    from audiodiff.model_files import load_checkpoint_file
    from audiodiff.pipeline import SamplerSettings
    from audiodiff.training import DiffusionTask, ProgressLog
    from audiodiff.vocoders.training import VocoderTask

    SamplerSettings(**OmegaConf.to_container(cfg.sampler, resolve=True))  # checked before any work
    tasks = {f"{task.__module__}.{task.__name__}": task
             for task in (DiffusionTask, DistillationTask, GuidanceDistillationTask, VocoderTask)}
    if cfg.task._target_ not in tasks:
        raise ValueError(f"task._target_={cfg.task._target_!r} is not a training task; valid: {', '.join(tasks)}")
    task_class = tasks[cfg.task._target_]
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if last.exists() and not cfg.resume:
        raise SystemExit(f"error: {run_dir} already holds checkpoints; run again with resume=true to continue "
                         f"it, or choose another name=... for a fresh run")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    max_steps = cfg.trainer.get("max_steps", -1)
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"trainer.max_steps must be a positive number of steps (or -1 to train by "
                         f"trainer.max_epochs), got {max_steps}")
    if last.exists():
        _drop_starting_weights(cfg, getattr(task_class, "starting_weights", ()))
    datamodule = _build("data", lambda: instantiate(cfg.data))
    task = task_class.from_run_config(cfg, datamodule)
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir, filename="last-step", save_last=True, save_top_k=0,
                        every_n_train_steps=cfg.checkpoint.every_n_steps),
        ModelCheckpoint(dirpath=ckpt_dir, filename="best-{step}", monitor="val/loss", mode="min",
                        save_top_k=cfg.checkpoint.keep_best),
        *task.run_callbacks(cfg),
    ]
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    # A bar redraws one line, which a log file shows as nothing for hours: there, a line every 30 s.
    if trainer_args.get("enable_progress_bar", True) and sys.stderr.isatty():
        callbacks.append(TQDMProgressBar())
    else:
        trainer_args["enable_progress_bar"] = False
        callbacks.append(ProgressLog())
    logger = _build("logger", lambda: instantiate(cfg.logger, save_dir=str(run_dir)))
    trainer = L.Trainer(default_root_dir=str(run_dir), callbacks=callbacks, logger=logger, **trainer_args)
    if last.exists():
        load_checkpoint_file(last)  # refuses a file that would run code, before Lightning opens it
        log.info("resuming from %s", last)
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(last) if last.exists() else None, weights_only=True)
    trainer.save_checkpoint(last, weights_only=False)
    export = task.export(run_dir / "model")
    log.info("finished at step %d; model exported to %s", trainer.global_step, export)
    return export


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def quiet_libraries() -> None:
    """Lightning's messages once, in the run's log format (it also prints them through a handler of
    its own), without its advert for a cloud service, and without libraries' deprecation notices,
    which are for their developers, not for someone training a model."""
    import warnings

    import lightning.pytorch  # noqa: F401  (adds its handler on import: removed below)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


def _drop_starting_weights(cfg: DictConfig, keys: tuple[str, ...]) -> None:
    """On resume the checkpoint holds the weights, so the files a new run starts from (the task's
    ``keys``, such as ``task.init_from``) are not read again: a run that spans sessions must not fail
    because such a folder was moved or deleted since its first session."""
    for key in keys:
        if cfg.task.get(key) is not None:
            log.info("resuming: task.%s=%s is not read again; the checkpoint holds the weights", key, cfg.task[key])
            with open_dict(cfg):
                cfg.task[key] = None


def _build(key: str, build: Callable[[], T]) -> T:
    """Run ``build``, reporting a bad config value as one line naming its config key."""
    from hydra.errors import InstantiationException

    try:
        return build()
    except InstantiationException as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        raise ValueError(f"{key}: {cause}") from None


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from omegaconf.errors import MissingMandatoryValue

    from audiodiff.data.folder import DatasetError
    from audiodiff.model_files import ModelLoadError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    quiet_libraries()
    try:
        train(cfg, run_dir)
    except MissingMandatoryValue as err:
        key = err.full_key
        _remove_unused_run_dir(run_dir)
        sys.exit(f"error: {key} is required; give it on the command line ({key}=...)")
    except (DatasetError, ModelLoadError, ValueError, MisconfigurationException) as err:
        log.error("%s", err)
        _remove_unused_run_dir(run_dir)
        sys.exit(f"error: {err}")


def _remove_unused_run_dir(run_dir: Path) -> None:
    """After a run refused before training, remove what Hydra put into its folder (the config copy
    and the log), and the folder if that leaves it empty; a folder with checkpoints is never touched."""
    import shutil

    if (run_dir / "checkpoints").exists():
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "train.log").unlink(missing_ok=True)
    for folder in (run_dir, run_dir.parent):
        if folder.is_dir() and folder.resolve() != Path.cwd() and not any(folder.iterdir()):
            folder.rmdir()


def main() -> None:
    _main()
