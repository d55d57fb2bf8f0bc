import torch

from audiodiff.data import SyntheticSounds
from audiodiff.representations import MelSpectrogram, Waveform


def test_mel_griffin_lim_round_trip_keeps_the_spectrogram():
    ds = SyntheticSounds(16, seconds=1.0, sample_rate=16000, seed=3)
    wave = torch.stack([ds[i]["audio"] for i in range(16)])
    rep = MelSpectrogram(sample_rate=16000)
    rep.fit_statistics(wave)
    x = rep.encode(wave)
    assert x.shape == (16, 64, rep.num_frames(16000))
    assert abs(x.mean().item()) < 0.2 and 0.7 < x.std().item() < 1.3  # roughly unit range
    rebuilt = rep.decode(x, 16000)
    assert rebuilt.shape == wave.shape and torch.isfinite(rebuilt).all()
    before, after = rep.log_mel(wave), rep.log_mel(rebuilt)
    loud = before > before.amax(dim=(1, 2), keepdim=True) - 40  # where the sound is (40 dB range)
    err_db = (before - after).abs()[loud].mean().item()
    assert err_db < 3.0, f"mean log-mel error after Griffin-Lim {err_db:.2f} dB"
    noise_err = (before - rep.log_mel(torch.randn_like(wave) * 0.1)).abs()[loud].mean().item()
    assert noise_err > 4 * err_db


def test_waveform_representation_is_identity_within_range():
    rep = Waveform(sample_rate=8000)
    wave = torch.rand(2, 1, 8001) * 2 - 1
    assert torch.equal(rep.decode(rep.encode(wave)), wave)
    assert rep.num_frames(8001) == 8001


def test_mel_rejects_bad_settings():
    import pytest

    with pytest.raises(ValueError, match="f_max"):
        MelSpectrogram(sample_rate=16000, f_max=12000)
    with pytest.raises(ValueError, match="hop_length"):
        MelSpectrogram(sample_rate=16000, n_fft=256, hop_length=512)
