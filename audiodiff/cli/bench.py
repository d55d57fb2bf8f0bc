"""``audiodiff-bench``: how fast a model generates and trains on this machine, and its peak memory.

    audiodiff-bench --checkpoint runs/default_model/checkpoints/last.ckpt --out bench.json
    audiodiff-bench --checkpoint runs/quickstart/model --threads 2 --precision bf16 --vs-adp
    audiodiff-bench --checkpoint runs/quickstart/model --steps-sweep 4,6,8,10,20 --compare-precision

Exit status: 0 measured, 2 unusable options or no model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    from audiodiff.model_files import DEFAULT_MODEL, PRETRAINED_DIR

    p = argparse.ArgumentParser(
        prog="audiodiff-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure a model on this machine (medians after a warm-up): single-clip latency for 1 s and "
                    "4 s clips, batch throughput (seconds of audio per second, vocoder and post-processing "
                    "included) and the vocoder's share, training steps/s, and peak memory (of this process, and "
                    "of a fresh process rendering 100 clips of 4 s). Prints a table; --out writes JSON.",
        epilog="On a machine shared with other jobs keep --threads 1: torch's OpenMP threads spin while waiting "
               "and several of them run far slower than one when a core is busy.")
    p.add_argument("--checkpoint", help=f"a model folder, a training .ckpt or a shipped model's name (default: "
                   f"{PRETRAINED_DIR / DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, help="write the figures as JSON to this file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as audiodiff-render)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32, or bf16: the network under bfloat16 autocast")
    p.add_argument("--sampler", help="sampler preset (default: the model's own settings, else dpmpp_2m_sde)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the preset's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's, else 1: off)")
    p.add_argument("--batch-sizes", type=_positive_ints, default=(1, 8, 32), metavar="N,N,...",
                   help="throughput batch sizes (default 1,8,32)")
    p.add_argument("--train-batch", type=int,
                   help="training batch size (default: the run's data.batch_size when its .hydra/config.yaml is "
                        "beside the model, else 16)")
    p.add_argument("--render-clips", type=int, default=100, help="clips of the peak-memory render (default 100)")
    p.add_argument("--steps-sweep", type=_positive_ints, default=(), metavar="N,N,...",
                   help="also time one 1 s clip at each of these steps and give its mel distance to 50 steps")
    p.add_argument("--compare-precision", action="store_true",
                   help="also measure bf16 against fp32: throughput per batch size and mel distance")
    p.add_argument("--vs-adp", action="store_true",
                   help="also time audio-diffusion-pytorch's waveform model of about the same parameter count at "
                        "the same steps (batch 8, 1 s clips) and print the throughput ratio")
    p.add_argument("--quick", action="store_true", help="one timed repeat and 2 training steps (for tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from audiodiff.adp_baseline import BaselineMissingError
    from audiodiff.benchmark import BenchSettings, NoModelError, format_table, resolve_model, run_benchmark
    from audiodiff.model_files import ModelLoadError

    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        if args.render_clips < 1 or (args.train_batch is not None and args.train_batch < 1):
            raise ValueError("--render-clips and --train-batch must be at least 1")
        settings = BenchSettings(sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                                 precision=args.precision, threads=args.threads, batch_sizes=args.batch_sizes,
                                 train_batch=args.train_batch, render_clips=args.render_clips,
                                 steps_sweep=args.steps_sweep, compare_precision=args.compare_precision,
                                 quick=args.quick)
        if args.quick:
            settings.repeats, settings.train_steps = 1, 2
        settings.sampler_settings()  # checks sampler, steps and guidance before the model loads
        if args.vs_adp:
            import importlib.util

            if importlib.util.find_spec("audio_diffusion_pytorch") is None:
                raise BaselineMissingError("--vs-adp needs audio-diffusion-pytorch: pip install 'audiodiff[bench]' "
                                           "(or pip install audio-diffusion-pytorch)")
        path = resolve_model(args.checkpoint)
        result = run_benchmark(path, settings, args.vs_adp, report=lambda line: print(f"... {line}", file=sys.stderr))
    except (ValueError, NoModelError, ModelLoadError, BaselineMissingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
