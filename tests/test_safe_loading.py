"""A model file from someone else never runs code: every route that reads model files builds only
registered classes, and refuses anything else before it is called. Also: models saved before the
registry keep loading and render as they did."""

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from audiodiff.audio import save_audio
from audiodiff.model import AudioDiffusionModel
from audiodiff.model_files import (
    PRETRAINED_DIR,
    REGISTRY,
    ModelLoadError,
    VocoderLoadError,
    build,
    load_vocoder,
    save_vocoder,
)
from audiodiff.pipeline import AudioDiffusion, SamplerSettings

from .conftest import cli, run_cli
from .test_conditioning import LABELS, tiny_config

DATA = Path(__file__).parent / "data"
OLD_MODEL = DATA / "model_0.1.0"  # saved by audiodiff 0.1.0 (c6230ff), before the registry


class Payload:
    """Unpickling this runs ``touch marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


PAYLOADS = ("torch.load", "os.system", "os.system by keyword", "a function", "an unregistered class",
            "a registered class with _args_", "a vocoder file")
TORCH_LOAD = "refusing _target_ 'audiodiff.model.torch.load' at representation.vocoder"


def payloads(tmp_path: Path) -> dict[str, dict]:
    """Config nodes that would run code (or build something unregistered) if they were instantiated by
    Hydra, each touching ``tmp_path / "ran"`` where it can."""
    marker = tmp_path / "ran"
    torch.save({"x": Payload(marker)}, tmp_path / "evil.pt")
    return {
        "torch.load": {"_target_": "audiodiff.model.torch.load", "_args_": [str(tmp_path / "evil.pt")],
                       "weights_only": False},
        "os.system": {"_target_": "audiodiff.model_files.os.system", "_args_": [f"touch {marker}"]},
        "os.system by keyword": {"_target_": "audiodiff.model_files.os.system", "command": f"touch {marker}"},
        "a function": {"_target_": "audiodiff.model_files.resolve_model", "path": "default"},
        "an unregistered class": {"_target_": "audiodiff.pipeline.AudioDiffusion", "model": None, "source": "x"},
        "a registered class with _args_": {"_target_": "audiodiff.vocoders.GriffinLim", "_args_": [4]},
        "a vocoder file": {"_target_": "audiodiff.model_files.load_vocoder", "checkpoint": "vocos-22k"},
    }


def evil_model(tmp_path: Path, name: str, node: dict) -> Path:
    """A model folder whose vocoder is ``node`` (valid weights, so only the config can stop it)."""
    config = tiny_config({"label": LABELS})
    model = AudioDiffusionModel.from_config(copy.deepcopy(config))
    folder = model.save_pretrained(tmp_path / name.replace(" ", "_"))
    config["representation"]["vocoder"] = node
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.mark.parametrize("name", PAYLOADS)
def test_from_pretrained_refuses_each_payload_before_it_runs(tmp_path, name):
    node = payloads(tmp_path)[name]
    folder = evil_model(tmp_path, name, node)
    with pytest.raises(ModelLoadError, match=r"refusing (_target_|the key).*at representation\.vocoder") as err:
        AudioDiffusion.from_pretrained(folder, device="cpu")
    assert str(folder) in str(err.value) and (node["_target_"] in str(err.value) or "_args_" in str(err.value))
    assert not (tmp_path / "ran").exists()


def test_a_payload_at_the_root_or_in_a_checkpoint_is_refused(tmp_path):
    node = payloads(tmp_path)["os.system"]
    folder = evil_model(tmp_path, "root", node)
    (folder / "config.yaml").write_text(yaml.safe_dump(node))
    with pytest.raises(ModelLoadError, match="refusing _target_ 'audiodiff.model_files.os.system' at the top level"):
        AudioDiffusion.from_pretrained(folder)
    config = tiny_config({"label": LABELS})
    state = {f"ema.{k}": v for k, v in AudioDiffusionModel.from_config(copy.deepcopy(config)).state_dict().items()}
    config["representation"]["vocoder"] = {k: v for k, v in node.items() if k != "_args_"}
    torch.save({"hyper_parameters": {"model": config}, "state_dict": state}, tmp_path / "evil.ckpt")
    with pytest.raises(ModelLoadError, match="refusing _target_ 'audiodiff.model_files.os.system'"):
        AudioDiffusion.from_pretrained(tmp_path / "evil.ckpt")
    assert not (tmp_path / "ran").exists()


def test_training_routes_refuse_a_payload_model_init_from_teacher_and_vocoder(tmp_path):
    from audiodiff.distillation import DistillationTask, GuidanceDistillationTask
    from audiodiff.training import DiffusionTask
    from audiodiff.vocoders.training import VocoderTask

    node = payloads(tmp_path)["torch.load"]
    folder = evil_model(tmp_path, "evil", node)
    with pytest.raises(ModelLoadError, match=TORCH_LOAD):
        DiffusionTask(model=tiny_config({"label": LABELS}), init_from=str(folder))
    for task in (DistillationTask, GuidanceDistillationTask):
        with pytest.raises(ModelLoadError, match=TORCH_LOAD):
            task(teacher=str(folder))
    with pytest.raises(ModelLoadError, match=TORCH_LOAD):
        DiffusionTask(model={**tiny_config({"label": LABELS}), "representation": {
            "_target_": "audiodiff.representations.MelSpectrogram", "sample_rate": 8000, "n_fft": 256,
            "hop_length": 64, "n_mels": 16, "vocoder": node}})
    vocoder_folder = save_vocoder(build({"_target_": "audiodiff.vocoders.VocosVocoder", "sample_rate": 8000,
                                         "n_fft": 256, "hop_length": 64, "n_mels": 16, "dim": 8, "hidden_dim": 16,
                                         "num_layers": 1}, "test"), tmp_path / "voc")
    (vocoder_folder / "config.yaml").write_text(yaml.safe_dump(payloads(tmp_path)["os.system by keyword"]))
    with pytest.raises(VocoderLoadError, match="refusing _target_ 'audiodiff.model_files.os.system' at the top"):
        VocoderTask(vocoder={"_target_": "audiodiff.vocoders.VocosVocoder", "sample_rate": 8000, "n_fft": 256,
                             "hop_length": 64, "n_mels": 16, "dim": 8, "hidden_dim": 16, "num_layers": 1},
                    init_from=str(vocoder_folder))
    with pytest.raises(VocoderLoadError, match="refusing _target_"):
        load_vocoder(vocoder_folder)
    assert not (tmp_path / "ran").exists()


@pytest.mark.slow
def test_render_and_eval_commands_refuse_a_payload_model(tmp_path):
    folder = evil_model(tmp_path, "evil", payloads(tmp_path)["torch.load"])
    (tmp_path / "p.csv").write_text("label\na\n")
    result = run_cli([cli("audiodiff-render"), f"checkpoint={folder}", f"prompts={tmp_path / 'p.csv'}",
                      f"out_dir={tmp_path / 'out'}"], tmp_path, check=False)
    assert result.returncode == 2 and TORCH_LOAD in result.stderr
    reference = tmp_path / "reference"
    for split in ("", "heldout/"):
        (reference / split).mkdir(parents=True, exist_ok=True)
        (reference / split / "metadata.csv").write_text("path,label\n" + "".join(
            f"{label}{i}.wav,{label}\n" for label in ("a", "b") for i in range(6)))
        for label, hz in (("a", 300), ("b", 2000)):
            for i in range(6):
                t = np.arange(4000) / 8000
                tone = np.sin(2 * np.pi * hz * (1 + i / 20) * t)[None]
                save_audio(reference / split / f"{label}{i}.wav", tone, 8000)
    result = run_cli([cli("audiodiff-eval"), f"checkpoint={folder}", f"reference={reference}"], tmp_path, check=False)
    assert result.returncode == 2 and TORCH_LOAD in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()


def test_the_registry_holds_only_audiodiff_classes():
    assert all(isinstance(cls, type) and cls.__module__.startswith("audiodiff.") for cls in REGISTRY.values())
    for target, cls in REGISTRY.items():
        module, name = target.rsplit(".", 1)
        assert name == cls.__name__ and module.startswith("audiodiff")


def test_a_model_saved_before_the_registry_loads_and_renders_as_it_did():
    pipe = AudioDiffusion.from_pretrained(OLD_MODEL, device="cpu")
    clips = pipe.generate_batch(["a", None], [0, 1], 0.5, SamplerSettings("dpmpp_2m_sde", 6, guidance=2.0),
                                progress=False, prompts=[None, "a small test"])
    expected = np.load(DATA / "model_0.1.0_render.npy")
    np.testing.assert_allclose(np.stack([c.samples for c in clips]), expected, atol=1e-5)


def test_the_shipped_models_load_through_the_registry(tmp_path):
    pipe = AudioDiffusion.from_pretrained(device="cpu")
    assert pipe.model.config["_target_"] == "audiodiff.model.AudioDiffusionModel"
    shutil.copytree(PRETRAINED_DIR / "vocos-22k", tmp_path / "voc")
    assert load_vocoder(tmp_path / "voc").settings == load_vocoder("vocos-22k").settings
