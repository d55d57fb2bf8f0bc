"""What ``audiodiff-bench`` measures: a model's speed and memory on the machine it runs on.

Every figure is a median over repeats after a warm-up run (first calls build oneDNN kernels and
caches). Clips are rendered through the Python API (``generate_batch``: sampling, vocoder and the
default post-processing), so the figures are what a user gets. Peak memory is the resident-set
high-water mark (``ru_maxrss``): of this process, and of a fresh process that renders a batch job
(100 clips of 4 s by default) through ``audiodiff-render``'s code path.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import torch

from audiodiff.model_files import ModelLoadError
from audiodiff.model_files import resolve_model as find_model
from audiodiff.pipeline import AudioDiffusion, SamplerSettings
from audiodiff.vocoders.vocos import cpu_has_native_bf16

DEFAULT_TRAIN_BATCH = 16  # data.batch_size of conf/data/folder.yaml, for a model whose run config is not beside it
PROMPT = "a short bright coin pickup"
REFERENCE_STEPS = 50  # the steps-sweep's quality reference


class NoModelError(ValueError):
    """No checkpoint given and no default model installed."""


@dataclass
class BenchSettings:
    """What to measure and how. ``steps`` None: the sampler preset's steps. Lengths in seconds."""

    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    precision: str = "fp32"
    threads: int = 1
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    latency_seconds: tuple[float, ...] = (1.0, 4.0)
    throughput_seconds: float = 1.0
    warmup: int = 1
    repeats: int = 5
    train_steps: int = 5
    train_batch: int | None = None
    render_clips: int = 100
    render_seconds: float = 4.0
    render_batch: int = 16
    adp_batch: int = 8
    steps_sweep: tuple[int, ...] = ()
    compare_precision: bool = False
    seed: int = 0
    quick: bool = False

    model_sampler: SamplerSettings | None = None  # the model's own defaults, filled in once it is loaded

    def sampler_settings(self, **overrides) -> SamplerSettings:
        """The sampler preset named by ``sampler`` (with the model's guidance), or (None) the model's
        own default settings, with ``steps``, ``guidance`` and ``overrides`` replaced where given."""
        return SamplerSettings.choose(self.model_sampler, self.sampler,
                                      **{"steps": self.steps, "guidance": self.guidance, **overrides})


@dataclass
class Workload:
    """What each benchmark clip asks for: a prompt for a text model, else the first label."""

    label: str | None
    prompt: str | None
    clip: Callable[[float], float] = field(repr=False)  # a length in seconds → one the model renders

    def batch(self, pipe: AudioDiffusion, size: int, seconds: float, sampler: SamplerSettings,
              seed: int = 0) -> list:
        """``size`` clips of ``seconds`` (seeds ``seed``…), through the pipeline."""
        prompts = [self.prompt] * size if self.prompt is not None else None
        return pipe.generate_batch([self.label] * size, list(range(seed, seed + size)), seconds, sampler,
                                   progress=False, prompts=prompts)


def resolve_model(checkpoint: str | os.PathLike | None) -> Path:
    """The model to measure: ``checkpoint`` (a path or a shipped model's name), else the shipped
    default model."""
    try:
        return find_model(checkpoint)
    except ModelLoadError as err:
        raise NoModelError(f"no model to measure: pass --checkpoint PATH (a model folder or a training .ckpt); "
                           f"{err}") from None


def workload(pipe: AudioDiffusion) -> Workload:
    duration = pipe.model.conditioner.duration

    def clip(seconds: float) -> float:
        if duration is None:
            return seconds
        return min(max(seconds, duration.min_seconds), duration.max_seconds)

    if pipe.supports_text:
        return Workload(None, PROMPT, clip)
    return Workload(pipe.labels[0] if pipe.labels else None, None, clip)


def median_seconds(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MiB: Linux's VmHWM, which starts afresh in a
    new program (``ru_maxrss`` keeps the parent's peak across fork and exec), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def machine() -> dict:
    """Where the figures come from: CPU, cores, torch and its threads, date (UTC)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "bf16_native": cpu_has_native_bf16(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "load_average": os.getloadavg()}


def mel_distance_db(pipe: AudioDiffusion, a: Sequence, b: Sequence, range_db: float = 80.0) -> float:
    """Mean absolute difference (dB) between the log-mel spectrograms of two equally long lists of
    clips (each an :class:`~audiodiff.pipeline.Audio`), in the model's mel settings where it has
    them (80 bins at 22.05 kHz for the default model), else 64 bins. Each pair is floored at
    ``range_db`` under its loudest bin, so inaudible detail near the -100 dB floor does not count."""
    from audiodiff.representations import MelSpectrogram

    rep = pipe.model.representation
    mel = rep if isinstance(rep, MelSpectrogram) else MelSpectrogram(pipe.sample_rate)
    waves = [torch.stack([torch.from_numpy(clip.samples) for clip in clips]) for clips in (a, b)]
    with torch.inference_mode():
        x, y = mel.log_mel(waves[0]), mel.log_mel(waves[1])
        floor = torch.maximum(x.amax(dim=(1, 2)), y.amax(dim=(1, 2)))[:, None, None] - range_db
        return float((torch.maximum(x, floor) - torch.maximum(y, floor)).abs().mean())


def measure_latency(pipe: AudioDiffusion, work: Workload, settings: BenchSettings) -> list[dict]:
    """Single-clip wall time (s) for each of ``latency_seconds`` (clipped to the model's range)."""
    sampler = settings.sampler_settings()
    rows = []
    for asked in settings.latency_seconds:
        seconds = work.clip(asked)
        wall = median_seconds(lambda s=seconds: work.batch(pipe, 1, s, sampler, settings.seed), settings.warmup,
                              settings.repeats)
        rows.append({"asked_seconds": asked, "seconds": seconds, "latency_s": wall, "realtime_factor": seconds / wall})
    return rows


def measure_throughput(pipe: AudioDiffusion, work: Workload, settings: BenchSettings, batch: int,
                       precision: str | None = None) -> dict:
    """Seconds of audio per second of wall time for a batch of ``throughput_seconds`` clips,
    vocoder and post-processing included, and the vocoder's share of the wall time."""
    sampler = settings.sampler_settings()
    seconds = work.clip(settings.throughput_seconds)
    previous, pipe.precision = pipe.precision, precision or pipe.precision
    try:
        repeats = max(1, settings.repeats // 2) if batch > 8 else settings.repeats  # long runs vary less
        wall = median_seconds(lambda: work.batch(pipe, batch, seconds, sampler, settings.seed), settings.warmup,
                              repeats)
        model = pipe.model
        prompts = [work.prompt] * batch if work.prompt is not None else None
        ids = None if work.label is None else [model.conditioner.label_id(work.label)] * batch
        features = model.sample(ids, list(range(batch)), seconds, sampler=sampler.name, steps=1,
                                schedule=sampler.schedule, progress=False, decode=False, prompts=prompts)
        with torch.inference_mode():
            vocoder = median_seconds(lambda: model.representation.decode(features, model.num_samples(seconds)),
                                     settings.warmup, settings.repeats)
    finally:
        pipe.precision = previous
    return {"batch": batch, "seconds": seconds, "precision": precision or pipe.precision, "wall_s": wall,
            "realtime_factor": batch * seconds / wall, "vocoder_s": vocoder, "vocoder_share": vocoder / wall}


def _run_batch_size(path: Path) -> tuple[int, str]:
    """The training batch size of the run a model file sits in (``<run>/.hydra/config.yaml``, read
    for ``<run>/checkpoints/X.ckpt`` and ``<run>/model``), else the folder data config's."""
    import yaml

    run = path.parent.parent if path.suffix == ".ckpt" else path.parent
    config = run / ".hydra" / "config.yaml"
    if config.is_file():
        size = (yaml.safe_load(config.read_text()) or {}).get("data", {}).get("batch_size")
        if isinstance(size, int) and size > 0:
            return size, str(config)
    return DEFAULT_TRAIN_BATCH, "default (conf/data/folder.yaml)"


def measure_training(path: Path, pipe: AudioDiffusion, settings: BenchSettings) -> dict:
    """Optimizer steps per second of ``audiodiff-train``'s LightningModule on random batches of
    the run's batch size and the model's default length (data loading excluded: the batches are
    in memory; gradient clipping and the EMA update included)."""
    import lightning as L

    from audiodiff.training import DiffusionTask

    batch, source = (settings.train_batch, "--train-batch") if settings.train_batch else _run_batch_size(path)
    model = pipe.model
    task = DiffusionTask(model=model.config)
    task.model.load_state_dict(model.state_dict())  # the normalisation statistics are fitted
    task.ema.load_state_dict(model.state_dict())
    samples = model.num_samples(model.seconds)
    total = settings.warmup + settings.train_steps + 1
    gen = torch.Generator().manual_seed(settings.seed)
    labels = max(1, len(model.labels))
    items = [{"audio": 0.3 * torch.randn(1, samples, generator=gen), "label": i % labels,
              "caption": f"{PROMPT} {i % 7}", "seconds": model.seconds} for i in range(batch * total)]
    loader = torch.utils.data.DataLoader(items, batch_size=batch)
    starts: list[float] = []

    class StepClock(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            starts.append(time.perf_counter())

    # No "GPU available" banner or tips in the bench's output.
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero",
                                                    "lightning.fabric")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = L.Trainer(max_steps=total, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                gradient_clip_val=1.0, callbacks=[StepClock()], default_root_dir=tempfile.gettempdir())
            trainer.fit(task, train_dataloaders=loader)
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
    intervals = [b - a for a, b in zip(starts, starts[1:], strict=False)][settings.warmup:]
    step = statistics.median(intervals)
    return {"batch_size": batch, "batch_size_from": source, "seconds": model.seconds, "step_s": step,
            "steps_per_s": 1 / step}


def _render_job(path: str, settings: BenchSettings) -> dict:
    """In a fresh process: load the model and render ``render_clips`` clips of ``render_seconds``
    with audiodiff-render's code path into a temporary folder; returns the process's peak RSS."""
    from audiodiff.prompts import RenderRequest
    from audiodiff.rendering import render_requests

    torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    pipe = AudioDiffusion.from_pretrained(path, device="cpu", precision=settings.precision)
    work = workload(pipe)
    seconds = work.clip(settings.render_seconds)
    requests = [RenderRequest(row=i + 1, name=f"clip{i:03d}", label=work.label, prompt=work.prompt, seconds=seconds,
                              seed=settings.seed + i) for i in range(settings.render_clips)]
    with tempfile.TemporaryDirectory() as out:
        report = render_requests(pipe, requests, out, settings.sampler_settings(), settings.render_batch,
                                 progress=False)
    return {"clips": len(report.written), "seconds": seconds, "batch_size": settings.render_batch,
            "wall_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def measure_render_memory(path: Path, settings: BenchSettings) -> dict:
    """Peak RSS (MiB) and wall time (s, model loading included) of a fresh process rendering
    ``render_clips`` clips of ``render_seconds`` s in batches of ``render_batch``."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_render_job, str(path), settings).result()


def measure_steps_sweep(pipe: AudioDiffusion, work: Workload, settings: BenchSettings) -> list[dict]:
    """For each of ``steps_sweep``: single 1 s clip latency (s), and the mel distance (dB) of 8
    clips to the same seeds rendered with 50 steps; the 50-step clips' distance to other seeds
    (``seed_spread_db``) gives the scale of a different sound."""
    seconds = work.clip(1.0)
    reference = work.batch(pipe, 8, seconds, settings.sampler_settings(steps=REFERENCE_STEPS), settings.seed)
    spread = mel_distance_db(pipe, reference, reference[1:] + reference[:1])
    rows = []
    for steps in settings.steps_sweep:
        sampler = settings.sampler_settings(steps=steps)
        latency = median_seconds(lambda s=sampler: work.batch(pipe, 1, seconds, s, settings.seed), settings.warmup,
                                 settings.repeats)
        clips = work.batch(pipe, 8, seconds, sampler, settings.seed)
        rows.append({"steps": steps, "latency_1s_s": latency,
                     "mel_distance_to_50_steps_db": mel_distance_db(pipe, clips, reference),
                     "seed_spread_db": spread})
    return rows


def compare_precision(pipe: AudioDiffusion, work: Workload, settings: BenchSettings) -> dict:
    """fp32 against bf16: throughput at each batch size, and the mel distance (dB) between the two
    renders of the same 8 seeds (against ``seed_spread_db``, the distance between other seeds)."""
    seconds = work.clip(settings.throughput_seconds)
    sampler = settings.sampler_settings()
    renders = {}
    for precision in ("fp32", "bf16"):
        pipe.precision, previous = precision, pipe.precision
        try:
            renders[precision] = work.batch(pipe, 8, seconds, sampler, settings.seed)
        finally:
            pipe.precision = previous
    rows = []
    for batch in settings.batch_sizes:
        fp32, bf16 = (measure_throughput(pipe, work, settings, batch, p) for p in ("fp32", "bf16"))
        rows.append({"batch": batch, "fp32_realtime_factor": fp32["realtime_factor"],
                     "bf16_realtime_factor": bf16["realtime_factor"],
                     "bf16_speedup": bf16["realtime_factor"] / fp32["realtime_factor"]})
    return {"throughput": rows, "mel_distance_db": mel_distance_db(pipe, renders["fp32"], renders["bf16"]),
            "seed_spread_db": mel_distance_db(pipe, renders["fp32"], renders["fp32"][1:] + renders["fp32"][:1])}


def measure_adp(pipe: AudioDiffusion, work: Workload, settings: BenchSettings, ours: dict | None) -> dict:
    """audio-diffusion-pytorch's waveform model of about our U-Net's parameter count, at the same
    batch, clip length, sample rate and steps; ``ratio`` is our throughput over its."""
    from audiodiff.adp_baseline import adp_generate, adp_model_like, count_parameters

    ours_params = count_parameters(pipe.model.net)
    model = adp_model_like(ours_params)
    sampler = settings.sampler_settings()
    batch, seconds = settings.adp_batch, work.clip(settings.throughput_seconds)
    if ours is None or ours["batch"] != batch:
        ours = measure_throughput(pipe, work, settings, batch)
    samples = pipe.model.num_samples(seconds)
    adp_generate(model, batch, samples, 1)  # warm-up
    wall = median_seconds(lambda: adp_generate(model, batch, samples, sampler.steps), 0,
                          max(1, settings.repeats // 2))
    theirs = batch * seconds / wall
    return {"adp_parameters": count_parameters(model), "our_parameters": ours_params, "batch": batch,
            "seconds": seconds, "sample_rate": pipe.sample_rate, "steps": sampler.steps, "adp_wall_s": wall,
            "adp_realtime_factor": theirs, "our_realtime_factor": ours["realtime_factor"],
            "ratio": ours["realtime_factor"] / theirs,
            "note": "ours: sampling + vocoder + post-processing; theirs: sampling only (waveform, no vocoder)"
                    + (f"; ours with guidance {settings.guidance} runs 2 network calls per step"
                       if settings.guidance != 1 else "")}


def run_benchmark(path: Path, settings: BenchSettings, vs_adp: bool = False,
                  report: Callable[[str], None] = lambda line: None) -> dict:
    """Every measurement of ``audiodiff-bench`` for the model at ``path``; ``report`` gets a line
    before each part (they take from seconds to minutes)."""
    torch.set_num_threads(settings.threads)
    report(f"loading {path}")
    start = time.perf_counter()
    pipe = AudioDiffusion.from_pretrained(path, device="cpu", precision=settings.precision)
    load_s = time.perf_counter() - start
    settings.model_sampler = pipe.default_sampler
    work = workload(pipe)
    sampler = settings.sampler_settings()
    result = {"model": str(path), "machine": machine(), "settings": asdict(settings),
              "sampler": {"name": sampler.name, "steps": sampler.steps, "schedule": sampler.schedule,
                          "guidance": sampler.guidance},
              "workload": {"label": work.label, "prompt": work.prompt},
              "model_info": {"unet_parameters": sum(p.numel() for p in pipe.model.net.parameters()),
                             "sample_rate": pipe.sample_rate, "vocoder": type(getattr(
                                 pipe.model.representation, "vocoder", None)).__name__, "load_s": load_s}}
    report("single-clip latency")
    result["latency"] = measure_latency(pipe, work, settings)
    result["throughput"] = []
    for batch in settings.batch_sizes:
        report(f"throughput at batch {batch}")
        result["throughput"].append(measure_throughput(pipe, work, settings, batch))
    if settings.steps_sweep:
        report(f"steps sweep {list(settings.steps_sweep)} against {REFERENCE_STEPS} steps")
        result["steps_sweep"] = measure_steps_sweep(pipe, work, settings)
    if settings.compare_precision:
        report("fp32 against bf16")
        result["precision_comparison"] = compare_precision(pipe, work, settings)
    report(f"training steps (batches of {settings.train_batch or 'the run config'})")
    result["training"] = measure_training(path, pipe, settings)
    result["peak_rss_mb"] = peak_rss_mb()
    report(f"render of {settings.render_clips} clips of {settings.render_seconds:g} s in a fresh process")
    result["render"] = measure_render_memory(path, settings)
    if vs_adp:
        report("audio-diffusion-pytorch at the same batch and steps")
        same = [row for row in result["throughput"] if row["batch"] == settings.adp_batch]
        result["vs_adp"] = measure_adp(pipe, work, settings, same[0] if same else None)
    return result


def format_table(result: dict) -> str:
    """The figures of :func:`run_benchmark` as a Markdown table, with the conditions above it."""
    m, s = result["machine"], result["sampler"]
    lines = [f"model {result['model']} ({result['model_info']['unet_parameters'] / 1e6:.2f}M-parameter U-Net, "
             f"{result['model_info']['vocoder']}); {s['name']} {s['steps']} steps, guidance {s['guidance']:g}, "
             f"{result['settings']['precision']}",
             f"{m['cpu']}, {m['cores']} cores, {m['threads']} torch thread(s), load average "
             f"{m['load_average'][0]:.2f}, torch {m['torch']}, {m['date']}", "",
             "| what | figure |", "| --- | --- |"]
    for row in result["latency"]:
        lines.append(f"| one {row['seconds']:g} s clip | {row['latency_s']:.3f} s ({row['realtime_factor']:.1f}x real "
                     "time) |")
    for row in result["throughput"]:
        lines.append(f"| batch of {row['batch']} × {row['seconds']:g} s | {row['realtime_factor']:.1f}x real time "
                     f"({row['wall_s']:.2f} s; vocoder {100 * row['vocoder_share']:.0f}%) |")
    t = result["training"]
    lines.append(f"| training, batch {t['batch_size']} × {t['seconds']:g} s | {t['steps_per_s']:.2f} steps/s |")
    r = result["render"]
    lines.append(f"| peak memory, render of {r['clips']} clips × {r['seconds']:g} s (batches of {r['batch_size']}) "
                 f"| {r['peak_rss_mb']:.0f} MiB ({r['wall_s']:.1f} s) |")
    lines.append(f"| peak memory, this benchmark | {result['peak_rss_mb']:.0f} MiB |")
    for row in result.get("steps_sweep", []):
        lines.append(f"| {row['steps']} steps: one 1 s clip; mel distance to 50 steps | {row['latency_1s_s']:.3f} s; "
                     f"{row['mel_distance_to_50_steps_db']:.2f} dB (other seeds: {row['seed_spread_db']:.2f} dB) |")
    if "precision_comparison" in result:
        p = result["precision_comparison"]
        for row in p["throughput"]:
            lines.append(f"| bf16 / fp32 throughput, batch {row['batch']} | {row['bf16_speedup']:.2f}x "
                         f"({row['fp32_realtime_factor']:.1f}x → {row['bf16_realtime_factor']:.1f}x real time) |")
        lines.append(f"| bf16 against fp32, same seeds | {p['mel_distance_db']:.3f} dB mel distance (other seeds: "
                     f"{p['seed_spread_db']:.2f} dB) |")
    if "vs_adp" in result:
        a = result["vs_adp"]
        lines.append(f"| audio-diffusion-pytorch ({a['adp_parameters'] / 1e6:.2f}M), batch {a['batch']} × "
                     f"{a['seconds']:g} s, {a['steps']} steps | {a['adp_realtime_factor']:.2f}x real time; ours "
                     f"{a['our_realtime_factor']:.1f}x: **{a['ratio']:.1f}x** faster |")
    return "\n".join(lines)

