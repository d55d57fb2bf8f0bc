import math

import pytest
import torch

from audiodiff.diffusion import SAMPLERS, Denoiser, DiffusionObjective, SeededNoise, get_sampler, make_sigmas
from audiodiff.diffusion.schedules import alpha_sigma, sigma_to_t, t_to_sigma

MU, STD = 0.5, 0.3  # the data: every element drawn from N(MU, STD²)


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact E[x0 | x0 + sigma·noise = x] for Gaussian data."""
    return MU + (x - MU) * STD**2 / (STD**2 + sigma**2)


class OracleNet(torch.nn.Module):
    """Outputs what a perfectly trained network of the given prediction type would (VP input)."""

    def __init__(self, prediction: str) -> None:
        super().__init__()
        self.prediction = prediction

    def forward(self, x_t, t, cond=None):
        alpha, sigma = (s[:, None, None] for s in alpha_sigma(t))
        x0 = gaussian_denoiser(x_t / alpha, sigma / alpha)
        eps = (x_t - alpha * x0) / sigma
        return {"x0": x0, "epsilon": eps, "v": alpha * eps - sigma * x0}[self.prediction]


class ZeroNet(torch.nn.Module):
    def forward(self, x_t, t, cond=None):
        return torch.zeros_like(x_t)


def test_schedule_conversions_are_inverse():
    t = torch.linspace(0.01, 0.99, 9, dtype=torch.float64)
    assert torch.allclose(sigma_to_t(t_to_sigma(t)), t)
    alpha, sigma = alpha_sigma(t)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(t))
    for name in ("cosine", "karras", "exponential"):
        sigmas = make_sigmas(name, 10)
        assert len(sigmas) == 11 and sigmas[-1] == 0 and (sigmas[:-1].diff() < 0).all()
    with pytest.raises(ValueError, match="valid: cosine, karras, exponential"):
        make_sigmas("linear", 10)


@pytest.mark.parametrize("prediction", ["v", "epsilon", "x0"])
def test_loss_at_the_ends_of_the_schedule(prediction):
    objective = DiffusionObjective(prediction)
    x0 = torch.full((64, 2, 32), 3.0)
    noise = torch.randn_like(x0)
    near_zero, near_one = torch.full((64,), 1e-4), torch.full((64,), 1 - 1e-4)
    expected = {  # the targets a zero output is compared with: v → noise at t≈0 and → -x0 at t≈1
        "v": (noise.pow(2).mean(), torch.tensor(9.0)),
        "epsilon": (noise.pow(2).mean(), noise.pow(2).mean()),
        "x0": (torch.tensor(9.0), torch.tensor(9.0)),
    }[prediction]
    for t, want in zip((near_zero, near_one), expected, strict=True):
        got = objective.loss(ZeroNet(), x0, t=t, noise=noise)
        assert abs(got.item() - want.item()) < 1e-2 * max(1.0, want.item())


@pytest.mark.parametrize("prediction", ["v", "epsilon", "x0"])
def test_denoiser_wrapper_converts_every_parameterisation(prediction):
    denoiser = Denoiser(OracleNet(prediction), DiffusionObjective(prediction))
    x0 = MU + STD * torch.randn(256, 1, 8)
    for sigma in (0.05, 2.0, 40.0):
        x = x0 + sigma * torch.randn_like(x0)
        expected = gaussian_denoiser(x, torch.tensor(sigma))
        assert torch.allclose(denoiser(x, torch.tensor(sigma)), expected, atol=1e-3 * max(1.0, sigma))


# Tolerances for Gaussian data N(0.5, 0.3²): the mean within 0.02 and the standard deviation within
# 10% at 50 steps for every sampler (the stochastic ones fall about 9% short at 50 steps on this data).
SCHEDULE_FOR = {"ddpm": "cosine", "ddim": "cosine", "euler": "karras", "euler_ancestral": "cosine",
                "heun": "cosine", "dpmpp_2m": "exponential", "dpmpp_2m_sde": "karras"}


def _sample(name, steps, schedule, count=4096):
    torch.manual_seed(0)
    sigmas = make_sigmas(schedule, steps)
    x = torch.randn(count, 1, 8) * sigmas[0]
    return get_sampler(name)(gaussian_denoiser, x, sigmas, noise=SeededNoise(range(count)), disable=True)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_reproduces_the_data_distribution_at_50_steps(name):
    out = _sample(name, 50, SCHEDULE_FOR[name])
    assert abs(out.mean().item() - MU) < 0.02, out.mean()
    assert abs(out.std().item() / STD - 1) < 0.10, out.std()


def test_second_order_samplers_need_fewer_steps_than_ddim():
    # Measured: DPM-Solver++(2M) at 10 steps (exponential spacing) is 4% off in standard deviation,
    # Heun at 15 steps (cosine spacing) 3%; DDIM at 15 steps is 15% off and needs about 100 steps
    # to come within 5%.
    def std_error(name, steps, schedule):
        return abs(_sample(name, steps, schedule).std().item() / STD - 1)

    assert std_error("dpmpp_2m", 10, "exponential") < 0.05
    assert std_error("heun", 15, "cosine") < 0.05
    assert std_error("ddim", 15, "cosine") > 0.10
    assert std_error("ddim", 100, "cosine") < 0.05


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_each_item_depends_only_on_its_own_seed(name):
    sigmas = make_sigmas("karras", 12)
    x = SeededNoise([1, 2, 3])(torch.empty(3, 1, 16)) * sigmas[0]
    sampler = get_sampler(name)
    batch = sampler(gaussian_denoiser, x, sigmas, noise=SeededNoise([1, 2, 3]), disable=True)
    again = sampler(gaussian_denoiser, x.clone(), sigmas, noise=SeededNoise([1, 2, 3]), disable=True)
    alone = sampler(gaussian_denoiser, x[1:2].clone(), sigmas, noise=SeededNoise([2]), disable=True)
    assert torch.equal(batch, again)
    assert torch.allclose(batch[1:2], alone, atol=1e-6)
    assert not torch.allclose(batch[0], batch[1])


def test_guidance_one_is_the_conditional_model():
    objective = DiffusionObjective("v")
    net = lambda x, t, c: x * c[:, :1, None] + t[:, None, None]  # noqa: E731
    cond, uncond = torch.full((2, 4), 2.0), torch.zeros(2, 4)
    x, sigma = torch.randn(2, 3, 5), torch.tensor(1.5)
    plain = Denoiser(net, objective, cond)(x, sigma)
    assert torch.equal(Denoiser(net, objective, cond, uncond, guidance=1.0)(x, sigma), plain)
    guided = Denoiser(net, objective, cond, uncond, guidance=3.0)(x, sigma)
    uncond_out = Denoiser(net, objective, uncond)(x, sigma)
    assert torch.allclose(guided, uncond_out + 3.0 * (plain - uncond_out), atol=1e-5)


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m, dpmpp_2m_sde"):
        get_sampler("plms")
    assert math.isclose(float(make_sigmas("karras", 5, rho=7.0)[0]), 80.0, rel_tol=1e-5)
