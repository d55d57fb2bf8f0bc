"""``audiodiff-render``: render a CSV/JSONL prompt file, or one request given on the command line,
to WAVs and ``manifest.jsonl``.

    audiodiff-render checkpoint=runs/quickstart/model prompts=sounds.csv out_dir=renders
    audiodiff-render prompt="coin pickup" label=coin num=4 out_dir=renders
    audiodiff-render ... sampler=ddpm sampler.steps=100 batch_size=8 seed=7 loudness=-14 fade=true
    audiodiff-render ... trainer.devices=2          # two processes (or GPUs) through Lightning
    audiodiff-render ... vocoder=neural vocoder.checkpoint=runs/vocoder_22k/model

Without ``sampler=NAME`` a model with sampler settings of its own (a distilled student) is sampled
with those, ``sampler.FIELD=...`` overrides applying on top. Settings are checked before the model is
loaded. Exit status: 0 when every row was written (or was already there), 1 when some rows failed
(each is reported by row number), 2 for unusable settings.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from audiodiff.pipeline import SamplerSettings
    from audiodiff.prompts import RenderRequest, RowError

log = logging.getLogger("audiodiff.render")


def post_options(cfg: DictConfig) -> dict:
    """The post-processing options of the command line (``fade`` sets both fades)."""
    fade = cfg.fade
    return {"dc": bool(cfg.dc), "trim": cfg.trim, "fade_in": fade or 0.0, "fade_out": fade or 0.0, "loop": cfg.loop,
            "loudness": cfg.loudness, "true_peak": cfg.true_peak, "limit": bool(cfg.limit)}


def sampler_overrides() -> tuple[bool, set[str]]:
    """What the command line says about the sampler: whether it picks one (``sampler=NAME``) and
    which of its fields it sets (``sampler.steps=8`` ...; ``sampler.options.eta=0.5`` sets ``options``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False, set()
    keys = [item.split("=", 1)[0].lstrip("+~") for item in HydraConfig.get().overrides.task]
    return "sampler" in keys, {k.split(".")[1] for k in keys if k.startswith("sampler.")}


def choose_sampler(cfg: DictConfig, model_default: SamplerSettings | None) -> SamplerSettings:
    """The model's own sampler settings (where it has them), or the preset the command line picks
    (``sampler=NAME``) with the model's guidance; then the fields the command line sets
    (``sampler.steps=8`` ...). A model without settings gets the command line's settings as they are."""
    from audiodiff.pipeline import SamplerSettings

    settings = OmegaConf.to_container(cfg.sampler, resolve=True)
    if model_default is None:
        return SamplerSettings(**settings)
    picked, fields = sampler_overrides()
    return SamplerSettings.choose(model_default, settings["name"] if picked else None,
                                  **{k: settings[k] for k in fields if k in settings})


INLINE_KEYS = ("prompt", "label", "negative_prompt", "num", "name")


def read_requests(cfg: DictConfig) -> tuple[list[RenderRequest], list[RowError]]:
    """The requests of ``prompts=FILE``, or the one given by ``prompt=`` / ``label=`` (with ``num=``,
    ``name=``, ``negative_prompt=``) on the command line."""
    from audiodiff.prompts import command_line_request, read_prompt_file

    inline = {key: cfg[key] for key in INLINE_KEYS if cfg.get(key) is not None}
    asked = {"prompt", "label"} & inline.keys()
    if cfg.prompts is not None:
        if asked:
            raise ValueError(f"give either prompts=FILE or {'/'.join(sorted(asked))}=... on the command line, not both")
        return read_prompt_file(cfg.prompts, int(cfg.seed))
    if not asked:
        raise ValueError("nothing to render: give prompts=FILE (a .csv or .jsonl prompt file), or prompt=TEXT "
                         "and/or label=NAME (num=N for N variations)")
    return [command_line_request(inline, int(cfg.seed))], []


def render(cfg: DictConfig) -> int:
    import torch

    from audiodiff.model import MAX_SECONDS, PRECISIONS
    from audiodiff.model_files import ModelLoadError, build
    from audiodiff.pipeline import AudioDiffusion, SamplerSettings
    from audiodiff.postprocess import PostProcessing
    from audiodiff.prompts import PromptFileError
    from audiodiff.rendering import BatchRenderer, plan_jobs, render_jobs

    try:
        sampler = SamplerSettings(**OmegaConf.to_container(cfg.sampler, resolve=True))
        post = PostProcessing(**post_options(cfg))
        if int(cfg.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {cfg.batch_size}")
        if cfg.seconds is not None and not 0 < float(cfg.seconds) <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS}], got {cfg.seconds}")
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
        devices = int(cfg.trainer.devices)
        if devices < 1:
            raise ValueError(f"trainer.devices must be at least 1, got {cfg.trainer.devices}")
        if cfg.spectrogram:
            from audiodiff.plotting import require_matplotlib

            require_matplotlib()
        if OmegaConf.is_missing(cfg, "out_dir"):
            raise ValueError("out_dir is required: out_dir=DIR, where the WAVs and manifest.jsonl go")
        requests, errors = read_requests(cfg)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        vocoder = None
        if cfg.get("vocoder") is not None:
            vocoder = build(OmegaConf.to_container(cfg.vocoder, resolve=True), "vocoder", vocoder_files=True)
        pipe = AudioDiffusion.from_pretrained(cfg.checkpoint, device=cfg.device, vocoder=vocoder,
                                              precision=cfg.precision)
        sampler = choose_sampler(cfg, pipe.default_sampler if pipe.model.sampling else None)
    except (ValueError, TypeError, RuntimeError, PromptFileError, ModelLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    renderer = BatchRenderer(pipe, cfg.out_dir, post, cfg.subtype, bool(cfg.spectrogram))
    jobs, row_errors = plan_jobs(pipe, requests, sampler, cfg.seconds)
    progress = None if cfg.progress else False
    if devices > 1:
        from audiodiff.distributed import render_distributed

        report = render_distributed(renderer, jobs, int(cfg.batch_size), devices, cfg.trainer.accelerator,
                                    cfg.trainer.strategy, int(cfg.threads), progress)
        if report is None:  # a rank other than 0: rank 0 reports for all
            return 0
    else:
        report = render_jobs(renderer, jobs, int(cfg.batch_size), progress)
    failed = sorted(errors + row_errors + report.failed, key=lambda e: e.row)
    for err in failed:
        print(f"skipped {err}", file=sys.stderr)
    split = report.written_per_process
    by = f" ({' + '.join(map(str, split))} by {len(split)} processes)" if len(split) > 1 else ""
    print(f"{len(report.written)} written{by}, {len(report.skipped)} already done, {len(failed)} failed "
          f"-> {cfg.out_dir}", file=sys.stderr)
    return 1 if failed else 0


@hydra.main(config_path="../conf", config_name="render", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    sys.exit(render(cfg))


def usage() -> str:
    """The usage part of ``--help`` (the Hydra help template without the config dump)."""
    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "conf" / "render.yaml").read_text())
    return config["hydra"]["help"]["template"].replace("$CONFIG", "").rstrip()


def main() -> None:
    if len(sys.argv) == 1:
        print(usage(), file=sys.stderr)
        sys.exit(2)
    _main()
