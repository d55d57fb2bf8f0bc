"""Train the default model, teacher then student, on a GPU lent for a fixed number of minutes.

    python recipes/default_model/pack.py data/default_model .gpu        # here, once
    python recipes/default_model/gpu_session.py .gpu OUT --minutes 9      # on the GPU host

For hosts that have neither the data nor the text encoder and are lent for minutes, not hours:

1. unpacks the Vorbis clips of the pack to WAV in ``data/default_model``;
2. times a short teacher run, inside the learning-rate warm-up, to learn this host's steps per second
   (``--steps-per-second`` skips it), with Lightning's simple profiler in its log;
3. resumes the teacher for as many steps as its share of the time allows, so the cosine schedule
   ends when the time does (Lightning's ``max_time`` guards against a wrong estimate);
4. distils the student in the time left, the same way (``--no-student``: the teacher takes it all);
5. exports both as float16 model folders (``export.py``) and writes ``teacher.tar``, ``student.tar``
   and ``logs.tar`` into OUT.

Both runs use the pack's precomputed text embeddings in place of all-MiniLM-L6-v2; the exported
folders name the encoder itself again. A step of this small U-Net is some 6000 operator calls, each
dispatched from Python, so on a GPU the step time is likely set by that dispatch rather than by the
batch (the first session ran batches of 64 at 11.5 steps/s on an H200; the probe's profile will tell).
Batches are therefore 256 clips by default (16x the CPU recipe's).
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "default_model"
log = logging.getLogger("gpu_session")
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\]")


def decode(job: tuple[Path, Path]) -> None:
    source, target = job
    audio, rate = sf.read(source, dtype="float32")
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio, rate, subtype="PCM_16")


def unpack(pack: Path, workers: int) -> None:
    packed = pack / "data"
    jobs = [(p, DATA / str(p.relative_to(packed))[: -len(".ogg")]) for p in packed.rglob("*.ogg")]
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "metadata.csv").write_bytes((packed / "metadata.csv").read_bytes())
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(decode, jobs, chunksize=32))
    log.info("unpacked %d clips", len(jobs))


def train(overrides: list[str], logfile: Path) -> float:
    """One ``audiodiff-train`` run; returns its wall time in seconds. Its output goes to ``logfile``."""
    start = time.monotonic()
    command = [sys.executable, "-c", "from audiodiff.cli.train import main; main()", *overrides]
    log.info("%s", " ".join(overrides))
    with logfile.open("w") as out:
        done = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if done.returncode:
        sys.exit(f"training failed after {seconds:.0f} s; see {logfile}:\n{logfile.read_text()[-3000:]}")
    log.info("took %.0f s", seconds)
    return seconds


def fit_seconds(logfile: Path) -> float:
    """Seconds from the start of fitting to the run's last log line. Fitting starts at the latest of
    Lightning's device report and the normalisation line (absent when ``task.init_from`` brings it)."""
    starts, end = [], None
    for line in logfile.read_text().splitlines():
        match = STAMP.match(line)
        if match is None:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if "normalisation" in line or "GPU available" in line:
            starts.append(stamp)
        elif "finished at step" in line:
            end = stamp
    if not starts or end is None:
        sys.exit(f"cannot time the probe: no start or end line in {logfile}")
    return (end - max(starts)).total_seconds()


def clock(seconds: float) -> str:
    seconds = max(int(seconds), 30)
    return f"'00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pack", type=Path, help="the folder pack.py wrote")
    parser.add_argument("out", type=Path, help="where teacher.tar, student.tar and logs.tar go")
    parser.add_argument("--minutes", type=float, default=9.0, help="wall time for the whole session")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="clips per step (default 256)")
    parser.add_argument("--probe-steps", type=int, default=300, help="teacher steps timed first (in the warm-up)")
    parser.add_argument("--steps-per-second", type=float,
                        help="this host's teacher steps per second, known from an earlier session: no probe")
    parser.add_argument("--init-from", type=Path,
                        help="a model folder (e.g. a CPU run's export) the teacher continues from (task.init_from)")
    parser.add_argument("--teacher-share", type=float, default=0.65, help="the teacher's share of the time")
    parser.add_argument("--student-cost", type=float, default=3.5,
                        help="a student step's time over a teacher step's (the teacher's ODE substeps)")
    parser.add_argument("--student-steps", type=int, default=6, help="sampling steps of the student")
    parser.add_argument("--student", action=argparse.BooleanOptionalAction, default=True,
                        help="distil a student after the teacher (--no-student: the teacher gets all the time)")
    parser.add_argument("--workers", type=int, default=12, help="data loader processes")
    parser.add_argument("--override", action="append", default=[],
                        help="a Hydra override for both runs (repeatable); trainer.accelerator=cpu rehearses it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    deadline = time.monotonic() + args.minutes * 60
    args.out.mkdir(parents=True, exist_ok=True)
    work = ROOT / "runs" / "gpu_session"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        session(args, deadline, work, logs)
    finally:
        with tarfile.open(args.out / "logs.tar", "w") as tar:
            tar.add(logs, arcname="logs")
            for run in ("default_model", "default_model_student"):
                for csv in (ROOT / "runs" / run).rglob("metrics.csv"):
                    tar.add(csv, arcname=str(csv.relative_to(ROOT)))
    log.info("done with %.0f s to spare", deadline - time.monotonic())


def session(args: argparse.Namespace, deadline: float, work: Path, logs: Path) -> None:
    unpack(args.pack, args.workers)
    embeddings = (args.pack / "text_embeddings.pt").resolve()
    common = ["trainer=gpu", f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
              "conditioner.text.encoder._target_=audiodiff.conditioning.PrecomputedTextEncoder",
              "~conditioner.text.encoder.max_tokens", f"+conditioner.text.encoder.path={embeddings}",
              "trainer.enable_progress_bar=false", "audio_log.every_n_steps=1000000", "checkpoint.every_n_steps=1000",
              *args.override]
    teacher = ["experiment=default_model", *common, "trainer.val_check_interval=500"]
    if args.init_from is not None:
        teacher += [f"task.init_from={args.init_from.resolve()}", "task.warmup_steps=200"]
    done_steps = 0
    if args.steps_per_second:
        rate = args.steps_per_second
    else:
        # Lightning's simple profiler: where the probe's time went (data, step, optimizer), in its log
        train([*teacher, f"trainer.max_steps={args.probe_steps}", "+trainer.profiler=simple"],
              logs / "teacher_probe.log")
        rate = args.probe_steps / fit_seconds(logs / "teacher_probe.log")
        done_steps = args.probe_steps
    overhead = 45.0  # a run's start (imports, data, model) and end (checkpoint, export)
    export_seconds = 30.0
    left = deadline - time.monotonic() - export_seconds - overhead
    if args.student:
        left -= export_seconds + overhead
    teacher_seconds = (args.teacher_share if args.student else 1.0) * left
    if teacher_seconds < 60:
        sys.exit(f"--minutes {args.minutes:g} leaves {teacher_seconds:.0f} s for the teacher after the runs' start-up, "
                 f"the probe and the exports; give at least {args.minutes + (60 - teacher_seconds) / 60 + 1:.0f}")
    teacher_steps = done_steps + int(rate * teacher_seconds)
    log.info("teacher: %.1f steps/s; %d steps in %.0f s", rate, teacher_steps, teacher_seconds)
    train([*teacher, f"trainer.max_steps={teacher_steps}", f"+trainer.max_time={clock(teacher_seconds + overhead)}"],
          logs / "teacher.log")
    export("runs/default_model/model", work / "teacher", args.out / "teacher.tar")
    if not args.student:
        return
    left = deadline - time.monotonic() - export_seconds - overhead
    student_steps = int(rate / args.student_cost * left)
    log.info("student: %d steps in %.0f s", student_steps, left)
    train(["experiment=default_model_student", *common, "teacher=runs/default_model/model",
           f"task.steps={args.student_steps}", "trainer.val_check_interval=250",
           f"trainer.max_steps={student_steps}", f"+trainer.max_time={clock(left)}"], logs / "student.log")
    export("runs/default_model_student/model", work / "student", args.out / "student.tar")


def export(model: str, folder: Path, tar_file: Path) -> None:
    """A float16 model folder (export.py), packed as one tar file named after the folder."""
    subprocess.run([sys.executable, "recipes/default_model/export.py", model, str(folder)], cwd=ROOT, check=True)
    with tarfile.open(tar_file, "w") as tar:
        tar.add(folder, arcname=folder.name)


if __name__ == "__main__":
    main()
