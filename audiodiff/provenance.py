"""Provenance of generated audio: what made a clip, written into the WAV file itself as RIFF INFO
strings and read back from it.

The ``comment`` field (ICMT) holds the whole record as one JSON object: the prompt or label, seed,
sampler settings, post-processing, the model's content hash, the toolkit version, the date and an
explicit AI-generated disclosure. The other INFO fields repeat the human-facing parts (title, artist,
software, date, genre) so that any tag reader (``exiftool``, ``ffprobe``, ``sox --i``, a DAW) shows
them without parsing JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import torch
from torch import nn

from audiodiff.audio import read_info

DISCLOSURE = "AI-generated audio: synthesised by an audiodiff diffusion model, not recorded or performed."
# What a clip's metadata contributes to its provenance (when present).
GENERATION_KEYS = ("prompt", "negative_prompt", "label", "seed", "seconds", "sampler", "steps", "schedule",
                   "guidance", "guidance_rescale", "sampler_options", "precision", "model_sha256", "post", "lufs",
                   "true_peak_dbtp")


class ProvenanceError(ValueError):
    """A file carries no audiodiff provenance (or an unreadable one); the message names the file."""


def weights_digest(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's state: every tensor's name, dtype, shape and bytes, in name
    order. The same weights give the same digest whether loaded from safetensors or a checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def creation_date() -> str:
    """Today (UTC) as YYYY-MM-DD, or the day of ``SOURCE_DATE_EPOCH`` when that is set (the
    reproducible-builds convention), so that reruns can give byte-identical files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return now.date().isoformat()


def describe(metadata: dict) -> dict:
    """The provenance record of a clip with this metadata (JSON-ready)."""
    from audiodiff import __version__

    record = {key: metadata[key] for key in GENERATION_KEYS if key in metadata}
    record.update(ai_generated=True, disclosure=DISCLOSURE, software=f"audiodiff {__version__}",
                  date=creation_date())
    return record


def info_fields(record: dict) -> dict[str, str]:
    """RIFF INFO strings (libsndfile names) carrying a provenance record."""
    what = record.get("prompt") or record.get("label") or "untitled"
    return {
        "title": str(what),
        "artist": "AI-generated (audiodiff)",
        "comment": json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
        "software": record["software"],
        "date": record["date"],
        "genre": "AI-generated sound",
    }


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance record stored in a WAV written by audiodiff (as :func:`describe` made it)."""
    comment = read_info(path).get("comment")
    try:
        record = json.loads(comment) if comment else None
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or record.get("ai_generated") is not True:
        raise ProvenanceError(f"{path}: no audiodiff provenance in the file's INFO comment")
    return record
