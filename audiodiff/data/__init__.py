"""Datasets: the built-in synthetic sound effects, a folder of the user's own audio and a mixture of
datasets.

The Lightning DataModule lives in :mod:`audiodiff.data.datamodule` (imported on its own so that
inference never pays for importing Lightning).
"""

from audiodiff.data.folder import AudioFolder, DatasetError
from audiodiff.data.mixture import AudioMixture
from audiodiff.data.synthetic import CLASSES, SyntheticSounds

__all__ = ["CLASSES", "AudioFolder", "AudioMixture", "DatasetError", "SyntheticSounds"]
