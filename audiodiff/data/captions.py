"""Captions for labelled sounds, drawn from templates × descriptions × adjectives, with held-out
phrasings kept apart.

A dataset with one fixed caption per class teaches a text-conditioned model one wording; drawing
each clip's caption from many combinations teaches it the meaning instead. The held-out phrasings
are worded differently from every caption the bank can produce, so prompting with them measures
whether a model generalises to words it never saw in training.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiou8])")  # "a 8-bit", "a eerie"; "a UI blip" stays


def tidy(text: str) -> str:
    """Single spaces and "an" before a vowel sound: "a  eerie tune" → "an eerie tune"."""
    return _A_BEFORE_VOWEL.sub(r"\1n ", " ".join(text.split()))


class CaptionError(ValueError):
    """A caption bank that is inconsistent (a missing label, or a held-out phrasing it can produce)."""


@dataclass(frozen=True)
class CaptionBank:
    """Caption vocabulary per label.

    ``descriptions`` maps each label to its synonyms ("coin pickup", "coin collect"...); ``templates``
    hold ``{d}`` (a description) and optionally ``{a}`` (an adjective); ``adjectives`` are shared by all
    labels unless ``label_adjectives`` gives a label its own. ``held_out`` maps each label to phrasings
    that must never be produced as a caption; the constructor checks that.
    """

    descriptions: Mapping[str, Sequence[str]]
    templates: Sequence[str]
    adjectives: Sequence[str]
    held_out: Mapping[str, Sequence[str]] = field(default_factory=dict)
    label_adjectives: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.templates or any("{d}" not in t for t in self.templates):
            raise CaptionError("every caption template needs a {d} (description) placeholder")
        for label in (*self.held_out, *self.label_adjectives):
            if label not in self.descriptions:
                raise CaptionError(f"label {label!r} has held-out phrasings or adjectives but no descriptions")
        for label, phrasings in self.held_out.items():
            leaked = {p.lower() for p in phrasings} & {c.lower() for c in self.all_captions(label)}
            if leaked:
                raise CaptionError(f"held-out phrasings of {label!r} are also training captions: {sorted(leaked)}")

    @property
    def labels(self) -> list[str]:
        return list(self.descriptions)

    def _adjectives(self, label: str) -> Sequence[str]:
        return self.label_adjectives.get(label, self.adjectives)

    def caption(self, label: str, rng: np.random.Generator) -> str:
        """A random caption for a sound of class ``label``."""
        if label not in self.descriptions:
            raise CaptionError(f"no captions for label {label!r}; known: {', '.join(self.descriptions)}")
        adjectives = self._adjectives(label)
        template = self.templates[int(rng.integers(len(self.templates)))]
        description = self.descriptions[label][int(rng.integers(len(self.descriptions[label])))]
        adjective = adjectives[int(rng.integers(len(adjectives)))] if adjectives else ""
        return tidy(template.format(d=description, a=adjective))

    def all_captions(self, label: str) -> set[str]:
        """Every caption :meth:`caption` can produce for ``label``."""
        adjectives = self._adjectives(label) or ("",)
        return {tidy(t.format(d=d, a=a))
                for t in self.templates for d in self.descriptions[label] for a in adjectives}
