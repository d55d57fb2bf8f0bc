"""Label, text and duration conditioning: errors, caching, the offline text encoder, the U-Net's
cross-attention and the duration-aware data."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from audiodiff.conditioning import (
    Conditioner,
    Conditioning,
    DurationEmbedding,
    EmptyPromptError,
    HashedWordTextEncoder,
    LabelEmbedding,
    MiniLMTextEncoder,
    PrecomputedTextEncoder,
    PromptTruncatedWarning,
    TextConditioner,
    TextEncoderMismatchError,
    UnknownLabelError,
    UnsupportedConditionError,
    save_text_embeddings,
)
from audiodiff.data.datamodule import DurationBatchSampler
from audiodiff.data.synthetic import CLASSES, HELD_OUT_PROMPTS, SyntheticSounds, all_captions
from audiodiff.evaluation import sounding_end
from audiodiff.model import AudioDiffusionModel, ModelLoadError
from audiodiff.nets import UNet1d
from audiodiff.representations import MelSpectrogram


def small_text(dim: int = 16) -> TextConditioner:
    return TextConditioner(HashedWordTextEncoder(width=16, buckets=64, layers=1, heads=2, max_tokens=8), dim=dim)


def tiny_config(conditioner: dict) -> dict:
    return {
        "_target_": "audiodiff.model.AudioDiffusionModel",
        "seconds": 0.5,
        "representation": {"_target_": "audiodiff.representations.MelSpectrogram", "sample_rate": 8000,
                           "n_fft": 256, "hop_length": 64, "n_mels": 16},
        "net": {"_target_": "audiodiff.nets.UNet1d", "_partial_": True, "channels": [16, 32], "factors": [1, 2],
                "blocks": [1, 1], "attentions": [False, True], "attention_heads": 2, "emb_dim": 32},
        "conditioner": {"_target_": "audiodiff.conditioning.Conditioner", "dim": 16, **conditioner},
        "objective": {"_target_": "audiodiff.diffusion.DiffusionObjective", "prediction": "x0"},
    }


SMALL_TEXT = {"_target_": "audiodiff.conditioning.TextConditioner", "_partial_": True, "identity": None,
              "encoder": {"_target_": "audiodiff.conditioning.HashedWordTextEncoder", "width": 16, "buckets": 64,
                          "layers": 1, "heads": 2, "max_tokens": 8}}
LABELS = {"_target_": "audiodiff.conditioning.LabelEmbedding", "_partial_": True, "labels": ["a", "b"]}
DURATION = {"_target_": "audiodiff.conditioning.DurationEmbedding", "_partial_": True, "min_seconds": 0.25,
            "max_seconds": 1.0}


def test_label_embedding_refuses_unknown_labels_by_name():
    labels = LabelEmbedding(["coin", "kick"], dim=8)
    assert labels.label_id("kick") == 1 and labels.label_id(0) == 0
    with pytest.raises(UnknownLabelError, match="'laser'.*coin, kick"):
        labels.label_id("laser")


def test_label_names_match_regardless_of_case_and_spacing():
    labels = LabelEmbedding(["coin", "game_over", "Game-Over"], dim=8)
    assert labels.label_id("Coin") == 0 and labels.label_id(" COIN ") == 0
    assert labels.label_id("game_over") == 1 and labels.label_id("Game-Over") == 2  # exact names first
    with pytest.raises(UnknownLabelError, match="'game over'"):
        labels.label_id("game over")  # two labels would match: refused rather than guessed
    assert LabelEmbedding(["game_over"], dim=8).label_id("Game Over") == 0


def test_each_kind_of_request_a_model_cannot_take_has_its_own_error():
    text_only = Conditioner(16, text=lambda dim: small_text(dim))
    with pytest.raises(UnsupportedConditionError, match="text only"):
        text_only.label_id("coin")
    label_only = Conditioner(16, label=lambda dim: LabelEmbedding(["coin"], dim))
    with pytest.raises(UnsupportedConditionError, match="no text conditioning"):
        label_only.check_prompt("a coin")
    with pytest.raises(EmptyPromptError):
        text_only.check_prompt("   ")
    with pytest.warns(PromptTruncatedWarning, match="limit of 8"):
        text_only.check_prompt(" ".join(["word"] * 20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert text_only.check_prompt("  a coin  ") == "a coin"


def test_conditioning_cat_pads_the_token_sequences():
    a = Conditioning(torch.ones(2, 4), torch.ones(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))
    b = Conditioning(torch.zeros(1, 4), torch.ones(1, 1, 5), torch.ones(1, 1, dtype=torch.bool))
    both = a.cat(b)
    assert both.vector.shape == (3, 4) and both.context.shape == (3, 3, 5)
    assert both.context_mask.tolist()[2] == [True, False, False]


def test_null_text_differs_from_a_prompt_and_parts_add_up():
    conditioner = Conditioner(16, label=lambda dim: LabelEmbedding(["a", "b"], dim), text=lambda dim: small_text(dim),
                              duration=lambda dim: DurationEmbedding(dim, 0.5, 2.0))
    torch.nn.init.normal_(conditioner.text.null_vector)
    ids = torch.tensor([0, conditioner.label.null_id])
    seconds = torch.tensor([1.0, 1.0])
    with_text = conditioner(ids, ["a coin", "a coin"], seconds)
    without = conditioner(ids, [None, None], seconds)
    assert with_text.context.shape[:2] == (2, 2) and without.context.shape[:2] == (2, 1)
    assert not torch.allclose(with_text.vector, without.vector)
    longer = conditioner(ids, [None, None], torch.tensor([2.0, 2.0]))
    assert not torch.allclose(longer.vector, without.vector)
    with pytest.raises(ValueError, match="outside the lengths"):
        conditioner.check_seconds(3.0)


def test_frozen_encoder_outputs_are_cached_per_text():
    calls = []

    class CountingEncoder(HashedWordTextEncoder):
        trainable = False

        def forward(self, texts):
            calls.append(list(texts))
            return super().forward(texts)

    text = TextConditioner(CountingEncoder(width=16, buckets=64, heads=2), dim=8)
    for _ in range(3):
        text(["a coin", "a kick", None, "a coin"])
    assert calls == [["a coin", "a kick"]]


def test_unet_cross_attention_ignores_masked_tokens():
    torch.manual_seed(0)
    net = UNet1d(8, channels=[16, 32], factors=[1, 2], blocks=[1, 1], attentions=[False, True], attention_heads=2,
                 emb_dim=16, cond_dim=4, context_dim=6)
    for module in net.modules():  # the zero-initialised outputs would hide the attention
        if isinstance(module, torch.nn.Conv1d):
            torch.nn.init.normal_(module.weight, std=0.1)
    x, t, vector = torch.randn(2, 8, 12), torch.rand(2), torch.randn(2, 4)
    context = torch.randn(2, 3, 6)
    mask = torch.ones(2, 3, dtype=torch.bool)
    plain = net(x, t, Conditioning(vector, context, mask))
    padded = net(x, t, Conditioning(vector, torch.cat([context, 100 * torch.randn(2, 2, 6)], 1),
                                    torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], 1)))
    other = net(x, t, Conditioning(vector, torch.randn(2, 3, 6), mask))
    assert plain.shape == x.shape
    torch.testing.assert_close(plain, padded, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, other, atol=1e-3)
    with pytest.raises(ValueError, match="context"):
        net(x, t, vector)


def test_text_model_refuses_labels_and_unconditioned_items():
    model = AudioDiffusionModel.from_config(tiny_config({"text": SMALL_TEXT, "duration": DURATION}))
    with pytest.raises(UnsupportedConditionError):
        model.sample([0], [0], prompts=["a coin"], steps=2)
    with pytest.raises(ValueError, match="neither a label nor a prompt"):
        model.sample(None, [0, 1], prompts=["a coin", None], steps=2)
    with pytest.raises(ValueError, match="outside the lengths"):
        model.sample(None, [0], seconds=2.0, prompts=["a coin"], steps=2)
    waves = model.sample(None, [0, 1], seconds=0.25, prompts=["a coin", "a kick"], steps=2,
                         negative_prompts=["noise", None], guidance=2.0)
    assert waves.shape == (2, 1, model.num_samples(0.25))


def test_label_and_text_model_takes_either_or_both():
    model = AudioDiffusionModel.from_config(tiny_config({"label": LABELS, "text": SMALL_TEXT}))
    waves = model.sample([0, None, 1], [0, 1, 2], prompts=[None, "a coin", "a kick"], steps=2)
    assert waves.shape[0] == 3 and torch.isfinite(waves).all()


def test_saved_text_model_records_its_encoder_and_refuses_another(tmp_path):
    model = AudioDiffusionModel.from_config(tiny_config({"text": SMALL_TEXT}))
    identity = model.config["conditioner"]["text"]["identity"]
    assert identity == "audiodiff hashed words (buckets=64, width=16)"
    model.save_pretrained(tmp_path / "m")
    again = AudioDiffusionModel.load(tmp_path / "m")
    torch.testing.assert_close(again.state_dict(), model.state_dict())
    config = tmp_path / "m" / "config.yaml"
    config.write_text(config.read_text().replace(identity, "sentence-transformers/other-encoder"))
    with pytest.raises(ModelLoadError, match="trained with the text encoder 'sentence-transformers/other-encoder'"):
        AudioDiffusionModel.load(tmp_path / "m")
    with pytest.raises(TextEncoderMismatchError):
        TextConditioner(HashedWordTextEncoder(width=16, buckets=64, heads=2), identity="another")


@pytest.mark.slow
def test_minilm_loads_offline_once_and_knows_paraphrases(tmp_path):
    script = """
import socket, time
def refuse(*args, **kwargs):
    raise OSError("network is off in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
import torch
from audiodiff.conditioning import MiniLMTextEncoder, TextConditioner, _load_minilm
a, b = TextConditioner(MiniLMTextEncoder(), dim=8), TextConditioner(MiniLMTextEncoder(), dim=8)
t0 = time.perf_counter()
a(["a coin"])
first = time.perf_counter() - t0
t0 = time.perf_counter()
b(["a kick"])
second = time.perf_counter() - t0
assert _load_minilm.cache_info().misses == 1, _load_minilm.cache_info()
_, _, pooled = a.encoder(["cheerful xylophone jingle", "happy xylophone melody", "laser gun zap"])
pooled = torch.nn.functional.normalize(pooled, dim=-1)
close, far = float(pooled[0] @ pooled[1]), float(pooled[0] @ pooled[2])
assert close > far + 0.3, (close, far)
print(f"first {first:.2f} s, second {second:.3f} s, paraphrase {close:.2f}, unrelated {far:.2f}")
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))


def test_minilm_warns_about_prompts_past_its_limit():
    text = TextConditioner(MiniLMTextEncoder(max_tokens=16), dim=8)
    with pytest.warns(PromptTruncatedWarning, match="limit of 16"):
        text.check_prompt("a very long description " * 10)


def test_held_out_phrasings_are_not_training_captions():
    captions = set().union(*(all_captions(label) for label in CLASSES))
    held_out = [p for prompts in HELD_OUT_PROMPTS.values() for p in prompts]
    assert set(HELD_OUT_PROMPTS) == set(CLASSES)
    assert not captions & set(held_out)
    data = SyntheticSounds(64, seed=3)
    assert {data[i]["caption"] for i in range(64)} <= captions


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.0])
def test_synthetic_sounds_end_inside_any_clip_length(seconds):
    data = SyntheticSounds(64, seconds=1.0, sample_rate=16000)
    for i in range(16):
        item = data[(i, seconds)]
        assert item["audio"].shape == (1, int(seconds * 16000)) and item["seconds"] == seconds
        assert sounding_end(item["audio"].numpy(), 16000) <= seconds - 0.02


def test_synthetic_sounds_still_end_inside_the_clip_after_a_mel_round_trip():
    # What a mel model learns is the data's mel spectrogram; Griffin-Lim spreads each frame over its
    # 64 ms window, so the data must leave room for that or no model could end its sound in time.
    data = SyntheticSounds(96, seconds=0.5, sample_rate=16000)
    waves = torch.stack([data[i]["audio"] for i in range(96)])
    mel = MelSpectrogram(sample_rate=16000)
    mel.fit_statistics(waves)
    decoded = mel.decode(mel.encode(waves), waves.shape[-1])
    ends = [sounding_end(w.numpy(), 16000) for w in decoded]
    assert max(ends) <= 0.48 and min(ends) > 0.05


def test_duration_batches_have_one_length_each_within_the_range():
    sampler = DurationBatchSampler(100, 8, [0.5, 2.0], seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 12
    indices = [i for batch in batches for i, _ in batch]
    assert len(set(indices)) == len(indices) == 96
    lengths = [{s for _, s in batch} for batch in batches]
    assert all(len(s) == 1 and 0.5 <= next(iter(s)) <= 2.0 for s in lengths)
    assert len({next(iter(s)) for s in lengths}) > 3
    with pytest.raises(ValueError, match="seconds_range"):
        DurationBatchSampler(10, 2, [2.0, 1.0])


def test_duration_embedding_refuses_a_bad_range():
    with pytest.raises(ValueError, match="min_seconds"):
        DurationEmbedding(8, 0.0, 1.0)
    assert np.isclose(DurationEmbedding(8, 0.5, 2.0).max_seconds, 2.0)


def test_precomputed_text_embeddings_stand_in_for_their_encoder(tmp_path):
    encoder = MiniLMTextEncoder(max_tokens=64)
    texts = ["coin pickup", "a bright laser shot with a long tail", "sad falling piano melody, slow"]
    path = str(tmp_path / "embeddings.pt")
    save_text_embeddings(encoder, {"_target_": "audiodiff.conditioning.MiniLMTextEncoder", "max_tokens": 64},
                         [*texts, texts[0]], path)
    stored = PrecomputedTextEncoder(path)
    assert (stored.identity, stored.width, stored.max_tokens) == (encoder.identity, 384, 64)
    tokens, mask, pooled = encoder(texts)
    stored_tokens, stored_mask, stored_pooled = stored(texts)
    assert torch.equal(stored_mask, mask)
    assert stored.count_tokens(texts[1]) == int(mask[1].sum()) > int(mask[0].sum())
    # float16 storage: close to, not equal to, the encoder's float32 output
    assert torch.allclose(stored_tokens, tokens * mask[..., None], atol=2e-2)
    assert torch.allclose(stored_pooled, pooled, atol=5e-3)
    # a model trained on them is a model of the encoder itself
    TextConditioner(MiniLMTextEncoder(), dim=8, identity=stored.identity)
    with pytest.raises(ValueError, match="'an unseen prompt' is not among the 3 precomputed"):
        stored(["an unseen prompt"])
    with pytest.raises(ValueError, match="trainable"):
        save_text_embeddings(HashedWordTextEncoder(), {}, texts, path)
