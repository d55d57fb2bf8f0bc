import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from audiodiff.data import CLASSES
from audiodiff.pipeline import AudioDiffusion, SamplerSettings

torch.set_num_threads(2)


def cli(name: str) -> str:
    """Path of an installed console script of this environment."""
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="session")
def class_check():
    from audiodiff.evaluation import SyntheticClassCheck

    return SyntheticClassCheck()


# The learning bar: clips rendered by the quickstart mel model trained for under 2 minutes on two CPU
# cores must be assigned to their label by the feature check (8 classes, chance 0.125) at least this
# often. Measured: about 0.9 after 1000 steps (95 s).
MEL_STEPS, MEL_BAR = 1000, 0.80
CLIPS_PER_CLASS = 8
DDIM_25 = SamplerSettings("ddim", 25)


# A model small enough to train a few steps in seconds, for tests of the training command's behaviour.
TINY = ["model.net.channels=[16,32]", "model.net.factors=[1,2]", "model.net.blocks=[1,1]",
        "model.net.attentions=[false,true]", "model.net.emb_dim=32", "conditioner.dim=16",
        "data.batch_size=4", "data.dataset.num_items=64", "data.val_dataset.num_items=8",
        "trainer.val_check_interval=20", "trainer.enable_progress_bar=false", "audio_log.every_n_steps=100000",
        "checkpoint.every_n_steps=10", "name=killme"]


def run_cli(args, cwd, timeout=600, check=True):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def train_quickstart(experiment: str, steps: int, cwd: Path) -> Path:
    """Train ``experiment`` for ``steps`` steps in ``cwd``. The time limit only catches a hung run: on
    one busy thread (OMP_NUM_THREADS=1) the waveform model's 550 steps took 53 minutes."""
    start = time.monotonic()
    run_cli([cli("audiodiff-train"), f"experiment={experiment}", f"trainer.max_steps={steps}",
             "trainer.enable_progress_bar=false", "audio_log.every_n_steps=100000"], cwd, timeout=3600)
    print(f"{experiment}: {steps} steps took {time.monotonic() - start:.0f} s")
    return cwd / "runs" / experiment


def chance_bar(clips: int, classes: int, false_pass: float = 1e-4) -> int:
    """The fewest hits out of ``clips`` (balanced over ``classes``) that a model deaf to its
    conditions reaches with probability under ``false_pass``. For such a model each clip (a seed of
    its own) is classified independently of the condition it was asked for, so its hits are a sum of
    independent Bernoulli trials whose mean is clips / classes; past that mean + 1 the sum's tail is
    at most the binomial one (Hoeffding, 1956), which this bar holds under ``false_pass``."""
    from scipy.stats import binom

    return next(k for k in range(clips // classes + 1, clips + 1) if binom.sf(k - 1, clips, 1 / classes) < false_pass)


def label_accuracy(run: Path, sampler: SamplerSettings | None = DDIM_25,
                   clips_per_class: int = CLIPS_PER_CLASS) -> float:
    """How often the feature check hears the asked class in the run's model's clips, ``clips_per_class``
    of each class with a seed of its own (``sampler`` None: the model's own default sampler)."""
    from audiodiff.evaluation import SyntheticClassCheck

    assert (run / "checkpoints" / "last.ckpt").is_file()
    pipe = AudioDiffusion.from_pretrained(run / "model")
    labels = [c for c in CLASSES for _ in range(clips_per_class)]
    clips = pipe.generate_batch(labels, list(range(len(labels))), sampler=sampler, progress=False)
    check = SyntheticClassCheck(sample_rate=pipe.sample_rate)
    accuracy = check.accuracy([c.samples[0] for c in clips], labels)
    print(f"{run.name}: label accuracy {accuracy:.3f}")
    return accuracy


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """The quickstart mel model trained for MEL_STEPS steps (shared by the CLI and distillation tests)."""
    return train_quickstart("quickstart", MEL_STEPS, tmp_path_factory.mktemp("quickstart"))
