"""The ``audiodiff-eval`` scorecard: which clips to render for a reference folder, and the figures
that compare them with the folder's real clips, per label and overall.

Generated clips are rendered per label (``labels``) and per held-out prompt (``prompts``); each
mode gets its own figures. The real clips give the reference figures: how the classifier does on
held-out real clips, the Fréchet distance of held-out real clips to the training clips (the floor a
perfect model approaches), the diversity of each label's training clips and the near-copy threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from audiodiff.embeddings import Embedding, LogMelStats, get_embedding
from audiodiff.generation_metrics import diversity, frechet_distance, near_copy_threshold, nearest_distances
from audiodiff.label_classifier import LabelClassifier
from audiodiff.pipeline import AudioDiffusion, SamplerSettings
from audiodiff.reference import ReferenceSet

MODES = ("labels", "prompts")
MATCHED_DRAWS = 20  # random draws averaged by the held-out-matched Fréchet distance


@dataclass(frozen=True)
class Request:
    """One clip to render: conditioned on ``label`` (mode ``labels``) or on ``prompt``, whose label
    is ``label`` (mode ``prompts``)."""

    mode: str
    label: str
    prompt: str | None
    seed: int
    seconds: float


def default_seconds(reference: ReferenceSet, pipe: AudioDiffusion) -> dict[str, float]:
    """Per label, the median length of its training clips, within the lengths the model was trained
    on (a model without duration conditioning renders its training length)."""
    duration = pipe.model.conditioner.duration
    if duration is None:
        return {label: pipe.model.seconds for label in reference.labels}
    return {label: round(float(np.clip(np.median(reference.train.seconds(label)), duration.min_seconds,
                                       duration.max_seconds)), 3) for label in reference.labels}


def plan(reference: ReferenceSet, modes: Sequence[str], clips: int, seed: int,
         seconds: dict[str, float]) -> list[Request]:
    """``clips`` requests per label and per held-out prompt; clip i of each uses seed ``seed + i``, so
    ``generate(label=..., seed=seed + i)`` reproduces it."""
    requests = []
    for mode in modes:
        for label in reference.labels:
            prompts = [None] if mode == "labels" else reference.prompts.get(label, [])
            requests += [Request(mode, label, prompt, seed + i, seconds[label]) for prompt in prompts
                         for i in range(clips)]
    return requests


def render(pipe: AudioDiffusion, requests: Sequence[Request], sampler: SamplerSettings,
           batch_size: int, progress: bool = True) -> list[np.ndarray]:
    """The clips of ``requests`` (mono, at the model's rate), in order; batches hold requests of one
    length, so a clip depends only on its request (see the README on reproducibility)."""
    out: dict[int, np.ndarray] = {}
    groups: dict[float, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(request.seconds, []).append(i)
    with tqdm(total=len(requests), desc="rendering", unit="clip", disable=not progress) as bar:
        for seconds, members in groups.items():
            for start in range(0, len(members), batch_size):
                batch = [requests[i] for i in members[start:start + batch_size]]
                prompted = [r.prompt for r in batch]
                audio = pipe.generate_batch([None if r.prompt is not None else r.label for r in batch],
                                            [r.seed for r in batch], seconds, sampler, progress=False,
                                            prompts=prompted if any(p is not None for p in prompted) else None,
                                            post={"true_peak": None})
                for i, clip in zip(members[start:start + batch_size], audio, strict=True):
                    out[i] = clip.samples.mean(axis=0)
                bar.update(len(batch))
    return [out[i] for i in range(len(requests))]


def _standardiser(train: np.ndarray):
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    return lambda x: (x - mean) / std


def _accuracy(predicted: Sequence[str], intended: Sequence[str]) -> tuple[float, dict[str, float]]:
    """Accuracy over clips, and per label."""
    hits = np.array([p == t for p, t in zip(predicted, intended, strict=True)], dtype=float)
    per_label = {label: float(hits[[t == label for t in intended]].mean()) for label in sorted(set(intended))}
    return float(hits.mean()), per_label


def _mean(values) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


class Scorecard:
    """Reference figures of a :class:`ReferenceSet`, and :meth:`score` for generated clips.

    The label classifier always reads ``logmel_stats``; ``embedding`` (a name of
    :data:`audiodiff.embeddings.EMBEDDINGS`) is the space of the Fréchet distance, diversity and
    near-copy distances, standardised by the training clips' mean and spread per dimension.
    """

    def __init__(self, reference: ReferenceSet, embedding: str = "logmel_stats", seed: int = 0,
                 near_copy_percentile: float = 5.0) -> None:
        self.reference = reference
        self.seed = seed
        self.features = LogMelStats()
        train, heldout = reference.train, reference.heldout
        train_features = self.features.embed(train.clips, train.sample_rate)
        self.classifier = LabelClassifier(seed=seed).fit(train_features, train.labels)
        self.embedding: Embedding = get_embedding(embedding, seed)
        if isinstance(self.embedding, LogMelStats):
            train_vectors = train_features
        else:
            train_vectors = self.embedding.fit(train.clips, train.sample_rate, train.labels).embed(
                train.clips, train.sample_rate)
        self.standardise = _standardiser(train_vectors)
        self.train_vectors = self.standardise(train_vectors)
        heldout_features = self.features.embed(heldout.clips, heldout.sample_rate)
        heldout_vectors = self._vectors(heldout.clips, heldout.sample_rate, heldout_features)
        self.heldout_labels = heldout.labels

        accuracy, per_label = _accuracy(self.classifier.predict(heldout_features), heldout.labels)
        self.threshold = near_copy_threshold(heldout_vectors, self.train_vectors, near_copy_percentile)
        train_labels = np.array(train.labels)
        spread = {label: diversity(self.train_vectors[train_labels == label]) for label in reference.labels}
        self.real = {
            "accuracy": accuracy,
            "balanced_accuracy": _mean(per_label.values()),
            "frechet_floor": frechet_distance(heldout_vectors, self.train_vectors),
            "diversity": _mean(spread.values()),
            "near_copy_threshold": self.threshold,
            "near_copy_percentile": near_copy_percentile,
            "train_clips": len(train.clips),
            "heldout_clips": len(heldout.clips),
            "per_label": {label: {"train_clips": int((train_labels == label).sum()),
                                  "heldout_clips": heldout.labels.count(label),
                                  "accuracy": per_label.get(label, float("nan")),
                                  "diversity": spread[label]}
                          for label in reference.labels},
        }

    def _vectors(self, clips: Sequence[np.ndarray], sample_rate: int, features: np.ndarray) -> np.ndarray:
        """Standardised embedding vectors of ``clips``, whose ``logmel_stats`` are ``features``."""
        raw = features if isinstance(self.embedding, LogMelStats) else self.embedding.embed(clips, sample_rate)
        return self.standardise(raw)

    def score(self, requests: Sequence[Request], clips: Sequence[np.ndarray], sample_rate: int) -> dict[str, dict]:
        """Figures per mode present in ``requests``: overall and per label, with the flagged near-copies."""
        features = self.features.embed(clips, sample_rate)
        vectors = self._vectors(clips, sample_rate, features)
        predicted = self.classifier.predict(features)
        nearest, index = nearest_distances(vectors, self.train_vectors)
        report = {}
        for mode in MODES:
            members = [i for i, r in enumerate(requests) if r.mode == mode]
            if members:
                report[mode] = self._score_mode([requests[i] for i in members], vectors[members],
                                                [predicted[i] for i in members], nearest[members], index[members])
        return report

    def _score_mode(self, requests: Sequence[Request], vectors: np.ndarray, predicted: Sequence[str],
                    nearest: np.ndarray, index: np.ndarray) -> dict:
        labels = [r.label for r in requests]
        accuracy, per_label_accuracy = _accuracy(predicted, labels)
        per_label = {}
        for label in sorted(set(labels)):
            groups: dict[str | None, list[int]] = {}
            for i, r in enumerate(requests):
                if r.label == label:
                    groups.setdefault(r.prompt, []).append(i)
            mine = [i for members in groups.values() for i in members]
            per_label[label] = {"clips": len(mine), "accuracy": per_label_accuracy[label],
                                # Among the clips of one condition (a label, or one prompt), then averaged.
                                "diversity": _mean(diversity(vectors[m]) for m in groups.values()),
                                "real_diversity": self.real["per_label"][label]["diversity"],
                                "nearest_train_distance": float(nearest[mine].min()),
                                "near_copies": int((nearest[mine] < self.threshold).sum())}
        balanced = _mean(v["accuracy"] for v in per_label.values())
        real_balanced = self.real["balanced_accuracy"]
        flagged = [{"label": r.label, "prompt": r.prompt, "seed": r.seed, "seconds": r.seconds,
                    "distance": float(nearest[i]), "nearest_train_clip": self.reference.train.paths[index[i]]}
                   for i, r in enumerate(requests) if nearest[i] < self.threshold]
        return {
            "clips": len(requests),
            "accuracy": accuracy,
            "balanced_accuracy": balanced,
            "accuracy_ratio": balanced / real_balanced if real_balanced > 0 else float("nan"),
            "frechet": self._matched_frechet(vectors, labels),
            "frechet_all": frechet_distance(vectors, self.train_vectors),
            "diversity": _mean(v["diversity"] for v in per_label.values()),
            "real_diversity": _mean(v["real_diversity"] for v in per_label.values()),
            "near_copies": len(flagged),
            "per_label": per_label,
            "flagged": flagged,
        }

    def _matched_frechet(self, vectors: np.ndarray, labels: Sequence[str]) -> float:
        """The Fréchet distance to the training clips of generated clips drawn to the held-out set's
        labels and size (one generated clip of the same label per held-out clip; without replacement
        where there are enough), averaged over draws: comparable with ``frechet_floor``, whose
        small-sample bias and label mix it shares. NaN when a held-out label has no generated clip."""
        by_label = {label: np.flatnonzero(np.array(labels) == label) for label in set(labels)}
        needed = {label: self.heldout_labels.count(label) for label in set(self.heldout_labels)}
        if any(label not in by_label for label in needed):
            return float("nan")
        rng = np.random.default_rng(self.seed)
        values = []
        for _ in range(MATCHED_DRAWS):
            picks = np.concatenate([rng.choice(by_label[label], count, replace=count > len(by_label[label]))
                                    for label, count in sorted(needed.items())])
            values.append(frechet_distance(vectors[picks], self.train_vectors))
        return float(np.mean(values))
