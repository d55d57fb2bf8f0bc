"""``audiodiff-eval`` and its parts: the Fréchet distance, the label classifier, diversity and the
near-copy check on fixed clip sets, and the command end to end on a randomly initialised tiny model
with a tiny reference folder (mechanics, not quality)."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from audiodiff.audio import save_audio
from audiodiff.data.synthetic import CLASSES, synthesize
from audiodiff.embeddings import EMBEDDINGS, LogMelStats, get_embedding
from audiodiff.generation_metrics import diversity, frechet_distance, near_copy_threshold, nearest_distances
from audiodiff.label_classifier import CrossFittedJudge, LabelClassifier
from audiodiff.reference import ClipSet, ReferenceSet
from audiodiff.scorecard import Request, Scorecard

from .conftest import cli

RATE = 16000
CONF = Path(__file__).resolve().parent.parent / "audiodiff" / "conf"
LABELS = ["beep", "kick", "chirp_up"]
TINY = ["experiment=quickstart", "model.net.channels=[16,32]", "model.net.factors=[1,2]", "model.net.blocks=[1,1]",
        "model.net.attentions=[false,true]", "model.net.emb_dim=32", "conditioner=text_small",
        "conditioner.dim=16", "conditioner.text.encoder.width=16", "vocoder.n_iter=8"]


def clips_of(label: str, count: int, seed: int, seconds: float = 0.5) -> list[np.ndarray]:
    """``count`` synthetic clips of ``label`` (1-D arrays at 16 kHz), drawn from the stream ``seed``."""
    return [synthesize(label, np.random.default_rng([seed, CLASSES.index(label), i]), RATE, seconds)[0]
            for i in range(count)]


def clip_set(per_label: int, seed: int, labels=LABELS) -> ClipSet:
    clips, names = [], []
    for label in labels:
        clips += clips_of(label, per_label, seed)
        names += [label] * per_label
    return ClipSet(clips, names, [f"{n}_{i}.wav" for i, n in enumerate(names)], RATE)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: the classifier's matrices are tiny, and a second thread on a busy machine only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def embedded():
    """logmel_stats vectors of 16 beeps and 16 kicks, and of 16 other beeps."""
    embedding = LogMelStats()
    return {"beep": embedding.embed(clips_of("beep", 16, 1), RATE),
            "kick": embedding.embed(clips_of("kick", 16, 1), RATE),
            "beep_again": embedding.embed(clips_of("beep", 16, 2), RATE)}


def test_logmel_stats_has_fixed_size_for_any_length_and_rate():
    embedding = LogMelStats()
    short = synthesize("beep", np.random.default_rng(0), 8000, 0.05)
    long = synthesize("kick", np.random.default_rng(0), 44100, 3.0)
    vectors = embedding.embed([short, long, np.zeros(100, dtype=np.float32)], 8000)
    assert vectors.shape == (3, embedding.dim) and np.isfinite(vectors).all()
    # Trailing silence and level are not what a clip sounds like.
    clip = clips_of("beep", 1, 0)[0]
    padded = np.concatenate([0.3 * clip, np.zeros(RATE, dtype=np.float32)])
    np.testing.assert_allclose(embedding.embed([padded], RATE), embedding.embed([clip], RATE), atol=0.05)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift(embedded):
    beep = embedded["beep"]
    # 16 vectors in 257 dimensions: a singular covariance, whose matrix root is good to about 1e-6 of its trace.
    tolerance = 1e-6 * np.trace(np.cov(beep, rowvar=False))
    assert frechet_distance(beep, beep) == pytest.approx(0.0, abs=tolerance)
    shifted = [frechet_distance(beep, beep + s) for s in (0.5, 1.0, 2.0)]
    # A shift of every dimension by s moves only the means: s² per dimension.
    np.testing.assert_allclose(shifted, [s**2 * beep.shape[1] for s in (0.5, 1.0, 2.0)], atol=tolerance)
    # Other clips of the same class are closer than clips of another class.
    assert frechet_distance(beep, embedded["beep_again"]) < frechet_distance(beep, embedded["kick"]) / 3


def test_frechet_distance_needs_two_vectors_per_set():
    with pytest.raises(ValueError, match="at least 2 vectors"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))


def test_classifier_separates_synthetic_classes_and_is_deterministic():
    embedding = LogMelStats()
    train, test = clip_set(12, 1, CLASSES), clip_set(5, 2, CLASSES)
    train_x, test_x = embedding.embed(train.clips, RATE), embedding.embed(test.clips, RATE)
    first = LabelClassifier(seed=3).fit(train_x, train.labels)
    predicted = first.predict(test_x)
    assert np.mean([p == t for p, t in zip(predicted, test.labels, strict=True)]) >= 0.9
    second = LabelClassifier(seed=3).fit(train_x, train.labels)
    assert second.predict(test_x) == predicted
    np.testing.assert_array_equal(second.hidden(test_x), first.hidden(test_x))


def test_diversity_of_copies_is_zero_and_of_different_clips_positive(embedded):
    beep = embedded["beep"]
    assert diversity(np.repeat(beep[:1], 8, axis=0)) == 0.0
    assert diversity(beep) > 0.0
    assert np.isnan(diversity(beep[:1]))


def test_nearest_distances_and_threshold(embedded):
    beep, kick = embedded["beep"], embedded["kick"]
    distances, index = nearest_distances(np.stack([beep[3], kick[0] + 100]), beep)
    assert distances[0] == 0.0 and index[0] == 3 and distances[1] > 10
    assert 0 < near_copy_threshold(embedded["beep_again"], beep, 5.0) <= near_copy_threshold(
        embedded["beep_again"], beep, 50.0)


@pytest.fixture(scope="module")
def scorecard():
    reference = ReferenceSet(Path("ref"), clip_set(8, 1), clip_set(6, 2), {"beep": ["a tone"]})
    return Scorecard(reference, seed=0)


def test_a_training_clip_is_flagged_as_a_near_copy_and_a_new_clip_is_not(scorecard):
    train = scorecard.reference.train
    copied = train.labels.index("kick") + 2
    requests = [Request("labels", "kick", None, 0, 0.5), Request("labels", "beep", None, 0, 0.5),
                Request("labels", "beep", None, 1, 0.5), Request("labels", "chirp_up", None, 0, 0.5)]
    # Fresh beeps and chirps: random pitches and sweeps, unlike any training clip. (Fresh synthetic kicks
    # are nearly the same sound every time, so they would rightly count as near-copies.)
    clips = [train.clips[copied], *clips_of("beep", 2, 7), *clips_of("chirp_up", 1, 7)]
    report = scorecard.score(requests, clips, RATE)["labels"]
    assert report["near_copies"] == 1
    (flag,) = report["flagged"]
    assert flag["seed"] == 0 and flag["label"] == "kick" and flag["nearest_train_clip"] == train.paths[copied]
    assert flag["distance"] == pytest.approx(0.0, abs=1e-9)
    assert report["per_label"]["kick"]["near_copies"] == 1 and report["per_label"]["beep"]["near_copies"] == 0


def test_scorecard_real_figures_and_generated_clips_like_the_real_ones(scorecard):
    real = scorecard.real
    # Each held-out clip judged by a fold judge trained on the other five of its label (some beeps are
    # pitched like chirps).
    assert real["accuracy"] >= 0.8 and real["frechet_heldout_floor"] > 0 and real["near_copy_threshold"] > 0
    assert set(real["per_label"]) == set(LABELS)
    # Fresh synthetic clips play a perfect model: right labels, diverse, no copies (but for the kicks, nearly
    # the same sound every time).
    requests = [Request("labels", label, None, i, 0.5) for label in LABELS for i in range(4)]
    perfect = scorecard.score(requests, [c for label in LABELS for c in clips_of(label, 4, 9)], RATE)["labels"]
    low, high = perfect["accuracy_ratio_interval"]
    assert perfect["accuracy"] >= 0.8 and low <= 1.0 <= high and low <= perfect["accuracy_ratio"] <= high
    assert perfect["per_label"]["beep"]["near_copies"] == perfect["per_label"]["chirp_up"]["near_copies"] == 0
    # A model that repeats one clip per label has no diversity and a larger Fréchet distance.
    stuck = scorecard.score(requests, [clips_of(label, 1, 9)[0] for label in LABELS for _ in range(4)], RATE)["labels"]
    assert stuck["diversity"] == 0.0 < perfect["diversity"]
    assert stuck["frechet_heldout"] > perfect["frechet_heldout"]


def test_a_cross_fitted_judge_does_not_score_the_clips_it_learnt():
    """Labels that are pure noise: a judge asked about its own training clips would name them (it
    memorises 40 points in 257 dimensions); each clip judged by a fold judge that did not see it is at chance."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, LogMelStats().dim))
    labels = ["a", "b"] * 20
    judge = CrossFittedJudge(seed=0).fit(features, labels)
    assert judge.n_folds == 5 and len(judge.heldout_hits) == 40
    assert judge.heldout_hits.mean() <= 0.7
    # Every fold judge saw every label; each clip's fold held 8 of the 40.
    assert np.bincount(judge.fold).tolist() == [8] * 5
    for fold in range(5):
        assert sorted({labels[i] for i in np.flatnonzero(judge.fold != fold)}) == ["a", "b"]
    # A label with a single clip cannot be judged by a judge that never saw it: left out.
    judge = CrossFittedJudge(seed=0, epochs=20).fit(features[:21], labels[:20] + ["c"])
    assert judge.not_judged == ["c"] and judge.labels == ["a", "b"] and len(judge.heldout_hits) == 20
    assert np.isnan(judge.hits(features[:2], ["c", "a"])[0])


def copying_reference() -> ReferenceSet:
    """Five labels, of which beep, tone and ping are the same kind of sound (no judge can tell them apart
    on clips it has not seen, but one that saw them can learn each clip's label by heart): 10 training
    and 8 held-out clips each."""
    def split(per_label: int, seed: int) -> ClipSet:
        clips, names = [], []
        for label, kind, stream in (("beep", "beep", seed), ("tone", "beep", seed + 100),
                                    ("ping", "beep", seed + 200), ("kick", "kick", seed),
                                    ("chirp_up", "chirp_up", seed)):
            clips += clips_of(kind, per_label, stream)
            names += [label] * per_label
        return ClipSet(clips, names, [f"{n}_{i}.wav" for i, n in enumerate(names)], RATE)

    return ReferenceSet(Path("ref"), split(10, 1), split(8, 2))


@pytest.fixture(scope="module")
def copying():
    """The scorecard of :func:`copying_reference`, with what its judge was fitted on and the Fréchet
    distances (shapes and the second set) it computed, recorded by spies while it was built."""
    import audiodiff.scorecard as scorecard_module

    reference = copying_reference()
    fitted, frechet_calls = [], []
    fit, frechet = CrossFittedJudge.fit, scorecard_module.frechet_distance

    def spy_fit(self, features, labels):
        fitted.append((np.array(features), list(labels)))
        return fit(self, features, labels)

    def spy_frechet(a, b):
        frechet_calls.append((a.shape, b.shape, b.copy()))
        return frechet(a, b)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CrossFittedJudge, "fit", spy_fit)
        patch.setattr(LabelClassifier, "fit", lambda *a: pytest.fail("a LabelClassifier fitted by the scorecard"))
        patch.setattr(scorecard_module, "frechet_distance", spy_frechet)
        scorecard = Scorecard(reference, seed=0)
    return scorecard, fitted, frechet_calls


def test_a_model_that_copies_its_training_clips_is_judged_by_clips_it_never_saw(copying):
    """Issue 19: a judge fitted on the reference's training split (the model's own training data) knows
    the copied clips by heart and scored a copying model above 1. The judge must see held-out clips only."""
    scorecard, fitted, _ = copying
    reference = scorecard.reference
    embedding = LogMelStats()
    train_features = embedding.embed(reference.train.clips, RATE)
    heldout_features = embedding.embed(reference.heldout.clips, RATE)
    (features, labels), = fitted
    assert labels == reference.heldout.labels
    np.testing.assert_array_equal(features, heldout_features)
    assert not any((np.abs(train_features - row).max(axis=1) < 1e-9).any() for row in features)

    # The copying model: each request answered with a training clip of its label. A judge that had seen
    # them would name nearly all (ratio about 1 / 0.6); one that never did is at chance on beep, tone
    # and ping, as on the held-out clips.
    requests = [Request("labels", label, None, i, 0.5) for label in reference.labels for i in range(10)]
    clips = [reference.train.clips[i] for label in reference.labels
             for i in np.flatnonzero(np.array(reference.train.labels) == label)]
    result = scorecard.score(requests, clips, RATE)["labels"]
    low, high = result["accuracy_ratio_interval"]
    assert low <= result["accuracy_ratio"] <= high
    assert result["accuracy_ratio"] < 1.2 and low < 1.0, result
    assert (result["judged_clips"], result["real_judged_clips"]) == (50, 40)
    assert result["near_copies"] == 50  # every clip is a flagged near-copy
    # The real clips' figure: each held-out clip by the fold judge that did not see it; beep, tone and
    # ping are a guess, so the held-out accuracy is well below 1 and has an interval of its own.
    real = scorecard.real
    assert real["judged_clips"] == 40 and real["balanced_accuracy"] < 0.8
    assert real["balanced_accuracy_interval"][0] <= real["balanced_accuracy"] <= real["balanced_accuracy_interval"][1]


def test_the_frechet_floor_and_the_generated_distance_compare_sets_of_one_size(copying, monkeypatch):
    import audiodiff.scorecard as scorecard_module

    scorecard, _, floor_calls = copying
    reference = scorecard.reference
    clips = scorecard.real["frechet_clips"]
    assert (clips["compared"], clips["against"], clips["draws"]) == (20, 20, scorecard_module.FRECHET_DRAWS)
    assert [c[:2] for c in floor_calls] == [((20, 257), (20, 257))] * clips["draws"]
    calls = []
    original = scorecard_module.frechet_distance

    def spy(a, b):
        calls.append((a.shape, b.shape, b.copy()))
        return original(a, b)

    monkeypatch.setattr(scorecard_module, "frechet_distance", spy)
    # 6 clips per label, of which each draw takes half A's 4 per label.
    requests = [Request("labels", label, None, i, 0.5) for label in reference.labels for i in range(6)]
    kinds = {"beep": "beep", "tone": "beep", "ping": "beep", "kick": "kick", "chirp_up": "chirp_up"}
    fresh = {label: clips_of(kinds[label], 6, 9 + n) for n, label in enumerate(kinds)}
    result = scorecard.score(requests, [fresh[r.label][r.seed] for r in requests], RATE)["labels"]
    # The same draws: generated clips of half A's size and labels against the same half B as the floor.
    assert [c[:2] for c in calls] == [c[:2] for c in floor_calls]
    for (_, _, b), (_, _, floor_b) in zip(calls, floor_calls, strict=True):
        np.testing.assert_array_equal(b, floor_b)
    assert result["frechet_unavailable"] is None and np.isfinite(result["frechet_heldout"])
    # Too few clips of a label to draw half A's 4 without repeating one: no figure, and the reason.
    calls[:] = []
    short = scorecard.score(requests[:-3], [fresh[r.label][r.seed] for r in requests[:-3]], RATE)["labels"]
    assert np.isnan(short["frechet_heldout"]) and calls == []
    assert f"{requests[-1].label} 3 of 4" in short["frechet_unavailable"]


def test_a_held_out_clip_that_is_also_a_training_clip_is_refused():
    from audiodiff.reference import ReferenceError

    train, heldout = clip_set(3, 1), clip_set(2, 2)
    heldout.clips[1] = 0.5 * train.clips[4]  # the same sound, quieter
    with pytest.raises(ReferenceError, match=r"1 held-out clip\(s\) are training clips too.*beep_1.wav = kick_4.wav"):
        Scorecard(ReferenceSet(Path("ref"), train, heldout), seed=0)


def test_embeddings_are_picked_by_name():
    assert set(EMBEDDINGS) == {"logmel_stats", "classifier"}
    train = clip_set(6, 1)
    learned = get_embedding("classifier", seed=0).fit(train.clips, RATE, train.labels)
    assert learned.embed(train.clips[:2], RATE).shape == (2, 128)
    with pytest.raises(ValueError, match="unknown embedding 'clap'; valid: logmel_stats, classifier"):
        get_embedding("clap")


def write_reference(root: Path) -> Path:
    """A recipe-style folder: 5 training and 2 held-out clips of each of three labels, one prompt each."""
    for split, count, seed in (("train", 5, 1), ("heldout", 2, 2)):
        folder = root / split
        folder.mkdir(parents=True)
        rows = []
        for label in LABELS:
            for i, clip in enumerate(clips_of(label, count, seed, seconds=0.6)):
                save_audio(folder / f"{label}_{i}.wav", clip[None], RATE)
                rows.append([f"train/{label}_{i}.wav" if split == "train" else f"{label}_{i}.wav", label, label])
        metadata = root / "metadata.csv" if split == "train" else folder / "metadata.csv"
        with metadata.open("w", newline="") as f:
            csv.writer(f).writerows([["path", "label", "caption"], *rows])
    with (root / "heldout_prompts.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["label", "prompt"], *[[label, f"a {label} sound"] for label in LABELS]])
    return root


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory) -> Path:
    """A randomly initialised label-, text- and length-conditioned mel model, saved as a model folder."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from audiodiff.model import AudioDiffusionModel

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=TINY)
    config = OmegaConf.to_container(cfg.model, resolve=True)
    config["conditioner"]["label"] = {"_target_": "audiodiff.conditioning.LabelEmbedding", "_partial_": True,
                                      "labels": list(CLASSES)}
    config["conditioner"]["duration"] = {"_target_": "audiodiff.conditioning.DurationEmbedding", "_partial_": True,
                                         "min_seconds": 0.5, "max_seconds": 2.0}
    torch.manual_seed(0)
    return AudioDiffusionModel.from_config(config).save_pretrained(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    return write_reference(tmp_path_factory.mktemp("reference") / "ref")


def eval_cmd(*args: str) -> list[str]:
    return [cli("audiodiff-eval"), "threads=1", "progress=false", "clips=2", "sampler.steps=3", *args]


@pytest.mark.slow
def test_cli_writes_the_figures_for_labels_and_prompts(tiny_text_model, reference_dir, tmp_path):
    out = tmp_path / "eval.json"
    done = subprocess.run(eval_cmd(f"reference={reference_dir}", f"checkpoint={tiny_text_model}", f"out={out}"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "conditioned on labels" in done.stdout and "conditioned on held-out prompts" in done.stdout
    report = json.loads(out.read_text())
    assert set(report) == {"checkpoint", "model_sha256", "reference", "embedding", "settings", "real", "generated"}
    assert {"accuracy", "balanced_accuracy", "balanced_accuracy_interval", "judged_clips", "judge",
            "frechet_heldout_floor", "frechet_clips", "near_copy_threshold", "per_label"} <= set(report["real"])
    assert report["real"]["judge"]["fitted_on"] == "heldout" and report["real"]["judged_clips"] == 6
    assert set(report["generated"]) == {"labels", "prompts"}
    for mode, clips in (("labels", 6), ("prompts", 6)):
        result = report["generated"][mode]
        assert result["clips"] == clips and set(result["per_label"]) == set(LABELS)
        assert {"accuracy", "accuracy_ratio", "accuracy_ratio_interval", "judged_clips", "real_judged_clips",
                "frechet_heldout", "frechet_unavailable", "diversity", "real_diversity", "near_copies",
                "flagged"} <= set(result)
        assert "frechet_all" not in result and result["real_judged_clips"] == 6
    assert "accuracy ratio" in done.stdout and "n=6 held-out clips" in done.stdout
    # Each label's median training length (0.6 s), inside the model's 0.5-2 s.
    assert report["settings"]["seconds"] == dict.fromkeys(LABELS, 0.6)


def test_rendering_is_reproducible(tiny_text_model):
    from audiodiff import AudioDiffusion
    from audiodiff.pipeline import SamplerSettings
    from audiodiff.scorecard import render

    pipe = AudioDiffusion.from_pretrained(tiny_text_model, device="cpu")
    requests = [Request("labels", "kick", None, 0, 0.5), Request("prompts", "beep", "a beep", 1, 0.7)]
    first = render(pipe, requests, SamplerSettings(steps=3), batch_size=2, progress=False)
    again = render(pipe, requests, SamplerSettings(steps=3), batch_size=2, progress=False)
    assert [len(c) for c in first] == [8000, 11200]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("args", "message"), [
    (["reference=MISSING"], "reference folder MISSING does not exist"),
    (["reference=EMPTY"], "EMPTY/metadata.csv: missing; a reference folder holds metadata.csv"),
    (["reference=REF", "labels=[trumpet]"], "no training clips of label(s) trumpet"),
    (["reference=REF", "clips=0"], "clips must be a positive integer, got 0"),
    (["reference=REF", "condition=sometimes"], "unknown condition 'sometimes'"),
    (["reference=REF", "embedding=clap"], "unknown embedding 'clap'"),
    (["reference=REF", "seconds=3"], "seconds=3 is outside the lengths this model was trained on"),
    (["reference=REF", "checkpoint=nowhere"], "nowhere: no such model file or directory"),
])
def test_bad_input_is_one_line_naming_the_thing(args, message, tiny_text_model, reference_dir, tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from audiodiff.cli.eval import run

    (tmp_path / "EMPTY").mkdir()
    places = {"MISSING": str(tmp_path / "MISSING"), "EMPTY": str(tmp_path / "EMPTY"), "REF": str(reference_dir)}
    args = [a.split("=")[0] + "=" + places.get(a.split("=")[1], a.split("=")[1]) for a in args]
    if not any(a.startswith("checkpoint=") for a in args):
        args.append(f"checkpoint={tiny_text_model}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[*args, "progress=false"])
    assert run(cfg) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message.replace("MISSING", str(tmp_path / "MISSING")).replace("EMPTY", str(tmp_path / "EMPTY")) in err


def test_an_unknown_label_in_the_model_and_the_missing_default_model_are_named(tmp_path, capsys, monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from audiodiff.cli.eval import run
    from audiodiff.model import AudioDiffusionModel

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=TINY[:6] + ["conditioner.dim=16", "vocoder.n_iter=8"])
    config = OmegaConf.to_container(cfg.model, resolve=True)
    config["conditioner"]["label"]["labels"] = ["beep", "kick"]
    model = AudioDiffusionModel.from_config(config).save_pretrained(tmp_path / "model")
    reference = write_reference(tmp_path / "ref")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[f"reference={reference}", f"checkpoint={model}"])
        default = compose("eval", overrides=[f"reference={reference}"])
    assert run(cfg) == 2
    assert "the model does not know the label(s) chirp_up" in capsys.readouterr().err
    monkeypatch.setattr("audiodiff.model_files.PRETRAINED_DIR", tmp_path / "no-shipped-models")
    assert run(default) == 2
    assert "ships no default model" in capsys.readouterr().err


@pytest.mark.slow
def test_a_model_is_sampled_with_its_own_settings_and_keeps_its_guidance_with_a_picked_sampler(
        tiny_text_model, reference_dir, tmp_path):
    import yaml

    student = tmp_path / "student"
    shutil.copytree(tiny_text_model, student)
    config = yaml.safe_load((student / "config.yaml").read_text())
    config["sampling"] = {"name": "ddim", "steps": 4, "schedule": "karras", "guidance": 1.5}
    (student / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "eval.json"
    done = subprocess.run(eval_cmd(f"reference={reference_dir}", f"checkpoint={student}", f"out={out}",
                                   "condition=labels"), capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    sampler = json.loads(out.read_text())["settings"]["sampler"]
    # the model's DDIM and guidance, with the command line's sampler.steps=3 on top
    assert (sampler["name"], sampler["steps"], sampler["guidance"]) == ("ddim", 3, 1.5)
    # another sampler picked on the command line: its preset, still with the model's guidance
    done = subprocess.run(eval_cmd(f"reference={reference_dir}", f"checkpoint={student}", f"out={out}",
                                   "condition=labels", "sampler=euler"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    sampler = json.loads(out.read_text())["settings"]["sampler"]
    assert (sampler["name"], sampler["steps"], sampler["guidance"]) == ("euler", 3, 1.5)
