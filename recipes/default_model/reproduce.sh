#!/usr/bin/env bash
# Reproduce the shipped default model from scratch: data, teacher, 8-step student, float16 export.
#   bash recipes/default_model/reproduce.sh [--gpu] [--soundfont PATH]
# Every training step resumes from its last checkpoint, so the script can be stopped and rerun (it
# then continues where it stopped); on the CPU the teacher takes several sessions of a few hours.
set -euo pipefail
cd "$(dirname "$0")/../.."
trainer=()
prepare=()
while (($#)); do
  case "$1" in
    --gpu) trainer=(trainer=gpu) ;;
    --soundfont) prepare+=(--soundfont "$2"); shift ;;
    *) echo "unknown option $1 (valid: --gpu, --soundfont PATH)" >&2; exit 2 ;;
  esac
  shift
done
threads=(threads=1)  # one thread: on a shared 2-core machine two threads run slower than one
if ((${#trainer[@]})); then threads=(); fi

python recipes/default_model/prepare.py data/default_model "${prepare[@]}"
audiodiff-train experiment=default_model "${trainer[@]}" "${threads[@]}" trainer.enable_progress_bar=false
audiodiff-train experiment=default_model_student "${trainer[@]}" "${threads[@]}" trainer.enable_progress_bar=false
python recipes/default_model/export.py runs/default_model_student/model audiodiff/pretrained/default
