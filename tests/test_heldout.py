"""The shared held-out list (recipes/heldout.csv) against the data manifests of the shipped models: no
shipped model, nor the vocoder it carries, trained on a clip the evaluation holds out."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "recipes" / "heldout.csv"
PRETRAINED = ROOT / "audiodiff" / "pretrained"
SHIPPED = sorted(p.parent.name for p in PRETRAINED.glob("*/config.yaml"))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _key(row: dict[str, str]) -> tuple[str, str]:
    """A recording counts as one file in every format it ships in: compare source and stem."""
    return row["source"], Path(row["file"]).stem


def test_the_heldout_list_is_there_and_names_each_file_once():
    rows = _rows(HELDOUT)
    assert rows, f"{HELDOUT} is empty"
    assert {"kenney", "sonic_pi", "jingles"} <= {r["source"] for r in rows}
    keys = [_key(r) for r in rows]
    assert len(keys) == len(set(keys)), "a file is listed twice"


def test_the_default_model_and_its_vocoder_are_shipped():
    assert {"default", "vocos-22k"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_no_shipped_model_trained_on_a_heldout_file(name):
    manifest = PRETRAINED / name / "training_data.csv"
    assert manifest.is_file(), f"{name} ships no training_data.csv (source,file,licence of what it trained on)"
    rows = _rows(manifest)
    assert rows, f"{manifest} lists no training data"
    assert all(r["source"] and r["file"] and r["licence"] for r in rows), f"{manifest}: a row has an empty field"
    held = {_key(r) for r in _rows(HELDOUT)}
    leaked = sorted(k for k in map(_key, rows) if k in held)
    assert not leaked, f"{name} trained on held-out files: {leaked}"


def test_the_default_model_carries_the_shipped_vocoder():
    """So that vocos-22k's manifest is the one of the vocoder inside the default model."""
    from safetensors.torch import load_file

    vocoder = load_file(str(PRETRAINED / "vocos-22k" / "model.safetensors"))
    default = load_file(str(PRETRAINED / "default" / "model.safetensors"))
    carried = {k.removeprefix("representation.vocoder."): v for k, v in default.items()
               if k.startswith("representation.vocoder.")}
    assert carried.keys() == vocoder.keys()
    different = [k for k, v in vocoder.items() if not (carried[k].float() == v.to(carried[k].dtype).float()).all()]
    assert not different, f"the default model's vocoder is not vocos-22k: {different[:5]}"
