"""A reference folder for ``audiodiff-eval``: real clips to compare generated ones with.

It is a folder as the recipes' prepare scripts write it (``recipes/folder_dataset.py``)::

    metadata.csv           path,label,caption of the training clips (paths relative to the folder)
    heldout/metadata.csv   path,label,caption of held-out real clips (paths relative to heldout/)
    heldout_prompts.csv    label,prompt: phrasings no training caption uses (for text models)
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiodiff.audio import AudioFileError, load_audio


class ReferenceError(ValueError):
    """A reference folder that cannot be used; the message names the file and what is wrong."""


@dataclass
class ClipSet:
    """Mono clips (each a 1-D float32 array at ``sample_rate``) with one label and source path each."""

    clips: list[np.ndarray]
    labels: list[str]
    paths: list[str]
    sample_rate: int

    def select(self, labels: Sequence[str]) -> ClipSet:
        """Only the clips of ``labels``."""
        keep = [i for i, label in enumerate(self.labels) if label in set(labels)]
        return ClipSet([self.clips[i] for i in keep], [self.labels[i] for i in keep],
                       [self.paths[i] for i in keep], self.sample_rate)

    def seconds(self, label: str) -> list[float]:
        """The lengths in seconds of the clips of ``label``."""
        return [len(c) / self.sample_rate for c, lab in zip(self.clips, self.labels, strict=True) if lab == label]


@dataclass
class ReferenceSet:
    """The training and held-out clips of a reference folder and its held-out prompts (label → phrasings)."""

    root: Path
    train: ClipSet
    heldout: ClipSet
    prompts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return sorted(set(self.train.labels))

    @classmethod
    def load(cls, root: str | Path, sample_rate: int, labels: Sequence[str] | None = None) -> ReferenceSet:
        """Read the folder, loading clips as mono at ``sample_rate`` Hz; ``labels`` keeps only those."""
        root = Path(root)
        if not root.is_dir():
            raise ReferenceError(f"reference folder {root} does not exist or is not a directory")
        train = _read_clips(root / "metadata.csv", root, sample_rate)
        heldout = _read_clips(root / "heldout" / "metadata.csv", root / "heldout", sample_rate)
        prompts: dict[str, list[str]] = {}
        prompt_file = root / "heldout_prompts.csv"
        if prompt_file.is_file():
            for row in _read_rows(prompt_file, ("label", "prompt")):
                prompts.setdefault(row["label"], []).append(row["prompt"])
        reference = cls(root, train, heldout, prompts)
        if labels is not None:
            unknown = sorted(set(labels) - set(reference.labels))
            if unknown:
                raise ReferenceError(f"{root / 'metadata.csv'}: no training clips of label(s) {', '.join(unknown)}; "
                                     f"its labels: {', '.join(reference.labels)}")
            reference = cls(root, train.select(labels), heldout.select(labels),
                            {k: v for k, v in prompts.items() if k in set(labels)})
        missing = sorted(set(reference.heldout.labels) - set(reference.labels))
        if missing:
            raise ReferenceError(f"{root / 'heldout' / 'metadata.csv'}: label(s) {', '.join(missing)} have no "
                                 "training clips in metadata.csv, so no model trained on the folder knows them")
        if len(reference.labels) < 2:
            raise ReferenceError(f"{root}: the evaluation needs at least two labels, got {reference.labels}")
        return reference


def _read_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise ReferenceError(f"{path}: missing; a reference folder holds metadata.csv, heldout/metadata.csv and "
                             "heldout_prompts.csv, as recipes/*/prepare.py write them")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            absent = [c for c in columns if c not in (reader.fieldnames or [])]
            if absent:
                raise ReferenceError(f"{path}: needs the column(s) {', '.join(absent)}; found {reader.fieldnames}")
            rows = [row for row in reader if all((row.get(c) or "").strip() for c in columns)]
    except UnicodeDecodeError as err:
        raise ReferenceError(f"{path}: not UTF-8 text ({err})") from None
    if not rows:
        raise ReferenceError(f"{path}: no rows with {' and '.join(columns)}")
    return [{c: row[c].strip() for c in columns} for row in rows]


def _read_clips(metadata: Path, base: Path, sample_rate: int) -> ClipSet:
    rows = _read_rows(metadata, ("path", "label"))
    clips = []
    for row in rows:
        try:
            audio, _ = load_audio(base / row["path"], sample_rate)
        except AudioFileError as err:
            raise ReferenceError(f"{metadata}: {err}") from None
        clips.append(audio[0])
    return ClipSet(clips, [r["label"] for r in rows], [r["path"] for r in rows], sample_rate)
