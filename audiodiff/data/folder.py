"""A folder of the user's own sounds, optionally described by ``metadata.csv``.

``metadata.csv`` has the columns ``path,label,caption`` (label and caption optional; paths relative
to the folder). Without it, every audio file under the folder is used and its label is the name of
the sub-folder it sits in (or ``sound`` for files at the top). Every file is checked once, up front:
unreadable, empty, silent, non-finite or wrongly-channelled files are reported by name and skipped,
and a folder with no usable file is an error before any training starts.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from audiodiff.audio import AudioFileError, fit_length, load_audio, peak_normalize

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif"}
NORMALIZATIONS = ("peak", "rms", "none")
SILENCE_PEAK = 1e-4  # -80 dBFS
FADE_OUT_SECONDS = 0.02


class DatasetError(ValueError):
    """A dataset that cannot be used at all."""


@dataclass
class Clip:
    path: Path
    audio: np.ndarray  # channels × samples at the dataset's rate
    label: str
    caption: str


def _read_metadata(root: Path, metadata: Path) -> list[tuple[Path, str | None, str]]:
    try:
        with metadata.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise DatasetError(f"{metadata}: needs a header with a 'path' column (and optionally 'label', "
                                   f"'caption'); found {reader.fieldnames}")
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise DatasetError(f"{metadata}: not UTF-8 text ({err})") from None
    entries = []
    for row in rows:
        rel = (row.get("path") or "").strip()
        if not rel:
            log.warning("%s: skipping a row with an empty path", metadata)
            continue
        label = (row.get("label") or "").strip() or None
        entries.append((root / rel, label, (row.get("caption") or "").strip()))
    return entries


def _scan_folder(root: Path) -> list[tuple[Path, str | None, str]]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    return [(p, p.parent.name if p.parent != root else "sound", "") for p in files]


class AudioFolder(Dataset):
    """Clips from a folder, resampled to ``sample_rate`` Hz, mixed to mono (or checked to have
    ``channels`` channels), normalised and cropped or zero-padded to ``seconds``.

    ``normalize`` is ``peak`` (peak at -1 dBFS), ``rms`` (RMS at ``target_rms_db`` dBFS, peak kept
    at or below 0 dBFS) or ``none``. Longer clips are cropped at a random offset during training
    (``random_crop``) and from the start otherwise. Items are dicts like :class:`SyntheticSounds`'.
    """

    def __init__(self, root: str | Path, sample_rate: int = 16000, seconds: float = 1.0, mono: bool = True,
                 channels: int = 1, normalize: str = "peak", target_rms_db: float = -20.0,
                 random_crop: bool = True, metadata: str = "metadata.csv") -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"data folder {root} does not exist or is not a directory")
        if normalize not in NORMALIZATIONS:
            raise DatasetError(f"unknown normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
        if not 0.05 <= seconds <= 60:
            raise DatasetError(f"seconds must be between 0.05 and 60, got {seconds}")
        self.root = root
        self.sample_rate = sample_rate
        self.frames = int(round(seconds * sample_rate))
        self.random_crop = random_crop
        meta = root / metadata
        entries = _read_metadata(root, meta) if meta.is_file() else _scan_folder(root)
        if not entries:
            raise DatasetError(f"{root}: no audio files found (looked for {', '.join(sorted(AUDIO_SUFFIXES))}"
                               f"{' listed in ' + metadata if meta.is_file() else ''})")
        if any(label is None for _, label, _ in entries) and any(label for _, label, _ in entries):
            missing = [str(p) for p, label, _ in entries if label is None]
            log.warning("%s: %d rows have no label and are skipped: %s", meta, len(missing), ", ".join(missing[:5]))
            entries = [e for e in entries if e[1] is not None]

        self.clips: list[Clip] = []
        self.skipped: dict[str, str] = {}
        for path, label, caption in tqdm(entries, desc=f"checking {root.name}", unit="file", leave=False):
            reason = None
            try:
                audio, _ = load_audio(path, sample_rate, mono=mono)
            except AudioFileError as err:
                reason = str(err).split(": ", 1)[-1]
            else:
                if not np.isfinite(audio).all():
                    reason = "holds NaN or infinite samples"
                elif np.abs(audio).max() < SILENCE_PEAK:
                    reason = "is silent (peak below -80 dBFS)"
                elif not mono and audio.shape[0] != channels:
                    reason = f"has {audio.shape[0]} channels, expected {channels}"
            if reason is not None:
                self.skipped[str(path)] = reason
                log.warning("skipping %s: %s", path, reason)
                continue
            self.clips.append(Clip(path, self._normalize(audio, normalize, target_rms_db), label or "sound", caption))
        if not self.clips:
            raise DatasetError(f"{root}: none of the {len(entries)} audio files is usable "
                               f"(first problems: {dict(list(self.skipped.items())[:3])})")
        self.labels = sorted({c.label for c in self.clips})
        self._label_index = {name: i for i, name in enumerate(self.labels)}

    @staticmethod
    def _normalize(audio: np.ndarray, mode: str, target_rms_db: float) -> np.ndarray:
        if mode == "peak":
            return peak_normalize(audio, -1.0)
        if mode == "rms":
            rms = float(np.sqrt(np.mean(audio**2)))
            gain = min(10 ** (target_rms_db / 20) / rms, 1.0 / np.abs(audio).max())
            return audio * gain
        return audio

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: int | tuple[int, float]) -> dict:
        index, frames = key if isinstance(key, tuple) else (key, None)
        frames = self.frames if frames is None else int(round(frames * self.sample_rate))
        clip = self.clips[index]
        excess = clip.audio.shape[1] - frames
        offset = int(np.random.randint(0, excess + 1)) if self.random_crop and excess > 0 else 0
        audio = fit_length(clip.audio, frames, offset)
        if excess > offset:
            # The crop cut the sound: fade it out so that clips never end in a click (which a
            # duration-conditioned model would otherwise learn as the way sounds end).
            fade = min(frames, int(FADE_OUT_SECONDS * self.sample_rate))
            audio = audio.copy()
            audio[:, frames - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return {"audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                "label": self._label_index[clip.label], "caption": clip.caption,
                "seconds": frames / self.sample_rate}
