"""Teacher against its distilled student, side by side in one run: speed and quality.

    python recipes/distill/compare.py runs/quickstart/model runs/distill/model [--clips 64] [--threads 1]

Quality: the mel distance (L1 between the models' normalised log-mel outputs, before the vocoder) of
each setting's clips to the teacher's 50-step DPM++ 2M clips from the same seeds, and, for models of
the built-in synthetic sounds, how often the feature check (``audiodiff.evaluation.SyntheticClassCheck``)
hears the asked class. Speed: median wall time of one clip and of one batch of ``--batch`` clips,
vocoder included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from audiodiff.data.synthetic import CLASSES
from audiodiff.evaluation import SyntheticClassCheck
from audiodiff.pipeline import AudioDiffusion, SamplerSettings


def sample(pipe: AudioDiffusion, settings: SamplerSettings, labels: list[int], seeds: list[int], seconds: float,
           decode: bool) -> torch.Tensor:
    return pipe.model.sample(labels, seeds, seconds, sampler=settings.name, steps=settings.steps,
                             schedule=settings.schedule, guidance=settings.guidance, decode=decode, progress=False,
                             sigma_range=(settings.sigma_min, settings.sigma_max, settings.rho))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", type=Path)
    parser.add_argument("student", type=Path)
    parser.add_argument("--clips", type=int, default=64, help="clips per setting (labels in turn)")
    parser.add_argument("--seconds", type=float, help="clip length, s (default: the teacher's)")
    parser.add_argument("--batch", type=int, default=16, help="clips per batch in the speed runs (also timed alone)")
    parser.add_argument("--guidance", type=float,
                        help="guidance of the teacher's reference and few-step rows: the one distilled into the "
                             "student (default: the teacher's default guidance)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per setting (median)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher = AudioDiffusion.from_pretrained(args.teacher, device="cpu")
    student = AudioDiffusion.from_pretrained(args.student, device="cpu")
    seconds = args.seconds or teacher.model.seconds
    labels = [i % len(teacher.labels) for i in range(args.clips)]
    seeds = list(range(args.clips))
    guidance = teacher.default_sampler.guidance if args.guidance is None else args.guidance
    steps = student.default_sampler.steps
    settings = {
        "teacher default": (teacher, teacher.default_sampler),
        "teacher DPM++ 2M, 50 steps (reference)": (teacher, SamplerSettings("dpmpp_2m", 50, "karras", guidance)),
        f"teacher DDIM, {steps} steps": (teacher, SamplerSettings("ddim", steps, "karras", guidance)),
        "student default": (student, student.default_sampler),
    }
    reference_key = "teacher DPM++ 2M, 50 steps (reference)"
    reference = sample(teacher, settings[reference_key][1], labels, seeds, seconds, decode=False)
    check = SyntheticClassCheck(sample_rate=teacher.sample_rate) if set(teacher.labels) == set(CLASSES) else None
    results = {}
    for name, (pipe, s) in settings.items():
        features = reference if name == reference_key else sample(pipe, s, labels, seeds, seconds, decode=False)
        row = {"sampler": s.name, "steps": s.steps, "schedule": s.schedule, "guidance": s.guidance,
               "mel_l1_to_reference": float((features - reference).abs().mean())}
        if check is not None:
            waves = pipe.model.representation.decode(features, pipe.model.num_samples(seconds))
            row["class_accuracy"] = check.accuracy([w[0].numpy() for w in waves], [teacher.labels[i] for i in labels])
        for key, size in (("single", 1), ("batch", args.batch)):
            sample(pipe, s, labels[:size], seeds[:size], seconds, decode=True)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                sample(pipe, s, labels[:size], seeds[:size], seconds, decode=True)
                times.append(time.perf_counter() - start)
            row[f"{key}_seconds"] = statistics.median(times)
        row["realtime_factor"] = args.batch * seconds / row["batch_seconds"]
        results[name] = row

    base = results["teacher default"]
    print(f"{args.clips} clips of {seconds:g} s; guidance of the reference and few-step teacher rows {guidance:g}; "
          f"speed: one clip and batches of {args.batch}, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'setting':42s} {'steps':>5s} {'mel L1':>7s} {'accuracy':>8s} {'1 clip s':>8s} {'batch s':>8s} "
          f"{'x realtime':>10s} {'speed-up (1 / batch)':>20s}")
    for name, row in results.items():
        accuracy = f"{row['class_accuracy']:.3f}" if "class_accuracy" in row else "-"
        speedup = (f"{base['single_seconds'] / row['single_seconds']:.1f}x / "
                   f"{base['batch_seconds'] / row['batch_seconds']:.1f}x")
        print(f"{name:42s} {row['steps']:5d} {row['mel_l1_to_reference']:7.3f} {accuracy:>8s} "
              f"{row['single_seconds']:8.3f} {row['batch_seconds']:8.3f} {row['realtime_factor']:10.1f} {speedup:>20s}")
    if args.out:
        args.out.write_text(json.dumps({"clips": args.clips, "seconds": seconds, "batch": args.batch,
                                        "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
