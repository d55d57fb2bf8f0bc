"""A text- and duration-conditioned model trained through the console script, as a user runs it:
its clips follow prompts worded differently from every training caption, and it renders clips of
0.5, 1 and 2 s whose sound ends inside them."""

import numpy as np
import pytest
import soundfile as sf

from audiodiff import AudioDiffusion
from audiodiff.conditioning import EmptyPromptError, PromptTruncatedWarning, UnsupportedConditionError
from audiodiff.data.synthetic import HELD_OUT_PROMPTS
from audiodiff.evaluation import prompt_accuracy, render_prompts, sounding_end
from audiodiff.model import AudioDiffusionModel
from audiodiff.pipeline import SamplerSettings
from audiodiff.provenance import read_provenance

from .conftest import cli, run_cli, train_quickstart

pytestmark = pytest.mark.slow  # trains models or runs the commands

# Measured: after 800 steps of quickstart_text (under 2 minutes on 2 CPU cores) held-out phrasings
# are followed 0.6 of the time (8 classes, chance 0.125); the full experiment (3500 steps)
# reaches the figure in the README.
TEXT_STEPS, TEXT_BAR = 800, 0.40
SEEDS_PER_PROMPT = 3


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    return train_quickstart("quickstart_text", TEXT_STEPS, tmp_path_factory.mktemp("quickstart_text"))


@pytest.fixture(scope="module")
def text_model(text_run):
    return AudioDiffusionModel.load(text_run / "model")


def test_text_model_follows_held_out_phrasings(text_model, class_check):
    accuracy, per_class = prompt_accuracy(text_model, class_check, HELD_OUT_PROMPTS, SEEDS_PER_PROMPT,
                                          SamplerSettings())
    print(f"held-out phrasing accuracy {accuracy:.3f}: {per_class}")
    assert accuracy >= TEXT_BAR


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.0])
def test_one_text_model_renders_each_asked_length(text_model, seconds):
    prompts = [phrasings[0] for phrasings in HELD_OUT_PROMPTS.values()]
    waves = render_prompts(text_model, prompts, list(range(len(prompts))), seconds, SamplerSettings())
    assert waves.shape == (len(prompts), 1, round(seconds * text_model.sample_rate))
    assert np.isfinite(waves).all()
    ends = np.array([sounding_end(w, text_model.sample_rate) for w in waves])
    print(f"{seconds} s: sound ends at {np.round(ends, 2).tolist()}")
    # The last 10 ms frame is at least 40 dB below the peak. This 800-step model sometimes leaves one
    # clip's tail in that frame at 0.5 s; the full experiment ends all of them inside (README).
    assert (ends < seconds - 1e-6).sum() >= len(ends) - 1
    assert ends.max() > 0.05


def test_python_api_generates_from_prompts_with_a_negative_prompt(text_run, tmp_path):
    pipe = AudioDiffusion.from_pretrained(text_run / "model")
    clip = pipe.generate(prompt="a low thud", seconds=0.5, seed=3, guidance=2.0, negative_prompt="a hiss")
    assert clip.samples.shape == (1, 8000) and clip.metadata["negative_prompt"] == "a hiss"
    path = clip.save(tmp_path / "thud.wav")
    assert read_provenance(path)["prompt"] == "a low thud"
    with pytest.raises(UnsupportedConditionError, match="text only"):
        pipe.generate(label="kick")
    with pytest.raises(EmptyPromptError):
        pipe.generate(prompt="  ")
    with pytest.raises(ValueError, match="outside the lengths"):
        pipe.generate(prompt="a low thud", seconds=4.0)
    with pytest.warns(PromptTruncatedWarning):
        pipe.generate(prompt="a low thud " * 40, steps=2)


def test_render_cli_renders_prompt_rows_and_refuses_label_rows(text_run, tmp_path):
    rows = tmp_path / "prompts.csv"
    rows.write_text("prompt,label,seconds,name\na siren climbing higher,,2.0,siren\nan 808 boom,,0.5,boom\n"
                    ",kick,1.0,kick\n")
    result = run_cli([cli("audiodiff-render"), f"checkpoint={text_run / 'model'}", f"prompts={rows}",
                      f"out_dir={tmp_path / 'out'}", "sampler.guidance=2"], tmp_path, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "row 3" in result.stderr and "text only" in result.stderr
    written = {p.name: sf.info(p).frames for p in (tmp_path / "out").glob("*.wav")}
    assert written == {"siren.wav": 32000, "boom.wav": 8000}
