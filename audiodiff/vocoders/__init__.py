"""Vocoders turn a mel power spectrogram (batch × n_mels × frames) back into a waveform. Loading and
saving trained ones is :mod:`audiodiff.model_files`' work."""

from audiodiff.vocoders.base import MelSettings
from audiodiff.vocoders.griffin_lim import GriffinLim
from audiodiff.vocoders.vocos import MelSettingsMismatch, VocosVocoder

__all__ = ["GriffinLim", "MelSettings", "MelSettingsMismatch", "VocosVocoder"]
