"""Model folders (``config.yaml`` + ``model.safetensors``) and Lightning checkpoints, read without
running pickled code. Shared by the diffusion model and the neural vocoder."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from audiodiff.audio import usual_file_mode

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"  # models shipped inside the package
DEFAULT_MODEL = "default"


class ModelLoadError(ValueError):
    """A model file or config that cannot be loaded; the message names the file."""


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
    """The config and weights of a folder written by :func:`write_model_folder`."""
    config_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (config_file, weights_file):
        if not f.is_file():
            raise error(f"{path}: missing {f.name} (a model folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        return yaml.safe_load(config_file.read_text()), load_file(str(weights_file))
    except Exception as err:
        raise error(f"{path}: unreadable model files ({err})") from None


def load_checkpoint_file(path: str | Path, error: type[ModelLoadError] = ModelLoadError) -> dict:
    """A PyTorch checkpoint's contents, loaded with ``weights_only=True``: plain tensors and
    containers only. A file whose pickle would build any other object (and so could run code) is
    refused with ``error`` (:class:`ModelLoadError` or a subclass) before anything in it runs."""
    import pickle
    import re

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
