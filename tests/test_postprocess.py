"""Post-processing on synthetic clips: loudness and true peak measured the standard way
(pyloudnorm's BS.1770 meter; 4x upsampling with soxr's HQ filter, which the code under test does
not use), click-free ends and loop seams."""

import math

import numpy as np
import pyloudnorm
import pytest
import soxr

from audiodiff.postprocess import PostProcessing, integrated_loudness, postprocess, true_peak_db

RATE = 16000


def true_peak(audio: np.ndarray) -> float:
    """dBTP by soxr's HQ 4x upsampling (the code under test uses its VHQ filter and scipy's polyphase one)."""
    up = soxr.resample(audio.T.astype(np.float64), RATE, 4 * RATE, quality="HQ")
    return 20 * math.log10(max(np.abs(up).max(), np.abs(audio).max()))


def lufs(audio: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64))


def clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    return {
        "noise": 0.3 * rng.standard_normal(RATE),
        "decaying_noise": 0.3 * rng.standard_normal(RATE) * np.exp(-8 * t),
        "quiet_tone": 0.01 * np.sin(2 * np.pi * 440 * t),
        "loud_chord": 0.45 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277 * t)),
        "offset_sweep": 0.2 * np.sin(2 * np.pi * (200 + 2000 * t) * t) + 0.3,
    }


@pytest.mark.parametrize("name", list(clips()))
def test_loudness_target_and_true_peak_ceiling_hold(name):
    audio = clips()[name][None].astype(np.float32)
    out, steps = postprocess(audio, RATE, PostProcessing(dc=True, loudness=-14, true_peak=-1))
    assert abs(lufs(out) - (-14)) <= 0.5
    assert true_peak(out) <= -1.0
    loudness = next(s for s in steps if s["step"] == "loudness")
    assert loudness["lufs_before"] == pytest.approx(lufs(audio - audio.mean()), abs=0.01)
    assert "short_of_target_lu" not in loudness


def test_synthetic_sound_effects_meet_the_loudness_and_peak_bars():
    """The eight built-in sound-effect classes (what the quickstart model learns), with the defaults a
    loudness target brings (trimmed at 50 dB): every clip ends at -14 ± 0.5 LUFS, under -1 dBTP,
    without end clicks."""
    from audiodiff.data import CLASSES, SyntheticSounds

    data = SyntheticSounds(num_items=24, seconds=1.0, sample_rate=RATE, seed=3)
    options = PostProcessing(dc=True, fade_in=True, fade_out=True, loudness=-14, true_peak=-1)
    assert options.trim == 50
    seen = set()
    for i in range(len(data)):
        item = data[i]
        seen.add(CLASSES[item["label"]])
        out, _ = postprocess(item["audio"].numpy(), RATE, options)
        measured = lufs(out) if out.shape[1] > 0.4 * RATE else integrated_loudness(out, RATE)[0]
        assert abs(measured + 14) <= 0.5, CLASSES[item["label"]]
        assert true_peak(out) <= -1.0
        assert np.abs(out[:, [0, -1]]).max() < 10 ** (-60 / 20)
    assert seen == set(CLASSES)


def test_ceiling_without_limiter_lowers_the_clip_and_says_so():
    t = np.arange(RATE) / RATE
    kick = (0.9 * np.sin(2 * np.pi * 60 * t) * np.exp(-20 * t))[None].astype(np.float32)
    out, steps = postprocess(kick, RATE, PostProcessing(trim=False, loudness=-14, true_peak=-1, limit=False))
    loudness = next(s for s in steps if s["step"] == "loudness")
    assert true_peak(out) <= -1.0
    assert loudness["short_of_target_lu"] == pytest.approx(-14 - lufs(out), abs=0.02)
    assert loudness["short_of_target_lu"] > 5
    assert not any(s["step"] == "limiter" for s in steps)


@pytest.mark.parametrize("level", [0.95, 0.2])
def test_the_recorded_true_peak_is_the_written_clips(level):
    # Recorded from the reading before the ceiling's gain, not measured again: it must still be right.
    t = np.arange(RATE) / RATE
    tone = (level * np.sin(2 * np.pi * 5000 * t + 0.3))[None].astype(np.float32)
    out, steps = postprocess(tone, RATE, PostProcessing(trim=False, true_peak=-1.0))
    (record,) = [s for s in steps if s["step"] == "true_peak"]
    assert (record["gain_db"] < 0) == (level > 0.5)
    assert record["true_peak_dbtp"] == pytest.approx(true_peak_db(out, RATE), abs=0.01)


def test_a_loudness_target_trims_unless_told_not_to():
    t = np.arange(RATE) / RATE
    hit = np.where(t < 0.05, 0.5 * np.sin(2 * np.pi * 3000 * t) * np.exp(-60 * t), 0.0)[None].astype(np.float32)
    def limiting(steps):
        return next((s["max_reduction_db"] for s in steps if s["step"] == "limiter"), 0.0)

    trimmed, trim_steps = postprocess(hit, RATE, PostProcessing(loudness=-14, true_peak=-1))
    assert [s["step"] for s in trim_steps][0] == "trim" and trimmed.shape[1] < 0.1 * RATE
    assert abs(integrated_loudness(trimmed, RATE)[0] + 14) <= 0.5
    kept, steps = postprocess(hit, RATE, PostProcessing(trim=False, loudness=-14, true_peak=-1))
    assert kept.shape == hit.shape and not any(s["step"] == "trim" for s in steps)
    # In a second of silence the hit must be limited far harder to measure as loud.
    assert limiting(steps) > limiting(trim_steps) + 6
    assert PostProcessing(loudness=-14, loop=True).trim is None  # a loop's length is the user's choice
    assert PostProcessing(trim=True).trim == 50 and PostProcessing().trim is None


def test_a_tick_too_short_for_the_slow_limiter_reaches_its_target_with_a_faster_one():
    t = np.arange(int(0.05 * RATE)) / RATE
    tick = (0.3 * np.random.default_rng(2).standard_normal(len(t)) * np.exp(-120 * t))[None].astype(np.float32)
    out, steps = postprocess(tick, RATE, PostProcessing(trim=False, loudness=-14, true_peak=-1))
    limiter = next(s for s in steps if s["step"] == "limiter")
    assert abs(integrated_loudness(out, RATE)[0] + 14) <= 0.5 and true_peak(out) <= -1.0
    assert limiter["release_s"] < 0.02


def test_short_clip_is_measured_over_the_whole_clip():
    audio = (0.1 * np.sin(2 * np.pi * 440 * np.arange(int(0.25 * RATE)) / RATE))[None].astype(np.float32)
    out, steps = postprocess(audio, RATE, PostProcessing(loudness=-20))
    assert next(s for s in steps if s["step"] == "loudness")["window"].startswith("whole clip")
    whole = pyloudnorm.Meter(RATE, block_size=audio.shape[1] / RATE).integrated_loudness(out[0].astype(np.float64))
    assert whole == pytest.approx(-20, abs=0.05)
    assert integrated_loudness(out, RATE)[0] == pytest.approx(whole, abs=1e-6)


def test_silence_is_left_alone_and_recorded():
    out, steps = postprocess(np.zeros((1, RATE), np.float32), RATE, PostProcessing(loudness=-14, fade_in=True))
    assert not out.any()
    assert "silent" in next(s for s in steps if s["step"] == "loudness")["note"]


def test_fades_leave_no_click_at_either_end():
    rng = np.random.default_rng(1)
    audio = (0.5 * rng.standard_normal((2, RATE)) + 0.2).astype(np.float32)  # stereo, with a DC offset
    assert 20 * np.log10(np.abs(audio[:, [0, -1]]).max()) > -60  # without fades the ends would click
    out, steps = postprocess(audio, RATE, PostProcessing(dc=True, fade_in=True, fade_out=0.02, loudness=-14))
    assert 20 * np.log10(np.abs(out[:, [0, -1]]).max() + 1e-12) < -60
    assert [s["step"] for s in steps][:3] == ["dc", "trim", "fade"]


def test_trim_cuts_silence_but_not_sound():
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE // 2) / RATE)
    audio = np.concatenate([np.zeros(RATE // 4), tone, np.zeros(RATE // 4)])[None].astype(np.float32)
    out, steps = postprocess(audio, RATE, PostProcessing(trim=50))
    assert abs(out.shape[1] - RATE // 2) <= 0.02 * RATE
    assert steps[0]["removed_s"] == pytest.approx(0.5, abs=0.02)


def typical_step(audio: np.ndarray) -> float:
    """The clip's typical sample-to-sample step: the 99th percentile of |x[n+1] - x[n]|."""
    return float(np.percentile(np.abs(np.diff(audio, axis=-1)), 99))


@pytest.mark.parametrize("seed", range(4))
def test_loop_point_is_no_larger_than_a_typical_step(seed):
    rng = np.random.default_rng(seed)
    t = np.arange(RATE) / RATE
    # Inharmonic partials, a little noise and a drift: the clip's end does not meet its start on its own.
    audio = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(50, 500) * t + rng.uniform(0, 6))
                for _ in range(6)) + 0.005 * rng.standard_normal(RATE) + 0.3 * t
    audio = audio[None].astype(np.float32)
    assert abs(audio[0, 0] - audio[0, -1]) > 2 * typical_step(audio)  # the unprocessed seam clicks
    out, steps = postprocess(audio, RATE, PostProcessing(loop=True, loudness=-16))
    seam = abs(float(out[0, 0]) - float(out[0, -1]))
    assert seam <= typical_step(out)
    assert out.shape[1] == RATE - int(0.1 * RATE)
    assert steps[0]["step"] == "loop"


@pytest.mark.parametrize("options, message", [
    ({"loop": True, "fade_in": True}, "exclude each other"),
    ({"loudness": 3}, "loudness must be"),
    ({"true_peak": float("nan")}, "true_peak must be"),
    ({"fade_out": -1}, "fade_out must be"),
    ({"trim": 1}, "trim must be"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        PostProcessing(**options)
    with pytest.raises(ValueError, match="unknown post-processing option"):
        PostProcessing.coerce({"loudnes": -14})
