"""Model folders (``config.yaml`` + ``model.safetensors``) and Lightning checkpoints, read without
running pickled code. Shared by the diffusion model and the neural vocoder."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"


class ModelLoadError(ValueError):
    """A model file or config that cannot be loaded; the message names the file."""


def write_model_folder(directory: str | Path, config: dict, state: dict[str, torch.Tensor]) -> Path:
    """Write ``config`` as ``config.yaml`` and ``state`` as ``model.safetensors`` into ``directory``,
    each to a temporary file first, so an interrupted save never leaves a truncated file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp))
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


def read_checkpoint(path: Path, error: type[ModelLoadError] = ModelLoadError) -> dict:
    """A Lightning checkpoint loaded with ``torch.load(weights_only=True)``: plain tensors and
    containers only, so a checkpoint cannot run code when it is read."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise error(f"{path}: refused, the file holds pickled objects that are not plain tensors "
                    f"and containers ({str(err).splitlines()[0]})") from None
    except Exception as err:
        raise error(f"{path}: not a readable checkpoint ({err})") from None
