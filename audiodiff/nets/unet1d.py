"""A 1D U-Net for diffusion over time series of feature vectors (mel bins or audio channels).

Configured by per-level lists, in the manner of audio-diffusion-pytorch: level ``i`` downsamples by
``factors[i]``, runs ``blocks[i]`` residual blocks at ``channels[i]`` width, and adds self-attention
after each block when ``attentions[i]`` is true. The noise level and an optional conditioning
vector enter every residual block as a scale and shift (FiLM); with ``context_dim`` set, every
attention layer is followed by cross-attention to a context sequence (text token embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from audiodiff.conditioning import Conditioning


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """batch noise times in [0, 1] → batch × dim sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention (batch × heads × length × head dim), ``mask`` True where a key
    may be attended. On the CPU it is written out: for this U-Net's few dozen frames and tokens the
    default model's network took 129 ms a batch of 64 on one thread, against 137 ms with PyTorch's
    fused kernel (the same on two threads or for a batch of 2)."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = math.gcd(channels, 32)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Two convolutions with GroupNorm/SiLU, modulated by the embedding (scale and shift)."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, padding=pad)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(F.silu(emb))[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over time, residual."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three h d) t -> three b h t d", three=3, h=self.heads)
        h = attention(q, k, v)
        return x + self.out(rearrange(h, "b h t d -> b (h d) t"))


class CrossAttention(nn.Module):
    """Multi-head attention from time steps to a context sequence (batch × tokens × context_dim,
    with a batch × tokens mask, True where a token is real), residual."""

    def __init__(self, channels: int, context_dim: int, heads: int) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = _group_norm(channels)
        self.q = nn.Conv1d(channels, channels, 1)
        self.kv = nn.Sequential(nn.LayerNorm(context_dim), nn.Linear(context_dim, 2 * channels))
        self.out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, memo: dict | None = None
                ) -> torch.Tensor:
        """``memo`` (see :class:`Conditioning`) keeps this layer's keys and values of ``context`` between
        calls without gradients (6-9% of a guided text model's sampling time when recomputed every step)."""
        q = rearrange(self.q(self.norm(x)), "b (h d) t -> b h t d", h=self.heads)
        use_memo = memo is not None and not torch.is_grad_enabled()
        kv = memo.get(self) if use_memo else None
        if kv is None:
            kv = self.kv(context)
            if use_memo:
                memo[self] = kv
        k, v = rearrange(kv, "b n (two h d) -> two b h n d", two=2, h=self.heads)
        h = attention(q, k, v, mask[:, None, None, :])
        return x + self.out(rearrange(h, "b h t d -> b (h d) t"))


class Level(nn.Module):
    """The residual blocks (and optional self- and cross-attention) of one U-Net level on one side."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, attention: bool, emb_dim: int,
                 heads: int, context_dim: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(in_channels if i == 0 else out_channels, out_channels, emb_dim) for i in range(blocks)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(out_channels, heads) if attention else nn.Identity() for _ in range(blocks)
        )
        cross = attention and context_dim > 0
        self.cross_attentions = nn.ModuleList(
            CrossAttention(out_channels, context_dim, heads) if cross else None for _ in range(blocks)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, memo: dict | None = None) -> torch.Tensor:
        for block, attention, cross in zip(self.blocks, self.attentions, self.cross_attentions, strict=True):
            x = attention(block(x, emb))
            if cross is not None:
                x = cross(x, context, mask, memo)
        return x


class UNet1d(nn.Module):
    """Noise-conditional 1D U-Net.

    Input and output are batch × ``in_channels`` × frames; any number of frames works (the input is
    padded to a multiple of the product of ``factors`` and the output cropped back). ``t`` holds one
    noise time in [0, 1] per item; ``cond`` is an optional conditioning vector (batch × ``cond_dim``)
    or a :class:`Conditioning` (vector plus, with ``context_dim``, a cross-attention context).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (128, 192, 256),
        factors: Sequence[int] = (1, 2, 2),
        blocks: Sequence[int] = (2, 2, 2),
        attentions: Sequence[bool] = (False, False, True),
        attention_heads: int = 4,
        emb_dim: int = 256,
        cond_dim: int = 0,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        lengths = {len(channels), len(factors), len(blocks), len(attentions)}
        if len(lengths) != 1:
            raise ValueError(
                "UNet1d channels, factors, blocks and attentions must be lists of one length (one entry "
                f"per level), got {list(channels)}, {list(factors)}, {list(blocks)}, {list(attentions)}"
            )
        if any(f < 1 for f in factors) or any(b < 1 for b in blocks) or any(c < 1 for c in channels):
            raise ValueError("UNet1d factors, blocks and channels must all be positive integers")
        self.in_channels = in_channels
        self.factors = list(factors)
        self.multiple = math.prod(self.factors)
        self.emb_dim = emb_dim
        self.cond_dim = cond_dim
        self.context_dim = context_dim

        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond_mlp = (
            nn.Sequential(nn.Linear(cond_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) if cond_dim else None
        )
        self.stem = nn.Conv1d(in_channels, channels[0], 3, padding=1)

        self.downsamples = nn.ModuleList()
        self.down_levels = nn.ModuleList()
        prev = channels[0]
        for ch, factor, n, attn in zip(channels, factors, blocks, attentions, strict=True):
            self.downsamples.append(
                nn.Conv1d(prev, prev, 2 * factor + 1, stride=factor, padding=factor) if factor > 1 else nn.Identity()
            )
            self.down_levels.append(Level(prev, ch, n, attn, emb_dim, attention_heads, context_dim))
            prev = ch

        self.mid = Level(prev, prev, 2, True, emb_dim, attention_heads, context_dim)

        self.up_levels = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for i in reversed(range(len(channels))):
            out_ch = channels[i - 1] if i > 0 else channels[0]
            self.up_levels.append(Level(prev + channels[i], out_ch, blocks[i], attentions[i], emb_dim,
                                        attention_heads, context_dim))
            self.upsamples.append(
                nn.Sequential(nn.Upsample(scale_factor=factors[i], mode="nearest"),
                              nn.Conv1d(out_ch, out_ch, 3, padding=1))
                if factors[i] > 1 else nn.Identity()
            )
            prev = out_ch

        self.head = nn.Sequential(_group_norm(prev), nn.SiLU(), nn.Conv1d(prev, in_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The per-item embedding (batch × emb_dim) of noise time and condition."""
        emb = self.time_mlp(sinusoidal_embedding(t, self.emb_dim))
        if self.cond_mlp is not None:
            if cond is None:
                raise ValueError("this U-Net was built with cond_dim > 0 and needs a conditioning vector")
            emb = emb + self.cond_mlp(cond)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | Conditioning | None = None
                ) -> torch.Tensor:
        frames = x.shape[-1]
        pad = (-frames) % self.multiple
        if pad:
            x = F.pad(x, (0, pad))
        context = mask = memo = None
        if isinstance(cond, Conditioning):
            cond, context, mask, memo = cond.vector, cond.context, cond.context_mask, cond.memo
        if self.context_dim and context is None:
            raise ValueError("this U-Net was built with context_dim > 0 and needs a cross-attention context")
        emb = self.embed(t, cond)

        h = self.stem(x)
        skips = []
        for downsample, level in zip(self.downsamples, self.down_levels, strict=True):
            h = level(downsample(h), emb, context, mask, memo)
            skips.append(h)
        h = self.mid(h, emb, context, mask, memo)
        for level, upsample in zip(self.up_levels, self.upsamples, strict=True):
            h = upsample(level(torch.cat([h, skips.pop()], dim=1), emb, context, mask, memo))
        return self.head(h)[..., :frames]
