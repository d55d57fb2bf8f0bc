"""Build the default model's training folder: the game_sfx and jingles recipes side by side, with one
``metadata.csv`` over both.

    python recipes/default_model/prepare.py data/default_model

runs ``recipes/game_sfx/prepare.py OUT/game_sfx`` and ``recipes/jingles/prepare.py OUT/jingles`` (each
skips its work when its folder is already up to date), then writes ``OUT/metadata.csv`` listing every
training row of both, the game sounds repeated ``--sfx-repeats`` times so that the two sources weigh
about the same in an epoch (the jingles have about three times as many clips), and
``OUT/training_data.csv`` (source,file,licence of every source file trained on, both recipes'
``training_data.csv`` together; ``export.py --training-data`` ships it beside the model). The held-out
splits, the files of ``recipes/heldout.csv``, stay in ``OUT/game_sfx/heldout`` and ``OUT/jingles/heldout``,
never trained on.
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

from recipes.folder_dataset import MANIFEST, fail

HERE = Path(__file__).resolve().parent
SOURCES = ("game_sfx", "jingles")


def read_rows(folder: Path) -> list[dict[str, str]]:
    """The training rows of a prepared recipe folder, with paths made relative to its parent."""
    with (folder / "metadata.csv").open(newline="", encoding="utf-8") as f:
        return [{**row, "path": f"{folder.name}/{row['path']}"} for row in csv.DictReader(f)]


def read_training_data(folder: Path) -> list[dict[str, str]]:
    """The ``training_data.csv`` rows (source,file,licence) of a prepared recipe folder."""
    with (folder / MANIFEST).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    """Write ``path`` through a temporary file, so a reader never sees half of it."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".csv")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows({key: row[key] for key in fields} for row in rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (holds game_sfx/ and jingles/)")
    parser.add_argument("--sfx-repeats", type=int, default=3, help="times each game-sound row is listed (1 or more)")
    parser.add_argument("--soundfont", type=Path, help="passed to the jingles recipe")
    parser.add_argument("--cache", type=Path, help="passed to the game_sfx recipe (where sources are downloaded)")
    args = parser.parse_args()
    if args.sfx_repeats < 1:
        fail(f"--sfx-repeats must be 1 or more, got {args.sfx_repeats}")
    args.out.mkdir(parents=True, exist_ok=True)
    extra = {"game_sfx": ["--cache", str(args.cache)] if args.cache else [],
             "jingles": ["--soundfont", str(args.soundfont)] if args.soundfont else []}
    for source in SOURCES:
        print(f"== {source}", flush=True)
        command = [sys.executable, str(HERE.parent / source / "prepare.py"), str(args.out / source), *extra[source]]
        if subprocess.run(command, check=False).returncode != 0:
            fail(f"the {source} recipe failed (its message is above); {args.out / 'metadata.csv'} was not written")
    sfx, jingles = (read_rows(args.out / source) for source in SOURCES)
    write_csv(args.out / "metadata.csv", ("path", "label", "caption"), sfx * args.sfx_repeats + jingles)
    trained_on = [row for source in SOURCES for row in read_training_data(args.out / source)]
    write_csv(args.out / MANIFEST, ("source", "file", "licence"), trained_on)
    print(f"{args.out / 'metadata.csv'}: {len(sfx)} game-sound rows x{args.sfx_repeats} + {len(jingles)} jingle rows")
    print(f"{args.out / MANIFEST}: the {len(trained_on)} source files trained on")


if __name__ == "__main__":
    main()
