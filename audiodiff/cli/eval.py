"""``audiodiff-eval``: render clips per label and held-out prompt and compare them with real clips.

    audiodiff-eval reference=data/game_sfx checkpoint=runs/game_sfx/model out=eval.json
    audiodiff-eval reference=data/jingles clips=4 condition=prompts sampler.guidance=2 labels=[brass,keys]

Prints a table per conditioning mode (per label and overall) and writes the figures as JSON with
``out=FILE``. Exit status: 0 done, 2 unusable input (one line naming the thing).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("audiodiff.eval")

CONDITIONS = ("labels", "prompts", "both", "auto")


def _checkpoint(cfg: DictConfig) -> str:
    """The model to evaluate: ``checkpoint`` (a path or a shipped model's name), else the shipped default."""
    from audiodiff.model_files import resolve_model

    return str(resolve_model(cfg.checkpoint))


def _check_settings(cfg: DictConfig) -> None:
    """Refuse unusable settings before anything is loaded."""
    from audiodiff.embeddings import EMBEDDINGS
    from audiodiff.model import MAX_SECONDS

    if OmegaConf.is_missing(cfg, "reference"):
        raise ValueError("reference is required: reference=DIR, a recipe folder (metadata.csv, heldout/metadata.csv, "
                         "heldout_prompts.csv)")
    for key in ("clips", "batch_size"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if cfg.clips < 2:
        log.warning("clips=1: diversity needs two clips per label or prompt and will be missing")
    if cfg.condition not in CONDITIONS:
        raise ValueError(f"unknown condition {cfg.condition!r}; valid: {', '.join(CONDITIONS)}")
    if cfg.embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {cfg.embedding!r}; valid: {', '.join(EMBEDDINGS)}")
    if cfg.seconds is not None and not (isinstance(cfg.seconds, int | float) and 0 < cfg.seconds <= MAX_SECONDS):
        raise ValueError(f"seconds must be in (0, {MAX_SECONDS:g}], got {cfg.seconds!r}")
    if not isinstance(cfg.near_copy_percentile, int | float) or not 0 <= cfg.near_copy_percentile <= 100:
        raise ValueError(f"near_copy_percentile must be from 0 to 100, got {cfg.near_copy_percentile!r}")
    if cfg.labels is not None and (isinstance(cfg.labels, str) or not len(cfg.labels)):
        raise ValueError(f"labels must be a non-empty list like labels=[coin,jump], got {cfg.labels!r}")


def _modes(condition: str, pipe, reference) -> list[str]:
    """The conditioning modes to render, checked against what the model and the folder offer."""
    can_label, can_text = bool(pipe.labels), pipe.supports_text
    has_prompts = bool(reference.prompts)
    if condition == "auto":
        modes = (["labels"] if can_label else []) + (["prompts"] if can_text and has_prompts else [])
    else:
        modes = ["labels", "prompts"] if condition == "both" else [condition]
    if "labels" in modes:
        if not can_label:
            raise ValueError(f"{pipe.source}: the model is not conditioned on labels; use condition=prompts")
        unknown = [label for label in reference.labels if label not in pipe.labels]
        if unknown:
            raise ValueError(f"{pipe.source}: the model does not know the label(s) {', '.join(unknown)} of "
                             f"{reference.root}; its labels: {', '.join(pipe.labels)} (pick some with labels=[...])")
    if "prompts" in modes:
        if not can_text:
            raise ValueError(f"{pipe.source}: the model is not conditioned on text; use condition=labels")
        if not has_prompts:
            raise ValueError(f"{reference.root / 'heldout_prompts.csv'}: no held-out prompts for the labels "
                             "evaluated; use condition=labels")
    if not modes:
        raise ValueError(f"{pipe.source}: the model takes neither labels nor text, so it cannot be evaluated per label")
    return modes


def evaluate(cfg: DictConfig) -> dict:
    """Run the evaluation as configured and return the report (see the README)."""
    import torch

    from audiodiff.cli.render import choose_sampler
    from audiodiff.embeddings import LogMelStats
    from audiodiff.pipeline import AudioDiffusion, SamplerSettings
    from audiodiff.reference import ReferenceSet
    from audiodiff.scorecard import BOOTSTRAP_RESAMPLES, INTERVAL, Scorecard, default_seconds, plan, render

    _check_settings(cfg)
    SamplerSettings(**OmegaConf.to_container(cfg.sampler, resolve=True))  # checked before any work
    checkpoint = _checkpoint(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    labels = None if cfg.labels is None else [str(label) for label in cfg.labels]
    reference = ReferenceSet.load(cfg.reference, LogMelStats().sample_rate, labels)
    pipe = AudioDiffusion.from_pretrained(checkpoint, device=cfg.device)
    sampler = choose_sampler(cfg, pipe.default_sampler)
    modes = _modes(cfg.condition, pipe, reference)
    if cfg.seconds is None:
        seconds = default_seconds(reference, pipe)
    else:
        pipe.model.conditioner.check_seconds(float(cfg.seconds))
        seconds = dict.fromkeys(reference.labels, float(cfg.seconds))

    counts = {label: reference.heldout.labels.count(label) for label in set(reference.heldout.labels)}
    most = max(sorted(counts), key=counts.get)
    if cfg.clips < (counts[most] + 1) // 2:
        log.warning("clips=%d is fewer than the %d clips of %s in half of the held-out set: the Fréchet distance, "
                    "which draws generated clips to that half without repeating any, will be missing in the labels "
                    "mode; clips=%d or more gives it", cfg.clips, (counts[most] + 1) // 2, most,
                    (counts[most] + 1) // 2)
    log.info("cross-fitting the label judge on the %d held-out clips of %s (the training clips serve only the "
             "near-copy check)", len(reference.heldout.clips), reference.root)
    scorecard = Scorecard(reference, cfg.embedding, int(cfg.seed), float(cfg.near_copy_percentile))
    requests = plan(reference, modes, int(cfg.clips), int(cfg.seed), seconds)
    clips = render(pipe, requests, sampler, int(cfg.batch_size), bool(cfg.progress))
    return {
        "checkpoint": checkpoint,
        "model_sha256": pipe.model_sha256,
        "reference": str(reference.root),
        "embedding": cfg.embedding,
        "settings": {"clips": int(cfg.clips), "condition": modes, "seed": int(cfg.seed), "seconds": seconds,
                     "intervals": {"coverage": INTERVAL, "resamples": BOOTSTRAP_RESAMPLES,
                                   "method": "percentile bootstrap, clips resampled within each label"},
                     "sampler": {"name": sampler.name, "steps": sampler.steps, "schedule": sampler.schedule,
                                 "guidance": sampler.guidance, "guidance_rescale": sampler.guidance_rescale}},
        "real": scorecard.real,
        "generated": scorecard.score(requests, clips, pipe.sample_rate),
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _span(value: float | None, interval: list, digits: int = 2) -> str:
    """``value [low, high]``."""
    return f"{_fmt(value, digits)} [{_fmt(interval[0], digits)}, {_fmt(interval[1], digits)}]"


def format_report(report: dict) -> str:
    """The report as text tables: per conditioning mode, one row per label and an overall row."""
    real = report["real"]
    sampler = report["settings"]["sampler"]
    coverage = f"{report['settings']['intervals']['coverage']:.0%}"
    judge, fd = real["judge"], real["frechet_clips"]
    lines = [f"{report['checkpoint']} vs {report['reference']} ({report['embedding']} embedding; "
             f"{sampler['name']} {sampler['steps']} steps, guidance {sampler['guidance']:g})",
             f"Judge and reference: the {real['heldout_clips']} held-out real clips only; the {real['train_clips']} "
             "training clips serve only the near-copy check.",
             f"judge: {judge['folds']} fold judges cross-fitted on {judge['clips']} held-out clips; each held-out clip "
             "is judged by the fold judge that did not see it, a generated clip by all (its hit: the share that "
             "name its label)" + (f"; not judged (fewer than two held-out clips): {', '.join(real['not_judged'])}"
                                  if real["not_judged"] else ""),
             "held-out real clips: balanced accuracy "
             f"{_span(real['balanced_accuracy'], real['balanced_accuracy_interval'])} "
             f"(n={real['judged_clips']}; accuracy {_fmt(real['accuracy'])}); [low, high]: {coverage} bootstrap "
             "intervals, clips resampled within each label",
             "Fréchet floor: " + (f"{_fmt(real['frechet_heldout_floor'], 1)}, between {fd['compared']} and "
                                  f"{fd['against']} held-out clips (random halves, split per label, mean of "
                                  f"{fd['draws']} draws)" if real["frechet_unavailable"] is None
                                  else f"not computed: {real['frechet_unavailable']}"),
             f"near-copy threshold {_fmt(real['near_copy_threshold'], 3)} (the {real['near_copy_percentile']:g}th "
             "percentile of held-out clips' distances to their nearest training clip)"]
    if report["embedding"] != "logmel_stats":
        lines.append(f"note: the {report['embedding']} embedding is fitted on the held-out clips, both halves of "
                     "which it has seen and the generated clips not: its Fréchet floor is lower than an unseen "
                     "perfect model's distance would be")
    header = (f"{'label':16s} {'clips':>5s} {'accuracy':>8s} {'real acc':>8s} {'real n':>6s} {'diversity':>9s} "
              f"{'real div':>8s} {'nearest':>7s} {'copies':>6s}")
    for mode, result in report["generated"].items():
        lines += ["", f"conditioned on {'labels' if mode == 'labels' else 'held-out prompts'}", header]
        for label, row in result["per_label"].items():
            lines.append(f"{label:16s} {row['clips']:5d} {_fmt(row['accuracy']):>8s} "
                         f"{_fmt(real['per_label'][label]['accuracy']):>8s} "
                         f"{real['per_label'][label]['heldout_clips']:6d} {_fmt(row['diversity']):>9s} "
                         f"{_fmt(row['real_diversity']):>8s} {_fmt(row['nearest_train_distance']):>7s} "
                         f"{row['near_copies']:6d}")
        lines.append(f"{'overall':16s} {result['clips']:5d} {_fmt(result['balanced_accuracy']):>8s} "
                     f"{_fmt(result['real_balanced_accuracy']):>8s} {result['real_judged_clips']:6d} "
                     f"{_fmt(result['diversity']):>9s} {_fmt(result['real_diversity']):>8s} {'':>7s} "
                     f"{result['near_copies']:6d}")
        lines.append(f"accuracy ratio {_span(result['accuracy_ratio'], result['accuracy_ratio_interval'])}: balanced "
                     f"accuracy {_span(result['balanced_accuracy'], result['balanced_accuracy_interval'])} of "
                     f"n={result['judged_clips']} generated clips over "
                     f"{_span(result['real_balanced_accuracy'], result['real_balanced_accuracy_interval'])} of "
                     f"n={result['real_judged_clips']} held-out clips")
        if result["frechet_unavailable"] is None:
            lines.append(f"Fréchet distance {_fmt(result['frechet_heldout'], 1)} (floor "
                         f"{_fmt(real['frechet_heldout_floor'], 1)}): {fd['compared']} generated clips drawn to one "
                         f"held-out half's labels, against the other half's {fd['against']} clips; the floor "
                         f"compares that half's {fd['compared']} clips with the same {fd['against']}; mean of "
                         f"{fd['draws']} draws")
        else:
            lines.append(f"Fréchet distance not computed: {result['frechet_unavailable']}")
        for flag in result["flagged"]:
            what = f"prompt {flag['prompt']!r}" if flag["prompt"] is not None else f"label {flag['label']}"
            lines.append(f"near-copy: {what} seed {flag['seed']} is {_fmt(flag['distance'], 3)} from "
                         f"{flag['nearest_train_clip']}")
    return "\n".join(lines)


def _json_safe(value):
    """NaN (a figure that cannot be computed) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def run(cfg: DictConfig) -> int:
    try:
        report = evaluate(cfg)
    except (ValueError, TypeError) as err:  # ModelLoadError, ReferenceError and bad settings are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    if cfg.out is not None:
        out = Path(cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_json_safe(report), indent=1) + "\n", encoding="utf-8")
        print(f"figures written to {out}", file=sys.stderr)
    return 0


@hydra.main(config_path="../conf", config_name="eval", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    sys.exit(run(cfg))


def main() -> None:
    _main()
