import os

import numpy as np
import pytest
import soundfile as sf

from audiodiff.audio import AudioFileError, fit_length, load_audio, peak_normalize, save_audio


def test_save_load_round_trip_pcm16_and_float(tmp_path):
    t = np.arange(16000) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for subtype, tol in (("pcm16", 1e-4), ("float", 1e-7)):
        path = save_audio(tmp_path / f"a_{subtype}.wav", audio, 16000, subtype)
        loaded, rate = load_audio(path)
        assert rate == 16000 and loaded.shape == (1, 16000)
        assert np.abs(loaded - audio).max() < tol
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_float.wav", "a_pcm16.wav"]  # no temp files left


def test_saved_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_audio(tmp_path / "p.wav", np.zeros((1, 10), np.float32), 8000)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_load_mixes_to_mono_and_resamples(tmp_path):
    stereo = np.stack([np.full(44100, 0.2), np.full(44100, 0.4)], axis=1).astype(np.float32)
    sf.write(tmp_path / "s.flac", stereo, 44100)
    mono, rate = load_audio(tmp_path / "s.flac", sample_rate=16000)
    assert rate == 16000 and mono.shape[0] == 1
    assert abs(mono.shape[1] - 16000) <= 1
    assert abs(float(np.median(mono)) - 0.3) < 1e-3
    both, _ = load_audio(tmp_path / "s.flac", mono=False)
    assert both.shape == (2, 44100)


def test_unreadable_and_empty_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioFileError, match="broken.wav"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioFileError, match="no audio frames"):
        load_audio(empty)


def test_save_refuses_nan_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        save_audio(tmp_path / "x.wav", np.full((1, 100), np.nan, np.float32), 16000)
    assert list(tmp_path.iterdir()) == []


def test_fit_length_and_peak_normalize():
    audio = np.ones((1, 10), np.float32)
    assert fit_length(audio, 4).shape == (1, 4)
    padded = fit_length(audio, 15)
    assert padded.shape == (1, 15) and padded[0, 10:].sum() == 0
    assert np.isclose(np.abs(peak_normalize(audio * 0.1, -6.0)).max(), 10 ** (-6 / 20))
