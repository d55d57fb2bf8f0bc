"""Vocoders turn a mel power spectrogram (batch × n_mels × frames) back into a waveform."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from audiodiff.vocoders.base import MelSettings
from audiodiff.vocoders.griffin_lim import GriffinLim
from audiodiff.vocoders.vocos import MelSettingsMismatch, VocoderLoadError, VocosVocoder, load_vocoder

__all__ = ["GriffinLim", "MelSettings", "MelSettingsMismatch", "VocoderLoadError", "VocosVocoder", "get_vocoder",
           "load_vocoder"]


def get_vocoder(spec: str | Path | nn.Module) -> nn.Module:
    """A vocoder from ``griffin_lim``, the name of a shipped neural vocoder (``vocos-22k``), a
    neural vocoder folder or training checkpoint, or a vocoder module (returned as it is)."""
    if isinstance(spec, nn.Module):
        return spec
    if str(spec) == "griffin_lim":
        return GriffinLim()
    return load_vocoder(spec)
