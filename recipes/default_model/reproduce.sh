#!/usr/bin/env bash
# Reproduce the shipped default model from scratch: data, two training stages, float16 export.
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
# The second stage starts from the first one's weights with a fresh, lower cosine schedule (the
# shipped model's history: MODEL_CARD.md, "Training compute").
audiodiff-train experiment=default_model name=default_model_finetune task.init_from=runs/default_model/model \
    task.lr=5e-4 task.warmup_steps=200 trainer.max_steps=18000 "${trainer[@]}" "${threads[@]}" \
    trainer.enable_progress_bar=false
python recipes/default_model/export.py runs/default_model_finetune/model audiodiff/pretrained/default \
    --training-data data/default_model/training_data.csv
