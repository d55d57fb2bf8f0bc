"""``audiodiff-render``: render a CSV/JSONL prompt file to WAVs and ``manifest.jsonl``.

    audiodiff-render checkpoint=runs/quickstart/model prompts=sounds.csv out_dir=renders
    audiodiff-render ... sampler=ddpm sampler.steps=100 batch_size=8 seed=7
    audiodiff-render ... vocoder=neural vocoder.checkpoint=runs/vocoder_22k/model

Settings are checked before the model is loaded. Exit status: 0 when every row was written (or was
already there), 1 when some rows failed (each is reported by row number), 2 for unusable settings.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("audiodiff.render")


def render(cfg: DictConfig) -> int:
    import torch
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from audiodiff.model import MAX_SECONDS, ModelLoadError, check_targets
    from audiodiff.pipeline import AudioDiffusion, SamplerSettings
    from audiodiff.prompts import PromptFileError, read_prompt_file
    from audiodiff.rendering import render_requests

    try:
        sampler = SamplerSettings(**OmegaConf.to_container(cfg.sampler, resolve=True))
        if int(cfg.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {cfg.batch_size}")
        if cfg.seconds is not None and not 0 < float(cfg.seconds) <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS}], got {cfg.seconds}")
        requests, errors = read_prompt_file(cfg.prompts, int(cfg.seed))
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        vocoder = None
        if cfg.get("vocoder") is not None:
            check_targets(OmegaConf.to_container(cfg.vocoder, resolve=True), "vocoder")
            vocoder = instantiate(cfg.vocoder)
        pipe = AudioDiffusion.from_pretrained(cfg.checkpoint, device=cfg.device, vocoder=vocoder)
    except (ValueError, PromptFileError, ModelLoadError, InstantiationException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    report = render_requests(pipe, requests, cfg.out_dir, sampler, int(cfg.batch_size), cfg.seconds, cfg.subtype,
                             progress=None if cfg.progress else False)
    failed = sorted(errors + report.failed, key=lambda e: e.row)
    for err in failed:
        print(f"skipped {err}", file=sys.stderr)
    print(f"{len(report.written)} written, {len(report.skipped)} already done, {len(failed)} failed "
          f"-> {cfg.out_dir}", file=sys.stderr)
    return 1 if failed else 0


@hydra.main(config_path="../conf", config_name="render", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    sys.exit(render(cfg))


def main() -> None:
    _main()
