"""Diffusion: noise schedules, the training objective, the denoiser wrapper and the samplers."""

from audiodiff.diffusion.denoiser import Denoiser
from audiodiff.diffusion.noise import SeededNoise
from audiodiff.diffusion.objective import DiffusionObjective
from audiodiff.diffusion.samplers import SAMPLERS, get_sampler
from audiodiff.diffusion.schedules import SCHEDULES, make_sigmas

__all__ = ["SAMPLERS", "SCHEDULES", "Denoiser", "DiffusionObjective", "SeededNoise", "get_sampler", "make_sigmas"]
