"""What a vocoder must agree on with the mel representation it serves."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torchaudio


@dataclass(frozen=True)
class MelSettings:
    """STFT and mel filterbank settings (sample rate and frequencies in Hz, sizes in samples)."""

    sample_rate: int
    n_fft: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float

    def as_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: MelSettings) -> dict[str, tuple]:
        """The settings that differ: name → (this value, the other's)."""
        theirs = other.as_dict()
        return {k: (v, theirs[k]) for k, v in self.as_dict().items() if theirs[k] != v}

    def transform(self) -> torchaudio.transforms.MelSpectrogram:
        """The mel power spectrogram of these settings: batch × samples → batch × n_mels × frames,
        with ``samples // hop_length + 1`` frames (centred, reflect-padded frames, Slaney mel scale)."""
        return torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            f_min=self.f_min,
            f_max=self.f_max,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )
