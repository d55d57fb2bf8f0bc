"""Build the default model's training folder: the game_sfx and jingles recipes side by side, with one
``metadata.csv`` over both.

    python recipes/default_model/prepare.py data/default_model

runs ``recipes/game_sfx/prepare.py OUT/game_sfx`` and ``recipes/jingles/prepare.py OUT/jingles`` (each
skips its work when its folder is already up to date), then writes ``OUT/metadata.csv`` listing every
training row of both, the game sounds repeated ``--sfx-repeats`` times so that the two sources weigh
about the same in an epoch (the jingles have about three times as many clips). The held-out splits stay
in ``OUT/game_sfx/heldout`` and ``OUT/jingles/heldout``, never trained on.

``OUT/synthetic`` adds ``--synthetic`` generated lasers and explosions (``synthetic_sfx.py``), listed
once each: the real recordings hold four lasers and two explosions, too few to teach their shape. The
evaluation's reference stays ``OUT/game_sfx``, real recordings only.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from tqdm import tqdm

from recipes.default_model.synthetic_sfx import RENDERERS
from recipes.folder_dataset import DatasetWriter, fail, finish_clip, stable_seed
from recipes.game_sfx.prepare import BANK, MAX_SECONDS, SAMPLE_RATE

HERE = Path(__file__).resolve().parent
SOURCES = ("game_sfx", "jingles")


def read_rows(folder: Path) -> list[dict[str, str]]:
    """The training rows of a prepared recipe folder, with paths made relative to its parent."""
    with (folder / "metadata.csv").open(newline="", encoding="utf-8") as f:
        return [{**row, "path": f"{folder.name}/{row['path']}"} for row in csv.DictReader(f)]


def write_metadata(out: Path, rows: list[dict[str, str]]) -> None:
    """Write ``out/metadata.csv`` through a temporary file, so a reader never sees half of it."""
    handle, tmp = tempfile.mkstemp(dir=out, prefix=".metadata-", suffix=".csv")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=("path", "label", "caption"))
            writer.writeheader()
            writer.writerows({key: row[key] for key in ("path", "label", "caption")} for row in rows)
        os.replace(tmp, out / "metadata.csv")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_synthetic(out: Path, clips_per_label: int, seed: int) -> None:
    """Render ``clips_per_label`` synthetic clips of each label in ``RENDERERS`` into ``out`` (a recipe
    folder with ``metadata.csv``; skipped when already made with the same settings)."""
    writer = DatasetWriter(out, "default_model_synthetic", {"clips_per_label": clips_per_label, "seed": seed,
                                                            "version": 1}, SAMPLE_RATE)
    if writer.up_to_date():
        print(f"{out} is up to date")
        return
    writer.begin()
    try:
        jobs = [(label, k) for label in RENDERERS for k in range(clips_per_label)]
        for label, k in tqdm(jobs, desc="synthetic", unit="clip"):
            rng = np.random.default_rng(stable_seed(seed, label, k))
            clip = finish_clip(RENDERERS[label](rng, SAMPLE_RATE)[None], SAMPLE_RATE, MAX_SECONDS)
            writer.add("train", f"{label}_{k:03d}", clip, label, BANK.caption(label, rng), f"{label}:{k}")
        writer.commit({})
    except BaseException:
        writer.abort()
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (holds game_sfx/ and jingles/)")
    parser.add_argument("--sfx-repeats", type=int, default=3, help="times each game-sound row is listed (1 or more)")
    parser.add_argument("--synthetic", type=int, default=48,
                        help="generated lasers and explosions, each (0: none)")
    parser.add_argument("--soundfont", type=Path, help="passed to the jingles recipe")
    parser.add_argument("--cache", type=Path, help="passed to the game_sfx recipe (where sources are downloaded)")
    args = parser.parse_args()
    if args.sfx_repeats < 1:
        fail(f"--sfx-repeats must be 1 or more, got {args.sfx_repeats}")
    if args.synthetic < 0:
        fail(f"--synthetic must be 0 or more, got {args.synthetic}")
    args.out.mkdir(parents=True, exist_ok=True)
    extra = {"game_sfx": ["--cache", str(args.cache)] if args.cache else [],
             "jingles": ["--soundfont", str(args.soundfont)] if args.soundfont else []}
    for source in SOURCES:
        print(f"== {source}", flush=True)
        command = [sys.executable, str(HERE.parent / source / "prepare.py"), str(args.out / source), *extra[source]]
        if subprocess.run(command, check=False).returncode != 0:
            fail(f"the {source} recipe failed (its message is above); {args.out / 'metadata.csv'} was not written")
    synthetic = []
    if args.synthetic:
        print("== synthetic", flush=True)
        write_synthetic(args.out / "synthetic", args.synthetic, seed=0)
        synthetic = read_rows(args.out / "synthetic")
    sfx, jingles = (read_rows(args.out / source) for source in SOURCES)
    write_metadata(args.out, sfx * args.sfx_repeats + synthetic + jingles)
    print(f"{args.out / 'metadata.csv'}: {len(sfx)} game-sound rows x{args.sfx_repeats} + {len(synthetic)} synthetic "
          f"+ {len(jingles)} jingle rows")


if __name__ == "__main__":
    main()
