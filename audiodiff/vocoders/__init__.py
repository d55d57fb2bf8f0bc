"""Vocoders turn a mel power spectrogram (batch × n_mels × frames) back into a waveform."""

from audiodiff.vocoders.base import MelSettings
from audiodiff.vocoders.griffin_lim import GriffinLim

__all__ = ["GriffinLim", "MelSettings"]
