"""Post-processing of a generated clip: DC removal, silence trimming, a seamless loop, fades,
loudness normalisation (ITU-R BS.1770 via pyloudnorm) and a true-peak ceiling.

Every step is optional and they always run in that order: DC first (it would otherwise shift the
faded ends), trimming before the loop and fades (which work on the clip's final ends), and the
level steps last so that the measured loudness and true peak are those of the written clip. Each
step that runs appends a record (what it did, the gain in dB, measured LUFS / dBTP) to a list that
ends up in the clip's metadata.

Arrays are float32, channels × frames; rates in Hz.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

BS1770_BLOCK = 0.4  # s: the gating block of ITU-R BS.1770
DEFAULT_FADE = 0.005  # s, used when a fade is switched on with ``True``
DEFAULT_LOOP_CROSSFADE = 0.1  # s, used when the loop is switched on with ``True``
DEFAULT_TRIM = 50.0  # dB below the peak, used when trim is switched on with ``True`` or by a loudness target
OVERSAMPLING = 4  # true peak is measured at 4x the sample rate (BS.1770 Annex 2)
PEAK_HEADROOM_DB = 0.1  # the limiter aims this far under the ceiling, so PCM rounding and other
# true-peak meters (other interpolation filters) still read at or under the ceiling
LOUDNESS_TOLERANCE_LU = 0.05  # the level search stops this close to the target
TARGET_TOLERANCE_LU = 0.5  # a clip further under its target than this is recorded as short of it
MAX_LOUDNESS_ROUNDS = 12
# The limiter's (look-ahead, release) in seconds: the gain reaches its minimum the look-ahead before
# a peak and holds it the release after. The first is for everything; the faster ones are tried only
# when a clip cannot reach its loudness target with the slower one (a 50 ms tick, whose whole length
# a 20 ms hold would flatten), so that the limiter shapes its envelope instead.
LIMITER_TIMINGS = ((0.005, 0.02), (0.002, 0.005), (0.0005, 0.001))
MAX_LIMITING_DB = 20.0  # the limiter may raise a clip at most this far above the plain-gain level
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: nothing quieter is measured as programme


@dataclass(frozen=True)
class PostProcessing:
    """Which post-processing steps to run (all off by default except the -1 dBTP ceiling).

    ``dc``: subtract each channel's mean. ``trim``: cut leading/trailing audio quieter than this
    many dB below the clip's peak (``True`` means 50; ``False`` never trims). Left at ``None``, it
    is 50 when a loudness target is set (and no loop): BS.1770 averages 400 ms blocks, so a 50 ms hit
    in a second of silence measures far quieter than it sounds and could only reach the target
    crushed by the limiter. ``fade_in``/``fade_out``: raised-cosine fades in
    seconds (``True`` means 5 ms). ``loop``: crossfade length in seconds (``True`` means 0.1 s);
    the clip's tail is crossfaded into its head so it loops without a click (the clip gets that
    much shorter). ``loudness``: integrated loudness target in LUFS. ``true_peak``: ceiling in
    dBTP (None: none; PCM files then clip at 0 dBFS). ``limit``: with a loudness target, hold the
    ceiling with a look-ahead limiter so the target is still met; ``False`` lowers the whole clip
    instead, and the clip then ends under its target (recorded as ``short_of_target_lu``).
    """

    dc: bool = False
    trim: float | bool | None = None
    fade_in: float = 0.0
    fade_out: float = 0.0
    loop: float | None = None
    loudness: float | None = None
    true_peak: float | None = -1.0
    limit: bool = True

    def __post_init__(self) -> None:
        for name, default in (("fade_in", DEFAULT_FADE), ("fade_out", DEFAULT_FADE), ("loop", DEFAULT_LOOP_CROSSFADE)):
            value = getattr(self, name)
            if value is True:
                object.__setattr__(self, name, default)
            elif value is False:
                object.__setattr__(self, name, 0.0 if name != "loop" else None)
        for name in ("fade_in", "fade_out"):
            value = getattr(self, name)
            if not _finite(value) or not 0 <= float(value) <= 10:
                raise ValueError(f"{name} must be a length in seconds from 0 to 10 (or true for 5 ms), got {value!r}")
        if self.loop is not None and (not _finite(self.loop) or not 0 < float(self.loop) <= 5):
            raise ValueError(f"loop must be a crossfade length in seconds, above 0 and up to 5 (or true for "
                             f"{DEFAULT_LOOP_CROSSFADE} s), got {self.loop!r}")
        if self.loop is not None and (self.fade_in or self.fade_out):
            raise ValueError("loop and fades exclude each other: a faded loop dips to silence at its loop point")
        if self.trim is True or (self.trim is None and self.loudness is not None and self.loop is None):
            object.__setattr__(self, "trim", DEFAULT_TRIM)
        if self.trim not in (None, False) and (not _finite(self.trim) or not 10 <= float(self.trim) <= 120):
            raise ValueError(f"trim must be a threshold in dB below the peak from 10 to 120 (or true for "
                             f"{DEFAULT_TRIM:g}, false for none), got {self.trim!r}")
        if self.loudness is not None and (not _finite(self.loudness) or not -70 < float(self.loudness) <= 0):
            raise ValueError(f"loudness must be a target in LUFS above -70 and at most 0, got {self.loudness!r}")
        if self.true_peak is not None and (not _finite(self.true_peak) or not -60 <= float(self.true_peak) <= 0):
            raise ValueError(f"true_peak must be a ceiling in dBTP from -60 to 0, got {self.true_peak!r}")

    @classmethod
    def coerce(cls, value: PostProcessing | dict | None) -> PostProcessing:
        """Accept an instance, a dict of its fields, or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"unknown post-processing option {', '.join(sorted(unknown))}; "
                                 f"valid: {', '.join(cls.__dataclass_fields__)}")
            return cls(**value)
        raise TypeError(f"post must be a PostProcessing, a dict or None, got {type(value).__name__}")

    def as_dict(self) -> dict:
        return asdict(self)


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _db(ratio: float) -> float:
    return 20.0 * math.log10(ratio) if ratio > 0 else -math.inf


def _round(value: float) -> float | None:
    """Two decimals for the record; -inf (silence) is recorded as None (JSON has no infinity)."""
    return round(float(value), 2) if math.isfinite(value) else None


def _upsampled_magnitude(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """|4x-upsampled clip| (channels × 4·frames), the higher reading of two interpolators at each
    position: soxr's (what librosa.resample uses) and scipy's Kaiser polyphase FIR. On noise-like
    clips with energy up to Nyquist, band-limited interpolators disagree by up to 0.5 dB on the
    inter-sample peaks, each being the higher one on some clips. (Called directly: importing
    librosa costs about a second.)"""
    import soxr
    from scipy.signal import resample_poly

    audio = np.asarray(audio, dtype=np.float64)
    frames = audio.shape[-1] * OVERSAMPLING
    by_soxr = soxr.resample(audio.T, sample_rate, sample_rate * OVERSAMPLING, quality="VHQ").T[..., :frames]
    by_polyphase = resample_poly(audio, OVERSAMPLING, 1, axis=-1)[..., :frames]
    return np.maximum(np.abs(by_soxr), np.abs(by_polyphase))


def true_peak_db(audio: np.ndarray, sample_rate: int) -> float:
    """True peak in dBTP: the largest absolute value of the clip upsampled 4x (by soxr and by a
    polyphase filter, the higher reading), or of its samples where those are larger. -inf for silence."""
    if audio.shape[-1] == 0:
        return -math.inf
    return _db(max(float(_upsampled_magnitude(audio, sample_rate).max()), float(np.abs(audio).max())))


def _peak_envelope(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per frame, the largest absolute value over the channels of the 4x-upsampled signal in the
    frame's 4 sub-sample positions (and the frame's own samples): inter-sample peaks included."""
    frames = audio.shape[-1]
    up = _upsampled_magnitude(audio, sample_rate).max(axis=0)
    up = np.pad(up, (0, max(0, frames * OVERSAMPLING - up.shape[0])))[: frames * OVERSAMPLING]
    return np.maximum(up.reshape(frames, OVERSAMPLING).max(axis=1), np.abs(audio).max(axis=0))


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> tuple[float, str]:
    """Integrated loudness in LUFS (ITU-R BS.1770 gating, pyloudnorm) and how it was measured.

    A clip shorter than BS.1770's 0.4 s block is measured as a single block spanning the whole
    clip (K-weighted mean square with the same -70 LUFS absolute gate), since the standard defines
    no value for it. Returns -inf for a clip under the absolute gate.
    """
    import pyloudnorm

    frames = audio.shape[-1]
    if frames == 0:
        return -math.inf, "empty"
    block = BS1770_BLOCK if frames > BS1770_BLOCK * sample_rate else frames / sample_rate
    window = "bs1770" if block == BS1770_BLOCK else "whole clip (shorter than the 0.4 s BS.1770 block)"
    meter = pyloudnorm.Meter(sample_rate, block_size=block)
    with np.errstate(divide="ignore"):
        lufs = float(meter.integrated_loudness(audio.T.astype(np.float64)))
    return (lufs if math.isfinite(lufs) and lufs > SILENCE_LUFS else -math.inf), window


def remove_dc(audio: np.ndarray) -> tuple[np.ndarray, dict]:
    offset = audio.mean(axis=-1, keepdims=True)
    return audio - offset, {"step": "dc", "offset": [round(float(o), 6) for o in offset[:, 0]]}


def trim_silence(audio: np.ndarray, sample_rate: int, below_peak_db: float) -> tuple[np.ndarray, dict]:
    """Cut leading and trailing audio more than ``below_peak_db`` dB under the clip's peak
    (librosa's frame-RMS detector, 16 ms frames / 4 ms hops)."""
    import librosa

    frame = max(16, int(0.016 * sample_rate))
    hop = max(4, frame // 4)
    _, (start, end) = librosa.effects.trim(audio, top_db=below_peak_db, frame_length=frame, hop_length=hop)
    record = {"step": "trim", "threshold_db": -float(below_peak_db), "start_s": round(float(start) / sample_rate, 4),
              "removed_s": round(float(audio.shape[-1] - (end - start)) / sample_rate, 4)}
    if end <= start:  # all of it under the threshold: keep the clip rather than write nothing
        record["note"] = "the whole clip is under the threshold; left as is"
        return audio, record
    return audio[:, start:end], record


def make_loop(audio: np.ndarray, sample_rate: int, crossfade: float) -> tuple[np.ndarray, dict]:
    """Crossfade the last ``crossfade`` seconds into the head and drop them, so that the new last
    sample is followed, when looping, by what originally followed it: the loop point is a stretch
    of the original signal, with no step of its own. Equal-power (sine/cosine) crossfade, shortened
    to a quarter of the clip where the clip is too short for it."""
    frames = audio.shape[-1]
    n = min(int(round(crossfade * sample_rate)), frames // 4)
    if n < 2:
        return audio, {"step": "loop", "crossfade_s": 0.0, "note": "clip too short to loop"}
    phase = (np.arange(n, dtype=np.float64) / n) * (np.pi / 2)
    head_in, tail_out = np.sin(phase), np.cos(phase)  # tail weight 1 at the loop point, head weight 0
    out = audio[:, : frames - n].astype(np.float64, copy=True)
    out[:, :n] = audio[:, :n] * head_in + audio[:, frames - n:] * tail_out
    out = out.astype(np.float32)
    seam = float(np.abs(out[:, 0] - out[:, -1]).max())
    return out, {"step": "loop", "crossfade_s": round(n / sample_rate, 4), "removed_s": round(n / sample_rate, 4),
                 "seam_step": float(f"{seam:.3g}")}


def apply_fades(audio: np.ndarray, sample_rate: int, fade_in: float, fade_out: float) -> tuple[np.ndarray, dict]:
    """Raised-cosine fades; the first and last samples become exactly 0."""
    frames = audio.shape[-1]
    out = audio.astype(np.float32, copy=True)
    n_in = min(frames, int(round(fade_in * sample_rate)) + 1) if fade_in else 0
    n_out = min(frames, int(round(fade_out * sample_rate)) + 1) if fade_out else 0
    if n_in:
        out[:, :n_in] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(n_in) / max(1, n_in - 1))
    if n_out:
        out[:, frames - n_out:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(n_out) / max(1, n_out - 1))
    return out, {"step": "fade", "in_s": round(float(fade_in), 4), "out_s": round(float(fade_out), 4)}


def _running_min(values: np.ndarray, back: int, ahead: int) -> np.ndarray:
    """Minimum of ``values`` over [n - back, n + ahead] for each n."""
    from scipy.ndimage import minimum_filter1d

    size = back + ahead + 1
    return minimum_filter1d(values, size=size, origin=back - size // 2, mode="nearest")


def limit_gain(audio: np.ndarray, sample_rate: int, ceiling_db: float,
               timing: tuple[float, float] = LIMITER_TIMINGS[0]) -> np.ndarray:
    """Per-frame gain (at most 1) that holds the true peak under ``ceiling_db``: the gain each
    frame needs, held from the look-ahead before a peak to the release after it, then smoothed by
    a running mean shorter than both, so that it never rises above what any frame needs."""
    from scipy.ndimage import uniform_filter1d

    ceiling = 10.0 ** (ceiling_db / 20.0)
    need = np.minimum(1.0, ceiling / np.maximum(_peak_envelope(audio, sample_rate), 1e-12))
    ahead = max(2, int(timing[0] * sample_rate))
    release = max(ahead, int(timing[1] * sample_rate))
    held = _running_min(need, release, ahead)
    return uniform_filter1d(held, size=ahead | 1, mode="nearest")  # odd, centred: spans ahead/2 each side


def limit_to(audio: np.ndarray, sample_rate: int, ceiling_db: float, timing: tuple[float, float] = LIMITER_TIMINGS[0],
             passes: int = 3) -> np.ndarray:
    """The limiter's gain (per frame) for ``audio`` to stay under ``ceiling_db`` dBTP. A gain that
    moves fast adds inter-sample peaks of its own (a hi-hat limited by 20 dB can overshoot by half a
    dB), so the result is measured again and the limiter rerun aiming lower by the overshoot."""
    aim = ceiling_db
    for _ in range(passes):
        gain = limit_gain(audio, sample_rate, aim, timing)
        over = true_peak_db(audio * gain, sample_rate) - ceiling_db
        if over <= 0:
            break
        aim -= over
    return gain


def _gain_on_target(audio: np.ndarray, sample_rate: int, loudness: float, before: float, ceiling: float,
                    timing: tuple[float, float]) -> tuple[float, np.ndarray, float]:
    """The gain (dB) and the limiter's gain curve that bring ``audio`` (measuring ``before`` LUFS) to
    ``loudness`` LUFS under ``ceiling`` dBTP, at most MAX_LIMITING_DB above the plain gain.

    Limiting takes back part of every dB of gain, and BS.1770's relative gate can even make loudness
    dip as the gain rises, so the search keeps a bracket around the target, steps by the secant of
    the last two rounds where that stays inside it (bisecting otherwise), and returns the closest
    round (gain in dB, gain curve, loudness reached), not the last."""
    low, high = -math.inf, loudness - before + MAX_LIMITING_DB
    gain_db, last, best = loudness - before, None, None
    for _ in range(MAX_LOUDNESS_ROUNDS):
        raised = audio * 10.0 ** (gain_db / 20.0)
        gain = limit_to(raised, sample_rate, ceiling - PEAK_HEADROOM_DB, timing)
        lufs, _ = integrated_loudness(raised * gain, sample_rate)
        if best is None or abs(lufs - loudness) < best[0]:
            best = (abs(lufs - loudness), gain_db, gain, lufs)
        if abs(lufs - loudness) <= LOUDNESS_TOLERANCE_LU:
            break
        if lufs < loudness:
            low = max(low, gain_db)
        else:
            high = min(high, gain_db)
        slope = 1.0
        if last is not None and gain_db != last[0]:
            slope = min(1.0, max(0.05, (lufs - last[1]) / (gain_db - last[0])))
        last = (gain_db, lufs)
        step = gain_db + (loudness - lufs) / slope
        if not low < step < high:  # only when some round was too quiet, so low is finite
            step = (low + high) / 2
        if high - low < 1e-3:
            break  # at the limiting cap: as loud as it gets
        gain_db = step
    return best[1], best[2], best[3]


def normalize_level(audio: np.ndarray, sample_rate: int, loudness: float | None, ceiling: float | None,
                    limit: bool) -> tuple[np.ndarray, list[dict]]:
    """The level steps: gain to the loudness target (with the limiter holding the ceiling), then
    the ceiling itself by lowering the whole clip where it is still exceeded. Returns the audio
    and the records of the steps that ran."""
    records = []
    if loudness is not None:
        before, window = integrated_loudness(audio, sample_rate)
        record = {"step": "loudness", "target_lufs": loudness, "window": window, "lufs_before": _round(before)}
        records.append(record)
        if before == -math.inf:
            log.warning("the clip is silent (under %s LUFS): loudness normalisation skipped", SILENCE_LUFS)
            record.update(gain_db=0.0, note=f"silent (under {SILENCE_LUFS} LUFS); not normalised")
        else:
            gain_db = loudness - before
            raised = audio * 10.0 ** (gain_db / 20.0)
            if ceiling is not None and limit:
                for timing in LIMITER_TIMINGS:
                    gain_db, gain, lufs = _gain_on_target(audio, sample_rate, loudness, before, ceiling, timing)
                    if loudness - lufs <= TARGET_TOLERANCE_LU:
                        break
                raised = audio * 10.0 ** (gain_db / 20.0)
                if gain.min() < 1.0:
                    records.append({"step": "limiter", "ceiling_dbtp": ceiling,
                                    "max_reduction_db": _round(-_db(float(gain.min()))),
                                    "lookahead_s": timing[0], "release_s": timing[1]})
                raised = raised * gain
            record["gain_db"] = _round(gain_db)
            audio = raised.astype(np.float32)
    if ceiling is not None:
        peak = true_peak_db(audio, sample_rate)
        record = {"step": "true_peak", "ceiling_dbtp": ceiling, "true_peak_before_dbtp": _round(peak), "gain_db": 0.0,
                  "true_peak_dbtp": _round(peak)}
        if peak > ceiling - PEAK_HEADROOM_DB:
            gain_db = ceiling - PEAK_HEADROOM_DB - peak
            audio = (audio * 10.0 ** (gain_db / 20.0)).astype(np.float32)
            # A gain scales the true peak by itself: no second 4x-upsampled measurement needed.
            record.update(gain_db=_round(gain_db), true_peak_dbtp=_round(peak + gain_db))
        records.append(record)
    if loudness is not None and records[0].get("lufs_before") is not None:
        lufs, _ = integrated_loudness(audio, sample_rate)
        records[0]["lufs"] = _round(lufs)
        if loudness - lufs > TARGET_TOLERANCE_LU:
            records[0]["short_of_target_lu"] = _round(loudness - lufs)
            log.warning("the %s dBTP ceiling holds the clip %.1f LU under its %s LUFS target%s", ceiling,
                        loudness - lufs, loudness, "" if limit else " (limit=false lowers the whole clip)")
    return audio, records


def postprocess(audio: np.ndarray, sample_rate: int, options: PostProcessing) -> tuple[np.ndarray, list[dict]]:
    """Run the chosen steps on a channels × frames clip; returns the new clip and one record per
    step (with a ceiling, the ``true_peak`` record's ``true_peak_dbtp`` is the final clip's)."""
    audio = np.asarray(audio, dtype=np.float32)
    records = []
    if options.dc:
        audio, record = remove_dc(audio)
        records.append(record)
    if options.trim:
        audio, record = trim_silence(audio, sample_rate, float(options.trim))
        records.append(record)
    if options.loop is not None:
        audio, record = make_loop(audio, sample_rate, float(options.loop))
        records.append(record)
    if options.fade_in or options.fade_out:
        audio, record = apply_fades(audio, sample_rate, float(options.fade_in), float(options.fade_out))
        records.append(record)
    audio, level_records = normalize_level(audio, sample_rate, options.loudness, options.true_peak, options.limit)
    return np.ascontiguousarray(audio, dtype=np.float32), records + level_records
