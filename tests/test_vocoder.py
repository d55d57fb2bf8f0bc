"""The neural vocoder: shapes, mel-settings checks, training, saving and use inside a diffusion model."""

import shutil
import subprocess

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.data import AudioMixture, SyntheticSounds
from audiodiff.data.datamodule import AudioDataModule
from audiodiff.model import AudioDiffusionModel
from audiodiff.model_files import VocoderLoadError, load_vocoder, save_vocoder
from audiodiff.pipeline import AudioDiffusion
from audiodiff.representations import MelSpectrogram
from audiodiff.vocoders import GriffinLim, MelSettings, MelSettingsMismatch, VocosVocoder
from audiodiff.vocoders.losses import LogMelDistance, MultiResolutionSTFTDistance
from audiodiff.vocoders.training import VocoderTask

from .conftest import cli

RATE = 8000
TINY = {"_target_": "audiodiff.vocoders.VocosVocoder", "sample_rate": RATE, "n_fft": 256, "hop_length": 64,
        "n_mels": 32, "f_min": 0.0, "f_max": None, "dim": 32, "hidden_dim": 64, "num_layers": 2,
        "phase_prior": True}


def tiny_vocoder(**overrides) -> VocosVocoder:
    torch.manual_seed(0)
    return VocosVocoder(**{k: v for k, v in {**TINY, **overrides}.items() if k != "_target_"})


def synthetic_waves(count: int, seed: int) -> torch.Tensor:
    data = SyntheticSounds(num_items=count, seconds=0.5, sample_rate=RATE, seed=seed)
    return torch.stack([data[i]["audio"] for i in range(count)])


def round_trip_distance(vocoder: torch.nn.Module, waves: torch.Tensor) -> float:
    settings = vocoder.settings
    with torch.no_grad():
        out = vocoder(settings.transform()(waves.squeeze(1)), waves.shape[-1])
        return float(LogMelDistance(settings)(out, waves))


def fit(task: VocoderTask, data: AudioDataModule, steps: int) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from a second thread on a busy machine
    try:
        trainer.fit(task, datamodule=data)
    finally:
        torch.set_num_threads(threads)
    return trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny vocoder trained for 150 steps on synthetic sounds, with its loss before and after."""
    torch.manual_seed(0)
    task = VocoderTask(vocoder=TINY, lr=3e-3, warmup_steps=10, gain_db=(0.0, 0.0))
    data = AudioDataModule(AudioMixture([SyntheticSounds(num_items=64, seconds=0.5, sample_rate=RATE, seed=0)]),
                           val_dataset=SyntheticSounds(num_items=8, seconds=0.5, sample_rate=RATE, seed=5),
                           batch_size=8)
    probe = synthetic_waves(8, seed=9)
    before = round_trip_distance(task.vocoder, probe)
    trainer = fit(task, data, 150)
    ckpt = tmp_path_factory.mktemp("vocoder") / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    return {"task": task, "before": before, "after": round_trip_distance(task.vocoder, probe), "ckpt": ckpt}


@pytest.mark.parametrize("frames", [2, 3, 17, 64])
def test_output_shapes_for_any_length(frames):
    vocoder = tiny_vocoder().eval()
    mel = torch.rand(3, TINY["n_mels"], frames)
    with torch.no_grad():
        assert vocoder(mel).shape == (3, 1, (frames - 1) * TINY["hop_length"])
        for num_samples in (1, frames * TINY["hop_length"] - 5, frames * TINY["hop_length"] + 100):
            assert vocoder(mel, num_samples).shape == (3, 1, num_samples)


def test_decodes_what_the_representation_encodes_at_any_length():
    rep = MelSpectrogram(sample_rate=RATE, n_fft=256, hop_length=64, n_mels=32, vocoder=tiny_vocoder())
    for n in (200, 1000, 4097):
        features = rep.encode(torch.randn(2, 1, n) * 0.1)
        assert rep.decode(features, n).shape == (2, 1, n)


def test_mismatched_mel_settings_are_refused_naming_both():
    vocoder = tiny_vocoder()
    with pytest.raises(MelSettingsMismatch) as err:
        MelSpectrogram(sample_rate=RATE, n_fft=256, hop_length=64, n_mels=40, vocoder=vocoder)
    assert "'n_mels': 32" in str(err.value) and "'n_mels': 40" in str(err.value)
    rep = MelSpectrogram(sample_rate=16000, n_fft=256, hop_length=64, n_mels=32)
    with pytest.raises(MelSettingsMismatch, match="sample_rate"):
        rep.set_vocoder(vocoder)
    assert isinstance(rep.vocoder, GriffinLim)


@pytest.mark.parametrize("phase_prior", [True, False])
def test_chunked_decoding_equals_decoding_in_one_go(phase_prior):
    vocoder = tiny_vocoder(phase_prior=phase_prior).eval()
    vocoder.precision = "fp32"  # bfloat16 rounds differently for other matrix shapes
    mel = torch.rand(1, TINY["n_mels"], 301) * 10
    with torch.no_grad():
        whole = vocoder(mel)
        vocoder.chunk_frames = 40
        chunked = vocoder(mel)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)


def test_bf16_backbone_decodes_close_to_float32_and_training_stays_float32():
    vocoder = load_vocoder("vocos-22k").eval()
    mel = vocoder.settings.transform()(torch.randn(1, 22050) * 0.1)
    with torch.no_grad():
        vocoder.precision = "bf16"
        half = vocoder(mel)
        vocoder.precision = "fp32"
        full = vocoder(mel)
    assert half.dtype == torch.float32
    assert 0 < (half - full).pow(2).mean().sqrt() < 0.01 * full.pow(2).mean().sqrt()
    vocoder.precision = "bf16"
    assert not vocoder.train()._bf16(mel.device)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        tiny_vocoder(precision="fp16")


@pytest.mark.slow
def test_short_training_lowers_the_loss(trained):
    assert trained["after"] < 0.7 * trained["before"]


@pytest.mark.slow
def test_trained_round_trip_beats_an_untrained_one(trained):
    held_out = synthetic_waves(8, seed=123)
    assert round_trip_distance(trained["task"].vocoder, held_out) < 0.7 * round_trip_distance(tiny_vocoder(), held_out)


def test_adversarial_training_joins_after_the_warm_up():
    torch.manual_seed(0)
    task = VocoderTask(vocoder=TINY, adversarial=True, adversarial_start=2)
    critic_before = [p.detach().clone() for p in task.period_discriminator.parameters()]
    data = AudioDataModule(AudioMixture([SyntheticSounds(num_items=16, seconds=0.5, sample_rate=RATE)]),
                           batch_size=4)
    trainer = fit(task, data, 4)
    assert trainer.global_step == 4  # the critic's updates do not count as training steps
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, task.period_discriminator.parameters(),
                                                     strict=True))
    assert torch.isfinite(trainer.callback_metrics["train/adversarial"])


@pytest.mark.slow
def test_save_and_load_round_trip(trained, tmp_path):
    vocoder = trained["task"].vocoder.eval()
    mel = torch.rand(2, TINY["n_mels"], 20)
    with torch.no_grad():
        expected = vocoder(mel)
        for source in (save_vocoder(vocoder, tmp_path / "voc"), trained["ckpt"]):
            loaded = load_vocoder(source)
            assert not any(p.requires_grad for p in loaded.parameters())
            torch.testing.assert_close(loaded(mel), expected)


@pytest.mark.slow
def test_init_from_starts_a_new_run_from_trained_weights_and_refuses_other_mel_settings(trained, tmp_path):
    folder = save_vocoder(trained["task"].vocoder, tmp_path / "voc")
    probe = synthetic_waves(8, seed=9)
    started = VocoderTask(vocoder=TINY, init_from=str(folder))
    assert round_trip_distance(started.vocoder, probe) == pytest.approx(trained["after"], rel=1e-4)
    assert round_trip_distance(VocoderTask(vocoder=TINY).vocoder, probe) > 1.2 * trained["after"]
    with pytest.raises(MelSettingsMismatch, match="task.init_from=.*mel settings.*n_mels"):
        VocoderTask(vocoder={**TINY, "n_mels": TINY["n_mels"] + 8}, init_from=str(folder))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(VocoderLoadError, match="no such vocoder"):
        load_vocoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VocoderLoadError, match="missing config.yaml"):
        load_vocoder(tmp_path / "empty")


def diffusion_config(vocoder: dict) -> dict:
    return {"_target_": "audiodiff.model.AudioDiffusionModel", "seconds": 0.5,
            "representation": {"_target_": "audiodiff.representations.MelSpectrogram", "sample_rate": RATE,
                               "n_fft": 256, "hop_length": 64, "n_mels": 32, "vocoder": vocoder},
            "net": {"_target_": "audiodiff.nets.UNet1d", "_partial_": True, "channels": [16, 16], "factors": [1, 2],
                    "blocks": [1, 1], "attentions": [False, False], "attention_heads": 2, "emb_dim": 32},
            "conditioner": {"_target_": "audiodiff.conditioning.Conditioner", "dim": 8,
                            "label": {"_target_": "audiodiff.conditioning.LabelEmbedding", "_partial_": True,
                                      "labels": ["a", "b"]}},
            "objective": {"_target_": "audiodiff.diffusion.DiffusionObjective", "prediction": "x0"}}


@pytest.mark.slow
def test_embedded_neural_vocoder_survives_save_and_load_without_its_file(trained, tmp_path):
    vocoder_dir = save_vocoder(trained["task"].vocoder, tmp_path / "voc")
    model = AudioDiffusionModel.from_config(
        diffusion_config({"_target_": "audiodiff.model_files.load_vocoder", "checkpoint": str(vocoder_dir)}),
        vocoder_files=True)
    features = torch.randn(1, 32, model.num_frames(0.5))
    with torch.no_grad():
        expected = model.representation.decode(features, 4000)
    model.save_pretrained(tmp_path / "model")
    shutil.rmtree(vocoder_dir)
    loaded = AudioDiffusionModel.load(tmp_path / "model")
    assert isinstance(loaded.representation.vocoder, VocosVocoder)
    with torch.no_grad():
        torch.testing.assert_close(loaded.representation.decode(features, 4000), expected)


@pytest.mark.slow
def test_from_pretrained_swaps_the_vocoder(trained, tmp_path):
    model = AudioDiffusionModel.from_config(diffusion_config({"_target_": "audiodiff.vocoders.GriffinLim",
                                                              "n_iter": 4}))
    model.save_pretrained(tmp_path / "model")
    vocoder_dir = save_vocoder(trained["task"].vocoder, tmp_path / "voc")
    pipe = AudioDiffusion.from_pretrained(tmp_path / "model", device="cpu", vocoder=vocoder_dir)
    assert isinstance(pipe.model.representation.vocoder, VocosVocoder)
    assert pipe.generate(label="a", seconds=0.25, steps=2, seed=0).samples.shape == (1, 2000)
    pipe.model.save_pretrained(tmp_path / "model_neural")  # the swapped vocoder is saved with the model
    assert isinstance(AudioDiffusionModel.load(tmp_path / "model_neural").representation.vocoder, VocosVocoder)
    pipe = AudioDiffusion.from_pretrained(tmp_path / "model_neural", device="cpu", vocoder="griffin_lim")
    assert isinstance(pipe.model.representation.vocoder, GriffinLim)
    other = save_vocoder(tiny_vocoder(n_mels=40), tmp_path / "voc40")
    with pytest.raises(MelSettingsMismatch):
        AudioDiffusion.from_pretrained(tmp_path / "model", device="cpu", vocoder=other)


def test_phase_prior_keeps_a_steady_tone_steady():
    # An untrained backbone gives every frame of a steady input the same output; with the phase prior
    # that is a steady tone at the bin's frequency, without it the overlap-add cancels the tone.
    settings = tiny_vocoder().settings
    tone = torch.sin(2 * torch.pi * 5 * settings.sample_rate / settings.n_fft * torch.arange(8000) / RATE)[None]
    mel = settings.transform()(tone)
    levels = {}
    for prior in (True, False):
        vocoder = tiny_vocoder(phase_prior=prior).eval()
        with torch.no_grad():
            vocoder.head.weight.zero_()  # phase = the prior alone; magnitude = the mel inverse
            vocoder.head.bias.zero_()
            levels[prior] = float(vocoder(mel, 8000)[0, 0, 2000:6000].pow(2).mean().sqrt())
    reference = float(tone[0, 2000:6000].pow(2).mean().sqrt())
    assert levels[True] > 0.5 * reference
    assert levels[False] < 0.2 * reference


def test_distances_are_zero_for_identical_audio_and_grow_with_noise():
    settings = tiny_vocoder().settings
    wave = synthetic_waves(2, seed=3)
    noisy = wave + 0.05 * torch.randn_like(wave)
    for distance in (LogMelDistance(settings), MultiResolutionSTFTDistance()):
        assert float(distance(wave, wave)) == pytest.approx(0.0, abs=1e-6)
        assert float(distance(noisy, wave)) > 0.1


@pytest.mark.slow
def test_train_cli_trains_and_exports_a_vocoder(tmp_path):
    folder = tmp_path / "data" / "train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(folder / f"clip{i}.wav", (0.3 * rng.standard_normal(RATE)).astype(np.float32), RATE)
    args = [cli("audiodiff-train"), "experiment=vocoder_22k", f"sample_rate={RATE}", "task.vocoder.f_max=4000",
            "task.vocoder.n_fft=256", "task.vocoder.hop_length=64", "task.vocoder.n_mels=32", "task.vocoder.dim=16",
            "task.vocoder.hidden_dim=32", "task.vocoder.num_layers=1", f"vocoder_data={tmp_path / 'data'}",
            "data.dataset.datasets.1.num_items=16", "data.batch_size=4", "trainer.max_steps=6",
            "trainer.val_check_interval=3", "trainer.enable_progress_bar=false", "threads=1"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "vocoder_22k"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert load_vocoder(run / "model").settings.sample_rate == RATE


def test_shipped_vocoder_serves_the_22k_mel_settings():
    vocoder = load_vocoder("vocos-22k")
    assert vocoder.settings == MelSettings(22050, 1024, 256, 80, 0.0, 11025.0)
    clips = torch.stack([SyntheticSounds(num_items=4, seconds=0.5, sample_rate=22050, seed=7)[i]["audio"]
                         for i in range(4)])
    untrained = VocosVocoder(**{k: v for k, v in vocoder.config.items() if k != "_target_"})
    assert round_trip_distance(vocoder, clips) < 0.5 * round_trip_distance(untrained, clips)


def test_mixture_repeats_each_dataset_and_drops_labels():
    folder_like = SyntheticSounds(num_items=3, seconds=0.5, sample_rate=RATE, seed=1)
    mixture = AudioMixture([folder_like, SyntheticSounds(num_items=5, seconds=0.5, sample_rate=RATE)], repeats=[2, 1])
    assert len(mixture) == 11 and mixture.labels == ["audio"]
    assert torch.equal(mixture[3]["audio"], folder_like[0]["audio"])
    assert {mixture[i]["label"] for i in range(len(mixture))} == {0}
    with pytest.raises(ValueError, match="repeats"):
        AudioMixture([folder_like], repeats=[0])
