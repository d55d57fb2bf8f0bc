"""Ship a trained model inside the package: its config and weights as float16 safetensors.

    python recipes/default_model/export.py runs/default_model_student/model audiodiff/pretrained/default

The model (a folder or a training checkpoint, vocoder weights included) is loaded, its floating-point
weights are stored as float16 (half the bytes; they are widened back to float32 when loaded, and the
script checks that the float16 copy renders the same clips to within ``--tolerance`` of the float32
one, in the model's normalised log-mel), and the folder is written through temporary files. It refuses
to write more than ``--max-mb`` megabytes. A model trained on precomputed text embeddings
(``pack.py``) is shipped with the text encoder they came from, whose identity it already records.
``--vocoder`` (a vocoder folder, ``.ckpt`` or shipped name) replaces the vocoder the model carries, e.g.
to re-ship the default model with a retrained ``vocos-22k``:

    python recipes/default_model/export.py audiodiff/pretrained/default audiodiff/pretrained/default --vocoder vocos-22k

The model's data manifest, ``training_data.csv`` (source,file,licence of what it trained on; written by
``prepare.py``), is copied beside the export: ``--training-data FILE``, by default the one in the model's
folder when there is one (so a re-export keeps it). ``tests/test_heldout.py`` checks every shipped
manifest against ``recipes/heldout.csv``.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from audiodiff.conditioning import PrecomputedTextEncoder
from audiodiff.model import AudioDiffusionModel
from audiodiff.model_files import WEIGHTS_FILE, VocoderLoadError, load_vocoder, write_model_folder
from audiodiff.pipeline import SamplerSettings
from recipes.folder_dataset import MANIFEST, fail


def half_state(model: AudioDiffusionModel) -> dict[str, torch.Tensor]:
    """The model's state with floating-point tensors as float16 (integer buffers as they are)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def shipped_config(model: AudioDiffusionModel) -> dict:
    """The model's config, with a precomputed text encoder replaced by the encoder it stands for."""
    config = copy.deepcopy(model.config)
    text = model.conditioner.text
    if text is not None and isinstance(text.encoder, PrecomputedTextEncoder):
        config["conditioner"]["text"]["encoder"] = dict(text.encoder.source)
    return config


def render_features(model: AudioDiffusionModel, count: int = 4) -> torch.Tensor:
    """A few 1 s clips in model space (before the vocoder), by label or else by a prompt, with the
    model's own sampler settings (seeded, so two copies of a model give comparable clips)."""
    labels = [i % len(model.labels) for i in range(count)] if model.labels else None
    prompts = None if labels is not None else ["a short sound"] * count
    s = SamplerSettings(**model.sampling) if model.sampling else SamplerSettings()
    return model.sample(labels, list(range(count)), min(model.seconds, 1.0), sampler=s.name, steps=s.steps,
                        schedule=s.schedule, decode=False, progress=False, prompts=prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model folder or training checkpoint")
    parser.add_argument("out", type=Path, help="the folder to write (e.g. audiodiff/pretrained/default)")
    parser.add_argument("--vocoder", default=None,
                        help="replace the vocoder the model carries (a folder, .ckpt or shipped name: vocos-22k)")
    parser.add_argument("--training-data", type=Path, default=None,
                        help=f"the model's {MANIFEST} (default: the one in the model folder, if any)")
    parser.add_argument("--max-mb", type=float, default=40.0, help="refuse a larger export (default 40)")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="largest mean |float16 − float32| of rendered log-mel features allowed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = args.training_data or (args.model / MANIFEST if (args.model / MANIFEST).is_file() else None)
    if manifest is not None and not manifest.is_file():
        fail(f"--training-data {manifest} does not exist")
    model = AudioDiffusionModel.load(args.model)
    if args.vocoder is not None:
        try:
            model.set_vocoder(load_vocoder(args.vocoder))
        except (VocoderLoadError, ValueError) as err:
            fail(f"--vocoder {args.vocoder}: {err}")
    state = half_state(model)
    megabytes = sum(t.numel() * t.element_size() for t in state.values()) / 2**20
    if megabytes > args.max_mb:
        fail(f"{args.model}: {megabytes:.1f} MB in float16, over --max-mb {args.max_mb}")
    reference = render_features(model)
    narrowed = AudioDiffusionModel.from_config(model.config, str(args.model))
    narrowed.load_state_dict(state)
    difference = float((render_features(narrowed.eval()) - reference).abs().mean())
    if difference > args.tolerance:
        fail(f"float16 weights change the rendered features by {difference:.4f} (mean |difference|), over "
             f"--tolerance {args.tolerance}; ship float32 weights instead")
    write_model_folder(args.out, shipped_config(model), state)
    if manifest is None:
        print(f"warning: no {MANIFEST} given (--training-data): {args.out} says nothing of what it trained on",
              file=sys.stderr)
    elif manifest.resolve() != (args.out / MANIFEST).resolve():
        shutil.copyfile(manifest, args.out / MANIFEST)
    size = (args.out / WEIGHTS_FILE).stat().st_size / 2**20
    print(f"{args.out}: {size:.1f} MB of float16 weights; float16 against float32 renders differ by "
          f"{difference:.4f} (mean |difference| of normalised log-mel)")


if __name__ == "__main__":
    main()
