"""A Vocos-style neural vocoder: a ConvNeXt 1D backbone over the log-mel frames predicts the STFT
magnitude and phase of every frame, and ``torch.istft`` turns them into a waveform.

The magnitude is predicted as a correction (in log) to the least-squares inverse of the mel
filterbank (as in FreeV, Lv et al., 2024): the network starts from the magnitude Griffin-Lim starts
from and spends its capacity on phase and detail, which makes a short CPU training go much further.

A convolution stack cannot tell one frame of a steady tone from the next, so on its own it gives every
frame of a steady input the same phase, and a steady tone then cancels itself in the overlap-add
unless its frequency is a multiple of sample_rate / hop. With ``phase_prior`` the phase is predicted
relative to the advance of each bin's centre frequency over the frame's start time, and the backbone
sees where the frame sits in the period of that advance, so steady tones come out steady (to the
nearest bin) and transients can still be placed.

Every layer works at the frame rate (no upsampling convolutions), so decoding costs a few small
matrix products per frame plus one inverse STFT. A trained vocoder is saved as a folder holding
``config.yaml`` (its constructor arguments, mel settings included) and ``model.safetensors``, like
the diffusion model (``audiodiff.model_files.save_vocoder`` / ``load_vocoder``).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from audiodiff.vocoders.base import MelSettings

MEL_FLOOR = 1e-10  # mel power floor (-100 dB, the representation's floor) before the log
MAX_MAGNITUDE = 1e3  # clamp on the linear STFT magnitude (a full-scale sine peaks near n_fft / 4)
BACKBONE_PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where bfloat16 autocast pays."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class MelSettingsMismatch(ValueError):
    """A vocoder asked to serve a representation with other mel settings than it was trained on."""


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over time → LayerNorm → pointwise MLP, scaled and added back (batch × dim × frames)."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.expand = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.project = nn.Linear(hidden_dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(x).transpose(1, 2)
        h = self.project(self.act(self.expand(self.norm(h))))
        return x + (self.scale * h).transpose(1, 2)


class VocosVocoder(nn.Module):
    """Mel power spectrogram (batch × n_mels × frames) → waveform (batch × 1 × samples).

    The mel settings (``sample_rate`` … ``f_max``, Hz and samples) are those of the training data;
    :meth:`bind` refuses a representation with other settings. ``dim``/``hidden_dim``/``num_layers``/
    ``kernel_size`` size the ConvNeXt backbone. ``chunk_frames`` bounds memory on long clips: the
    backbone then runs on chunks of that many frames with enough context on both sides that the
    result equals decoding in one go (the inverse STFT always runs over the whole clip, so there
    are no seams); 0 decodes in one go.

    ``precision`` is how the backbone runs when not training: ``"auto"`` (the default) in bfloat16
    autocast on a CPU with native bfloat16 (the matrix products take about 60% of the float32 time
    and the decoded audio moves by about 0.2% of the head's output), else in float32; ``"fp32"``
    or ``"bf16"`` force one. The magnitude, phase and inverse STFT are always float32. It is a
    run-time choice, not part of the saved config.
    """

    def __init__(self, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 80,
                 f_min: float = 0.0, f_max: float | None = None, dim: int = 192, hidden_dim: int = 576,
                 num_layers: int = 8, kernel_size: int = 7, phase_prior: bool = False,
                 chunk_frames: int = 0, precision: str = "auto") -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if precision not in BACKBONE_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(BACKBONE_PRECISIONS)}, got {precision!r}")
        self.precision = precision
        if chunk_frames < 0:
            raise ValueError(f"chunk_frames must be 0 (off) or positive, got {chunk_frames}")
        f_max = float(f_max) if f_max is not None else sample_rate / 2
        self.settings = MelSettings(int(sample_rate), int(n_fft), int(hop_length), int(n_mels), float(f_min), f_max)
        self.architecture = {"dim": dim, "hidden_dim": hidden_dim, "num_layers": num_layers,
                             "kernel_size": kernel_size, "phase_prior": phase_prior}
        # Bin k's centre frequency advances 2π·k·hop/n_fft per frame: periodic in the frame index with
        # this period; the backbone gets its position in that period as sine/cosine features.
        self.phase_period = n_fft // math.gcd(n_fft, hop_length)
        self.position_harmonics = min(self.phase_period // 2, 4) if phase_prior else 0
        self.chunk_frames = chunk_frames
        # Frames on each side that influence one output frame: the embedding conv and every block's
        # depthwise conv each see kernel_size // 2 neighbours.
        self.context_frames = (num_layers + 1) * (kernel_size // 2)
        self.embed = nn.Conv1d(n_mels + 2 * self.position_harmonics, dim, kernel_size, padding=kernel_size // 2)
        self.embed_norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, hidden_dim, kernel_size, 1.0 / num_layers)
                                    for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_fft + 2)  # log-magnitude correction and phase of n_fft // 2 + 1 bins
        with torch.no_grad():  # start from the mel-inverse magnitude itself
            self.head.weight[: n_fft // 2 + 1].zero_()
            self.head.bias[: n_fft // 2 + 1].zero_()
        filterbank = self.settings.transform().mel_scale.fb  # (n_fft // 2 + 1) × n_mels
        self.register_buffer("mel_inverse", torch.linalg.pinv(filterbank.T), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @property
    def config(self) -> dict:
        """Constructor arguments as a ``_target_`` node: rebuilds this vocoder without any file."""
        return {"_target_": f"{type(self).__module__}.{type(self).__name__}", **self.settings.as_dict(),
                **self.architecture, "chunk_frames": self.chunk_frames}

    def bind(self, settings: MelSettings) -> None:
        """Check that the representation this vocoder serves uses its mel settings."""
        if settings != self.settings:
            raise MelSettingsMismatch(
                f"the neural vocoder was trained for mel settings {self.settings.as_dict()} but the representation "
                f"uses {settings.as_dict()} (differing, vocoder vs representation: "
                f"{self.settings.differences(settings)}); train a vocoder with these settings or use "
                "vocoder=griffin_lim")

    def _frame_positions(self, start: int, frames: int, device: torch.device) -> torch.Tensor:
        """(2 · position_harmonics) × frames sine/cosine of each frame's place in the phase period."""
        t = torch.arange(start, start + frames, device=device) % self.phase_period
        m = torch.arange(1, self.position_harmonics + 1, device=device)
        angle = 2 * math.pi * m[:, None] * t[None, :] / self.phase_period
        return torch.cat([angle.cos(), angle.sin()])

    def features(self, mel_power: torch.Tensor, start: int = 0) -> torch.Tensor:
        """batch × n_mels × frames mel power (its first frame being frame ``start`` of the clip)
        → batch × (n_fft + 2) × frames head output."""
        x = torch.log10(mel_power.float().clamp(min=MEL_FLOOR))
        if self.position_harmonics:
            positions = self._frame_positions(start, x.shape[-1], x.device)
            x = torch.cat([x, positions.expand(x.shape[0], -1, -1)], dim=1)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._bf16(x.device)):
            x = self.embed_norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
            for block in self.blocks:
                x = block(x)
            out = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2)
        return out.float()

    def _bf16(self, device: torch.device) -> bool:
        if self.training or self.precision == "fp32":
            return False
        return self.precision == "bf16" or (device.type == "cpu" and cpu_has_native_bf16())

    def _chunked_features(self, mel_power: torch.Tensor) -> torch.Tensor:
        frames, chunk, ctx = mel_power.shape[-1], self.chunk_frames, self.context_frames
        parts = []
        for start in range(0, frames, chunk):
            lo, hi = max(0, start - ctx), min(frames, start + chunk + ctx)
            out = self.features(mel_power[..., lo:hi], lo)
            parts.append(out[..., start - lo:start - lo + min(chunk, frames - start)])
        return torch.cat(parts, dim=-1)

    def spectrogram(self, mel_power: torch.Tensor) -> torch.Tensor:
        """The predicted complex STFT, batch × (n_fft // 2 + 1) × frames."""
        if mel_power.dim() != 3 or mel_power.shape[1] != self.settings.n_mels:
            raise ValueError(f"expected mel power shaped batch × {self.settings.n_mels} × frames, "
                             f"got {tuple(mel_power.shape)}")
        use_chunks = 0 < self.chunk_frames < mel_power.shape[-1]
        out = self._chunked_features(mel_power) if use_chunks else self.features(mel_power)
        log_mag, phase = out.chunk(2, dim=1)
        power = torch.einsum("fm,bmt->bft", self.mel_inverse, mel_power.float()).clamp(min=MEL_FLOOR)
        magnitude = (log_mag + 0.5 * power.log()).exp().clamp(max=MAX_MAGNITUDE)
        if self.position_harmonics:
            s = self.settings
            bins = torch.arange(s.n_fft // 2 + 1, device=phase.device)[:, None]
            t = torch.arange(phase.shape[-1], device=phase.device)[None, :]
            phase = phase + (2 * math.pi / s.n_fft) * ((bins * s.hop_length * t) % s.n_fft)
        return torch.polar(magnitude, phase)

    def forward(self, mel_power: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """batch × n_mels × frames mel power → batch × 1 × samples waveform (``(frames - 1) · hop``
        samples, or ``num_samples``: cropped or zero-padded)."""
        spec = self.spectrogram(mel_power)
        s = self.settings
        wave = torch.istft(spec, s.n_fft, s.hop_length, s.n_fft, self.window, center=True)
        if num_samples is not None:
            wave = nn.functional.pad(wave, (0, max(0, num_samples - wave.shape[-1])))[..., :num_samples]
        return wave.unsqueeze(1)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

