"""Every read and write of model files: model folders (``config.yaml`` + ``model.safetensors``),
Lightning checkpoints and neural vocoders, and the class registry their configs are built from.

A model file may come from anyone, so loading one never runs code from it:

- weights come from safetensors, or from ``torch.load(weights_only=True)`` (plain tensors and
  containers; a pickle that would build any other object is refused before it runs);
- a config is built by :func:`build`, which calls only the classes of :data:`REGISTRY`, looked up by
  their exact ``_target_`` path. A function, a module's member, a class outside the registry, or a
  Hydra key that calls things (``_args_``, ``_call_`` ...) is refused, naming the key and the
  target, before anything in the config is called. Hydra's ``instantiate`` is not used here: it
  resolves any attribute of any module it can import.

Saved models keep loading across releases: a class that moves keeps its old path in
:data:`REGISTRY` beside the new one.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from audiodiff.audio import usual_file_mode
from audiodiff.conditioning import (
    Conditioner,
    DurationEmbedding,
    GuidanceEmbedding,
    HashedWordTextEncoder,
    LabelEmbedding,
    MiniLMTextEncoder,
    PrecomputedTextEncoder,
    TextConditioner,
)
from audiodiff.diffusion import DiffusionObjective
from audiodiff.nets import UNet1d
from audiodiff.representations import MelSpectrogram, Waveform
from audiodiff.vocoders import GriffinLim, VocosVocoder

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"  # models shipped inside the package
DEFAULT_MODEL = "default"

# The classes a model config may build, by the ``_target_`` paths configs name them with (the
# package path and the defining module's path where both have been written into saved configs).
REGISTRY: dict[str, type] = {
    "audiodiff.representations.MelSpectrogram": MelSpectrogram,
    "audiodiff.representations.Waveform": Waveform,
    "audiodiff.nets.UNet1d": UNet1d,
    "audiodiff.nets.unet1d.UNet1d": UNet1d,
    "audiodiff.conditioning.Conditioner": Conditioner,
    "audiodiff.conditioning.LabelEmbedding": LabelEmbedding,
    "audiodiff.conditioning.TextConditioner": TextConditioner,
    "audiodiff.conditioning.MiniLMTextEncoder": MiniLMTextEncoder,
    "audiodiff.conditioning.HashedWordTextEncoder": HashedWordTextEncoder,
    "audiodiff.conditioning.PrecomputedTextEncoder": PrecomputedTextEncoder,
    "audiodiff.conditioning.DurationEmbedding": DurationEmbedding,
    "audiodiff.conditioning.GuidanceEmbedding": GuidanceEmbedding,
    "audiodiff.diffusion.DiffusionObjective": DiffusionObjective,
    "audiodiff.diffusion.objective.DiffusionObjective": DiffusionObjective,
    "audiodiff.vocoders.GriffinLim": GriffinLim,
    "audiodiff.vocoders.griffin_lim.GriffinLim": GriffinLim,
    "audiodiff.vocoders.VocosVocoder": VocosVocoder,
    "audiodiff.vocoders.vocos.VocosVocoder": VocosVocoder,
}
# The root of a diffusion model's config; built by AudioDiffusionModel.from_config itself (that
# class sits above this module).
MODEL_TARGETS = ("audiodiff.model.AudioDiffusionModel",)
# A training or render config may name a trained vocoder by its file instead of its architecture:
# ``{_target_: audiodiff.model_files.load_vocoder, checkpoint: vocos-22k}``. A saved model never
# does (it records the architecture, its weights are in the model's own file), so a model file that
# names one is refused.
VOCODER_FILE_TARGETS = ("audiodiff.model_files.load_vocoder", "audiodiff.vocoders.load_vocoder",
                        "audiodiff.vocoders.vocos.load_vocoder")
SPECIAL_KEYS = ("_target_", "_partial_")


class ModelLoadError(ValueError):
    """A model file or config that cannot be loaded; the message names the file."""


class VocoderLoadError(ModelLoadError):
    """A vocoder folder or checkpoint that cannot be loaded; the message names the file."""


def check_config(config: Any, source: str, root: tuple[str, ...] | None = None, vocoder_files: bool = False,
                 error: type[ModelLoadError] = ModelLoadError, key: str = "") -> None:
    """Refuse ``config`` (plain dicts and lists) unless every ``_target_`` in it names a class of
    :data:`REGISTRY` (``root``: the paths the top node may name instead; ``vocoder_files``: whether a
    node may name a vocoder file to load) and no node holds another Hydra key. ``error`` names
    ``source`` and the offending key and target. Nothing is imported or called."""
    if isinstance(config, dict):
        where = key or "the top level"
        if "_target_" in config:
            target = config["_target_"]
            allowed = (*(root or ()), *(VOCODER_FILE_TARGETS if vocoder_files else ()))
            if not isinstance(target, str) or (target not in REGISTRY and target not in allowed):
                raise error(f"{source}: refusing _target_ {target!r} at {where}: not a registered audiodiff class "
                            f"(a model config builds only the classes listed in audiodiff.model_files.REGISTRY)")
            if not isinstance(config.get("_partial_", False), bool):
                raise error(f"{source}: _partial_ at {where} must be true or false, got {config['_partial_']!r}")
        for name in config:
            if isinstance(name, str) and name.startswith("_") and name.endswith("_") and name not in SPECIAL_KEYS:
                raise error(f"{source}: refusing the key {name!r} at {where}; a model config may use only "
                            f"{' and '.join(SPECIAL_KEYS)} besides constructor arguments")
        for name, value in config.items():
            check_config(value, source, None, vocoder_files, error, f"{key}.{name}" if key else str(name))
    elif isinstance(config, list | tuple):
        for i, value in enumerate(config):
            check_config(value, source, None, vocoder_files, error, f"{key}[{i}]")


def build(config: Any, source: str, vocoder_files: bool = False, error: type[ModelLoadError] = ModelLoadError) -> Any:
    """The object a config describes: each ``_target_`` node becomes its registered class called
    with the node's other keys (built first), or a ``functools.partial`` of it with ``_partial_:
    true``. The whole config is checked by :func:`check_config` before anything is built."""
    check_config(config, source, vocoder_files=vocoder_files, error=error)
    return _build(config)


def _build(node: Any) -> Any:
    if isinstance(node, list | tuple):
        return [_build(value) for value in node]
    if not isinstance(node, dict):
        return node
    args = {name: _build(value) for name, value in node.items() if name not in SPECIAL_KEYS}
    if "_target_" not in node:
        return args
    if node["_target_"] in VOCODER_FILE_TARGETS:
        return load_vocoder(**args)
    target: Callable[..., Any] = REGISTRY[node["_target_"]]
    return functools.partial(target, **args) if node.get("_partial_", False) else target(**args)


def resolve_model(path: str | os.PathLike | None) -> Path:
    """Where a model is: a path as given, the name of a model shipped in the package (``default``),
    or, for None, the shipped default model."""
    if path is not None and Path(path).exists():
        return Path(path)
    name = DEFAULT_MODEL if path is None else str(path)
    shipped = PRETRAINED_DIR / name
    if (shipped / CONFIG_FILE).is_file():
        return shipped
    names = sorted(p.name for p in PRETRAINED_DIR.glob("*") if (p / CONFIG_FILE).is_file())
    if path is None:
        raise ModelLoadError(f"this install ships no default model ({shipped} is missing); pass a model folder or "
                             f"training checkpoint, e.g. runs/quickstart/model")
    raise ModelLoadError(f"{path}: no such model file or directory, nor a shipped model (shipped: "
                         f"{', '.join(names) or 'none'})")


def write_model_folder(directory: str | Path, config: dict, state: dict[str, torch.Tensor]) -> Path:
    """Write ``config`` as ``config.yaml`` and ``state`` as ``model.safetensors`` into ``directory``,
    each to a temporary file first, so an interrupted save never leaves a truncated file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp))
    os.chmod(tmp, usual_file_mode())
    tmp.replace(directory / WEIGHTS_FILE)
    tmp = directory / f".{CONFIG_FILE}.tmp"
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(directory / CONFIG_FILE)
    return directory


def read_model_folder(path: Path, error: type[ModelLoadError] = ModelLoadError) -> tuple[dict, dict]:
    """The config and weights of a folder written by :func:`write_model_folder` (the config not yet
    checked: see :func:`check_config`)."""
    config_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (config_file, weights_file):
        if not f.is_file():
            raise error(f"{path}: missing {f.name} (a model folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = yaml.safe_load(config_file.read_text())
        state = load_file(str(weights_file))
    except Exception as err:
        raise error(f"{path}: unreadable model files ({err})") from None
    if not isinstance(config, dict):
        raise error(f"{path / CONFIG_FILE}: not a model config (a mapping of constructor arguments)")
    return config, state


def load_checkpoint_file(path: str | Path, error: type[ModelLoadError] = ModelLoadError) -> dict:
    """A PyTorch checkpoint's contents, loaded with ``weights_only=True``: plain tensors and
    containers only. A file whose pickle would build any other object (and so could run code) is
    refused with ``error`` (:class:`ModelLoadError` or a subclass) before anything in it runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found:
            raise error(f"{path}: refused, the file would build {found.group(1)} when loaded; only "
                        "plain tensors and containers are accepted, so nothing in it was run") from None
        raise error(f"{path}: not a readable checkpoint (not a PyTorch checkpoint file)") from None
    except Exception as err:
        raise error(f"{path}: not a readable checkpoint ({err})") from None


def _checkpoint_parts(path: Path, config_key: str, prefixes: tuple[str, ...],
                      error: type[ModelLoadError]) -> tuple[dict, dict]:
    """The config stored under ``hyper_parameters[config_key]`` of a training checkpoint and the
    weights under the first of ``prefixes`` found in its state dict (prefix removed)."""
    ckpt = load_checkpoint_file(path, error)
    try:
        config = ckpt["hyper_parameters"][config_key]
        state = ckpt["state_dict"]
    except (KeyError, TypeError):
        raise error(f"{path}: not an audiodiff training checkpoint of this kind (no {config_key} config inside)") \
            from None
    if not isinstance(config, dict):
        raise error(f"{path}: the checkpoint's {config_key} config is not a mapping")
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in state)), prefixes[-1])
    return config, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def read_model_files(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checked config and the weights of a diffusion model folder or training checkpoint (its
    EMA weights), without building it. The config is refused (:class:`ModelLoadError`) unless it
    names only registered classes."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or directory")
    if path.is_dir():
        config, state = read_model_folder(path)
    else:
        config, state = _checkpoint_parts(path, "model", ("ema.", "model."), ModelLoadError)
    check_config(config, str(path), root=MODEL_TARGETS)
    if config.get("_target_") not in MODEL_TARGETS:
        raise ModelLoadError(f"{path}: not a diffusion model (its config builds {config.get('_target_')!r})")
    return config, state


def load_vocoder(checkpoint: str | Path) -> VocosVocoder:
    """Load a trained vocoder, frozen and in eval mode, from a folder written by :func:`save_vocoder`,
    from a vocoder training checkpoint (``.ckpt``) or by the name of one shipped with audiodiff (a
    folder of ``audiodiff/pretrained/``, e.g. ``vocos-22k``); read as any model file is (see the
    module's docstring)."""
    path = Path(checkpoint)
    if not path.exists() and (PRETRAINED_DIR / str(checkpoint)).is_dir():
        path = PRETRAINED_DIR / str(checkpoint)
    if not path.exists():
        shipped = sorted(p.name for p in PRETRAINED_DIR.glob("*") if p.is_dir())
        raise VocoderLoadError(f"{path}: no such vocoder folder or checkpoint (shipped vocoders: "
                               f"{', '.join(shipped) or 'none'})")
    if path.is_dir():
        config, state = read_model_folder(path, VocoderLoadError)
    else:
        config, state = _checkpoint_parts(path, "vocoder", ("vocoder.",), VocoderLoadError)
    try:
        vocoder = build(config, str(path), error=VocoderLoadError)
    except VocoderLoadError:
        raise
    except Exception as err:
        raise VocoderLoadError(f"{path}: cannot build the vocoder from its config ({err})") from None
    if not isinstance(vocoder, VocosVocoder):
        raise VocoderLoadError(f"{path}: the config builds {type(vocoder).__name__}, not a neural vocoder")
    try:
        vocoder.load_state_dict(state)
    except RuntimeError as err:
        raise VocoderLoadError(f"{path}: weights do not match the config ({err})") from None
    return vocoder.requires_grad_(False).eval()


def save_vocoder(vocoder: VocosVocoder, directory: str | Path) -> Path:
    """Write a neural vocoder as ``config.yaml`` and ``model.safetensors`` into ``directory``."""
    return write_model_folder(directory, vocoder.config, vocoder.state_dict())


def get_vocoder(spec: str | Path | nn.Module) -> nn.Module:
    """A vocoder from ``griffin_lim``, the name of a shipped neural vocoder (``vocos-22k``), a
    neural vocoder folder or training checkpoint, or a vocoder module (returned as it is)."""
    if isinstance(spec, nn.Module):
        return spec
    if str(spec) == "griffin_lim":
        return GriffinLim()
    return load_vocoder(spec)
