"""kill -9 sweep over training: SIGKILL at random moments (during start-up, mid-step, mid-checkpoint
write), then the same command again. The checkpoint folder must only ever hold loadable checkpoints,
and the final run must resume from the newest one and finish."""

import random
import signal
import subprocess
import time

import pytest
import torch

from audiodiff.model_files import load_checkpoint_file

from .conftest import TINY, cli, run_cli

pytestmark = pytest.mark.slow  # trains models or runs the commands

KILLS = 10


def test_training_survives_random_sigkills(tmp_path):
    rng = random.Random(0)
    ckpt_dir = tmp_path / "runs" / "killme" / "checkpoints"
    command = [cli("audiodiff-train"), "experiment=quickstart", "checkpoint.every_n_steps=5", *TINY]
    last = ckpt_dir / "last.ckpt"
    steps_seen = []
    for kill in range(KILLS):
        before = last.stat().st_mtime_ns if last.exists() else 0
        proc = subprocess.Popen([*command, "trainer.max_steps=100000"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if kill % 3 == 2:  # during start-up: imports, data, restoring the checkpoint
            time.sleep(rng.uniform(0.5, 4.0))
        else:  # once training has written a new checkpoint, a random moment later (often mid-write)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (last.stat().st_mtime_ns if last.exists() else 0) == before:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        files = sorted(ckpt_dir.iterdir()) if ckpt_dir.exists() else []
        for f in files:
            assert f.suffix == ".ckpt", f"a stray file was left behind: {f.name}"
            state = load_checkpoint_file(f)
            assert isinstance(state["global_step"], int)
        if files:
            steps_seen.append(load_checkpoint_file(ckpt_dir / "last.ckpt")["global_step"])
    print(f"steps at the {KILLS} kills: {steps_seen}")
    assert steps_seen and steps_seen == sorted(steps_seen), "a resumed run went back in steps"
    assert steps_seen[-1] > steps_seen[0], "the runs never got further after a kill"

    target = steps_seen[-1] + 5
    result = run_cli([*command, f"trainer.max_steps={target}"], tmp_path, timeout=300)
    assert "resuming from" in result.stdout + result.stderr
    assert load_checkpoint_file(ckpt_dir / "last.ckpt")["global_step"] == target
    model = tmp_path / "runs" / "killme" / "model"
    assert sorted(p.name for p in model.iterdir()) == ["config.yaml", "model.safetensors"]
    assert torch.isfinite(next(iter(load_checkpoint_file(ckpt_dir / "last.ckpt")["state_dict"].values()))).all()
