"""Build the game_sfx folder dataset: Kenney's CC0 game sounds plus CC0 Sonic Pi percussion and effects,
at 22050 Hz mono, trimmed, at most 4 s, labelled from their file names and captioned with varied wording.

    python recipes/game_sfx/prepare.py data/game_sfx [--augment 3] [--kenney DIR] [--sonic-pi DIR]

Sources (fetched into --cache when not given):
  Kenney: the sound files inside the arcade==3.3.3 wheel (pip download --no-deps; arcade is not installed).
  Sonic Pi: /usr/share/sonic-pi/samples when the apt package sonic-pi-samples is installed, otherwise
            `apt-get download sonic-pi-samples` unpacked with `dpkg -x` (no root needed).
The files listed in recipes/heldout.csv (the held-out list every recipe and shipped model shares:
about a fifth of each label's files) go to heldout/, never augmented. Each training file is also
written as --augment pitch-shifted / time-stretched variants (deterministic), each with its own caption.
training_data.csv lists the source files trained on, with their licences.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from tqdm.auto import tqdm

from audiodiff.audio import AudioFileError, load_audio
from audiodiff.data.captions import CaptionBank
from recipes.folder_dataset import (
    DatasetWriter,
    MissingSource,
    fail,
    finish_clip,
    print_summary,
    read_heldout,
    stable_seed,
)

SAMPLE_RATE = 22050
MAX_SECONDS = 4.0
MIN_FILES_PER_LABEL = 3  # one held out and at least two to train on
LICENCES = {"kenney": "CC0-1.0 (Kenney)", "sonic_pi": "CC0-1.0 (Sonic Pi samples)"}
ARCADE_WHEEL = "arcade==3.3.3"
ARCADE_SOUNDS = "arcade/resources/assets/sounds/"
SONIC_PI_SYSTEM = Path("/usr/share/sonic-pi/samples")
SONIC_PI_IN_DEB = Path("usr/share/sonic-pi/samples")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
FORMAT_PREFERENCE = (".wav", ".flac", ".ogg", ".mp3")
PITCH_SEMITONES = (0.5, 3.0)  # |shift| range of the augmentation
STRETCH_RATES = (0.9, 1.1)

# Kenney: the file name without its number is the sound's name.
KENNEY_LABELS = {
    "coin": "coin", "error": "error", "explosion": "explosion", "fall": "fall", "gameover": "game_over",
    "lose": "game_over", "hit": "hit", "rockhit": "hit", "hurt": "hurt", "jump": "jump", "phasejump": "jump",
    "laser": "laser", "upgrade": "upgrade", "secret": "upgrade",
}
# Sonic Pi: first matching pattern of the file stem wins; None drops the file with the reason given.
SONIC_PI_RULES: tuple[tuple[str, str | None, str], ...] = (
    (r"bd_|drum_heavy_kick|drum_bass_|elec_(soft|hollow)_kick", "kick", ""),
    (r"sn_|drum_snare_|elec_(hi_|lo_|mid_|filt_)?snare", "snare", ""),
    (r"drum_cymbal_|drum_splash_|elec_cymbal", "cymbal", ""),
    (r"drum_tom_|elec_fuzz_tom", "tom", ""),
    (r"tabla_", "tabla", ""),
    (r"elec_(beep|blip2?|blup|ping|plip|twip|pop|flip|tick)$", "blip", ""),
    (r"elec_(bell|chime|triangle|bong)$|perc_bell", "bell", ""),
    (r"perc_swoosh|perc_swash|ambi_swoosh|ambi_dark_woosh", "whoosh", ""),
    (r"glitch_(perc|robot)", "glitch", ""),
    (r"mehackit_robot", "robot", ""),
    (r"mehackit_phone", "phone", ""),
    (r"vinyl_(backspin|rewind|scratch)", "scratch", ""),
    (r"perc_impact", "hit", ""),
    (r"misc_cineboom", "explosion", ""),
    (r"perc_snap", "snap", ""),
    (r"loop_", None, "a multi-bar loop (music, not a single effect)"),
    (r"ambi_", None, "an ambient drone or pad, not a short effect"),
    (r"bass_|glitch_bass", None, "a pitched bass note (musical, not an effect)"),
    (r"guit_", None, "a guitar phrase (musical, not an effect)"),
    (r"drum_roll", None, "a drum roll (a phrase, not a single hit)"),
    (r"vinyl_hiss", None, "a steady noise bed, not an effect"),
    (r"", None, "a one-off of its kind (no label with enough files)"),
)

ARCADE = ("8-bit", "retro", "arcade", "chiptune", "short", "quick", "video game", "pixel-art game")
DRY = ("short", "crisp", "dry", "clean", "punchy", "sampled", "loud", "soft")
BANK = CaptionBank(
    descriptions={
        "coin": ("coin pickup", "coin collect", "coin sound", "coin pickup sound", "coin chime", "gold coin grab"),
        "error": ("error sound", "error buzz", "wrong answer buzz", "denied buzz", "failure beep",
                  "invalid action beep"),
        "explosion": ("explosion", "blast", "boom", "detonation", "bomb blast", "explosive burst"),
        "fall": ("falling sound", "fall", "plunge", "falling whistle", "character falling", "drop"),
        "game_over": ("game over jingle", "losing jingle", "game over sound", "defeat tune", "you lose melody",
                      "failure jingle"),
        "hit": ("hit", "punch", "impact", "strike", "thump", "smack"),
        "hurt": ("hurt sound", "damage sound", "player hurt sound", "ouch sound", "pain grunt", "damage hit"),
        "jump": ("jump", "jump sound", "hop", "character jumping", "springy jump", "leap"),
        "laser": ("laser", "laser shot", "laser blast", "zap", "ray gun shot", "blaster shot"),
        "upgrade": ("power-up", "upgrade sound", "level-up sound", "power-up chime", "upgrade jingle", "bonus unlock"),
        "kick": ("kick drum", "bass drum", "kick", "kick drum hit", "low drum hit", "bass drum thump"),
        "snare": ("snare drum", "snare hit", "snare", "snare drum hit", "crisp drum crack", "rattling snare"),
        "cymbal": ("cymbal", "cymbal crash", "hi-hat", "splash cymbal", "cymbal hit", "ride cymbal"),
        "tom": ("tom drum", "tom hit", "tom-tom", "floor tom", "tom drum hit", "rack tom"),
        "tabla": ("tabla", "tabla hit", "tabla stroke", "Indian hand drum", "tabla drum", "hand drum stroke"),
        "blip": ("blip", "electronic blip", "UI blip", "short beep", "menu beep", "electronic pop"),
        "bell": ("bell", "chime", "bell ring", "electronic bell", "ringing chime", "bell tone"),
        "whoosh": ("whoosh", "swoosh", "swish", "woosh", "air swish", "fast swoosh"),
        "glitch": ("glitch", "glitchy noise", "digital glitch", "glitch percussion", "data glitch", "bitcrushed burst"),
        "robot": ("robot sound", "robot voice", "robotic beep", "robot chatter", "droid noise", "machine voice"),
        "phone": ("phone tone", "telephone beep", "phone ring", "mobile phone sound", "dial tone", "phone signal"),
        "scratch": ("vinyl scratch", "record scratch", "turntable scratch", "record rewind", "DJ scratch",
                    "tape rewind"),
    },
    templates=("{d}", "a {d}", "the sound of a {d}", "{a} {d}", "a {a} {d}", "{d} sound effect", "{a} {d} effect"),
    adjectives=DRY,
    label_adjectives={label: ARCADE for label in set(KENNEY_LABELS.values())},
    held_out={
        "coin": ("a reward ding when money is picked up", "cash collected in a platformer", "a shiny token grabbed"),
        "error": ("a rejected input honk", "the buzzer for a mistake", "access refused tone"),
        "explosion": ("a grenade going off", "something blowing up", "a kaboom"),
        "fall": ("a tumble off a ledge", "plummeting into a pit", "a descending whistle as someone drops"),
        "game_over": ("the tune when all lives are gone", "a sad ending melody", "mission failed music"),
        "hit": ("a blow landing on an enemy", "a whack", "a bonk"),
        "hurt": ("the hero takes damage", "an injury grunt", "losing health"),
        "jump": ("a character leaping into the air", "a boing", "bouncing off the ground"),
        "laser": ("a sci-fi pew", "a phaser firing", "a space weapon pew pew"),
        "upgrade": ("an ability unlocked fanfare", "getting stronger sparkle", "an item that boosts the player"),
        "kick": ("a low thud on the downbeat", "an 808 boom", "a booming drum"),
        "snare": ("a sharp backbeat drum", "a rimshot crack", "a marching drum smack"),
        "cymbal": ("a shimmering metal crash", "a sizzling crash plate", "a metallic wash"),
        "tom": ("a tuned drum thud", "a drum fill note", "a mid drum boom"),
        "tabla": ("a North Indian drum stroke", "a bol on the dayan", "a resonant finger drum"),
        "blip": ("a tiny computer bloop", "an interface tick", "a minimal synth plink"),
        "bell": ("a ding-dong", "a struck metal tone", "a small handbell"),
        "whoosh": ("something flying past fast", "a sword swing through the air", "a rush of wind"),
        "glitch": ("a corrupted audio stutter", "a broken computer crackle", "a malfunction sputter"),
        "robot": ("an android talking", "a mechanical chirping droid", "a cyborg babble"),
        "phone": ("a cellphone ringtone", "a landline buzz", "an incoming call alert"),
        "scratch": ("a turntablist wicky-wicky", "a platter spun backwards", "a scrubbed record"),
    },
)


def label_for(source: str, stem: str) -> tuple[str | None, str]:
    """The label of a file from its source (``kenney`` or ``sonic_pi``) and name, or ``(None, why)``
    for a file that is not used."""
    if source == "kenney":
        name = re.sub(r"\d+$", "", stem).lower()
        label = KENNEY_LABELS.get(name)
        return (label, "") if label else (None, f"no label rule for Kenney sound {name!r}")
    if source == "sonic_pi":
        for pattern, label, reason in SONIC_PI_RULES:
            if re.match(pattern, stem):
                return label, reason
    raise ValueError(f"unknown source {source!r}; valid: kenney, sonic_pi")


def _run(command: list[str], cwd: Path, what: str, how: str) -> None:
    if shutil.which(command[0]) is None and command[0] != sys.executable:
        raise MissingSource(f"{what}: `{command[0]}` is not installed. {how}")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise MissingSource(f"{what}: `{' '.join(command)}` failed ({' / '.join(tail)}). {how}")


def kenney_folder(cache: Path) -> Path:
    """Kenney's sounds from the arcade wheel, downloaded (without arcade's dependencies) and
    unpacked into ``cache`` once."""
    folder = cache / "kenney"
    if any(folder.glob("*.wav")):
        return folder
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    how = (f"Get it by hand with `pip download --no-deps {ARCADE_WHEEL} -d DIR && unzip DIR/arcade-*.whl "
           f"'{ARCADE_SOUNDS}*' -d DIR` and pass --kenney DIR/{ARCADE_SOUNDS}")
    if not list(wheels.glob("arcade-*.whl")):
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", ARCADE_WHEEL, "-d", str(wheels)],
             cache, f"downloading the {ARCADE_WHEEL} wheel (Kenney's sounds)", how)
    wheel = sorted(wheels.glob("arcade-*.whl"))[-1]
    tmp = cache / "kenney.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.startswith(ARCADE_SOUNDS) and not member.endswith("/"):
                (tmp / Path(member).name).write_bytes(archive.read(member))
    if not any(tmp.glob("*.wav")):
        raise MissingSource(f"{wheel} holds no sounds under {ARCADE_SOUNDS}. {how}")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def sonic_pi_folder(cache: Path) -> Path:
    """The Sonic Pi samples: the installed package's folder, or the .deb unpacked into ``cache``."""
    if any(SONIC_PI_SYSTEM.glob("*.flac")):
        return SONIC_PI_SYSTEM
    unpacked = cache / "sonic-pi"
    if any((unpacked / SONIC_PI_IN_DEB).glob("*.flac")):
        return unpacked / SONIC_PI_IN_DEB
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    how = ("Install it (`sudo apt-get install sonic-pi-samples`), or run `apt-get download sonic-pi-samples && "
           f"dpkg -x sonic-pi-samples_*.deb DIR` and pass --sonic-pi DIR/{SONIC_PI_IN_DEB}, or leave Sonic Pi out "
           "with --no-sonic-pi")
    if not list(debs.glob("sonic-pi-samples_*.deb")):
        _run(["apt-get", "download", "sonic-pi-samples"], debs, "downloading the sonic-pi-samples package", how)
    deb = sorted(debs.glob("sonic-pi-samples_*.deb"))[-1]
    shutil.rmtree(unpacked, ignore_errors=True)
    _run(["dpkg", "-x", str(deb), str(unpacked)], debs, f"unpacking {deb.name}", how)
    return unpacked / SONIC_PI_IN_DEB


def list_sources(folders: dict[str, Path]) -> tuple[dict[str, list[tuple[str, Path]]], list[tuple[str, str]]]:
    """Files per label (``(source:stem, path)``, sorted) and the dropped files with their reasons."""
    by_label: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    dropped: list[tuple[str, str]] = []
    for source, folder in folders.items():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        stems: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            stems[path.stem].append(path)
        for stem, paths in sorted(stems.items()):
            paths.sort(key=lambda p: FORMAT_PREFERENCE.index(p.suffix.lower()))
            for duplicate in paths[1:]:
                dropped.append((f"{source}:{duplicate.name}", f"the same sound as {paths[0].name} in another format"))
            label, reason = label_for(source, stem)
            if label is None:
                dropped.append((f"{source}:{paths[0].name}", reason))
            else:
                by_label[label].append((f"{source}:{stem}", paths[0]))
    for label in sorted(by_label):
        if len(by_label[label]) < MIN_FILES_PER_LABEL:
            files = by_label.pop(label)
            for name, path in files:
                dropped.append((f"{name.split(':')[0]}:{path.name}", f"label {label!r} has only {len(files)} files; "
                                f"{MIN_FILES_PER_LABEL} are needed to hold one out and train on the rest"))
    return dict(sorted(by_label.items())), sorted(dropped)


def augment(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A pitch-shifted and time-stretched variant (label-preserving amounts) and a note of what was done."""
    import librosa

    semitones = float(rng.uniform(*PITCH_SEMITONES) * rng.choice([-1, 1]))
    rate = float(rng.uniform(*STRETCH_RATES))
    # 512-point frames (23 ms): short enough for the shortest clips and for sharp attacks
    shifted = librosa.effects.pitch_shift(audio, sr=SAMPLE_RATE, n_steps=semitones, n_fft=512, hop_length=128)
    stretched = librosa.effects.time_stretch(shifted, rate=rate, n_fft=512, hop_length=128)
    return stretched.astype(np.float32), f"pitch {semitones:+.1f} st, stretch x{rate:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (created; rebuilt when the settings differ)")
    parser.add_argument("--augment", type=int, default=3, help="augmented variants per training file (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentations and captions")
    parser.add_argument("--kenney", type=Path, help="folder of Kenney's sounds (default: fetched into --cache)")
    parser.add_argument("--sonic-pi", type=Path, help="folder of the Sonic Pi samples (default: system or --cache)")
    parser.add_argument("--no-sonic-pi", action="store_true", help="Kenney's sounds only")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "audiodiff" / "recipes",
                        help="where downloaded sources are kept")
    parser.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    args = parser.parse_args()
    if args.augment < 0:
        fail(f"--augment must be 0 or more, got {args.augment}")

    try:
        folders = {"kenney": args.kenney or kenney_folder(args.cache)}
        if not args.no_sonic_pi:
            folders["sonic_pi"] = args.sonic_pi or sonic_pi_folder(args.cache)
    except MissingSource as err:
        fail(str(err))
    for source, folder in folders.items():
        if not folder.is_dir() or not any(p.suffix.lower() in AUDIO_SUFFIXES for p in folder.iterdir()):
            fail(f"{folder} ({source}) is not a folder of audio files")
    by_label, dropped = list_sources(folders)

    held = read_heldout()
    settings = {"augment": args.augment, "seed": args.seed, "sonic_pi": not args.no_sonic_pi, "version": 3,
                "files": sorted(name for files in by_label.values() for name, _ in files),
                "heldout": sorted(f"{source}:{stem}" for source in folders for stem in held[source])}
    writer = DatasetWriter(args.out, "game_sfx", settings, SAMPLE_RATE)
    if writer.up_to_date() and not args.force:
        print(f"{args.out} is up to date (same sources and settings); --force rebuilds it")
        print_summary(args.out, writer.read_stamp()["statistics"])
        return
    writer.begin()
    try:
        unreadable = _write_clips(writer, by_label, held, args)
        writer.write_table("dropped.csv", ("file", "reason"), dropped + unreadable)
        stats = writer.commit({label: BANK.held_out[label] for label in by_label})
    except BaseException:
        writer.abort()
        raise
    reasons = Counter(reason for _, reason in dropped + unreadable)
    print(f"dropped {len(dropped) + len(unreadable)} files (list in {args.out / 'dropped.csv'}):")
    for reason, count in reasons.most_common():
        print(f"  {count:3d}  {reason}")
    print_summary(args.out, stats)


def _write_clips(writer: DatasetWriter, by_label: dict[str, list[tuple[str, Path]]], held: dict[str, set[str]],
                 args: argparse.Namespace) -> list[tuple[str, str]]:
    unreadable = []
    jobs = [(label, name, path) for label, files in by_label.items() for name, path in files]
    for label, name, path in tqdm(jobs, desc="game_sfx", unit="file"):
        try:
            audio, _ = load_audio(path, SAMPLE_RATE)
        except AudioFileError as err:
            unreadable.append((name, str(err)))
            continue
        if np.abs(audio).max() < 1e-4:
            unreadable.append((name, "silent"))
            continue
        clip = finish_clip(audio, SAMPLE_RATE, MAX_SECONDS)
        file_name = name.replace(":", "_")
        source, stem = name.split(":", 1)
        origin = f"{source}:{path.name}"
        if stem in held[source]:
            rng = np.random.default_rng(stable_seed(args.seed, name, "heldout"))
            writer.add("heldout", file_name, clip, label, BANK.caption(label, rng), origin, LICENCES[source])
            continue
        rng = np.random.default_rng(stable_seed(args.seed, name))
        writer.add("train", file_name, clip, label, BANK.caption(label, rng), origin, LICENCES[source])
        for k in range(1, args.augment + 1):
            variant, _ = augment(clip, np.random.default_rng(stable_seed(args.seed, name, k)))
            writer.add("train", f"{file_name}_aug{k}", finish_clip(variant, SAMPLE_RATE, MAX_SECONDS), label,
                       BANK.caption(label, rng), origin, LICENCES[source])
    return unreadable


if __name__ == "__main__":
    main()
