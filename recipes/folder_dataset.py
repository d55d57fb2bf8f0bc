"""What the recipes' prepare scripts share: turning clips into a folder dataset that
``data=folder data.dataset.root=OUT`` trains on, with a held-out split beside it.

Layout of ``OUT``::

    metadata.csv           path,label,caption of the training rows (paths under train/)
    train/*.wav            training clips (augmented variants included)
    training_data.csv      source,file,licence: every source file or item the training rows came from
    heldout/metadata.csv   path,label,caption of the held-out clips (never trained on)
    heldout/*.wav
    heldout_prompts.csv    label,prompt: phrasings no training caption uses
    prepare.json           the recipe, its settings and the statistics; marks the folder as ours

The held-out clips are those of the files listed in ``recipes/heldout.csv`` (:func:`read_heldout`),
the one held-out list every recipe and shipped model keeps out of its training data.

The folder is built under a temporary sibling and swapped in only when complete, so an interrupted
run leaves either the previous dataset or none, never half of one. A rerun with the same settings
finds ``prepare.json`` and skips the work; other settings rebuild it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from audiodiff.audio import peak_normalize, save_audio
from audiodiff.postprocess import apply_fades, trim_silence

STAMP = "prepare.json"
SPLITS = ("train", "heldout")
HELDOUT_LIST = Path(__file__).resolve().with_name("heldout.csv")
HELDOUT_SOURCES = ("kenney", "sonic_pi", "jingles")
MANIFEST = "training_data.csv"  # source,file,licence of what a model trained on
TRIM_BELOW_PEAK_DB = 50.0  # leading/trailing audio this far under the peak counts as silence
END_FADE_SECONDS = 0.02


class MissingSource(RuntimeError):
    """A tool, package or file the recipe needs is not there; the message says how to get it."""


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error (no traceback) and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def finish_clip(audio: np.ndarray, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Trim leading and trailing silence, cap at ``max_seconds`` (with a short fade-out where the
    cap cuts the sound) and normalise the peak to -1 dBFS. ``audio``: channels × frames."""
    audio, _ = trim_silence(audio, sample_rate, TRIM_BELOW_PEAK_DB)
    limit = int(round(max_seconds * sample_rate))
    if audio.shape[-1] > limit:
        audio, _ = apply_fades(audio[:, :limit], sample_rate, 0.0, END_FADE_SECONDS)
    return peak_normalize(audio, -1.0)


def read_heldout(path: Path | None = None) -> dict[str, set[str]]:
    """The shared held-out list (``recipes/heldout.csv`` unless ``path`` is given): per source
    (kenney, sonic_pi, jingles, and the Debian packages kept for evaluation), the stems of its held-out
    files; every recipe's own sources are present, possibly empty. A recording is held out in every
    format it ships in, so the list is matched on the stem."""
    path = path or HELDOUT_LIST
    held: dict[str, set[str]] = {source: set() for source in HELDOUT_SOURCES}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            held.setdefault(row["source"], set()).add(Path(row["file"]).stem)
    return held


def stable_seed(*parts: str | int) -> list[int]:
    """A seed sequence for :func:`numpy.random.default_rng` from names and numbers, the same in
    every process (unlike ``hash``)."""
    return [zlib.crc32(p.encode("utf-8")) if isinstance(p, str) else int(p) for p in parts]


@dataclass(frozen=True)
class Row:
    split: str
    path: str  # relative to the split's metadata.csv
    label: str
    caption: str
    seconds: float
    source: str  # the file or recipe item the clip came from, as "source:file"
    licence: str


class DatasetWriter:
    """Collects clips into a temporary folder next to ``out`` and publishes it with :meth:`commit`."""

    def __init__(self, out: Path, recipe: str, settings: Mapping[str, object], sample_rate: int) -> None:
        self.out = out.resolve()
        self.recipe = recipe
        self.settings = dict(settings)
        self.sample_rate = sample_rate
        self.rows: list[Row] = []
        self.tmp: Path | None = None

    def up_to_date(self) -> bool:
        """True when ``out`` holds a complete dataset made by this recipe with the same settings."""
        stamp = self.read_stamp()
        return stamp is not None and stamp.get("recipe") == self.recipe and stamp.get("settings") == self.settings

    def read_stamp(self) -> dict | None:
        try:
            return json.loads((self.out / STAMP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def begin(self) -> None:
        """Check that ``out`` may be replaced and open the temporary folder."""
        if self.out.exists() and not self.out.is_dir():
            fail(f"{self.out} exists and is not a folder")
        if self.out.is_dir() and any(self.out.iterdir()) and self.read_stamp() is None:
            fail(f"{self.out} is not empty and was not made by a recipe (no {STAMP}); pick another output folder "
                 "or empty it")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out.parent.glob(f".{self.out.name}.partial-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        for split in SPLITS:
            (self.tmp / split).mkdir()

    def add(self, split: str, name: str, audio: np.ndarray, label: str, caption: str, source: str,
            licence: str) -> None:
        """Write ``audio`` (channels × frames at the writer's rate) as ``split/name.wav`` with its row;
        ``source`` (``"source:file"``) and ``licence`` name what it came from for ``training_data.csv``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        assert self.tmp is not None, "call begin() first"
        save_audio(self.tmp / split / f"{name}.wav", audio, self.sample_rate)
        path = f"train/{name}.wav" if split == "train" else f"{name}.wav"
        self.rows.append(Row(split, path, label, caption, audio.shape[-1] / self.sample_rate, source, licence))

    def write_table(self, name: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """An extra CSV file in the dataset folder (published with it)."""
        assert self.tmp is not None, "call begin() first"
        with (self.tmp / name).open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *rows])

    def commit(self, heldout_prompts: Mapping[str, Sequence[str]]) -> dict:
        """Write the metadata files and the stamp, then swap the folder in place of ``out``.
        Returns the statistics written to the stamp."""
        assert self.tmp is not None, "call begin() first"
        _write_metadata(self.tmp / "metadata.csv", [r for r in self.rows if r.split == "train"])
        _write_metadata(self.tmp / "heldout" / "metadata.csv", [r for r in self.rows if r.split == "heldout"])
        trained_on = sorted({(*r.source.split(":", 1), r.licence) for r in self.rows if r.split == "train"})
        self.write_table(MANIFEST, ("source", "file", "licence"), trained_on)
        with (self.tmp / "heldout_prompts.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "prompt"])
            writer.writerows([label, p] for label, prompts in heldout_prompts.items() for p in prompts)
        stats = self.statistics()
        stamp = {"recipe": self.recipe, "settings": self.settings, "sample_rate": self.sample_rate,
                 "statistics": stats}
        (self.tmp / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.tmp = None
        return stats

    def abort(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def statistics(self) -> dict:
        """Per split and label: clips, distinct source files and total seconds."""
        stats: dict = {split: defaultdict(lambda: {"clips": 0, "sources": set(), "seconds": 0.0}) for split in SPLITS}
        for row in self.rows:
            entry = stats[row.split][row.label]
            entry["clips"] += 1
            entry["sources"].add(row.source)
            entry["seconds"] += row.seconds
        return {split: {label: {"clips": e["clips"], "sources": len(e["sources"]), "seconds": round(e["seconds"], 2)}
                        for label, e in sorted(per_label.items())}
                for split, per_label in stats.items()}


def _write_metadata(path: Path, rows: Sequence[Row]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "caption"])
        writer.writerows([r.path, r.label, r.caption] for r in rows)


def print_summary(out: Path, stats: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None:
    """A table of clips, source files and seconds per label and split."""
    labels = sorted({label for per_label in stats.values() for label in per_label})
    print(f"\n{out}")
    print(f"{'label':14s} {'train clips':>11s} {'sources':>8s} {'seconds':>8s}   {'held-out':>8s} {'seconds':>8s}")
    totals = np.zeros(5)
    for label in labels:
        train = stats["train"].get(label, {"clips": 0, "sources": 0, "seconds": 0.0})
        held = stats["heldout"].get(label, {"clips": 0, "sources": 0, "seconds": 0.0})
        row = np.array([train["clips"], train["sources"], train["seconds"], held["clips"], held["seconds"]])
        totals += row
        print(f"{label:14s} {row[0]:11.0f} {row[1]:8.0f} {row[2]:8.1f}   {row[3]:8.0f} {row[4]:8.1f}")
    print(f"{'total':14s} {totals[0]:11.0f} {totals[1]:8.0f} {totals[2]:8.1f}   {totals[3]:8.0f} {totals[4]:8.1f}")
    print(f"train with: audiodiff-train ... data=folder data.dataset.root={out}")
