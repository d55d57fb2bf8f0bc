"""The model shipped in the package (audiodiff/pretrained/default): it loads with no argument and
with the network off, renders what the README shows, and follows what it is asked for."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiodiff.evaluation import FEATURE_NAMES, acoustic_features
from audiodiff.pipeline import AudioDiffusion, SamplerSettings

from .conftest import chance_bar

pytestmark = pytest.mark.slow  # trains models or runs the commands


@pytest.fixture(scope="module")
def default_model():
    return AudioDiffusion.from_pretrained(device="cpu")


def test_the_readme_line_works_offline_in_a_fresh_process(tmp_path):
    line = ("from audiodiff import AudioDiffusion; "
            "AudioDiffusion.from_pretrained().generate(prompt='coin pickup', seed=0).save('coin.wav')")
    subprocess.run([sys.executable, "-c", line], cwd=tmp_path, check=True, timeout=300,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-cache")})
    audio, rate = sf.read(tmp_path / "coin.wav")
    assert rate == 22050 and len(audio) == 2 * rate  # the model's default length, 2 s
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05


# What each label is asked for by name and by a prompt. The features that tell these sounds apart:
# brightness, noisiness, length, how it decays and how much of it lies under 250 Hz (the feature
# check's pitch-track features are left out: on these recordings they vary more within a label than
# between labels).
PROMPTS = {"coin": "a coin pickup sound", "kick": "a deep kick drum", "cymbal": "a crashing cymbal",
           "explosion": "a big explosion", "laser": "a laser blast", "mallets": "a marimba jingle"}
FEATURES = ["log2_centroid_hz", "flatness", "active_seconds", "decay_db", "low_band_share"]
REFERENCE, TESTED = 4, 6  # clips per label: to learn what it sounds like, and to classify (by label, by prompt)
# The README's faster setting, DPM++ 2M in 8 steps with the model's guidance (16 network calls a clip
# against the default's 40; the same evaluation figures): the test renders 96 clips.
SAMPLER = {"name": "dpmpp_2m", "steps": 8}


def test_the_default_model_follows_labels_and_prompts_well_above_chance(default_model):
    """Six labels, each rendered from REFERENCE seeds (by label) to learn where it sits in feature
    space, then from TESTED other seeds by label and TESTED by a prompt; each tested clip is assigned
    to the nearest label centroid (features scaled by their spread within a label). Each set of 36
    must have at least chance_bar(36, 6) hits: 16, where a model deaf to labels (or to prompts)
    passes with probability under 1e-4 (chance: 6)."""
    assert {"coin", "kick", "cymbal", "laser", "mallets", "explosion"} <= set(default_model.labels)
    assert default_model.supports_text
    names = list(PROMPTS)
    rate = default_model.sample_rate
    columns = [FEATURE_NAMES.index(f) for f in FEATURES]
    reference = [n for n in names for _ in range(REFERENCE)]
    tested = [n for n in names for _ in range(TESTED)]
    # One batch, a seed of its own for every clip.
    labels = reference + tested + [None] * len(tested)
    prompts = [None] * (len(reference) + len(tested)) + [PROMPTS[n] for n in tested]
    clips = default_model.generate_batch(labels, list(range(1000, 1000 + len(labels))), 1.0,
                                     SamplerSettings.choose(default_model.default_sampler, **SAMPLER),
                                     progress=False, prompts=prompts)
    feats = np.stack([acoustic_features(c.samples.mean(0), rate)[columns] for c in clips])
    ref = feats[: len(reference)].reshape(len(names), REFERENCE, -1)
    spread = (ref - ref.mean(axis=1, keepdims=True)).reshape(-1, len(columns)).std(axis=0) + 1e-3
    centroids = ref.mean(axis=1) / spread

    def hits(block: np.ndarray) -> np.ndarray:
        nearest = (((block / spread)[:, None, :] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
        return np.array([names[i] for i in nearest]) == np.array(tested)

    by_label = hits(feats[len(reference): len(reference) + len(tested)])
    by_prompt = hits(feats[len(reference) + len(tested):])
    bar = chance_bar(len(tested), len(names))
    report = {n: (int(by_label[i * TESTED:(i + 1) * TESTED].sum()), int(by_prompt[i * TESTED:(i + 1) * TESTED].sum()))
              for i, n in enumerate(names)}
    print(f"default model: {by_label.sum()}/{len(tested)} by label, {by_prompt.sum()}/{len(tested)} by prompt "
          f"(bar {bar}, chance {len(tested) / len(names):g}); per label (by label, by prompt): {report}")
    assert by_label.sum() >= bar and by_prompt.sum() >= bar, report


def test_the_default_model_renders_the_asked_length(default_model):
    for seconds in (0.5, 4.0):
        clip = default_model.generate(prompt="cheerful rising marimba jingle, fast", seconds=seconds, seed=1)
        assert clip.samples.shape[-1] == int(round(seconds * default_model.sample_rate))
