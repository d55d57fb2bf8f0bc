"""Samplers: pure functions of a denoiser that know nothing about audio.

Every sampler has the signature ``sample_NAME(denoiser, x, sigmas, *, noise=None, callback=None,
disable=None, **options)``:

- ``denoiser(x, sigma)`` returns the estimate of the clean signal for ``x = x0 + sigma · noise``;
  conditioning and guidance live inside it (see :class:`audiodiff.diffusion.denoiser.Denoiser`);
- ``x`` is the starting noise already scaled by ``sigmas[0]``;
- ``sigmas`` is the decreasing sequence of noise levels, ending in 0;
- ``noise(like)`` draws fresh standard normal noise for stochastic samplers (seeded per item by the
  caller), defaulting to ``torch.randn_like``;
- ``callback(info)`` is called after each step with ``i``, ``x``, ``sigma`` and ``denoised``;
- ``disable`` turns the progress bar off (None: on only when writing to a terminal).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import trange

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[torch.Tensor], torch.Tensor]


def _steps(sigmas: torch.Tensor, disable: bool | None, name: str):
    return trange(len(sigmas) - 1, disable=disable, desc=name, unit="step", leave=False)


def _ancestral_split(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a step to ``sigma_next`` into a deterministic part down to ``sigma_down`` and fresh noise
    of scale ``sigma_up``; eta = 1 gives the DDPM posterior's variance, eta = 0 a deterministic step."""
    if eta == 0 or sigma_next == 0:
        return sigma_next, sigma_next.new_zeros(())
    sigma_up = (eta * sigma_next * (1 - sigma_next**2 / sigma**2).clamp(min=0).sqrt()).clamp(max=sigma_next)
    return (sigma_next**2 - sigma_up**2).sqrt(), sigma_up


@torch.no_grad()
def _sample_ancestral(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn | None,
                      callback: Callable | None, disable: bool | None, eta: float, name: str) -> torch.Tensor:
    noise = noise or torch.randn_like
    for i in _steps(sigmas, disable, name):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        sigma_down, sigma_up = _ancestral_split(sigma, sigma_next, eta)
        x = denoised + (x - denoised) * (sigma_down / sigma)
        if sigma_up > 0:
            x = x + noise(x) * sigma_up
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


def sample_ddim(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, noise: NoiseFn | None = None,
                callback: Callable | None = None, disable: bool | None = None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al., 2021): eta = 0 is the deterministic probability-flow step; eta in (0, 1]
    re-injects noise, eta = 1 matching DDPM's posterior variance."""
    return _sample_ancestral(denoiser, x, sigmas, noise, callback, disable, eta, "ddim")


def sample_euler_ancestral(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *,
                           noise: NoiseFn | None = None, callback: Callable | None = None,
                           disable: bool | None = None, eta: float = 1.0) -> torch.Tensor:
    """Euler step down to ``sigma_down``, then fresh noise back up to the next level. In the
    variance-exploding form this is the same step as DDIM with the same eta; only the default
    (eta = 1, fully stochastic) differs."""
    return _sample_ancestral(denoiser, x, sigmas, noise, callback, disable, eta, "euler_ancestral")


@torch.no_grad()
def sample_ddpm(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, noise: NoiseFn | None = None,
                callback: Callable | None = None, disable: bool | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al., 2020): each step draws from the Gaussian posterior
    q(x_next | x, x0 = denoised), whose mean is ``x0 + (s'/s)² (x − x0)`` and whose variance is
    ``s'² (1 − s'²/s²)``."""
    noise = noise or torch.randn_like
    for i in _steps(sigmas, disable, "ddpm"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        ratio = (sigma_next / sigma) ** 2
        x = denoised + ratio * (x - denoised)
        if sigma_next > 0:
            x = x + noise(x) * sigma_next * (1 - ratio).sqrt()
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


def _derivative(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE."""
    return (x - denoised) / sigma


@torch.no_grad()
def sample_euler(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, noise: NoiseFn | None = None,
                 callback: Callable | None = None, disable: bool | None = None, churn: float = 0.0) -> torch.Tensor:
    """Euler steps of the probability-flow ODE; ``churn`` > 0 first raises the noise level of each
    step by up to that factor with fresh noise (EDM's stochastic churn, Karras et al. 2022, Alg. 2)."""
    noise = noise or torch.randn_like
    steps = len(sigmas) - 1
    for i in _steps(sigmas, disable, "euler"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = min(churn / steps, 2**0.5 - 1) if churn > 0 else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            x = x + noise(x) * (sigma_hat**2 - sigma**2).sqrt()
        denoised = denoiser(x, sigma_hat)
        x = x + _derivative(x, denoised, sigma_hat) * (sigma_next - sigma_hat)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


@torch.no_grad()
def sample_heun(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, noise: NoiseFn | None = None,
                callback: Callable | None = None, disable: bool | None = None) -> torch.Tensor:
    """Heun's second-order method (EDM, Karras et al. 2022, Alg. 1): an Euler step corrected by the
    slope at its end; the last step to sigma = 0 is plain Euler. Two denoiser calls per step."""
    for i in _steps(sigmas, disable, "heun"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        d = _derivative(x, denoised, sigma)
        x_euler = x + d * (sigma_next - sigma)
        if sigma_next == 0:
            x = x_euler
        else:
            d_next = _derivative(x_euler, denoiser(x_euler, sigma_next), sigma_next)
            x = x + (d + d_next) / 2 * (sigma_next - sigma)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *, noise: NoiseFn | None = None,
                    callback: Callable | None = None, disable: bool | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al., 2022): exact integration of the linear part in
    lambda = -log sigma, with the denoised estimate extrapolated from the last two steps."""
    previous = None
    for i in _steps(sigmas, disable, "dpmpp_2m"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma / sigma_next)
            estimate = denoised
            if previous is not None:
                r = previous[1] / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous[0]
            x = (sigma_next / sigma) * x - torch.expm1(-h) * estimate
            previous = (denoised, h)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser: Denoise, x: torch.Tensor, sigmas: torch.Tensor, *,
                        noise: NoiseFn | None = None, callback: Callable | None = None,
                        disable: bool | None = None, eta: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (Lu et al., 2022): the second-order multistep solver of the reverse SDE
    (midpoint form); ``eta`` scales the injected noise (0 reduces it to an ODE solver)."""
    noise = noise or torch.randn_like
    previous = None
    for i in _steps(sigmas, disable, "dpmpp_2m_sde"):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma / sigma_next)
            eta_h = eta * h
            x = (sigma_next / sigma) * torch.exp(-eta_h) * x - torch.expm1(-h - eta_h) * denoised
            if previous is not None:
                r = previous[1] / h
                x = x - 0.5 * torch.expm1(-h - eta_h) * (denoised - previous[0]) / r
            if eta > 0:
                x = x + noise(x) * sigma_next * (-torch.expm1(-2 * eta_h)).sqrt()
            previous = (denoised, h)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function registered under ``name``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
