"""Batch rendering of prompt-file rows into a folder of WAVs plus ``manifest.jsonl``.

Each WAV is written atomically and only then gets its manifest line, so the folder never holds a
half-written file and the manifest never names one. Rerunning over the same folder skips rows whose
file is already listed, so a killed batch resumes without redoing work.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from audiodiff.conditioning import UnknownLabelError
from audiodiff.model import MAX_SECONDS
from audiodiff.pipeline import AudioDiffusion, SamplerSettings
from audiodiff.prompts import RenderRequest, RowError

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"


@dataclass
class RenderReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[RowError] = field(default_factory=list)


def read_manifest(out_dir: Path) -> dict[str, dict]:
    """Entries of ``manifest.jsonl`` by file name (lines that are not complete JSON are ignored)."""
    path = out_dir / MANIFEST
    entries = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "file" in entry:
                entries[entry["file"]] = entry
    return entries


def _append_manifest(out_dir: Path, entry: dict) -> None:
    # One write() of a whole line on an O_APPEND descriptor: a kill cannot leave half a line
    # followed by another entry.
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(out_dir / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_request(pipe: AudioDiffusion, req: RenderRequest, default_seconds: float | None) -> float:
    if req.label is None:
        raise ValueError(f"this model is conditioned on labels, not text; give a label "
                         f"(one of {', '.join(pipe.labels)}) instead of the prompt {req.prompt!r}")
    pipe.model.conditioner.label_id(req.label)
    seconds = req.seconds or default_seconds or pipe.model.seconds
    if seconds > MAX_SECONDS:
        raise ValueError(f"seconds={seconds} is longer than the {MAX_SECONDS} s limit")
    return seconds


def render_requests(pipe: AudioDiffusion, requests: Iterable[RenderRequest], out_dir: str | Path,
                    sampler: SamplerSettings, batch_size: int = 16, seconds: float | None = None,
                    subtype: str = "pcm16", progress: bool | None = None) -> RenderReport:
    """Render every request not already in the folder's manifest; bad rows are reported, not fatal."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = read_manifest(out_dir)
    report = RenderReport()
    pending: dict[float, list[RenderRequest]] = {}
    for req in requests:
        file = f"{req.name}.wav"
        if file in done and (out_dir / file).is_file():
            report.skipped.append(file)
            continue
        try:
            clip_seconds = _check_request(pipe, req, seconds)
        except (ValueError, UnknownLabelError) as err:
            report.failed.append(RowError(req.row, str(err)))
            continue
        pending.setdefault(clip_seconds, []).append(req)

    total = sum(len(v) for v in pending.values())
    bar = tqdm(total=total, desc="rendering", unit="clip", disable=None if progress is None else not progress)
    for clip_seconds, reqs in pending.items():
        for start in range(0, len(reqs), batch_size):
            chunk = reqs[start : start + batch_size]
            clips = pipe.generate_batch([r.label for r in chunk], [r.seed for r in chunk], clip_seconds, sampler,
                                        progress=False)
            for req, clip in zip(chunk, clips, strict=True):
                file = f"{req.name}.wav"
                clip.save(out_dir / file, subtype)
                entry = {"file": file, "row": req.row, **clip.metadata, "prompt": req.prompt,
                         "sample_rate": clip.sample_rate, "frames": clip.samples.shape[-1]}
                _append_manifest(out_dir, entry)
                report.written.append(file)
                bar.update(1)
    bar.close()
    return report
