"""Build an evaluation reference folder of real game sounds that neither the shipped default model nor
its vocoder trained on: recordings from other free games' Debian packages, labelled with labels the
default model knows, all of them held out.

    python recipes/unseen_sfx/prepare.py OUT --train-from data/default_model/game_sfx
    audiodiff-eval reference=OUT

Sources: the Debian packages in PACKAGES, fetched with `apt-get download` and unpacked with
`dpkg-deb -x` into --cache. Each file's label comes from an explicit table per package (a file with no
clear label is left out); its licence is read from the package's usr/share/doc/PKG/copyright (the
last `Files:` stanza that matches it) and only public-domain, CC0, BSD-2-Clause and Expat-or-GPL files
are used. Clips are finished as game_sfx's (22050 Hz mono, trimmed, at most 4 s).

Layout of OUT (the reference folder `audiodiff-eval` reads, see audiodiff/reference.py):
  heldout/*.wav, heldout/metadata.csv   every new clip: path,label,caption,source,licence
  metadata.csv, train/*.wav             the --train-from folder's training clips (copies) of the same
                                        labels: only for the near-copy check and the default lengths
  heldout_prompts.csv                   the --train-from folder's held-out phrasings of those labels
  dropped.csv                           every file not used and why
  prepare.json                          settings (package versions included) and statistics

The files used are reserved for evaluation: recipes/heldout.csv lists them (source = package,
file = path inside it); --write-heldout-list appends any that are missing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from audiodiff.audio import AudioFileError, load_audio
from recipes.folder_dataset import (
    DatasetWriter,
    MissingSource,
    fail,
    finish_clip,
    print_summary,
    stable_seed,
)
from recipes.game_sfx.prepare import BANK, MAX_SECONDS, SAMPLE_RATE, _run

HELDOUT_LIST = Path(__file__).resolve().parents[1] / "heldout.csv"
MIN_CLIPS_PER_LABEL = 5  # fewer and the label is left out: the judge's folds need several clips of it
MAX_CLIPS_PER_LABEL = 16  # audiodiff-eval's Fréchet needs clips=N >= half a label's held-out clips (8 by default)
MIN_SECONDS = 0.05  # shorter after trimming: a click, not a sound to judge
# Licences (as debian/copyright writes them) that let anyone use the recordings for any purpose.
PERMISSIVE = frozenset({"public-domain", "CC0", "CC0-1.0", "BSD-2-Clause", "Expat or GPL-2 or GPL-3"})
AUDIO_SUFFIXES = (".wav", ".ogg", ".flac")
HEADER = "path,label,caption,source,licence"  # of heldout/metadata.csv


@dataclass(frozen=True)
class Package:
    """A Debian package of game data: where its files are installed, where debian/copyright's
    ``Files:`` patterns place that same folder, and the label of each sound file used."""

    name: str
    install_root: str  # inside the .deb
    source_root: str  # the same folder in the upstream source tree that debian/copyright describes
    labels: Mapping[str, str]  # path relative to install_root -> label

    @property
    def folders(self) -> list[str]:
        """The folders the labelled files are in: every other sound file there is reported as left out."""
        return sorted({str(Path(p).parent) for p in self.labels})


def _table(folder: str, **labels: Sequence[str]) -> dict[str, str]:
    return {f"{folder}/{name}": label for label, names in labels.items() for name in names}


# Only labels of the default model (audiodiff/pretrained/default/config.yaml), and only where the file
# name (and the game's use of it) says so. Listed files that fail the licence check, the length check or
# the count per label are dropped with the reason; that is deliberate for endless-sky's two CC-BY-SA
# explosions and a few others, to show the check.
PACKAGES: tuple[Package, ...] = (
    Package("endless-sky-data", "usr/share/games/endless-sky", "", _table(
        "sounds",
        laser=("blaster.wav", "mod blaster.wav", "pulse.wav", "plasma.wav", "proton.wav", "particle.wav",
               "ion.wav", "ion rain.wav", "repeater.wav"),
        explosion=("explosion tiny.wav", "explosion small.wav", "explosion medium.wav", "explosion large.wav",
                   "explosion nuke.wav", "final explosion small.wav", "final explosion medium.wav",
                   "final explosion large.wav",
                   "explosion huge.wav", "heavy rocket hit.wav"),  # CC-BY-SA-3.0: the licence check drops them
        hit=("ion impact.wav",),
        error=("fail.wav",),
    )),
    Package("marsshooter-data", "usr/share/games/marsshooter", "data", _table(
        "audio/toon",  # public domain; the game's music (CC-BY-SA) and interface/announcer (CC-BY) are not read
        explosion=("ballExplode.wav", "planetExplode.wav", "shipExplode.wav"),
        hit=("ballPlanetCollide.wav", "blubCollide.wav", "laserCollide.wav", "pumpShipCollide.wav",
             "shipBallCollide.wav", "shipCollide.wav", "shipPlanetCollide.wav", "sniperPlanetCollide.wav",
             "sniperShipCollide.wav"),
        laser=("laser.wav",),
        blip=("countdown.wav",),
        whoosh=("swish.wav",),
        error=("noFuel.wav",),
    )),
    Package("pekka-kana-2-data", "usr/share/games/pekka-kana-2", "", {
        **_table("data/sfx", jump=("jump4.wav",), blip=("counter.wav", "menu2.wav")),
        **_table("data/sprites",
                 # bonus13 is menu2.wav and bonus14 is tennis.wav (byte for byte): left out as unclear
                 coin=tuple(f"bonus{i}.wav" for i in range(1, 13)),
                 hurt=("damage.wav", "p_damage.wav", "bunny_dm.wav", "frog_dmg.wav"),
                 explosion=("explot.wav",)),
    }),
    Package("lbreakouthd-data", "usr/share/games/lbreakouthd", "src", _table(
        "themes/Standard",
        blip=("click.wav", "menuclick.wav", "menumotion.wav", "attach.wav", "score.wav"),
        hit=("brickhit.wav", "energyhit.wav"),
        explosion=("explosion.wav",),
        laser=("shot.wav",),
    )),
    Package("cube2-data", "usr/share/games/cube2", "", _table(
        "packages/sounds/aard",  # aard's own recordings, public domain; the other folders are CC-BY(-SA)
        jump=("jump.wav",),
        hurt=("pain1.wav", "pain2.wav", "pain3.wav", "pain4.wav", "pain5.wav", "pain6.wav"),
        coin=("itempick.wav",),
        error=("outofammo.wav",),
    )),
    Package("hex-a-hop-data", "usr/share/games/hex-a-hop/hex-a-hop", "data", _table(
        ".",
        explosion=("sound-explode-big.ogg", "sound-explode-small.ogg"),
        jump=("sound-trampoline.ogg", "sound-used-jump.ogg"),  # the second is CC-BY-SA-3.0: dropped
    )),
    Package("davegnukem-data", "usr/share/games/davegnukem", "data", _table(
        "sounds",
        jump=("jump.wav",),
        explosion=("explode.wav", "soft_explode.wav"),
        laser=("laser.wav", "laser2.wav", "sfx_weapon_singleshot7.wav"),
        coin=("pickup.wav", "key_pickup.wav"),  # key_pickup is CC-BY-3.0: dropped
    )),
    Package("supertuxkart-data", "usr/share/games/supertuxkart", "", _table(
        "data/sfx",  # licences differ per file (CC0, public domain, CC-BY, CC-BY-SA, GPL)
        jump=("jump.ogg", "boing.ogg"),
        explosion=("explosion.ogg",),
        coin=("grab_collectable.ogg",),
        hurt=("WilhelmScream.ogg", "ugh.ogg"),  # ugh is GPL-2: dropped
        error=("locked.ogg",),
    )),
)


# --- debian/copyright (machine-readable format 1.0) -----------------------------------------------

@dataclass(frozen=True)
class Stanza:
    patterns: tuple[str, ...]
    licence: str


def read_copyright(path: Path) -> list[Stanza]:
    """The ``Files:`` stanzas of a DEP-5 copyright file, in order, with the licence's short name."""
    stanzas = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields and "license" in fields:
            # Patterns are separated by white space, but some packages write a name with a space in it
            # on a line of its own (endless-sky-data: "sounds/explosion huge.wav"): each line counts too.
            lines = [line for line in fields["files"].splitlines() if " " in line.strip()]
            patterns = (*fields["files"].split(), *(line.strip() for line in lines))
            stanzas.append(Stanza(patterns, fields["license"].splitlines()[0].strip()))
    if not stanzas:
        raise MissingSource(f"{path}: no Files/License stanzas (not a machine-readable debian/copyright)")
    return stanzas


def _matches(pattern: str, path: str) -> bool:
    """DEP-5 wildcards: ``*`` any characters (``/`` included), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, path) is not None


def licence_of(stanzas: Sequence[Stanza], source_path: str) -> tuple[str, str]:
    """The licence of a file (its path in the source tree) and the pattern that gave it: the last
    matching stanza wins, as the format specifies."""
    found = ("", "")
    for stanza in stanzas:
        for pattern in stanza.patterns:
            if _matches(pattern, source_path):
                found = (stanza.licence, pattern)
    return found


# --- fetching -----------------------------------------------------------------------------------------

def unpack_deb(package: str, cache: Path) -> tuple[Path, str]:
    """The package's files (``apt-get download`` + ``dpkg-deb -x`` into ``cache`` once) and its .deb name."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    how = (f"Fetch it by hand (`apt-get download {package}`, run `apt-get update` first if apt knows no such "
           f"package) into {debs}")
    if not list(debs.glob(f"{package}_*.deb")):
        _run(["apt-get", "download", package], debs, f"downloading the {package} package", how)
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    root = cache / "unpacked" / deb.stem
    if not (root / "usr/share/doc" / package / "copyright").is_file():
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], debs, f"unpacking {deb.name}", how)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    return root, deb.name


# --- choosing the clips -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    package: str
    file: str  # path inside the package
    path: Path  # on disk
    label: str
    licence: str  # "NAME (debian/copyright: Files PATTERN)"


def list_candidates(roots: Mapping[str, Path]) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """The labelled files with a permissive licence, and every other sound file of the packages' sound
    folders with the reason it is not used."""
    chosen, dropped = [], []
    for package in PACKAGES:
        root = roots[package.name]
        stanzas = read_copyright(root / "usr/share/doc" / package.name / "copyright")
        base = root / package.install_root
        missing = sorted(rel for rel in package.labels if not (base / rel).is_file())
        if missing:
            raise MissingSource(f"{package.name}: the label table names files the package does not have: "
                                f"{', '.join(missing)}")
        for folder in package.folders:
            for path in sorted((base / folder).iterdir()):
                if path.suffix.lower() not in AUDIO_SUFFIXES:
                    continue
                rel = os.path.normpath(f"{folder}/{path.name}")
                file = f"{package.install_root}/{rel}"
                label = package.labels.get(f"{folder}/{path.name}")
                if label is None:
                    dropped.append((f"{package.name}:{file}", "no clear label from its name"))
                    continue
                source_path = "/".join(p for p in (package.source_root, rel) if p)
                licence, pattern = licence_of(stanzas, source_path)
                if licence not in PERMISSIVE:
                    dropped.append((f"{package.name}:{file}", f"licence {licence or 'not stated'} is not public "
                                    f"domain/CC0/BSD/Expat (debian/copyright: Files {pattern})"))
                    continue
                chosen.append(Candidate(package.name, file, path, label, f"{licence} (debian/copyright: "
                                        f"{package.name}, Files {pattern})"))
    return chosen, dropped


def finish(candidates: Sequence[Candidate]) -> tuple[list[tuple[Candidate, np.ndarray]], list[tuple[str, str]]]:
    """Each candidate as a finished clip, without unreadable, silent or too short ones and without a
    second copy of one recording (the first in table order is kept)."""
    clips, dropped, seen = [], [], {}
    for c in candidates:
        name = f"{c.package}:{c.file}"
        try:
            audio, _ = load_audio(c.path, SAMPLE_RATE)
        except AudioFileError as err:
            dropped.append((name, str(err)))
            continue
        if np.abs(audio).max() < 1e-4:
            dropped.append((name, "silent"))
            continue
        clip = finish_clip(audio, SAMPLE_RATE, MAX_SECONDS)
        if clip.shape[-1] < MIN_SECONDS * SAMPLE_RATE:
            dropped.append((name, f"under {MIN_SECONDS} s after trimming ({clip.shape[-1] / SAMPLE_RATE:.3f} s)"))
            continue
        digest = hashlib.sha256(np.round(clip * 32767).astype(np.int16).tobytes()).hexdigest()
        if digest in seen:
            dropped.append((name, f"the same recording as another file ({seen[digest]})"))
            continue
        seen[digest] = name
        clips.append((c, clip))
    return clips, dropped


def select(clips: Sequence[tuple[Candidate, np.ndarray]], labels: Sequence[str]
           ) -> tuple[list[tuple[Candidate, np.ndarray]], list[tuple[str, str]]]:
    """Per label: none when it has fewer than MIN_CLIPS_PER_LABEL clips or the training folder lacks it;
    at most MAX_CLIPS_PER_LABEL, taken in turn from each package (so no one game dominates a label)."""
    by_label: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for c, clip in clips:
        by_label[c.label][c.package].append((c, clip))
    kept, dropped = [], []
    for label, per_package in sorted(by_label.items()):
        total = sum(map(len, per_package.values()))
        queue = [item for package in PACKAGES for item in per_package.get(package.name, [])]
        if label not in labels:
            reason = f"label {label!r} has no training clips in the --train-from folder"
        elif total < MIN_CLIPS_PER_LABEL:
            reason = f"label {label!r} has only {total} usable clips; {MIN_CLIPS_PER_LABEL} are needed"
        else:
            reason = ""
        if reason:
            dropped += [(f"{c.package}:{c.file}", reason) for c, _ in queue]
            continue
        turns = [list(per_package.get(p.name, [])) for p in PACKAGES]
        order = []
        while any(turns):
            order += [t.pop(0) for t in turns if t]
        kept += order[:MAX_CLIPS_PER_LABEL]
        dropped += [(f"{c.package}:{c.file}", f"label {label!r} already has {MAX_CLIPS_PER_LABEL} clips (the cap)")
                    for c, _ in order[MAX_CLIPS_PER_LABEL:]]
    return kept, dropped


# --- the training side ----------------------------------------------------------------------------------

def read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            absent = [c for c in columns if c not in (reader.fieldnames or [])]
            if absent:
                fail(f"{path}: needs the column(s) {', '.join(absent)}")
            return list(reader)
    except OSError as err:
        fail(f"{path}: {err.strerror}; --train-from must be a folder written by recipes/game_sfx/prepare.py "
             "(recipes/default_model/prepare.py writes one as OUT/game_sfx)")


def heldout_rows(kept: Sequence[tuple[Candidate, np.ndarray]]) -> list[tuple[str, str]]:
    return sorted({(c.package, c.file) for c, _ in kept})


def check_heldout_list(rows: Sequence[tuple[str, str]], write: bool) -> list[tuple[str, str]]:
    """The rows of ``rows`` missing from recipes/heldout.csv; appended to it when ``write``."""
    listed = set()
    if HELDOUT_LIST.is_file():
        with HELDOUT_LIST.open(newline="", encoding="utf-8") as f:
            listed = {(r["source"], r["file"]) for r in csv.DictReader(f)}
    missing = [r for r in rows if r not in listed]
    if write and missing:
        new = not HELDOUT_LIST.is_file()
        with HELDOUT_LIST.open("a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            if new:
                writer.writerow(["source", "file"])
            writer.writerows(missing)
        return []
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (created; rebuilt when the settings differ)")
    parser.add_argument("--train-from", type=Path, required=True,
                        help="a game_sfx folder (recipes/game_sfx/prepare.py) whose training clips the evaluated "
                             "model trained on: copied as metadata.csv for the near-copy check")
    parser.add_argument("--seed", type=int, default=0, help="seed of the captions")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "audiodiff" / "recipes",
                        help="where downloaded packages are kept")
    parser.add_argument("--write-heldout-list", action="store_true",
                        help=f"append the files used that {HELDOUT_LIST.name} does not list yet to it")
    parser.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    args = parser.parse_args()

    train_from = args.train_from.resolve()
    train_rows = read_csv(train_from / "metadata.csv", ("path", "label", "caption"))
    prompt_rows = read_csv(train_from / "heldout_prompts.csv", ("label", "prompt"))
    train_labels = sorted({r["label"] for r in train_rows})
    try:
        roots, debs = {}, []
        for package in PACKAGES:
            roots[package.name], deb = unpack_deb(package.name, args.cache)
            debs.append(deb)
        candidates, dropped = list_candidates(roots)
    except MissingSource as err:
        fail(str(err))
    clips, unusable = finish(candidates)
    kept, left_out = select(clips, train_labels)
    labels = sorted({c.label for c, _ in kept})
    if len(labels) < 2:
        fail(f"only {len(labels)} label(s) with {MIN_CLIPS_PER_LABEL} clips; the evaluation needs two")
    dropped += unusable + left_out

    missing = check_heldout_list(heldout_rows(kept), args.write_heldout_list)
    if missing:
        print(f"warning: {len(missing)} file(s) used here are not in {HELDOUT_LIST} (the list of recordings no "
              "model may train on); rerun with --write-heldout-list to add them:", file=sys.stderr)
        for source, file in missing:
            print(f"  {source},{file}", file=sys.stderr)

    train = [r for r in train_rows if r["label"] in labels]
    settings = {"version": 1, "seed": args.seed, "packages": debs, "train_from": str(train_from),
                "train_clips": len(train), "heldout": [f"{c.package}:{c.file}" for c, _ in kept]}
    writer = DatasetWriter(args.out, "unseen_sfx", settings, SAMPLE_RATE)
    if writer.up_to_date() and _has_provenance(args.out / "heldout" / "metadata.csv") and not args.force:
        print(f"{args.out} is up to date (same sources and settings); --force rebuilds it")
        print_summary(args.out, writer.read_stamp()["statistics"])
        return
    writer.begin()
    provenance = {}
    try:
        for c, clip in kept:
            name = re.sub(r"[^A-Za-z0-9]+", "_", f"{c.package}_{Path(c.file).stem}").strip("_")
            rng = np.random.default_rng(stable_seed(args.seed, c.package, c.file))
            writer.add("heldout", name, clip, c.label, BANK.caption(c.label, rng), f"{c.package}:{c.file}", c.licence)
            provenance[f"{name}.wav"] = (f"{c.package}:{c.file}", c.licence)
        for row in train:  # the clips as the model trained on them (same rate, so the samples are unchanged)
            audio, _ = load_audio(train_from / row["path"], SAMPLE_RATE)
            # game_sfx's recordings (Kenney's, Sonic Pi's) are all CC0.
            writer.add("train", Path(row["path"]).stem, audio, row["label"], row["caption"], f"game_sfx:{row['path']}",
                       "CC0")
        writer.write_table("dropped.csv", ("file", "reason"), sorted(dropped))
        prompts: dict[str, list[str]] = defaultdict(list)
        for row in prompt_rows:
            if row["label"] in labels:
                prompts[row["label"]].append(row["prompt"])
        stats = writer.commit(prompts)
    except BaseException:
        writer.abort()
        raise
    add_provenance(args.out / "heldout" / "metadata.csv", provenance)

    print(f"left out {len(dropped)} files (list in {args.out / 'dropped.csv'}):")
    for reason, count in Counter(reason.split(" (")[0] for _, reason in dropped).most_common():
        print(f"  {count:3d}  {reason}")
    per_package = Counter((c.package, c.label) for c, _ in kept)
    print("\nclips per package and label:")
    for package in PACKAGES:
        counts = {label: n for (p, label), n in sorted(per_package.items()) if p == package.name}
        print(f"  {package.name:20s} {sum(counts.values()):3d}  {', '.join(f'{k} {v}' for k, v in counts.items())}")
    print_summary(args.out, stats)


def _has_provenance(metadata: Path) -> bool:
    """Whether heldout/metadata.csv has its source and licence columns (the last step of a build)."""
    try:
        with metadata.open(encoding="utf-8") as f:
            return f.readline().strip() == HEADER
    except OSError:
        return False


def add_provenance(metadata: Path, provenance: Mapping[str, tuple[str, str]]) -> None:
    """Add the source and licence columns to heldout/metadata.csv (written by DatasetWriter with
    path,label,caption), replacing the file atomically."""
    rows = read_csv(metadata, ("path", "label", "caption"))
    tmp = metadata.with_name(metadata.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER.split(","))
        writer.writerows([r["path"], r["label"], r["caption"], *provenance[r["path"]]] for r in rows)
    os.replace(tmp, metadata)


if __name__ == "__main__":
    main()
