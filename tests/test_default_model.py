"""The model shipped in the package (audiodiff/pretrained/default): it loads with no argument and
with the network off, renders what the README shows, and follows what it is asked for."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiodiff.evaluation import FEATURE_NAMES, acoustic_features
from audiodiff.pipeline import AudioDiffusion


@pytest.fixture(scope="module")
def default_model():
    return AudioDiffusion.from_pretrained(device="cpu")


def spectral_centroid(samples: np.ndarray, rate: int) -> float:
    """Hz, over the clip's sounding frames (the feature check's own centroid)."""
    return float(2 ** acoustic_features(samples.mean(0), rate)[FEATURE_NAMES.index("log2_centroid_hz")])


def test_the_readme_line_works_offline_in_a_fresh_process(tmp_path):
    line = ("from audiodiff import AudioDiffusion; "
            "AudioDiffusion.from_pretrained().generate(prompt='coin pickup', seed=0).save('coin.wav')")
    subprocess.run([sys.executable, "-c", line], cwd=tmp_path, check=True, timeout=300,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-cache")})
    audio, rate = sf.read(tmp_path / "coin.wav")
    assert rate == 22050 and len(audio) == 2 * rate  # the model's default length, 2 s
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05


def test_the_default_model_follows_labels_and_prompts(default_model):
    assert {"coin", "kick", "cymbal", "laser", "mallets"} <= set(default_model.labels)
    assert default_model.supports_text
    low = default_model.generate(label="kick", seconds=1.0, seed=0, num=3)
    high = default_model.generate(label="cymbal", seconds=1.0, seed=0, num=3)
    prompted_low = default_model.generate(prompt="a deep kick drum", seconds=1.0, seed=0, num=3)
    prompted_high = default_model.generate(prompt="a crashing cymbal", seconds=1.0, seed=0, num=3)
    rate = default_model.sample_rate
    for lows, highs in ((low, high), (prompted_low, prompted_high)):
        kick = [spectral_centroid(a.samples, rate) for a in lows]
        cymbal = [spectral_centroid(a.samples, rate) for a in highs]
        # One clip of three may start with a click; the middle one says where the sound sits.
        assert np.median(kick) < 1000 and np.median(cymbal) > 3000, (kick, cymbal)


def test_the_default_model_renders_the_asked_length(default_model):
    for seconds in (0.5, 4.0):
        clip = default_model.generate(prompt="cheerful rising marimba jingle, fast", seconds=seconds, seed=1)
        assert clip.samples.shape[-1] == int(round(seconds * default_model.sample_rate))
