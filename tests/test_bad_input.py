"""Bad input at every entry point ends in a clear, specific error or a recorded skip, never a
traceback from inside a library, and files that would run code when loaded are refused."""

import json
import os
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from audiodiff.data import AudioFolder, DatasetError
from audiodiff.model import ModelLoadError
from audiodiff.pipeline import AudioDiffusion

from .conftest import TINY, cli, run_cli

RATE = 16000
TINY_MODEL = [o for o in TINY if o.startswith(("model.", "conditioner."))]


def tone(seconds: float = 0.5, rate: int = RATE, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)], axis=1).astype(np.float32)


def write_bad_folder(root):
    """A folder holding every kind of file the sweep covers; returns (usable, refused) file names."""
    root.mkdir()
    usable = {
        "good.wav": (tone(), RATE, "PCM_16"),
        "rate_8k.wav": (tone(rate=8000), 8000, "PCM_16"),
        "rate_192k.wav": (tone(rate=192000), 192000, "PCM_24"),
        "eight_channels.wav": (tone(channels=8) / 4, RATE, "PCM_16"),
        "pcm24.wav": (tone(), RATE, "PCM_24"),
        "clipped.wav": (np.clip(4 * tone(), -1, 1), RATE, "PCM_16"),
    }
    for name, (audio, rate, subtype) in usable.items():
        sf.write(root / name, audio, rate, subtype=subtype)
    nan = tone()
    nan[100:200] = np.nan
    sf.write(root / "nan.wav", nan, RATE, subtype="FLOAT")
    sf.write(root / "inf.wav", np.full((RATE, 1), np.inf, np.float32), RATE, subtype="FLOAT")
    sf.write(root / "silent.wav", np.zeros((RATE, 1), np.float32), RATE)
    sf.write(root / "zero_frames.wav", np.zeros((0, 1), np.float32), RATE)
    (root / "empty.wav").write_bytes(b"")
    (root / "garbage.wav").write_bytes(os.urandom(3000))
    refused = {"nan.wav": "NaN", "inf.wav": "NaN or infinite", "silent.wav": "silent",
               "zero_frames.wav": "no audio frames", "empty.wav": "cannot read", "garbage.wav": "cannot read"}
    return set(usable), refused


def test_data_folder_sweep_keeps_usable_files_and_records_each_refusal(tmp_path):
    usable, refused = write_bad_folder(tmp_path / "sounds")
    data = AudioFolder(tmp_path / "sounds", sample_rate=RATE, seconds=0.5)
    assert {c.path.name for c in data.clips} == usable
    assert {os.path.basename(p) for p in data.skipped} == set(refused)
    for path, reason in data.skipped.items():
        assert refused[os.path.basename(path)] in reason, (path, reason)
    for i in range(len(data)):
        item = data[i]
        assert item["audio"].shape == (1, RATE // 2) and torch.isfinite(item["audio"]).all()
        assert item["audio"].abs().max() <= 1.0


def test_data_folder_of_only_bad_files_is_an_error_naming_them(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.wav").write_bytes(b"")
    sf.write(tmp_path / "bad" / "b.wav", np.zeros((100, 1), np.float32), RATE)
    with pytest.raises(DatasetError, match="none of the 2 audio files is usable"):
        AudioFolder(tmp_path / "bad")


@pytest.mark.slow
def test_training_on_the_swept_folder_runs_and_reports_the_skips(tmp_path):
    write_bad_folder(tmp_path / "sounds")
    result = run_cli([cli("audiodiff-train"), "experiment=quickstart", "data=folder",
                      f"data.dataset.root={tmp_path / 'sounds'}", "data.batch_size=2", "trainer.max_steps=3",
                      "trainer.val_check_interval=3", "trainer.enable_progress_bar=false", "name=swept", *TINY_MODEL],
                     tmp_path, timeout=300)
    log = result.stdout + result.stderr
    for name in ("garbage.wav", "empty.wav", "nan.wav", "silent.wav"):
        assert f"skipping {tmp_path / 'sounds' / name}" in log
    assert (tmp_path / "runs" / "swept" / "model" / "model.safetensors").is_file()


BAD_TRAINING_OVERRIDES = [
    ("data.batch_size=0", "batch_size must be at least 1"),
    ("data.batch_size=100000000", "too large"),
    ("task.lr=-1", "lr must be positive"),
    ("seconds=100000", "seconds must be between"),
    ("sample_rate=-5", "sample_rate"),
    ("trainer.max_steps=0", "max_steps must be a positive"),
    ("seconds_range=[2,1]", "seconds_range"),
    ("model=nope", "Could not find 'model/nope'"),
    ("conditioner=nope", "Could not find 'conditioner/nope'"),
    ("data=folder", "data.dataset.root"),
]


@pytest.mark.slow
@pytest.mark.parametrize("override,message", BAD_TRAINING_OVERRIDES, ids=[o for o, _ in BAD_TRAINING_OVERRIDES])
def test_training_refuses_bad_config_values_in_one_line(tmp_path, override, message):
    result = run_cli([cli("audiodiff-train"), "experiment=quickstart", override, "trainer.enable_progress_bar=false"],
                     tmp_path, timeout=120, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing left behind


def write_payload_checkpoint(path, marker):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {}}, "extra": Payload()}, path)


def test_pickle_payload_is_refused_by_from_pretrained_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    write_payload_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ModelLoadError, match="evil.ckpt: refused, the file would build posix.system"):
        AudioDiffusion.from_pretrained(tmp_path / "evil.ckpt")
    assert not marker.exists()


@pytest.mark.slow
def test_pickle_payload_is_refused_by_render_and_training_resume(tmp_path):
    marker = tmp_path / "payload-ran"
    write_payload_checkpoint(tmp_path / "evil.ckpt", marker)
    (tmp_path / "p.csv").write_text("label\ncoin\n")
    result = run_cli([cli("audiodiff-render"), f"checkpoint={tmp_path / 'evil.ckpt'}", f"prompts={tmp_path / 'p.csv'}",
                      f"out_dir={tmp_path / 'out'}"], tmp_path, check=False)
    assert result.returncode != 0 and "evil.ckpt: refused" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr

    last = tmp_path / "runs" / "evil" / "checkpoints" / "last.ckpt"
    write_payload_checkpoint(last, marker)
    result = run_cli([cli("audiodiff-train"), "experiment=quickstart", "name=evil", "trainer.max_steps=2", *TINY_MODEL],
                     tmp_path, check=False, timeout=300)
    assert result.returncode != 0 and "last.ckpt: refused" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_resume_does_not_need_the_folder_the_run_started_from(tmp_path):
    import shutil

    def train(name: str, steps: int, *extra: str):
        return run_cli([cli("audiodiff-train"), "experiment=quickstart", f"name={name}", f"trainer.max_steps={steps}",
                        "trainer.enable_progress_bar=false", *TINY_MODEL, *extra], tmp_path, check=False, timeout=300)

    assert train("first", 2).returncode == 0
    start = tmp_path / "start"
    shutil.copytree(tmp_path / "runs" / "first" / "model", start)
    assert train("second", 2, f"task.init_from={start}").returncode == 0
    shutil.rmtree(start)
    resumed = train("second", 4, f"task.init_from={start}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = (tmp_path / "runs" / "second" / "train.log").read_text()
    assert f"task.init_from={start} is not read again" in log and "finished at step 4" in log


def test_model_config_naming_foreign_code_is_refused(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text("_target_: os.system\ncommand: touch ran\n")
    save_file({}, str(model_dir / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="refusing _target_ 'os.system' at the top level"):
        AudioDiffusion.from_pretrained(model_dir)
    assert not (tmp_path / "ran").exists() and not (model_dir / "ran").exists()


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    from audiodiff.model import AudioDiffusionModel

    from .test_conditioning import LABELS, tiny_config

    model = AudioDiffusionModel.from_config(tiny_config({"label": LABELS}))
    return model.save_pretrained(tmp_path_factory.mktemp("untrained") / "model")


BAD_GENERATE = [
    ({"label": "trumpet"}, "unknown label 'trumpet'"),
    ({}, "say what to generate"),
    ({"label": "a", "seconds": -1}, "seconds must be in"),
    ({"label": "a", "seconds": 1e9}, "seconds must be in"),
    ({"label": "a", "seconds": float("nan")}, "seconds must be in"),
    ({"label": "a", "steps": 0}, "steps must be an integer"),
    ({"label": "a", "guidance": float("nan")}, "guidance must be a finite number"),
    ({"label": "a", "sampler": "plms"}, "unknown sampler 'plms'"),
    ({"label": "a", "num": 0}, "num must be a positive integer"),
    ({"prompt": "a coin"}, "no text conditioning"),
    ({"label": "a", "post": {"loudness": 40}}, "loudness"),
]


@pytest.mark.parametrize("kwargs,message", BAD_GENERATE, ids=[m for _, m in BAD_GENERATE])
def test_python_api_refuses_bad_arguments_by_name(untrained_model, tmp_path, kwargs, message):
    pipe = AudioDiffusion.from_pretrained(untrained_model)
    with pytest.raises(ValueError, match=message):
        pipe.generate(**kwargs)


def test_from_pretrained_names_the_problem_with_a_model_path(tmp_path, untrained_model):
    with pytest.raises(ModelLoadError, match="no such model"):
        AudioDiffusion.from_pretrained(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text((untrained_model / "config.yaml").read_text())
    with pytest.raises(ModelLoadError, match="missing model.safetensors"):
        AudioDiffusion.from_pretrained(tmp_path / "half")
    (tmp_path / "half" / "model.safetensors").write_bytes(os.urandom(500))
    with pytest.raises(ModelLoadError, match="unreadable model files"):
        AudioDiffusion.from_pretrained(tmp_path / "half")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a readable checkpoint"):
        AudioDiffusion.from_pretrained(tmp_path / "text.ckpt")


def test_an_unknown_model_name_says_what_is_shipped():
    from audiodiff.model import ModelLoadError
    from audiodiff.pipeline import AudioDiffusion

    with pytest.raises(ModelLoadError, match=r"no-such-model: no such model file or directory, nor a shipped model"):
        AudioDiffusion.from_pretrained("no-such-model")


@pytest.mark.slow
def test_render_without_arguments_prints_its_usage(tmp_path):
    result = run_cli([cli("audiodiff-render")], tmp_path, check=False)
    assert result.returncode == 2 and "Usage: audiodiff-render" in result.stderr and "prompt=TEXT" in result.stderr
    assert "Traceback" not in result.stderr and "MissingMandatoryValue" not in result.stderr


@pytest.mark.slow
def test_render_takes_one_request_on_the_command_line(tmp_path, untrained_model):
    base = [cli("audiodiff-render"), f"checkpoint={untrained_model}", "sampler.steps=2", "seconds=0.25"]
    result = run_cli([*base, "label=A", "num=2", "seed=5", f"out_dir={tmp_path / 'out'}"], tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [(r["file"], r["label"], r["seed"]) for r in rows] == [("a_1.wav", "a", 5), ("a_2.wav", "a", 6)]
    for args, message in ((["prompt=x", "prompts=p.csv"], "either prompts=FILE or prompt="),
                          ([], "nothing to render: give prompts=FILE"),
                          (["label=a", "num=0"], "num must be an integer from 1 to 100")):
        result = run_cli([*base, *args, f"out_dir={tmp_path / 'bad'}"], tmp_path, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-1500:]
    result = run_cli([*base, "label=a"], tmp_path, check=False)
    assert result.returncode == 2 and "out_dir is required" in result.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_training_output_reads_well_in_a_log_file(tmp_path):
    result = run_cli([cli("audiodiff-train"), "experiment=quickstart", "trainer.max_steps=30", "threads=1",
                      *TINY_MODEL], tmp_path)
    output = (result.stdout + result.stderr).splitlines()
    assert any(re.search(r"step 30/30 \(100%\), [\d.]+ steps/s; train/loss", line) for line in output), output
    assert not any("Tip" in line or "Epoch" in line or "deprecated" in line for line in output), output
    messages = [line.split(" - ", 1)[-1] for line in output if "GPU available" in line]
    assert len(messages) == 1, output  # Lightning's lines once, not also through its own handler
