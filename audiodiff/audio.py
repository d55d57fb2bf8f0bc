"""Audio input and output: reading any soundfile-supported file, channel mixing, resampling and
atomic WAV writing. Arrays are float32 and shaped channels × frames; sample rates are in Hz."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

WAV_SUBTYPES = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}
# The RIFF INFO fields libsndfile writes into a WAV (its names for INAM, IART, ICMT, ISFT, ICRD, ICOP, IGNR, IPRD).
INFO_FIELDS = ("title", "artist", "comment", "software", "date", "copyright", "genre", "album")
MAX_INFO_BYTES = 2000  # libsndfile silently drops a string of about 2 KB or more


class AudioFileError(ValueError):
    """An audio file could not be used; the message names the file and the reason."""


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono: bool = True,
) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC/OGG (anything libsndfile reads) as float32, channels × frames.

    ``sample_rate`` resamples to that rate in Hz (None keeps the file's rate); ``mono`` averages
    the channels. Raises :class:`AudioFileError` naming the file when it cannot be read or is empty.
    """
    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioFileError(f"{path}: cannot read audio ({err})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio frames")
    audio = np.ascontiguousarray(data.T)
    if mono:
        audio = audio.mean(axis=0, keepdims=True)
    if sample_rate is not None and rate != sample_rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio, rate


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc) of a channels × frames array."""
    if orig_rate == new_rate:
        return audio
    tensor = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), orig_rate, new_rate)
    return tensor.numpy().astype(np.float32, copy=False)


def save_audio(
    path: str | os.PathLike,
    audio: np.ndarray | torch.Tensor,
    sample_rate: int,
    subtype: str = "pcm16",
    info: dict[str, str] | None = None,
) -> Path:
    """Write a channels × frames (or frames) array as a WAV file, atomically.

    The samples go to a temporary file in the same folder that is renamed over ``path`` only once
    complete, so an interrupted write never leaves a truncated WAV. ``subtype`` is ``pcm16``,
    ``pcm24`` or ``float``; PCM output is clipped to [-1, 1]. ``info`` holds RIFF INFO strings
    (keys from :data:`INFO_FIELDS`, each under 2000 UTF-8 bytes); they are read back before the
    rename, so a file is never published without them.
    """
    if subtype not in WAV_SUBTYPES:
        raise ValueError(f"unknown WAV subtype {subtype!r}; valid: {', '.join(WAV_SUBTYPES)}")
    info = {k: v for k, v in (info or {}).items() if v}
    for key, value in info.items():
        if key not in INFO_FIELDS:
            raise ValueError(f"unknown WAV INFO field {key!r}; valid: {', '.join(INFO_FIELDS)}")
        if len(value.encode("utf-8")) >= MAX_INFO_BYTES:
            raise ValueError(f"WAV INFO field {key!r} is {len(value.encode('utf-8'))} bytes; the limit is "
                             f"{MAX_INFO_BYTES - 1}")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().float().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"audio must be channels × frames, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError(f"refusing to write {path}: the audio holds NaN or infinite samples")
    if subtype != "float":
        audio = np.clip(audio, -1.0, 1.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.wav", dir=path.parent)
    os.close(fd)
    try:
        with sf.SoundFile(tmp, "w", sample_rate, audio.shape[0], WAV_SUBTYPES[subtype], format="WAV") as f:
            for key, value in info.items():
                setattr(f, key, value)
            f.write(audio.T)
        if info:
            _check_info(tmp, path, info)
        os.chmod(tmp, usual_file_mode())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_info(tmp: str, path: Path, info: dict[str, str]) -> None:
    with sf.SoundFile(tmp) as f:
        stored = f.copy_metadata()
    # libsndfile appends its own name to the software field
    lost = [k for k, v in info.items() if not stored.get(k, "").startswith(v)]
    if lost:
        raise OSError(f"{path}: libsndfile did not store the WAV INFO fields {', '.join(lost)}")


def read_info(path: str | os.PathLike) -> dict[str, str]:
    """The RIFF INFO strings of a WAV file (libsndfile's names: title, comment, software, ...)."""
    try:
        with sf.SoundFile(str(path)) as f:
            return f.copy_metadata()
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioFileError(f"{path}: cannot read audio ({err})") from None


def usual_file_mode() -> int:
    """0o666 less the process umask: the mode a file made with open() gets (mkstemp and safetensors
    make owner-only files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fit_length(audio: np.ndarray, frames: int, offset: int = 0) -> np.ndarray:
    """Crop (from ``offset``) or zero-pad the end of a channels × frames array to ``frames``."""
    audio = audio[:, offset : offset + frames]
    if audio.shape[1] < frames:
        audio = np.pad(audio, ((0, 0), (0, frames - audio.shape[1])))
    return audio


def peak_normalize(audio: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale so that the largest absolute sample sits at ``peak_db`` dBFS (silence is left as is)."""
    peak = float(np.abs(audio).max(initial=0.0))
    if peak == 0.0:
        return audio
    return audio * (10.0 ** (peak_db / 20.0) / peak)
