"""The ``audiodiff-eval`` scorecard: which clips to render for a reference folder, and the figures
that compare them with the folder's real clips, per label and overall.

Generated clips are rendered per label (``labels``) and per held-out prompt (``prompts``); each
mode gets its own figures. Judge and reference are the folder's held-out clips only, which no model
trained on the folder has seen: the label judge is cross-fitted on them (each held-out clip judged by
a judge that did not see it), the Fréchet floor is the distance between two random halves of them and
the generated clips' distance is to one half, drawn to the other half's size and labels, and the
embedding space is standardised by them. The training clips serve only the near-copy check (a
generated clip closer to a training clip than nearly every held-out clip is) and, in the command, the
default clip lengths. Accuracies and their ratio come with bootstrap intervals and clip counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from audiodiff.embeddings import Embedding, LogMelStats, get_embedding
from audiodiff.generation_metrics import diversity, frechet_distance, near_copy_threshold, nearest_distances
from audiodiff.label_classifier import CrossFittedJudge, spread
from audiodiff.pipeline import AudioDiffusion, SamplerSettings
from audiodiff.reference import ReferenceError, ReferenceSet

MODES = ("labels", "prompts")
FRECHET_DRAWS = 20  # random splits of the held-out clips averaged by the Fréchet figures
BOOTSTRAP_RESAMPLES = 1000  # resamples of the clips (within each label) behind each interval
INTERVAL = 0.95  # the bootstrap intervals' coverage (percentile intervals)


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


def _standardiser(vectors: np.ndarray):
    mean, std = vectors.mean(axis=0), spread(vectors)
    return lambda x: (x - mean) / std


def _mean(values) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _by_label(hits: np.ndarray, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Hits (1, 0 or a fraction) grouped by label, judged labels only (a NaN hit is not judged)."""
    labels = np.asarray(labels)
    return {label: hits[(labels == label) & np.isfinite(hits)] for label in sorted(set(labels.tolist()))
            if np.isfinite(hits[labels == label]).any()}


def _balanced(groups: dict[str, np.ndarray]) -> float:
    """Balanced accuracy: the mean over labels of each label's mean hit."""
    return float(np.mean([g.mean() for g in groups.values()])) if groups else float("nan")


def _resampled_balanced(groups: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``BOOTSTRAP_RESAMPLES`` balanced accuracies, each of the clips of every label resampled with
    replacement within that label (so each resample keeps the label mix)."""
    if not groups:
        return np.full(BOOTSTRAP_RESAMPLES, np.nan)
    return np.mean([g[rng.integers(0, len(g), (BOOTSTRAP_RESAMPLES, len(g)))].mean(axis=1)
                    for _, g in sorted(groups.items())], axis=0)


def _interval(resampled: np.ndarray) -> list[float]:
    """The percentile interval of ``INTERVAL`` coverage; inf where a resampled ratio had 0 below."""
    finite_or_inf = resampled[~np.isnan(resampled)]
    if not len(finite_or_inf):
        return [float("nan"), float("nan")]
    tail = 100 * (1 - INTERVAL) / 2
    return [float(v) for v in np.percentile(finite_or_inf, [tail, 100 - tail])]


def _ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)


def _refuse_shared_clips(reference: ReferenceSet, heldout: np.ndarray, train: np.ndarray) -> None:
    """A held-out clip that sounds exactly like a training clip (the same ``logmel_stats``: the same
    audio up to level and silence) would put the model's training data in the judge and the reference."""
    distances, nearest = nearest_distances(heldout, train)
    shared = [f"{reference.heldout.paths[i]} = {reference.train.paths[nearest[i]]}"
              for i in np.flatnonzero(distances < 1e-9)]
    if shared:
        raise ReferenceError(f"{reference.root / 'heldout' / 'metadata.csv'}: {len(shared)} held-out clip(s) are "
                             f"training clips too, so they cannot judge a model trained on them: "
                             f"{', '.join(shared[:5])}{' ...' if len(shared) > 5 else ''}")


class Scorecard:
    """Reference figures of a :class:`ReferenceSet`'s held-out clips, and :meth:`score` for generated clips.

    The judge (:class:`CrossFittedJudge`) always reads ``logmel_stats``; ``embedding`` (a name of
    :data:`audiodiff.embeddings.EMBEDDINGS`) is the space of the Fréchet distance, diversity and
    near-copy distances, standardised by the held-out clips' mean and spread per dimension (a learned
    embedding is fitted on the held-out clips). Training clips are embedded only for the near-copy check.
    """

    def __init__(self, reference: ReferenceSet, embedding: str = "logmel_stats", seed: int = 0,
                 near_copy_percentile: float = 5.0) -> None:
        self.reference = reference
        self.seed = seed
        self.features = LogMelStats()
        train, heldout = reference.train, reference.heldout
        heldout_features = self.features.embed(heldout.clips, heldout.sample_rate)
        train_features = self.features.embed(train.clips, train.sample_rate)
        _refuse_shared_clips(reference, heldout_features, train_features)
        try:
            self.judge = CrossFittedJudge(seed=seed).fit(heldout_features, heldout.labels)
        except ValueError as err:
            raise ReferenceError(f"{reference.root / 'heldout' / 'metadata.csv'}: {err}") from None
        self.embedding: Embedding = get_embedding(embedding, seed)
        if isinstance(self.embedding, LogMelStats):
            heldout_raw = heldout_features
        else:
            heldout_raw = self.embedding.fit(heldout.clips, heldout.sample_rate, heldout.labels).embed(
                heldout.clips, heldout.sample_rate)
        self.standardise = _standardiser(heldout_raw)
        self.heldout_vectors = self.standardise(heldout_raw)
        self.heldout_labels = list(heldout.labels)
        self.train_vectors = self._vectors(train.clips, train.sample_rate, train_features)

        # Accuracy: each held-out clip by the fold judge that did not see it.
        self.real_hits = _by_label(self.judge.heldout_hits, self.judge.heldout_labels)
        self.real_resampled = _resampled_balanced(self.real_hits, np.random.default_rng([seed, 1]))
        self.threshold = near_copy_threshold(self.heldout_vectors, self.train_vectors, near_copy_percentile)
        labels = np.array(self.heldout_labels)
        spread = {label: diversity(self.heldout_vectors[labels == label]) for label in reference.labels}
        self.splits = self._splits()
        floor, self.frechet_unavailable = float("nan"), None
        if self.splits is None:
            self.frechet_unavailable = (f"{len(labels)} held-out clips are too few to split into two halves of "
                                        "at least 2 clips")
        else:
            floor = float(np.mean([frechet_distance(self.heldout_vectors[a], self.heldout_vectors[b])
                                   for a, b in self.splits]))
        judged = sum(len(g) for g in self.real_hits.values())
        self.real = {
            "accuracy": float(self.judge.heldout_hits.mean()),
            "balanced_accuracy": _balanced(self.real_hits),
            "balanced_accuracy_interval": _interval(self.real_resampled),
            "judged_clips": judged,
            "not_judged": [label for label in reference.labels if label not in self.real_hits],
            "judge": {"fitted_on": "heldout", "clips": judged, "folds": self.judge.n_folds,
                      "members": self.judge.members, "hidden": self.judge.hidden_units},
            "frechet_heldout_floor": floor,
            "frechet_clips": self._frechet_clips(),
            "frechet_unavailable": self.frechet_unavailable,
            "diversity": _mean(spread.values()),
            "near_copy_threshold": self.threshold,
            "near_copy_percentile": near_copy_percentile,
            "train_clips": len(train.clips),
            "heldout_clips": len(heldout.clips),
            "per_label": {label: {"train_clips": train.labels.count(label),
                                  "heldout_clips": heldout.labels.count(label),
                                  "accuracy": float(self.real_hits[label].mean()) if label in self.real_hits
                                  else float("nan"),
                                  "diversity": spread[label]}
                          for label in reference.labels},
        }

    def _vectors(self, clips: Sequence[np.ndarray], sample_rate: int,
                 features: np.ndarray | None = None) -> np.ndarray:
        """Standardised embedding vectors of ``clips``, whose ``logmel_stats`` are ``features`` if given."""
        if isinstance(self.embedding, LogMelStats):
            raw = features if features is not None else self.embedding.embed(clips, sample_rate)
        else:
            raw = self.embedding.embed(clips, sample_rate)
        return self.standardise(raw)

    def _splits(self) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """``FRECHET_DRAWS`` random splits of the held-out clips into halves A and B, per label (a label's
        odd clip goes to A and B in turn over the labels with odd counts, in a random order, so the halves'
        sizes are the same in every draw); None when a half would have fewer than 2 clips."""
        labels = np.array(self.heldout_labels)
        rng = np.random.default_rng([self.seed, 2])
        splits = []
        for _ in range(FRECHET_DRAWS):
            a, b = [], []
            odd = [label for label in sorted(set(labels.tolist())) if (labels == label).sum() % 2]
            extra_to_a = {label: i % 2 == 0 for i, label in enumerate(rng.permutation(odd).tolist())}
            for label in sorted(set(labels.tolist())):
                rows = rng.permutation(np.flatnonzero(labels == label))
                half = len(rows) // 2 + (1 if extra_to_a.get(label, False) else 0)
                a.append(rows[:half])
                b.append(rows[half:])
            splits.append((np.concatenate(a), np.concatenate(b)))
        if min(len(splits[0][0]), len(splits[0][1])) < 2:
            return None
        return splits

    def _frechet_clips(self) -> dict:
        if self.splits is None:
            return {"compared": 0, "against": 0, "draws": 0}
        return {"compared": len(self.splits[0][0]), "against": len(self.splits[0][1]), "draws": len(self.splits)}

    def score(self, requests: Sequence[Request], clips: Sequence[np.ndarray], sample_rate: int) -> dict[str, dict]:
        """Figures per mode present in ``requests``: overall and per label, with the flagged near-copies."""
        features = self.features.embed(clips, sample_rate)
        vectors = self._vectors(clips, sample_rate, features)
        hits = self.judge.hits(features, [r.label for r in requests])
        nearest, index = nearest_distances(vectors, self.train_vectors)
        report = {}
        for number, mode in enumerate(MODES):
            members = [i for i, r in enumerate(requests) if r.mode == mode]
            if members:
                report[mode] = self._score_mode([requests[i] for i in members], vectors[members], hits[members],
                                                nearest[members], index[members], number)
        return report

    def _score_mode(self, requests: Sequence[Request], vectors: np.ndarray, hits: np.ndarray,
                    nearest: np.ndarray, index: np.ndarray, number: int) -> dict:
        labels = [r.label for r in requests]
        generated = _by_label(hits, labels)
        # Like for like: the real clips' balanced accuracy over the labels judged here.
        real = {label: self.real_hits[label] for label in generated}
        real_resampled = _resampled_balanced(real, np.random.default_rng([self.seed, 1]))
        resampled = _resampled_balanced(generated, np.random.default_rng([self.seed, 3, number]))
        balanced, real_balanced = _balanced(generated), _balanced(real)
        per_label = {}
        for label in sorted(set(labels)):
            groups: dict[str | None, list[int]] = {}
            for i, r in enumerate(requests):
                if r.label == label:
                    groups.setdefault(r.prompt, []).append(i)
            mine = [i for members in groups.values() for i in members]
            per_label[label] = {"clips": len(mine),
                                "accuracy": float(generated[label].mean()) if label in generated else float("nan"),
                                # Among the clips of one condition (a label, or one prompt), then averaged.
                                "diversity": _mean(diversity(vectors[m]) for m in groups.values()),
                                "real_diversity": self.real["per_label"][label]["diversity"],
                                "nearest_train_distance": float(nearest[mine].min()),
                                "near_copies": int((nearest[mine] < self.threshold).sum())}
        flagged = [{"label": r.label, "prompt": r.prompt, "seed": r.seed, "seconds": r.seconds,
                    "distance": float(nearest[i]), "nearest_train_clip": self.reference.train.paths[index[i]]}
                   for i, r in enumerate(requests) if nearest[i] < self.threshold]
        frechet, unavailable = self._heldout_frechet(vectors, labels)
        judged = np.isfinite(hits)
        return {
            "clips": len(requests),
            "judged_clips": int(judged.sum()),
            "accuracy": float(hits[judged].mean()) if judged.any() else float("nan"),
            "balanced_accuracy": balanced,
            "balanced_accuracy_interval": _interval(resampled),
            "real_balanced_accuracy": real_balanced,
            "real_balanced_accuracy_interval": _interval(real_resampled),
            "real_judged_clips": sum(len(g) for g in real.values()),
            "accuracy_ratio": float(_ratio(balanced, real_balanced)),
            "accuracy_ratio_interval": _interval(_ratio(resampled, real_resampled)),
            "frechet_heldout": frechet,
            "frechet_unavailable": unavailable,
            "diversity": _mean(v["diversity"] for v in per_label.values()),
            "real_diversity": _mean(v["real_diversity"] for v in per_label.values()),
            "near_copies": len(flagged),
            "per_label": per_label,
            "flagged": flagged,
        }

    def _heldout_frechet(self, vectors: np.ndarray, labels: Sequence[str]) -> tuple[float, str | None]:
        """The Fréchet distance of generated clips to held-out half B, with the generated clips drawn
        without replacement to half A's size and labels, averaged over the same splits as the floor
        (FD of A to B), whose size, label mix and small-sample bias it therefore shares; NaN and the
        reason when there are too few generated clips of some label for that."""
        if self.splits is None:
            return float("nan"), self.frechet_unavailable
        by_label = {label: np.flatnonzero(np.array(labels) == label) for label in set(labels)}
        heldout = np.array(self.heldout_labels)
        short = []
        for label in sorted(set(self.heldout_labels)):
            needed = max(int(np.isin(a, np.flatnonzero(heldout == label)).sum()) for a, _ in self.splits)
            have = len(by_label.get(label, []))
            if have < needed:
                short.append(f"{label} {have} of {needed}")
        if short:
            return float("nan"), (f"too few generated clips to match a held-out half without repeating any "
                                  f"(label: generated of needed): {', '.join(short)}")
        rng = np.random.default_rng([self.seed, 4])
        values = []
        for a, b in self.splits:
            picks = np.concatenate([rng.choice(by_label[label], (heldout[a] == label).sum(), replace=False)
                                    for label in sorted(set(heldout[a].tolist()))])
            values.append(frechet_distance(vectors[picks], self.heldout_vectors[b]))
        return float(np.mean(values)), None
