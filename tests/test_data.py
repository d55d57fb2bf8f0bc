import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.data import CLASSES, AudioFolder, DatasetError, SyntheticSounds


def test_synthetic_sounds_are_reproducible_labelled_and_in_range():
    a, b = SyntheticSounds(16, seed=7), SyntheticSounds(16, seed=7)
    assert torch.equal(a[5]["audio"], b[5]["audio"])
    assert not torch.equal(a[5]["audio"], SyntheticSounds(16, seed=8)[5]["audio"])
    assert [a[i]["label"] for i in range(8)] == list(range(8))
    assert a.labels == list(CLASSES) and len(CLASSES) >= 8
    for i in range(16):
        item = a[i]
        assert item["audio"].shape == (1, 16000)
        assert 0.05 < item["audio"].abs().max() <= 1.0
        assert isinstance(item["caption"], str) and item["caption"]


def test_feature_check_recognises_clean_synthetic_clips(class_check):
    ds = SyntheticSounds(160, seed=99)
    clips = [ds[i]["audio"][0].numpy() for i in range(len(ds))]
    labels = [CLASSES[ds[i]["label"]] for i in range(len(ds))]
    assert class_check.accuracy(clips, labels) >= 0.95
    rng = np.random.default_rng(0)
    shuffled = list(rng.permutation(labels))
    assert class_check.accuracy(clips, shuffled) < 0.4


def _write(path, audio, rate=16000, **kw):
    sf.write(path, audio, rate, **kw)


def test_folder_dataset_skips_bad_files_by_name(tmp_path, caplog):
    t = np.arange(8000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    _write(tmp_path / "good.wav", tone)
    _write(tmp_path / "stereo44k.flac", np.stack([tone, tone], 1), 44100)
    _write(tmp_path / "silent.wav", np.zeros(8000, np.float32))
    _write(tmp_path / "nan.wav", np.full(8000, np.nan, np.float32), subtype="FLOAT")
    _write(tmp_path / "empty.wav", np.zeros(0, np.float32))
    (tmp_path / "garbage.wav").write_bytes(b"\x00\x01not audio")
    (tmp_path / "metadata.csv").write_text(
        "path,label,caption\n"
        "good.wav,beep,a tone\nstereo44k.flac,beep,\nsilent.wav,beep,\nnan.wav,beep,\n"
        "empty.wav,beep,\ngarbage.wav,beep,\nmissing.wav,beep,\n"
    )
    with caplog.at_level(logging.WARNING):
        ds = AudioFolder(tmp_path, sample_rate=16000, seconds=0.75)
    assert len(ds) == 2 and ds.labels == ["beep"]
    for name in ("silent.wav", "nan.wav", "empty.wav", "garbage.wav", "missing.wav"):
        assert any(name in r.getMessage() for r in caplog.records), name
        assert any(name in k for k in ds.skipped)
    item = ds[1]
    assert item["audio"].shape == (1, 12000) and torch.isfinite(item["audio"]).all()


def test_folder_without_usable_files_is_an_error_before_training(tmp_path):
    _write(tmp_path / "silent.wav", np.zeros(1000, np.float32))
    with pytest.raises(DatasetError, match="none of the 1 audio files is usable"):
        AudioFolder(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        AudioFolder(tmp_path / "nowhere")


def test_folder_labels_come_from_subfolders_without_metadata(tmp_path):
    for label in ("kick", "snare"):
        (tmp_path / label).mkdir()
        _write(tmp_path / label / "a.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32))
    ds = AudioFolder(tmp_path, seconds=0.5)
    assert ds.labels == ["kick", "snare"] and len(ds) == 2
