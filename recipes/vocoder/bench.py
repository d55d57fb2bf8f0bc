"""Decode speed of the neural vocoder against Griffin-Lim (64 iterations), side by side in one run.

    python recipes/vocoder/bench.py --vocoder vocos-22k --threads 2

Both decode the mel power spectrogram of the same ``--seconds`` of audio (a real recording from
``--clip`` when given, else noise: the cost does not depend on the content); each is timed
``--runs`` times after one warm-up run and the median is reported, with the speed-up over
Griffin-Lim and the real-time factor (audio seconds per second of decoding). The vocoder is timed
with its backbone in float32 and, where this CPU computes bfloat16 natively, also in its default
``auto`` precision (bfloat16 autocast; ``VocosVocoder.precision``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from audiodiff.audio import fit_length, load_audio
from audiodiff.model_files import load_vocoder
from audiodiff.vocoders import GriffinLim
from audiodiff.vocoders.vocos import cpu_has_native_bf16


def median_seconds(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocoder", default="vocos-22k", help="vocoder folder, .ckpt or shipped name")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clip", type=Path, default=None, help="audio file to decode (looped or cut to length)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    vocoder = load_vocoder(args.vocoder)
    settings = vocoder.settings
    griffin_lim = GriffinLim(n_iter=64)
    griffin_lim.bind(settings)
    n = int(args.seconds * settings.sample_rate)
    if args.clip is not None:
        audio, _ = load_audio(args.clip, settings.sample_rate)
        wave = torch.from_numpy(fit_length(audio, n, 0))
    else:
        wave = 0.1 * torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    mel_power = settings.transform()(wave)
    precisions = ["auto", "fp32"] if cpu_has_native_bf16() else ["fp32"]
    t_vocoder = {}
    with torch.inference_mode():
        for precision in precisions:
            vocoder.precision = precision
            t_vocoder[precision] = median_seconds(lambda: vocoder(mel_power, n), args.runs)
        t_gl = median_seconds(lambda: griffin_lim(mel_power, n), args.runs)
    print(f"{args.seconds:g} s of {settings.sample_rate} Hz audio, torch threads {torch.get_num_threads()}, "
          f"median of {args.runs} runs")
    print("| decoder | ms | x real time | x faster than GL-64 |")
    print("| --- | --- | --- | --- |")
    names = {"auto": "bf16 backbone (default here)", "fp32": "float32"}
    for precision, seconds in t_vocoder.items():
        print(f"| neural vocoder ({vocoder.num_parameters / 1e6:.2f}M), {names[precision]} | {seconds * 1e3:.1f} | "
              f"{args.seconds / seconds:.0f} | {t_gl / seconds:.1f} |")
    print(f"| Griffin-Lim, 64 iterations | {t_gl * 1e3:.1f} | {args.seconds / t_gl:.0f} | 1.0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
