"""What a vocoder must agree on with the mel representation it serves."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
