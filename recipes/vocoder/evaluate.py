"""Resynthesise the held-out recordings with the neural vocoder and with Griffin-Lim (64 iterations)
and measure how far each lands from the original.

    python recipes/vocoder/evaluate.py --vocoder runs/vocoder_22k/model --data data/vocoder_22k/heldout \
        --out recipes/vocoder

Per clip: log-mel L1 (mean |ln mel magnitude| difference, the vocoder's mel settings) and the
multi-resolution STFT distance (spectral convergence + log-magnitude L1 at 512/1024/2048-point
STFTs); the table gives the mean over clips. A clip shorter than the longest of those STFTs (2048
samples, 93 ms) is padded with silence to that length first (the STFTs' centring needs it). Writes
``results.md``, ``results.csv`` and one spectrogram PNG per method (original included) of the clip
named by ``--clip``. The held-out recordings are those of ``recipes/heldout.csv``, the held-out list
every shipped model keeps out of its training data (``prepare.py`` writes them to ``--data``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from audiodiff.audio import load_audio
from audiodiff.data.folder import AUDIO_SUFFIXES
from audiodiff.model_files import load_vocoder
from audiodiff.vocoders import GriffinLim
from audiodiff.vocoders.losses import LogMelDistance, MultiResolutionSTFTDistance


def spectrogram_png(path: Path, wave: torch.Tensor, title: str, sample_rate: int) -> None:
    """A 512-point, 64-sample-hop STFT in dB: finer in time than the vocoder's own frames, so that
    smeared attacks and phase artefacts show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_fft, hop = 512, 64
    spec = torch.stft(wave.reshape(1, -1), n_fft, hop, n_fft, torch.hann_window(n_fft), return_complex=True)[0]
    db = 20 * torch.log10(spec.abs().clamp(min=1e-5)).numpy()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=30,
                      extent=(0, wave.shape[-1] / sample_rate, 0, sample_rate / 2000))
    ax.set(title=title, xlabel="time (s)", ylabel="frequency (kHz)")
    fig.colorbar(image, ax=ax, label="dB")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocoder", default="vocos-22k", help="vocoder folder, .ckpt or shipped name")
    parser.add_argument("--data", type=Path, default=Path("data/vocoder_22k/heldout"), help="held-out recordings")
    parser.add_argument("--out", type=Path, default=Path("recipes/vocoder"))
    parser.add_argument("--clip", default="sonic_pi__sn_generic.wav", help="clip to draw spectrograms of")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = sorted(p for p in args.data.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        print(f"error: no audio files in {args.data}; run recipes/vocoder/prepare.py first", file=sys.stderr)
        return 2
    vocoder = load_vocoder(args.vocoder)
    settings = vocoder.settings
    griffin_lim = GriffinLim(n_iter=64)
    griffin_lim.bind(settings)
    methods = {"vocoder": vocoder, "griffin_lim_64": griffin_lim}
    mel, mel_distance, stft_distance = settings.transform(), LogMelDistance(settings), MultiResolutionSTFTDistance()
    min_samples = max(n_fft for n_fft, _ in stft_distance.resolutions)
    rows, padded = [], []
    args.out.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for path in files:
            audio, _ = load_audio(path, settings.sample_rate)
            if audio.shape[-1] < min_samples:
                audio = np.pad(audio, ((0, 0), (0, min_samples - audio.shape[-1])))
                padded.append(path.stem)
            wave = torch.from_numpy(audio)[None]
            mel_power = mel(wave.squeeze(1))
            outputs = {name: method(mel_power, wave.shape[-1]) for name, method in methods.items()}
            for name, out in outputs.items():
                rows.append({"clip": path.name, "method": name, "mel_l1": float(mel_distance(out, wave)),
                             "mrstft": float(stft_distance(out, wave))})
            if path.name == args.clip:
                for name, out in {"original": wave, **outputs}.items():
                    spectrogram_png(args.out / f"spectrogram_{name}.png", out, f"{path.stem}: {name}",
                                    settings.sample_rate)
    with (args.out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["clip", "method", "mel_l1", "mrstft"])
        writer.writeheader()
        writer.writerows(rows)
    note = f" Padded with silence to {min_samples} samples: {', '.join(padded)}." if padded else ""
    lines = [f"Held-out recordings: {len(files)} clips from {args.data}; vocoder {args.vocoder}.{note}", "",
             "| method | log-mel L1 ↓ | MR-STFT distance ↓ | clips where the vocoder wins (mel / MR-STFT) |",
             "| --- | --- | --- | --- |"]
    per_method = {name: [r for r in rows if r["method"] == name] for name in methods}
    wins = [sum(v["mel_l1"] < g["mel_l1"] for v, g in zip(per_method["vocoder"], per_method["griffin_lim_64"],
                                                          strict=True)),
            sum(v["mrstft"] < g["mrstft"] for v, g in zip(per_method["vocoder"], per_method["griffin_lim_64"],
                                                          strict=True))]
    for name, method_rows in per_method.items():
        mel_l1 = np.mean([r["mel_l1"] for r in method_rows])
        mrstft = np.mean([r["mrstft"] for r in method_rows])
        won = f"{wins[0]}/{len(files)} / {wins[1]}/{len(files)}" if name == "vocoder" else ""
        lines.append(f"| {name} | {mel_l1:.3f} | {mrstft:.3f} | {won} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
