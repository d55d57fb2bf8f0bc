"""Inference: load a trained model and generate audio from Python.

    from audiodiff import AudioDiffusion
    pipe = AudioDiffusion.from_pretrained("runs/quickstart/model")
    pipe.generate(label="coin", seconds=1.0, seed=0).save("coin.wav")

Nothing on this path imports Lightning, so loading and a short render stay fast.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from audiodiff.audio import peak_normalize, save_audio
from audiodiff.diffusion import SAMPLERS, SCHEDULES, get_sampler, make_sigmas
from audiodiff.diffusion.schedules import SIGMA_MAX, SIGMA_MIN
from audiodiff.model import AudioDiffusionModel

MAX_STEPS = 1000
PEAK_CEILING_DB = -1.0  # dBFS; louder clips are scaled down so PCM files never clip
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
        return torch.from_numpy(self.samples)

    def save(self, path: str | os.PathLike, subtype: str = "pcm16") -> Path:
        """Write as WAV (atomically); ``subtype`` is ``pcm16``, ``pcm24`` or ``float``."""
        return save_audio(path, self.samples, self.sample_rate, subtype)

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


class AudioDiffusion:
    """A trained model ready to generate clips."""

    def __init__(self, model: AudioDiffusionModel, source: str = "") -> None:
        self.model = model.eval()
        self.source = source

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None,
                        vocoder: str | os.PathLike | torch.nn.Module | None = None) -> AudioDiffusion:
        """Load a model directory (``config.yaml`` + ``model.safetensors``) or a training
        checkpoint (``.ckpt``) onto ``device`` (default: CUDA when available, else CPU).

        ``vocoder`` replaces the vocoder the model was saved with (mel models only): ``griffin_lim``,
        a shipped neural vocoder's name (``vocos-22k``), a neural vocoder folder or checkpoint, or a
        vocoder module. A neural vocoder must match the model's mel settings."""
        from audiodiff.vocoders import get_vocoder

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = AudioDiffusionModel.load(path)
        if vocoder is not None:
            model.set_vocoder(get_vocoder(vocoder))
        return cls(model.to(device), str(path))

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def generate_batch(self, labels: Sequence[str | int], seeds: Sequence[int], seconds: float | None = None,
                       sampler: SamplerSettings | None = None, progress: bool | None = None) -> list[Audio]:
        """One clip per (label, seed), generated in one model batch; each clip depends only on its
        own label and seed. A clip peaking above -1 dBFS is scaled down to it (its ``gain_db`` is
        recorded in the metadata), so that no written file clips."""
        sampler = sampler or SamplerSettings()
        seconds = self.model.seconds if seconds is None else float(seconds)
        ids = [self.model.conditioner.label_id(label) for label in labels]
        waves = self.model.sample(ids, seeds, seconds, sampler=sampler.name, steps=sampler.steps,
                                  schedule=sampler.schedule, guidance=sampler.guidance,
                                  guidance_rescale=sampler.guidance_rescale, sampler_options=sampler.options,
                                  sigma_range=(sampler.sigma_min, sampler.sigma_max, sampler.rho), progress=progress)
        clips = []
        for label_id, seed, wave in zip(ids, seeds, waves.float().cpu().numpy(), strict=True):
            meta = {"label": self.labels[label_id], "seed": int(seed), "seconds": seconds,
                    "sampler": sampler.name, "steps": sampler.steps, "schedule": sampler.schedule,
                    "guidance": sampler.guidance, "guidance_rescale": sampler.guidance_rescale,
                    "sampler_options": dict(sampler.options), "checkpoint": self.source}
            peak = float(np.abs(wave).max())
            if peak > 10 ** (PEAK_CEILING_DB / 20):
                wave = peak_normalize(wave, PEAK_CEILING_DB)
                meta["gain_db"] = round(PEAK_CEILING_DB - 20 * math.log10(peak), 2)
            elif peak < SILENT_PEAK:
                log.warning("the clip for label %r, seed %d is silent (peak below -80 dBFS)", meta["label"], seed)
            clips.append(Audio(np.ascontiguousarray(wave, dtype=np.float32), self.sample_rate, meta))
        return clips

    def generate(self, label: str | int | None = None, seconds: float | None = None, seed: int | None = None,
                 steps: int | None = None, sampler: str = "dpmpp_2m_sde", schedule: str | None = None,
                 guidance: float = 1.0, num: int = 1, progress: bool | None = None) -> Audio | list[Audio]:
        """Generate ``num`` clips of ``label`` (a name from :attr:`labels`), ``seconds`` long
        (default: the training length). ``sampler`` names a preset of ``conf/sampler/``, whose
        steps and schedule apply unless given. ``seed`` makes the result reproducible; clip i uses
        ``seed + i``. Returns one :class:`Audio`, or a list when ``num > 1``."""
        if label is None:
            raise ValueError(f"this model is label-conditioned: pass label=..., one of {', '.join(self.labels)}")
        if int(num) != num or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else int(seed)
        settings = SamplerSettings.preset(sampler, steps=steps, schedule=schedule, guidance=guidance)
        clips = self.generate_batch([label] * num, [seed + i for i in range(num)], seconds, settings, progress)
        return clips[0] if num == 1 else clips
