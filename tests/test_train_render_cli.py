"""End to end through the console scripts, as a user runs them: training learns the labels,
rendering writes valid WAVs and a manifest, and a SIGKILLed training run resumes."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.data import CLASSES
from audiodiff.pipeline import AudioDiffusion, SamplerSettings

from .conftest import MEL_BAR, chance_bar, cli, label_accuracy, run_cli, train_quickstart

pytestmark = pytest.mark.slow  # trains models or runs the commands

# The waveform model's learning bar (the mel model's is in conftest.py). After 550 steps it is far
# from the mel model (0.309 over 256 clips, 2026-12-04: kick and noise_burst nearly always right,
# snare 0.41, the tonal classes mostly heard as noise), so its bar is one that a label-blind model
# clears with probability under 1e-4: chance_bar(256, 8) = 54 hits (0.211; chance 0.125). 64 clips
# would need 20 hits (0.31), at the model's own level; 256 clips put it 25 hits (3.4 binomial
# standard deviations) over the bar. Training took 780 s of CPU on one thread of a busy machine, the
# 256 renders 235 s.
WAVE_STEPS, WAVE_CLIPS_PER_CLASS = 550, 32


def test_quickstart_mel_model_follows_its_labels(quickstart_run):
    assert label_accuracy(quickstart_run) >= MEL_BAR


def test_quickstart_wave_model_follows_its_labels(tmp_path):
    clips = WAVE_CLIPS_PER_CLASS * len(CLASSES)
    accuracy = label_accuracy(train_quickstart("quickstart_wave", WAVE_STEPS, tmp_path),
                              clips_per_class=WAVE_CLIPS_PER_CLASS)
    assert round(accuracy * clips) >= chance_bar(clips, len(CLASSES)), accuracy


def test_render_cli_writes_wavs_and_manifest(quickstart_run, tmp_path):
    prompts = tmp_path / "sounds.csv"
    with prompts.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "seconds", "seed", "name"])
        for i, label in enumerate(CLASSES):
            writer.writerow([label, 0.8 if i % 2 else "", i, ""])
        writer.writerow(["trumpet", "", "", "unknown_label"])
    out = tmp_path / "out"
    ckpt = quickstart_run / "checkpoints" / "last.ckpt"
    args = [cli("audiodiff-render"), f"checkpoint={ckpt}", f"prompts={prompts}", f"out_dir={out}",
            "sampler.steps=20", "progress=false"]
    proc = run_cli(args, tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr  # one bad row
    assert "row 9" in proc.stderr and "unknown label 'trumpet'" in proc.stderr

    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == len(CLASSES)
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(m["file"] for m in manifest)
    for entry in manifest:
        for key in ("file", "label", "prompt", "seed", "seconds", "sample_rate", "sampler", "steps", "checkpoint"):
            assert key in entry
        audio, rate = sf.read(out / entry["file"], dtype="float32")
        assert rate == entry["sample_rate"] == 16000
        assert np.isfinite(audio).all() and 0.01 < np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-3  # ceiling -1 dBFS
        asked = entry["seconds"]
        assert asked == (0.8 if CLASSES.index(entry["label"]) % 2 else 1.0)
        assert abs(len(audio) / rate - asked) <= 0.1 * asked
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files

    again = run_cli(args, tmp_path, check=False)
    assert "0 written, 8 already done, 1 failed" in again.stderr
    assert len((out / "manifest.jsonl").read_text().splitlines()) == len(CLASSES)


def test_render_works_with_every_sampler_and_records_it(quickstart_run, tmp_path):
    from audiodiff.diffusion import SAMPLERS

    prompts = tmp_path / "one.jsonl"
    prompts.write_text('{"label": "coin", "seed": 4, "seconds": 0.5}\n')
    for name in SAMPLERS:
        out = tmp_path / name
        run_cli([cli("audiodiff-render"), f"checkpoint={quickstart_run / 'model'}", f"prompts={prompts}",
                 f"out_dir={out}", f"sampler={name}", "sampler.steps=4", "sampler.guidance=2", "progress=false"],
                tmp_path)
        (entry,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert (entry["sampler"], entry["steps"], entry["guidance"]) == (name, 4, 2.0)
        assert entry["schedule"] in ("cosine", "karras", "exponential")
        audio, rate = sf.read(out / entry["file"])
        assert len(audio) == rate // 2 and np.isfinite(audio).all()


def test_a_picked_sampler_keeps_the_models_guidance_unless_guidance_is_given():
    model = SamplerSettings("dpmpp_2m_sde", 20, "karras", guidance=2.0, guidance_rescale=0.3)
    assert SamplerSettings.choose(model) == model
    assert SamplerSettings.choose(model, steps=8, guidance=None) == SamplerSettings(
        "dpmpp_2m_sde", 8, "karras", guidance=2.0, guidance_rescale=0.3)
    picked = SamplerSettings.choose(model, "dpmpp_2m", steps=8)
    assert (picked.name, picked.steps, picked.guidance, picked.guidance_rescale) == ("dpmpp_2m", 8, 2.0, 0.3)
    assert picked.schedule == SamplerSettings.preset("dpmpp_2m").schedule
    assert SamplerSettings.choose(model, "ddim", guidance=1.0).guidance == 1.0
    assert SamplerSettings.choose(None, "ddim") == SamplerSettings.preset("ddim")


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m_sde"])
def test_same_seed_same_bytes_and_batch_equals_single(quickstart_run, tmp_path, sampler):
    pipe = AudioDiffusion.from_pretrained(quickstart_run / "model")
    settings = SamplerSettings.preset(sampler, steps=8)
    first = pipe.generate_batch(["kick"], [5], sampler=settings, progress=False)[0].save(tmp_path / "a.wav")
    second = pipe.generate_batch(["kick"], [5], sampler=settings, progress=False)[0].save(tmp_path / "b.wav")
    assert first.read_bytes() == second.read_bytes()
    # What the model generates is the same per item in a batch and alone, to float rounding. Griffin-Lim
    # may settle on another phase for a 1e-6 change of its input, so the waveforms are compared by
    # their spectrograms.
    options = dict(sampler=sampler, steps=8, schedule=settings.schedule, sampler_options=settings.options)
    batch = pipe.model.sample([7, 5, 0], [1, 2, 3], decode=False, **options)
    alone = pipe.model.sample([5], [2], decode=False, **options)
    assert torch.allclose(batch[1:2], alone, atol=1e-4)
    assert not torch.allclose(batch[0:1], alone, atol=1e-1)
    clips = pipe.generate_batch(["coin", "snare", "beep"], [1, 2, 3], sampler=settings, progress=False)
    single = pipe.generate_batch(["snare"], [2], sampler=settings, progress=False)[0]
    log_mel = pipe.model.representation.log_mel
    in_batch, by_itself = (log_mel(torch.from_numpy(c.samples)[None]) for c in (clips[1], single))
    loud = by_itself > by_itself.max() - 40
    assert (in_batch - by_itself).abs()[loud].mean() < 1.0  # dB


def test_render_refuses_bad_settings_before_loading(tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("label\nkick\n")
    for override, message in (("sampler.name=plms", "valid: ddpm, ddim, euler"), ("sampler.steps=0", "steps must be"),
                              ("sampler.guidance=nan", "guidance must be")):
        proc = run_cli([cli("audiodiff-render"), "checkpoint=/nonexistent", f"prompts={prompts}",
                        f"out_dir={tmp_path / 'o'}", override], tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_train_reports_an_empty_data_folder_before_training(tmp_path):
    (tmp_path / "data").mkdir()
    proc = run_cli([cli("audiodiff-train"), "experiment=quickstart", "data=folder",
                    f"data.dataset.root={tmp_path / 'data'}"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "no audio files found" in proc.stderr
    assert not (tmp_path / "runs" / "quickstart" / "checkpoints").exists()


def test_a_new_run_can_start_from_a_trained_models_weights(quickstart_run):
    from audiodiff.model_files import read_model_files
    from audiodiff.training import DiffusionTask

    folder = quickstart_run / "model"
    config, weights = read_model_files(folder)
    task = DiffusionTask(model=config, init_from=str(folder))
    for name, tensor in task.ema.state_dict().items():
        assert torch.equal(tensor, weights[name].to(tensor.dtype)), name
    assert task.model.representation.statistics_fitted  # its normalisation comes along, not refitted
    config["net"]["channels"] = [c // 2 for c in config["net"]["channels"]]
    with pytest.raises(ValueError, match="task.init_from=.*do not fit the configured model"):
        DiffusionTask(model=config, init_from=str(folder))
