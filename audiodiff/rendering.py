"""Batch rendering of prompt-file rows into a folder of WAVs plus ``manifest.jsonl``.

Rows are checked and expanded into jobs (one per file: a row with ``num: 3`` gives three), and the
jobs are composed into model batches by a fixed rule: jobs that share a length and sampler
settings, in file order, ``batch_size`` at a time. The composition depends only on the prompt file
and the settings, never on what is already done or on how many processes share the work, so a
file's bytes are the same in a fresh run, a resumed run and a run over several processes (a batch
with some files still missing is generated whole, and only the missing files are written).

Each WAV is written atomically and only then gets its manifest line, so the folder never holds a
half-written file and the manifest never names one. Rerunning over the same folder skips files
already listed, so a killed batch resumes without redoing work.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audiodiff.conditioning import UnknownLabelError
from audiodiff.model import MAX_SECONDS, NonFiniteOutputError
from audiodiff.pipeline import AudioDiffusion, SamplerSettings
from audiodiff.postprocess import PostProcessing
from audiodiff.prompts import RenderRequest, RowError

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class RenderJob:
    """One file to write: variation ``variation`` (0-based) of a request, with its own seed and
    the row's checked length and sampler settings."""

    request: RenderRequest
    variation: int
    file: str
    seed: int
    seconds: float
    sampler: SamplerSettings

    @property
    def batch_key(self) -> str:
        """Jobs with the same key may share a model batch."""
        return json.dumps([self.seconds, dataclasses.asdict(self.sampler)], sort_keys=True)


@dataclass
class RenderReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[RowError] = field(default_factory=list)
    written_per_process: list[int] = field(default_factory=list)  # when several processes rendered

    def merge(self, other: RenderReport) -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.failed += other.failed
        self.written_per_process.append(len(other.written))


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
    # One write() of a whole line on an O_APPEND descriptor: neither a kill nor a second process
    # writing at the same time can leave half a line followed by another entry.
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(out_dir / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def row_sampler(base: SamplerSettings, overrides: dict) -> SamplerSettings:
    """The sampler settings of a row: ``base`` with the row's fields replaced; a row that names
    another sampler starts from that sampler's preset instead, with ``base``'s guidance."""
    overrides = dict(overrides)
    name = overrides.pop("sampler", None)
    return SamplerSettings.choose(base, name if name != base.name else None, **overrides)


def _check_request(pipe: AudioDiffusion, req: RenderRequest, default_seconds: float | None,
                   sampler: SamplerSettings) -> tuple[float, SamplerSettings]:
    if req.label is None and not pipe.supports_text:
        raise ValueError(f"this model is conditioned on labels, not text; give a label "
                         f"(one of {', '.join(pipe.labels)}) instead of the prompt {req.prompt!r}")
    if req.label is not None:
        pipe.model.conditioner.label_id(req.label)
    seconds = req.seconds or default_seconds or pipe.model.seconds
    if seconds > MAX_SECONDS:
        raise ValueError(f"seconds={seconds} is longer than the {MAX_SECONDS} s limit")
    return seconds, row_sampler(sampler, req.sampler)


def plan_jobs(pipe: AudioDiffusion, requests: Iterable[RenderRequest], sampler: SamplerSettings,
              seconds: float | None = None) -> tuple[list[RenderJob], list[RowError]]:
    """Check each row against the model and settings and expand it into its files' jobs; a row
    that cannot be rendered becomes a :class:`RowError` instead."""
    jobs, errors = [], []
    for req in requests:
        try:
            clip_seconds, settings = _check_request(pipe, req, seconds, sampler)
        except (ValueError, UnknownLabelError) as err:
            errors.append(RowError(req.row, str(err)))
            continue
        jobs += [RenderJob(req, i, f"{stem}.wav", req.seed + i, clip_seconds, settings)
                 for i, stem in enumerate(req.names)]
    return jobs, errors


def compose_batches(jobs: Sequence[RenderJob], batch_size: int) -> list[list[RenderJob]]:
    """Group jobs by length and sampler settings (groups in order of first appearance, jobs in
    file order) and cut each group into batches of at most ``batch_size``."""
    groups: dict[str, list[RenderJob]] = {}
    for job in jobs:
        groups.setdefault(job.batch_key, []).append(job)
    return [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


class BatchRenderer:
    """Renders composed batches into ``out_dir``: generates a batch, writes its missing files
    (WAV with provenance, optional spectrogram PNG) and their manifest lines."""

    def __init__(self, pipe: AudioDiffusion, out_dir: str | Path, post: PostProcessing | None = None,
                 subtype: str = "pcm16", spectrogram: bool = False) -> None:
        self.pipe = pipe
        self.out_dir = Path(out_dir)
        self.post = post or PostProcessing()
        self.subtype = subtype
        self.spectrogram = spectrogram
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if os.environ.get("LOCAL_RANK", "0") == "0":  # other ranks start while rank 0 waits for them
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        # A write killed with SIGKILL leaves its temporary file (never a partial WAV under its own
        # name); it holds nothing worth keeping, and its row is rendered again.
        stale = [*self.out_dir.glob(".*.tmp.wav"), *self.out_dir.glob(".*.tmp.png")]
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.info("removed %d temporary files left by an interrupted run in %s", len(stale), self.out_dir)

    def done(self) -> set[str]:
        """Files listed in the manifest and present."""
        return {file for file in read_manifest(self.out_dir) if (self.out_dir / file).is_file()}

    def render(self, batch: Sequence[RenderJob], done: set[str], report: RenderReport) -> int:
        """Generate ``batch`` whole and write the files not in ``done``; returns how many were written."""
        missing = [job for job in batch if job.file not in done]
        report.skipped += [job.file for job in batch if job.file in done]
        if not missing:
            return 0
        first = batch[0]
        try:
            clips = self.pipe.generate_batch(
                [job.request.label for job in batch], [job.seed for job in batch], first.seconds, first.sampler,
                progress=False,
                prompts=[job.request.prompt for job in batch] if self.pipe.supports_text else None,
                negative_prompts=[job.request.negative_prompt for job in batch] if self.pipe.supports_text else None,
                post=self.post)
        except (NonFiniteOutputError, ValueError) as err:
            rows = sorted({job.request.row for job in missing})
            report.failed += [RowError(row, f"generation failed ({err})") for row in rows]
            return 0
        written = 0
        for job, clip in zip(batch, clips, strict=True):
            if job.file in done:
                continue
            if not self.pipe.supports_text:
                clip.metadata["prompt"] = job.request.prompt  # a label model records the prompt as a description
            record = clip.provenance()
            path = clip.save(self.out_dir / job.file, self.subtype, provenance=record)
            if self.spectrogram:
                from audiodiff.plotting import save_spectrogram

                save_spectrogram(path.with_suffix(".png"), clip.samples, clip.sample_rate, title=job.file)
            entry = {"file": job.file, "row": job.request.row, "variation": job.variation, **clip.metadata,
                     **record, "sample_rate": clip.sample_rate, "frames": clip.samples.shape[-1]}
            _append_manifest(self.out_dir, entry)
            report.written.append(job.file)
            written += 1
        return written


def render_jobs(renderer: BatchRenderer, jobs: Sequence[RenderJob], batch_size: int = 16,
                progress: bool | None = None) -> RenderReport:
    """Render, in this process, every job whose file is not already done (progress bar: files
    written of those missing, with an ETA)."""
    from tqdm.auto import tqdm

    report = RenderReport()
    done = renderer.done()
    bar = tqdm(total=sum(job.file not in done for job in jobs), desc="rendering", unit="clip",
               disable=None if progress is None else not progress)
    for batch in compose_batches(jobs, batch_size):
        bar.update(renderer.render(batch, done, report))
    bar.close()
    return report


def render_requests(pipe: AudioDiffusion, requests: Iterable[RenderRequest], out_dir: str | Path,
                    sampler: SamplerSettings, batch_size: int = 16, seconds: float | None = None,
                    subtype: str = "pcm16", progress: bool | None = None, post: PostProcessing | None = None,
                    spectrogram: bool = False) -> RenderReport:
    """Render every file of ``requests`` not already in the folder's manifest, in this process;
    bad rows are reported in the returned report, not raised."""
    jobs, errors = plan_jobs(pipe, requests, sampler, seconds)
    report = render_jobs(BatchRenderer(pipe, out_dir, post, subtype, spectrogram), jobs, batch_size, progress)
    report.failed = errors + report.failed
    return report
