"""The diffusion model as a plain ``nn.Module``: representation + conditioner + U-Net + objective.

It is built from one config (``_target_`` nodes naming registered classes, see
:mod:`audiodiff.model_files`) that drives training and inference alike, and saved as
``model.safetensors`` + ``config.yaml``. Training (Lightning) and inference (the
pipeline) both sit on top of this module; nothing here imports Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from audiodiff.conditioning import Conditioner, Conditioning
from audiodiff.diffusion import Denoiser, DiffusionObjective, SeededNoise, get_sampler, make_sigmas
from audiodiff.diffusion.schedules import SIGMA_MAX, SIGMA_MIN
from audiodiff.model_files import (
    MODEL_TARGETS,
    ModelLoadError,
    build,
    check_config,
    read_model_files,
    write_model_folder,
)
from audiodiff.representations import Representation

MAX_SECONDS = 60.0
PRECISIONS = ("fp32", "bf16")


class NonFiniteOutputError(RuntimeError):
    """Sampling produced NaN or infinite values."""


class AudioDiffusionModel(nn.Module):
    """An audio diffusion model conditioned on labels, text and/or duration (see :class:`Conditioner`).

    ``net`` is a constructor (a partial) called with ``in_channels``, ``cond_dim`` and
    ``context_dim``, so the U-Net always matches the representation and conditioner it serves.
    ``seconds`` is the default length of generated clips (the training length of a model without
    duration conditioning). ``sampling`` holds the model's own default sampler settings (fields of
    :class:`audiodiff.pipeline.SamplerSettings`), for a model made to be sampled one way, such as a
    distilled student; None means the toolkit's defaults.
    """

    def __init__(self, representation: Representation, net: Callable[..., nn.Module],
                 conditioner: Conditioner, objective: DiffusionObjective, seconds: float = 1.0,
                 sampling: dict | None = None) -> None:
        super().__init__()
        self.representation = representation
        self.conditioner = conditioner
        self.net = net(in_channels=representation.channels, cond_dim=conditioner.dim,
                       context_dim=conditioner.context_dim)
        self.objective = objective
        self.seconds = float(seconds)
        self.sampling = dict(sampling) if sampling else None
        self.config: dict | None = None

    @property
    def sample_rate(self) -> int:
        return self.representation.sample_rate

    @property
    def labels(self) -> list[str]:
        return self.conditioner.labels

    @classmethod
    def from_config(cls, config: dict, source: str = "config", vocoder_files: bool = False) -> AudioDiffusionModel:
        """Build from a resolved config dict whose ``_target_`` nodes name registered classes only
        (:data:`audiodiff.model_files.REGISTRY`); anything else is refused before anything is
        built. ``vocoder_files``: whether the vocoder may be named by a file to load (a training
        config's ``vocoder=neural``; never in a saved model)."""
        check_config(config, source, root=MODEL_TARGETS, vocoder_files=vocoder_files)
        if config.get("_target_") not in MODEL_TARGETS:
            raise ModelLoadError(f"{source}: the config builds {config.get('_target_')!r}, not {cls.__name__}")
        try:
            model = cls(**{key: build(value, source, vocoder_files) for key, value in config.items()
                           if key != "_target_"})
        except ModelLoadError:
            raise
        except Exception as err:
            raise ModelLoadError(f"{source}: cannot build the model from its config ({err})") from None
        if model.conditioner.text is not None:
            # Recorded on first build so that the saved model refuses another encoder later.
            config["conditioner"]["text"]["identity"] = model.conditioner.text.encoder.identity
        model.config = config
        vocoder = getattr(model.representation, "vocoder", None)
        if getattr(vocoder, "config", None) is not None:
            model._record_vocoder(vocoder)
        return model

    def _record_vocoder(self, vocoder: nn.Module) -> None:
        # A vocoder loaded from a file is recorded by its architecture: its weights are part of this
        # model's state, so a saved model needs neither the original vocoder file nor its path.
        self.config = {**self.config, "representation": {**self.config["representation"], "vocoder": vocoder.config}}

    def set_vocoder(self, vocoder: nn.Module) -> None:
        """Decode with ``vocoder`` from now on (and save it with the model); mel models only."""
        if not hasattr(self.representation, "set_vocoder"):
            raise ValueError(f"this model works on a {type(self.representation).__name__} representation, which "
                             "needs no vocoder; only mel-spectrogram models take one")
        self.representation.set_vocoder(vocoder)
        if self.config is not None:
            self._record_vocoder(vocoder)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.yaml`` and ``model.safetensors`` into ``directory``."""
        if self.config is None:
            raise ValueError("this model was not built from a config, so it cannot be saved with one")
        return write_model_folder(directory, self.config, self.state_dict())

    @classmethod
    def load(cls, path: str | Path) -> AudioDiffusionModel:
        """Load from a directory written by :meth:`save_pretrained` or from a training checkpoint
        (``.ckpt``; its EMA weights are used). No pickled code is executed: weights come from
        safetensors, or from ``torch.load(weights_only=True)``."""
        config, state = read_model_files(path)
        model = cls.from_config(config, str(path))
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ModelLoadError(f"{path}: weights do not match the config ({err})") from None
        return model.eval()

    def num_frames(self, seconds: float) -> int:
        return self.representation.num_frames(self.num_samples(seconds))

    def num_samples(self, seconds: float) -> int:
        return int(math.ceil(seconds * self.sample_rate - 1e-9))

    @property
    def has_text(self) -> bool:
        return self.conditioner.text is not None

    @property
    def guidance_distilled(self) -> bool:
        """Whether the model renders a guided clip in one network call per step (see
        :class:`~audiodiff.conditioning.GuidanceEmbedding`)."""
        return self.conditioner.guidance is not None

    def conditioning(self, label_ids: Sequence[int | None] | torch.Tensor | None,
                     prompts: Sequence[str | None] | None, seconds: Sequence[float] | torch.Tensor | None,
                     batch: int, guidance: torch.Tensor | None = None) -> Conditioning:
        """The U-Net's conditioning for ``batch`` items: label indices (None: no label), prompts
        (None: no prompt), lengths in seconds and, for a guidance-distilled model, guidance scales
        (None: 1); parts the model lacks are skipped, except that a label given to a model without
        labels is refused."""
        c = self.conditioner
        if c.label is None:
            given = [] if label_ids is None or isinstance(label_ids, torch.Tensor) else [i for i in label_ids
                                                                                          if i is not None]
            if given:
                c.label_id(given[0])  # raises UnsupportedConditionError, naming the label
            ids = None
        elif label_ids is None:
            ids = torch.full((batch,), c.label.null_id, dtype=torch.long)
        elif isinstance(label_ids, torch.Tensor):
            ids = label_ids
        else:
            ids = torch.tensor([c.label.null_id if i is None else i for i in label_ids], dtype=torch.long)
        lengths = None
        if c.duration is not None:
            lengths = seconds if isinstance(seconds, torch.Tensor) else torch.tensor(list(seconds), dtype=torch.float32)
        return c(ids, prompts if c.text is not None else None, lengths, guidance)

    def loss(self, wave: torch.Tensor, label_ids: torch.Tensor | None = None,
             prompts: Sequence[str | None] | None = None, seconds: torch.Tensor | None = None) -> torch.Tensor:
        """Diffusion loss of a batch: batch × channels × samples audio with, per item, a label
        index (``null_id`` for none), a prompt (None for none) and the clip length in seconds."""
        with torch.no_grad():
            x0 = self.representation.encode(wave)
        return self.objective.loss(self.net, x0, self.conditioning(label_ids, prompts, seconds, len(wave)))

    @torch.inference_mode()
    def sample(self, label_ids: Sequence[int | None] | None, seeds: Sequence[int], seconds: float | None = None,
               sampler: str = "ddim", steps: int = 50, schedule: str = "cosine", guidance: float = 1.0,
               guidance_rescale: float = 0.0, sampler_options: dict | None = None,
               sigma_range: tuple[float, float, float] = (SIGMA_MIN, SIGMA_MAX, 7.0),
               progress: bool | None = None, decode: bool = True, prompts: Sequence[str | None] | None = None,
               negative_prompts: Sequence[str | None] | None = None, precision: str = "fp32") -> torch.Tensor:
        """Generate one clip per seed, conditioned per item on a label index and/or a prompt (None
        where not given; give ``label_ids=None`` for a prompt-only batch): batch × audio channels ×
        samples at ``sample_rate`` (with ``decode=False``, the model-space features before the
        vocoder). ``negative_prompts`` replace the null text in the unconditional branch of guidance.
        A guidance-distilled model (:attr:`guidance_distilled`) takes ``guidance`` within its distilled
        range as a condition and needs one network call per step; otherwise guidance costs two.
        ``sigma_range`` is (sigma_min, sigma_max, rho) of the noise-level schedule. ``precision``
        ``bf16`` runs the network under bfloat16 autocast (the sampler's state and the conditioning stay
        in float32; a neural vocoder has its own ``precision``); see the README's *Performance* section
        for when it pays.

        Each item depends only on its condition and seed, not on the rest of the batch (up to float
        rounding, which Griffin-Lim's phase search can turn into a different but equally valid phase).
        Raises :class:`NonFiniteOutputError` naming the item and step if the model produces NaN/inf.
        """
        seconds = self.seconds if seconds is None else float(seconds)
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS}], got {seconds}")
        self.conditioner.check_seconds(seconds)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        batch = len(seeds)
        for name, values in (("labels", label_ids), ("prompts", prompts), ("negative prompts", negative_prompts)):
            if values is not None and len(values) != batch:
                raise ValueError(f"got {len(values)} {name} but {batch} seeds")
        if prompts is not None:
            prompts = [None if p is None else self.conditioner.check_prompt(p) for p in prompts]
        if negative_prompts is not None:
            negative_prompts = [None if p is None else self.conditioner.check_prompt(p) for p in negative_prompts]
        missing = [i for i in range(batch) if (label_ids is None or label_ids[i] is None)
                   and (prompts is None or prompts[i] is None)]
        if missing and self.conditioner.parts:
            raise ValueError(f"batch items {missing} have neither a label nor a prompt")
        sample_fn = get_sampler(sampler)
        device = next(self.parameters()).device
        lengths = [seconds] * batch
        # A guidance-distilled model is given the scale and called once per step. A negative prompt,
        # guidance rescale or a scale outside the distilled range takes the two branches of true
        # guidance, which such a model still has at scale 1.
        one_call = (self.guidance_distilled and self.conditioner.guidance.covers(guidance) and guidance_rescale == 0
                    and (negative_prompts is None or all(p is None for p in negative_prompts)))
        if one_call:
            cond = self.conditioning(label_ids, prompts, lengths, batch, torch.full((batch,), float(guidance)))
            denoiser = Denoiser(self.net, self.objective, cond)
        else:
            cond = self.conditioning(label_ids, prompts, lengths, batch)
            uncond = self.conditioning(None, negative_prompts, lengths, batch) if guidance != 1.0 else None
            denoiser = Denoiser(self.net, self.objective, cond, uncond, guidance, guidance_rescale)
        sigmas = make_sigmas(schedule, steps, *sigma_range).to(device)
        noise = SeededNoise(seeds, device)
        shape = (batch, self.representation.channels, self.num_frames(seconds))
        x = noise(torch.empty(shape, device=device)) * sigmas[0]

        def check(info: dict) -> None:
            bad = (~torch.isfinite(info["x"])).flatten(1).any(dim=1)
            if bad.any():
                items = bad.nonzero().flatten().tolist()
                raise NonFiniteOutputError(f"sampling produced NaN/inf for batch items {items} at step "
                                           f"{info['i'] + 1} of {steps} (sampler {sampler})")

        disable = None if progress is None else not progress
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            x = sample_fn(denoiser, x, sigmas, noise=noise, callback=check, disable=disable, **(sampler_options or {}))
        return self.representation.decode(x, self.num_samples(seconds)) if decode else x

