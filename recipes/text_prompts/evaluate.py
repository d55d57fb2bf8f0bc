"""Measure a text-conditioned model on the built-in synthetic sounds (experiment quickstart_text).

For every held-out phrasing in audiodiff.data.synthetic.HELD_OUT_PROMPTS (worded differently from
every training caption) it renders clips with several seeds and reports how often the feature check
of audiodiff.evaluation assigns them to the intended class; then it renders clips of 0.5, 1 and 2 s
and reports their lengths and where their sound ends (the last 10 ms frame within 40 dB of the
loudest; a clip "ends inside" when its last 20 ms are quieter than that).

    python recipes/text_prompts/evaluate.py runs/quickstart_text/model [--seeds 8] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from audiodiff.data.synthetic import HELD_OUT_PROMPTS
from audiodiff.evaluation import SyntheticClassCheck, prompt_accuracy, render_prompts, sounding_end
from audiodiff.model import AudioDiffusionModel
from audiodiff.pipeline import SamplerSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model directory or .ckpt of a text-conditioned model")
    parser.add_argument("--seeds", type=int, default=8, help="clips per held-out prompt")
    parser.add_argument("--sampler", default="dpmpp_2m_sde", help="sampler preset (conf/sampler)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: preset's)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    model = AudioDiffusionModel.load(args.model)
    if not model.has_text:
        raise SystemExit(f"error: {args.model} is not text-conditioned")
    settings = SamplerSettings.preset(args.sampler, guidance=args.guidance)
    check = SyntheticClassCheck(sample_rate=model.sample_rate)
    start = time.perf_counter()
    accuracy, per_class = prompt_accuracy(model, check, HELD_OUT_PROMPTS, args.seeds, settings)
    clips = sum(len(p) for p in HELD_OUT_PROMPTS.values()) * args.seeds
    print(f"held-out phrasings: {clips} clips ({args.seeds} seeds per prompt), {settings.name} {settings.steps} "
          f"steps, guidance {settings.guidance}; {time.perf_counter() - start:.0f} s")
    for label, value in per_class.items():
        print(f"  {label:12s} {value:.2f}   ({'; '.join(HELD_OUT_PROMPTS[label])})")
    print(f"accuracy on held-out phrasings: {accuracy:.3f} (chance {1 / len(HELD_OUT_PROMPTS):.3f})")

    lengths = {}
    one_per_class = [phrasings[0] for phrasings in HELD_OUT_PROMPTS.values()] * 2
    for seconds in (0.5, 1.0, 2.0):
        waves = render_prompts(model, one_per_class, list(range(len(one_per_class))), seconds, settings)
        ends = [sounding_end(w, model.sample_rate) for w in waves]
        inside = float(np.mean([e <= seconds - 0.02 for e in ends]))
        lengths[str(seconds)] = {"samples": int(waves.shape[-1]), "expected_samples": model.num_samples(seconds),
                                 "latest_sound_end_s": max(ends), "median_sound_end_s": float(np.median(ends)),
                                 "ended_inside": inside}
        print(f"{seconds:.1f} s: {waves.shape[-1]} samples each; sound ends at median {np.median(ends):.2f} s, "
              f"latest {max(ends):.2f} s; {inside:.0%} of {len(ends)} clips end inside")
    if args.out:
        Path(args.out).write_text(json.dumps({"accuracy": accuracy, "per_class": per_class, "seeds": args.seeds,
                                              "sampler": settings.name, "steps": settings.steps,
                                              "guidance": settings.guidance, "lengths": lengths}, indent=2))


if __name__ == "__main__":
    main()
