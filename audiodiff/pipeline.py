"""Inference: load a trained model and generate audio from Python.

    from audiodiff import AudioDiffusion
    pipe = AudioDiffusion.from_pretrained("runs/quickstart/model")
    pipe.generate(label="coin", seconds=1.0, seed=0, post={"loudness": -14, "fade_in": True}).save("coin.wav")

Nothing on this path imports Lightning, so loading and a short render stay fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from audiodiff.audio import save_audio
from audiodiff.conditioning import PromptTruncatedWarning
from audiodiff.diffusion import SAMPLERS, SCHEDULES, get_sampler, make_sigmas
from audiodiff.diffusion.schedules import SIGMA_MAX, SIGMA_MIN
from audiodiff.model import PRECISIONS, AudioDiffusionModel, ModelLoadError
from audiodiff.model_files import get_vocoder, resolve_model
from audiodiff.postprocess import PostProcessing, integrated_loudness, postprocess, true_peak_db
from audiodiff.prompts import MAX_PROMPT
from audiodiff.provenance import describe, info_fields, weights_digest

MAX_STEPS = 1000
SILENT_PEAK = 1e-4  # -80 dBFS

log = logging.getLogger(__name__)


@dataclass
class Audio:
    """A generated clip: ``samples`` is float32, channels × frames, at ``sample_rate`` Hz;
    ``metadata`` records how it was made."""

    samples: np.ndarray
    sample_rate: int
    metadata: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[-1] / self.sample_rate

    def to_tensor(self) -> torch.Tensor:
        """The samples as a channels × frames float32 tensor (sharing memory)."""
        return torch.from_numpy(self.samples)

    def provenance(self) -> dict:
        """The provenance record :meth:`save` writes into the file (see :mod:`audiodiff.provenance`)."""
        return describe(self.metadata)

    def save(self, path: str | os.PathLike, subtype: str = "pcm16", provenance: dict | None = None) -> Path:
        """Write as WAV (atomically) with its provenance in the file's RIFF INFO chunk; ``subtype``
        is ``pcm16``, ``pcm24`` or ``float``. ``provenance`` (default: :meth:`provenance`) is the
        record to write, for a caller that also keeps it elsewhere."""
        record = self.provenance() if provenance is None else provenance
        return save_audio(path, self.samples, self.sample_rate, subtype, info=info_fields(record))

    def _repr_html_(self) -> str:
        from IPython.display import Audio as IPythonAudio

        return IPythonAudio(self.samples, rate=self.sample_rate)._repr_html_()


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample: a sampler name, steps, noise schedule, classifier-free guidance scale and
    guidance rescale (0: off, up to 1), checked up front."""

    name: str = "dpmpp_2m_sde"
    steps: int = 20
    schedule: str = "karras"
    guidance: float = 1.0
    guidance_rescale: float = 0.0
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    rho: float = 7.0
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.name!r}; valid: {', '.join(SAMPLERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}")
        if not math.isfinite(float(self.guidance)) or float(self.guidance) < 0:
            raise ValueError(f"guidance must be a finite number >= 0, got {self.guidance!r}")
        if not 0 <= float(self.guidance_rescale) <= 1:
            raise ValueError(f"guidance_rescale must be between 0 and 1, got {self.guidance_rescale!r}")
        if not 0 < self.rho < 100:
            raise ValueError(f"rho must be between 0 and 100, got {self.rho!r}")
        make_sigmas(self.schedule, self.steps, self.sigma_min, self.sigma_max, self.rho)  # checks the range
        accepted = set(inspect.signature(get_sampler(self.name)).parameters) - {"denoiser", "x", "sigmas", "noise",
                                                                              "callback", "disable"}
        unknown = set(self.options) - accepted
        if unknown:
            raise ValueError(f"sampler {self.name} has no option {', '.join(sorted(unknown))}; "
                             f"its options: {', '.join(sorted(accepted)) or 'none'}")

    @classmethod
    def preset(cls, name: str, **overrides) -> SamplerSettings:
        """The settings of ``conf/sampler/<name>.yaml`` (the ones ``sampler=<name>`` picks on the
        command line), with the given fields replaced where they are not None."""
        path = Path(__file__).parent / "conf" / "sampler" / f"{name}.yaml"
        if name not in SAMPLERS or not path.is_file():
            raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
        config = yaml.safe_load(path.read_text())
        config.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**config)

    @classmethod
    def choose(cls, model_default: SamplerSettings | None, name: str | None = None, **overrides) -> SamplerSettings:
        """The settings to sample a model with: its own (``model_default``; None: the class defaults),
        or the preset ``name`` with the model's guidance and guidance rescale (how strongly a model
        follows its condition belongs to the model, not to the sampler); then the given fields
        replaced where they are not None."""
        base = model_default or cls()
        given = {k: v for k, v in overrides.items() if v is not None}
        if name is None:
            return dataclasses.replace(base, **given)
        return cls.preset(name, **{"guidance": base.guidance, "guidance_rescale": base.guidance_rescale, **given})


def _fit_prompt(text: str | None) -> str | None:
    """A prompt as the pipeline records it: text (or None), at most MAX_PROMPT characters (the
    provenance chunk of a WAV has room for no more; the text encoder reads far fewer anyway)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"a prompt must be text, got {type(text).__name__} {text!r}")
    if len(text) > MAX_PROMPT:
        warnings.warn(f"prompt of {len(text)} characters cut to {MAX_PROMPT}: {text[:60]!r}...",
                      PromptTruncatedWarning, stacklevel=3)
        return text[:MAX_PROMPT]
    return text


class AudioDiffusion:
    """A trained model ready to generate clips. ``model_sha256`` identifies its weights (computed
    once, here) and is recorded in every clip's metadata and file. ``precision`` (``fp32`` or
    ``bf16``: the network under bfloat16 autocast) is recorded there too."""

    def __init__(self, model: AudioDiffusionModel, source: str = "", precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model = model.eval()
        self.source = source
        self.precision = precision
        self.model_sha256 = weights_digest(model)
        try:
            self.default_sampler = SamplerSettings(**model.sampling) if model.sampling else SamplerSettings()
        except (TypeError, ValueError) as err:
            raise ModelLoadError(f"{source or 'model'}: its default sampler settings are unusable ({err})") from None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        vocoder: str | os.PathLike | torch.nn.Module | None = None,
                        precision: str = "fp32") -> AudioDiffusion:
        """Load a model directory (``config.yaml`` + ``model.safetensors``), a training checkpoint
        (``.ckpt``) or a model shipped in the package by name (None: the default model) onto
        ``device`` (default: CUDA when available, else CPU).

        ``vocoder`` replaces the vocoder the model was saved with (mel models only): ``griffin_lim``,
        a shipped neural vocoder's name (``vocos-22k``), a neural vocoder folder or checkpoint, or a
        vocoder module. A neural vocoder must match the model's mel settings. ``precision="bf16"``
        samples with the network under bfloat16 autocast (faster in batches on CPUs with native
        bfloat16, slower alone; see the README's *Performance* section)."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = resolve_model(path)
        model = AudioDiffusionModel.load(path)
        if vocoder is not None:
            model.set_vocoder(get_vocoder(vocoder))
        return cls(model.to(device), str(path), precision)

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    @property
    def supports_text(self) -> bool:
        """Whether the model is conditioned on text prompts."""
        return self.model.has_text

    def generate_batch(self, labels: Sequence[str | int | None], seeds: Sequence[int], seconds: float | None = None,
                       sampler: SamplerSettings | None = None, progress: bool | None = None,
                       prompts: Sequence[str | None] | None = None,
                       negative_prompts: Sequence[str | None] | None = None,
                       post: PostProcessing | dict | None = None) -> list[Audio]:
        """One clip per (label or prompt, seed), generated in one model batch; each clip depends
        only on its own condition and seed (and on the batch's make-up to float rounding: see the
        README on reproducibility). ``prompts``/``negative_prompts`` go to the model only when
        given, for text-conditioned models; a label may then be None. Each clip is post-processed
        with ``post`` (default: only the -1 dBTP ceiling) and the steps are recorded in its
        metadata. ``sampler`` defaults to the model's own settings (:attr:`default_sampler`)."""
        sampler = sampler or self.default_sampler
        post = PostProcessing.coerce(post)
        seconds = self.model.seconds if seconds is None else float(seconds)
        count = len(labels)
        prompts = list(prompts) if prompts is not None else [None] * count
        negatives = list(negative_prompts) if negative_prompts is not None else [None] * count
        if not len(prompts) == len(negatives) == len(seeds) == count:
            raise ValueError(f"got {count} labels, {len(seeds)} seeds, {len(prompts)} prompts and "
                             f"{len(negatives)} negative prompts; they must match")
        # model.sample checks the prompts (text for a label model, empty text) before any work.
        text = {"prompts": prompts, "negative_prompts": negatives} if any(
            p is not None for p in prompts + negatives) else {}
        ids = []
        for label, prompt in zip(labels, prompts, strict=True):
            if label is None and prompt is None:
                raise ValueError(f"each clip needs a label or a prompt; labels: {', '.join(self.labels)}")
            ids.append(None if label is None else self.model.conditioner.label_id(label))
        waves = self.model.sample(ids, seeds, seconds, sampler=sampler.name, steps=sampler.steps,
                                  schedule=sampler.schedule, guidance=sampler.guidance,
                                  guidance_rescale=sampler.guidance_rescale, sampler_options=sampler.options,
                                  sigma_range=(sampler.sigma_min, sampler.sigma_max, sampler.rho), progress=progress,
                                  precision=self.precision, **text)
        clips = []
        for label_id, prompt, negative, seed, wave in zip(ids, prompts, negatives, seeds,
                                                         waves.float().cpu().numpy(), strict=True):
            meta = {"label": None if label_id is None else self.labels[label_id], "prompt": prompt, "seed": int(seed),
                    "seconds": seconds, "sampler": sampler.name, "steps": sampler.steps,
                    "schedule": sampler.schedule, "guidance": sampler.guidance,
                    "guidance_rescale": sampler.guidance_rescale, "sampler_options": dict(sampler.options),
                    "precision": self.precision, "checkpoint": self.source, "model_sha256": self.model_sha256}
            if negative is not None:
                meta["negative_prompt"] = negative
            if float(np.abs(wave).max()) < SILENT_PEAK:
                log.warning("the clip for %s, seed %d is silent (peak below -80 dBFS)",
                            f"label {meta['label']!r}" if prompt is None else f"prompt {prompt!r}", seed)
            wave, steps = postprocess(wave, self.sample_rate, post)
            lufs = integrated_loudness(wave, self.sample_rate)[0]
            peak = next((r["true_peak_dbtp"] for r in steps if r["step"] == "true_peak"), None)
            peak = true_peak_db(wave, self.sample_rate) if peak is None else peak
            meta.update(post=post.as_dict(), post_steps=steps, lufs=round(lufs, 2) if math.isfinite(lufs) else None,
                        true_peak_dbtp=round(peak, 2) if math.isfinite(peak) else None)
            clips.append(Audio(np.ascontiguousarray(wave, dtype=np.float32), self.sample_rate, meta))
        return clips

    def generate(self, prompt: str | Sequence[str] | None = None, label: str | int | None = None,
                 seconds: float | None = None, steps: int | None = None, guidance: float | None = None,
                 negative_prompt: str | None = None, seed: int | None = None, sampler: str | None = None,
                 schedule: str | None = None, num: int = 1, post: PostProcessing | dict | None = None,
                 progress: bool | None = None) -> Audio | list[Audio]:
        """Generate ``num`` clips of ``label`` (a name from :attr:`labels`) or of a text ``prompt``
        (a list of prompts gives one clip per prompt), ``seconds`` long (default: the training
        length). ``sampler`` names a preset of ``conf/sampler/``, whose steps and schedule apply
        unless given (default: the model's own settings, :attr:`default_sampler`: DPM++ 2M SDE,
        20 steps, unless the model says otherwise); ``guidance`` is the classifier-free guidance
        scale (1: off; default: the model's, also with another ``sampler``). ``seed`` makes
        the result reproducible; clip i uses ``seed + i``. ``post`` picks the post-processing
        (a :class:`~audiodiff.postprocess.PostProcessing` or a dict of its fields, e.g.
        ``{"loudness": -14, "true_peak": -1, "fade_in": True, "fade_out": True}``).
        Returns one :class:`Audio`, or a list when several clips are asked for."""
        prompts = [prompt] if prompt is None or isinstance(prompt, str) else list(prompt)
        if label is None and prompts == [None]:
            choices = [f"label=... (one of {', '.join(self.labels)})"] if self.labels else []
            choices += ["prompt=... (a description of the sound)"] if self.supports_text else []
            raise ValueError(f"say what to generate: {' or '.join(choices)}")
        prompts = [_fit_prompt(p) for p in prompts]
        negative_prompt = _fit_prompt(negative_prompt)
        if isinstance(num, bool) or int(num) != num or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else int(seed)
        settings = SamplerSettings.choose(self.default_sampler, sampler, steps=steps, schedule=schedule,
                                          guidance=guidance)
        post = PostProcessing.coerce(post)
        count = len(prompts) * num
        batch_prompts = [p for p in prompts for _ in range(num)]
        clips = self.generate_batch([label] * count, [seed + i for i in range(count)], seconds, settings, progress,
                                    prompts=batch_prompts if prompt is not None else None,
                                    negative_prompts=[negative_prompt] * count if negative_prompt is not None else None,
                                    post=post)
        return clips[0] if count == 1 else clips
