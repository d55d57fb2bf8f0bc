"""Pack the default model's data for a GPU host that has neither the data nor the text encoder.

    python recipes/default_model/pack.py data/default_model .gpu

Writes into OUT: ``data/`` (every clip of ``metadata.csv`` as Ogg Vorbis, about a sixth of the WAV
bytes, plus the metadata itself), and ``text_embeddings.pt``: the frozen all-MiniLM-L6-v2's token
embeddings of every caption and of the prompts the two experiments render while training
(:class:`audiodiff.conditioning.PrecomputedTextEncoder`), so the host needs no ``transformers``
weights. ``gpu_session.py`` unpacks it there. Vorbis is lossy; at the default level 0.5, measured on
40 clips (80-band log-mel, 1024-point frames): within 30 dB of each clip's peak the packed clip differs
from the original by 0.27 dB RMS (median; 0.55 dB at the 90th percentile), within 45 dB by 1.0 dB.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf
from omegaconf import OmegaConf
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from audiodiff.conditioning import MiniLMTextEncoder, save_text_embeddings
from recipes.folder_dataset import fail

CONF = Path(__file__).resolve().parents[2] / "audiodiff" / "conf"
EXPERIMENTS = ("default_model", "default_model_student")


def encode(job: tuple[Path, Path, float]) -> int:
    """One clip to Ogg Vorbis; returns the bytes written."""
    source, target, compression = job
    audio, rate = sf.read(source, dtype="float32")
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio, rate, format="OGG", subtype="VORBIS", compression_level=compression)
    return target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="the prepared dataset (recipes/default_model/prepare.py)")
    parser.add_argument("out", type=Path, help="the folder to write (e.g. .gpu, ignored by git)")
    parser.add_argument("--compression", type=float, default=0.5,
                        help="Vorbis compression level, 0 (best quality) to 1 (smallest); default 0.5")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not 0.0 <= args.compression <= 1.0:
        fail(f"--compression must be in 0..1, got {args.compression}")
    metadata = args.data / "metadata.csv"
    if not metadata.is_file():
        fail(f"{metadata} not found; prepare the data first: python recipes/default_model/prepare.py {args.data}")
    with metadata.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = args.out / "data"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(metadata, out / "metadata.csv")
    paths = sorted({row["path"] for row in rows})
    jobs = [(args.data / p, out / f"{p}.ogg", args.compression) for p in paths]
    with ProcessPoolExecutor(args.workers) as pool:
        written = sum(tqdm(pool.map(encode, jobs, chunksize=16), total=len(jobs), desc="vorbis", unit="clip"))

    prompts = {row["caption"] for row in rows if row["caption"]}
    for name in EXPERIMENTS:
        prompts.update(OmegaConf.load(CONF / "experiment" / f"{name}.yaml").audio_log.prompts)
    source = OmegaConf.to_container(OmegaConf.load(CONF / "conditioner" / "label_text.yaml").text.encoder)
    encoder = MiniLMTextEncoder(max_tokens=source["max_tokens"])
    save_text_embeddings(encoder, source, sorted(prompts), str(args.out / "text_embeddings.pt"))
    size = (args.out / "text_embeddings.pt").stat().st_size
    print(f"{args.out}: {len(jobs)} clips in {written / 2**20:.1f} MiB of Vorbis, {len(prompts)} texts in "
          f"{size / 2**20:.1f} MiB of embeddings")


if __name__ == "__main__":
    main()
