"""Sampler study: every sampler at several step counts against a 200-step DDPM reference.

    python recipes/sampler_study/run.py --checkpoint runs/quickstart/model --out recipes/sampler_study

For each sampler and step count it renders the same (label, seed) pairs and reports the wall time
per clip (batched, vocoder included) and three quality figures:

- ``mel_db``: mean absolute difference, in dB, between each label's average log-mel spectrum of the
  sampler's clips and of the reference clips (lower is better);
- ``feature_fd``: Fréchet distance between Gaussians fitted to the standardised acoustic features
  (audiodiff.evaluation) of the sampler's clips and of the reference clips (lower is better);
- ``accuracy``: share of clips the feature check assigns to their label (higher is better).

It also measures how classifier-free guidance changes the label accuracy. Writes ``results.csv``,
``results.md`` and ``results.png`` (needs matplotlib) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from audiodiff import AudioDiffusion
from audiodiff.diffusion import SAMPLERS
from audiodiff.evaluation import SyntheticClassCheck, acoustic_features
from audiodiff.pipeline import SamplerSettings


def render(pipe: AudioDiffusion, labels: list[str], seeds: list[int], settings: SamplerSettings):
    start = time.perf_counter()
    clips = pipe.generate_batch(labels, seeds, sampler=settings, progress=False)
    seconds = (time.perf_counter() - start) / len(clips)
    return [c.samples[0] for c in clips], seconds


def mean_log_mel(pipe: AudioDiffusion, clips: list[np.ndarray], labels: list[str]) -> dict[str, np.ndarray]:
    rep = pipe.model.representation
    with torch.no_grad():
        spectra = rep.log_mel(torch.from_numpy(np.stack(clips))[:, None]).mean(dim=-1).numpy()
    return {label: spectra[[i for i, x in enumerate(labels) if x == label]].mean(axis=0) for label in set(labels)}


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="model folder or .ckpt")
    parser.add_argument("--out", default="recipes/sampler_study", help="folder for results.csv/.md/.png")
    parser.add_argument("--per-label", type=int, default=6, help="clips per label")
    parser.add_argument("--steps", default="5,10,20,50", help="comma-separated step counts")
    parser.add_argument("--reference-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    pipe = AudioDiffusion.from_pretrained(args.checkpoint, device="cpu")
    check = SyntheticClassCheck(sample_rate=pipe.sample_rate, seconds=pipe.model.seconds)
    labels = [label for label in pipe.labels for _ in range(args.per_label)]
    seeds = list(range(len(labels)))

    def features(clips):
        return (np.stack([acoustic_features(c, pipe.sample_rate) for c in clips]) - check.mean) / check.std

    reference, _ = render(pipe, labels, seeds, SamplerSettings("ddpm", args.reference_steps, "cosine"))
    ref_mel, ref_features = mean_log_mel(pipe, reference, labels), features(reference)
    rows = [{"sampler": "ddpm (reference)", "schedule": "cosine", "steps": args.reference_steps,
             "ms_per_clip": "", "mel_db": 0.0, "feature_fd": 0.0,
             "accuracy": round(check.accuracy(reference, labels), 3)}]
    for name in SAMPLERS:
        for steps in (int(s) for s in args.steps.split(",")):
            settings = SamplerSettings.preset(name, steps=steps)
            clips, per_clip = render(pipe, labels, seeds, settings)
            mel = mean_log_mel(pipe, clips, labels)
            rows.append({"sampler": name, "schedule": settings.schedule, "steps": steps,
                         "ms_per_clip": round(1000 * per_clip, 1),
                         "mel_db": round(float(np.mean([np.abs(mel[k] - ref_mel[k]).mean() for k in mel])), 2),
                         "feature_fd": round(frechet(features(clips), ref_features), 2),
                         "accuracy": round(check.accuracy(clips, labels), 3)})
            print(rows[-1], flush=True)

    guidance_rows = []
    for guidance in (1.0, 2.0, 3.0, 5.0):
        clips, _ = render(pipe, labels, seeds, SamplerSettings.preset("dpmpp_2m", steps=20, guidance=guidance))
        guidance_rows.append((guidance, round(check.accuracy(clips, labels), 3)))
        print("guidance", guidance_rows[-1], flush=True)

    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| sampler | schedule | steps | ms per clip | mel dB ↓ | feature FD ↓ | accuracy ↑ |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['sampler']} | {r['schedule']} | {r['steps']} | {r['ms_per_clip']} | {r['mel_db']} | "
              f"{r['feature_fd']} | {r['accuracy']} |" for r in rows]
    lines += ["", "| guidance (dpmpp_2m preset, 20 steps) | accuracy |", "| --- | --- |"]
    lines += [f"| {g} | {a} |" for g, a in guidance_rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in SAMPLERS:
        mine = [r for r in rows[1:] if r["sampler"] == name]
        for ax, key in zip(axes, ("ms_per_clip", "feature_fd", "accuracy"), strict=True):
            ax.plot([r["steps"] for r in mine], [r[key] for r in mine], marker="o", label=name)
            ax.set_xscale("log")
            ax.set_xlabel("steps")
            ax.set_title(key)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=80)
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
