"""audiodiff-bench end to end on a tiny model (mechanics and sane figures, never timings: machines
are shared and noisy), bf16 output against fp32, and the work sampling must not repeat per step."""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from audiodiff import AudioDiffusion
from audiodiff.cli import bench
from audiodiff.model import AudioDiffusionModel

from .test_conditioning import DURATION, LABELS, SMALL_TEXT, tiny_config


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A label + text + duration model (0.25-1 s) trained for 10 steps, saved as ``<run>/model`` with
    the run's ``.hydra/config.yaml`` (batch size 4) beside it."""
    torch.manual_seed(0)
    model = AudioDiffusionModel.from_config(tiny_config({"label": LABELS, "text": SMALL_TEXT, "duration": DURATION}))
    audio = torch.randn(4, 1, 4000) * torch.linspace(1, 0, 4000)
    model.representation.fit_statistics(audio)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)  # high: non-trivial output after 10 steps
    for _ in range(10):
        opt.zero_grad()
        model.loss(audio, torch.tensor([0, 1, 0, 1]), ["a bell", "a drum", None, "bell"],
                   torch.full((4,), 0.5)).backward()
        opt.step()
    run = tmp_path_factory.mktemp("run")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"batch_size": 4}}))
    return model.save_pretrained(run / "model")


def positive(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def vm_hwm_mb() -> float:
    """This process's resident-set high-water mark in MiB, read here (not through the code under test)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status VmHWM on this system")


# What a fresh process holds before the render job renders anything: the job's imports, torch at one
# thread and the model loaded. The job's peak must be at least this, and at most this plus what its
# work can need: 3 clips of 1 s at 8 kHz and a 0.1M-parameter model are a few MiB, so RENDER_WORK_MB
# is room for allocator slack and lazily imported modules, not for the clips.
BASELINE = """
import sys
from pathlib import Path
import torch
from audiodiff.pipeline import AudioDiffusion
from audiodiff.prompts import RenderRequest
from audiodiff.rendering import render_requests
torch.set_num_threads(1)
AudioDiffusion.from_pretrained(sys.argv[1], device="cpu")
print(next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:")))
"""
RENDER_WORK_MB = 250


@pytest.fixture(scope="module")
def bench_run(tiny_model, tmp_path_factory):
    """One audiodiff-bench run on the tiny model, audio-diffusion-pytorch baseline included; returns
    (exit status, printed table, JSON figures, this process's VmHWM before and after, in MiB)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    printed = io.StringIO()
    before = vm_hwm_mb()
    with contextlib.redirect_stdout(printed):
        rc = bench.main(["--checkpoint", str(tiny_model), "--quick", "--render-clips", "3", "--batch-sizes", "1,2",
                         "--steps", "4", "--steps-sweep", "2", "--compare-precision", "--vs-adp", "--out", str(out)])
    after = vm_hwm_mb()
    return rc, printed.getvalue(), json.loads(out.read_text()) if out.is_file() else None, before, after


@pytest.mark.slow
def test_bench_runs_end_to_end_and_writes_its_figures(bench_run):
    rc, table, result, _, _ = bench_run
    assert rc == 0
    assert "| one 1 s clip |" in table and "steps/s" in table and "peak memory" in table
    assert {"model", "machine", "settings", "sampler", "latency", "throughput", "training", "peak_rss_mb",
            "render", "steps_sweep", "precision_comparison", "vs_adp"} <= set(result)
    assert result["sampler"]["steps"] == 4 and result["machine"]["threads"] == 1
    assert [row["seconds"] for row in result["latency"]] == [1.0, 1.0]  # 4 s asked, clipped to the model's range
    assert all(positive(row["latency_s"]) and positive(row["realtime_factor"]) for row in result["latency"])
    assert [row["batch"] for row in result["throughput"]] == [1, 2]
    for row in result["throughput"]:
        assert positive(row["realtime_factor"]) and positive(row["vocoder_s"]) and positive(row["vocoder_share"])
        assert row["realtime_factor"] == pytest.approx(row["batch"] * row["seconds"] / row["wall_s"])
    training = result["training"]
    assert training["batch_size"] == 4 and training["batch_size_from"].endswith("config.yaml")
    assert positive(training["steps_per_s"]) and training["steps_per_s"] == pytest.approx(1 / training["step_s"])
    assert result["render"]["clips"] == 3 and result["render"]["seconds"] == 1.0
    sweep = result["steps_sweep"][0]
    assert sweep["steps"] == 2 and positive(sweep["mel_distance_to_50_steps_db"]) and positive(sweep["seed_spread_db"])
    comparison = result["precision_comparison"]
    assert [row["batch"] for row in comparison["throughput"]] == [1, 2]
    assert comparison["mel_distance_db"] < comparison["seed_spread_db"]


@pytest.mark.slow
def test_bench_peak_memory_figures_match_independent_readings(bench_run, tiny_model):
    """This process's figure lies between its high-water mark read before and after the run (a wrong
    unit, or the current RSS for the peak, falls outside); the render job's is at least what a fresh
    process holds once it has imported the job's modules and loaded the model, measured here in
    another fresh process, and at most that plus RENDER_WORK_MB (a parent's peak carried across
    fork and exec, as ``ru_maxrss`` does, or a wrong unit, falls outside)."""
    _, _, result, before, after = bench_run
    assert before - 0.01 <= result["peak_rss_mb"] <= after + 0.01, (before, result["peak_rss_mb"], after)
    baseline = subprocess.run([sys.executable, "-c", BASELINE, str(tiny_model)], capture_output=True, text=True,
                              check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    loaded = int(baseline.stdout.split()[-1]) / 1024
    render = result["render"]["peak_rss_mb"]
    print(f"peak RSS: this process {result['peak_rss_mb']:.0f} MiB (VmHWM {before:.0f} before, {after:.0f} after); "
          f"render job {render:.0f} MiB against {loaded:.0f} MiB for its imports and the model")
    assert loaded <= render <= loaded + RENDER_WORK_MB


@pytest.mark.slow
def test_bench_vs_adp_times_a_baseline_of_about_our_size_on_the_same_work(bench_run):
    from audiodiff.adp_baseline import adp_model_like, count_parameters

    _, table, result, _, _ = bench_run
    adp = result["vs_adp"]
    ours = result["model_info"]["unet_parameters"]
    assert adp["our_parameters"] == ours
    assert adp["adp_parameters"] == count_parameters(adp_model_like(ours))  # the grid's closest to ours
    assert (adp["batch"], adp["seconds"], adp["steps"]) == (8, 1.0, result["sampler"]["steps"])
    assert adp["sample_rate"] == result["model_info"]["sample_rate"] == 8000
    for key in ("adp_wall_s", "adp_realtime_factor", "our_realtime_factor", "ratio"):
        assert positive(adp[key]), key
    assert adp["adp_realtime_factor"] == pytest.approx(adp["batch"] * adp["seconds"] / adp["adp_wall_s"])
    assert adp["ratio"] == pytest.approx(adp["our_realtime_factor"] / adp["adp_realtime_factor"])
    assert "sampling only" in adp["note"]
    row = next(line for line in table.splitlines() if line.startswith("| audio-diffusion-pytorch"))
    assert "batch 8 × 1 s, 4 steps" in row and f"**{adp['ratio']:.1f}x** faster" in row


def test_bench_without_a_model_or_baseline_says_what_to_pass(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("audiodiff.model_files.PRETRAINED_DIR", tmp_path)
    assert bench.main([]) == 2
    assert "pass --checkpoint PATH" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "audio_diffusion_pytorch", None)  # as if not installed
    assert bench.main(["--vs-adp", "--checkpoint", str(tmp_path)]) == 2
    assert "pip install 'audiodiff[bench]'" in capsys.readouterr().err
    assert bench.main(["--checkpoint", str(tmp_path), "--sampler", "nope"]) == 2
    assert "unknown sampler 'nope'" in capsys.readouterr().err


def test_bf16_output_is_close_to_fp32(tiny_model):
    pipe = AudioDiffusion.from_pretrained(tiny_model, device="cpu")
    options = dict(sampler="dpmpp_2m", steps=8, schedule="karras", prompts=["a bell"] * 4, decode=False)
    fp32 = pipe.model.sample([0, 1, 0, 1], [1, 2, 3, 4], 0.5, **options)
    bf16 = pipe.model.sample([0, 1, 0, 1], [1, 2, 3, 4], 0.5, precision="bf16", **options)
    assert not torch.equal(fp32, bf16)  # bf16 did run
    assert (fp32 - bf16).abs().mean() < 0.05 * (fp32 - fp32.roll(1, 0)).abs().mean()
    pipe.precision = "bf16"
    clip = pipe.generate(label=0, prompt="a bell", seconds=0.5, seed=1, steps=4, sampler="dpmpp_2m")
    assert clip.metadata["precision"] == "bf16" and clip.provenance()["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        AudioDiffusion.from_pretrained(tiny_model, device="cpu", precision="fp16")


def test_sampling_computes_the_conditioning_once_and_runs_without_autograd(tiny_model, monkeypatch):
    model = AudioDiffusionModel.load(tiny_model)
    conditionings, modes = [], []
    forward = model.conditioner.forward
    monkeypatch.setattr(model.conditioner, "forward", lambda *a, **k: conditionings.append(1) or forward(*a, **k))
    model.net.register_forward_pre_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    model.sample([0, 1], [1, 2], 0.5, sampler="dpmpp_2m_sde", steps=6, schedule="karras", guidance=2.0,
                 prompts=["a bell", "a drum"])
    assert len(modes) == 6 and all(modes)  # one guided network call per step, in inference mode
    assert len(conditionings) == 2  # the conditional and the unconditional batch, once each


def test_the_baseline_matches_our_parameter_count():
    # audio-diffusion-pytorch comes with the test extra (audiodiff[bench]), so this never skips.
    from audiodiff.adp_baseline import adp_generate, adp_model_like, count_parameters

    model = adp_model_like(5_000_000)
    assert 0.7 < count_parameters(model) / 5_000_000 < 1.4
    assert adp_generate(model, 2, 3000, 2).shape == (2, 1, 3000)
