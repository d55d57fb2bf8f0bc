"""Build the jingles folder dataset: short generated melodies (1-4 s) rendered with a General MIDI
SoundFont through tinysoundfont, at 22050 Hz mono, captioned by mood, contour, instrument and tempo.

    python recipes/jingles/prepare.py data/jingles [--count 2000] [--seed 0] [--soundfont PATH]

Each jingle is drawn from the random stream seeded by (seed, index): a mood (which picks the scale
and the tempo range), a contour (rising, falling, arch, bounce), an instrument, a length and the
notes. The label is the instrument family (mallets, keys, plucked, brass, strings, synth, woodwind):
timbre is what sets jingles apart most audibly, and every family is rendered in every mood, contour
and tempo, so the label does not stand in for any of those; they are in the captions. The jingles
listed in recipes/heldout.csv (the held-out list every recipe and shipped model shares: of the first
2000, those with index % 5 == 4) go to heldout/.

Needs tinysoundfont (`pip install --no-deps tinysoundfont`) and an MIT-licensed SoundFont:
FluidR3_GM (apt fluid-soundfont-gm) or MuseScore General (apt musescore-general-soundfont-small).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from tqdm.auto import tqdm

from audiodiff.data.captions import tidy
from recipes.folder_dataset import DatasetWriter, MissingSource, fail, finish_clip, print_summary, read_heldout

SAMPLE_RATE = 22050
SECONDS_RANGE = (1.0, 4.0)
RELEASE_SECONDS = 0.35  # room after the last note-off for its natural decay; the rest of a tail is cut
END_FADE_SECONDS = 0.05
SOUNDFONTS = {  # where apt puts them, and their licences
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"): "MIT",
    Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"): "MIT",
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"): "MIT",
}
GPL_SOUNDFONTS = ("timgm6mb",)

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "whole tone": (0, 2, 4, 6, 8, 10),
}


@dataclass(frozen=True)
class Mood:
    scales: tuple[str, ...]
    bpm: tuple[float, float]
    words: tuple[str, ...]


MOODS = {
    "cheerful": Mood(("major", "major pentatonic"), (120, 170), ("cheerful", "happy", "upbeat", "joyful", "bright")),
    "sad": Mood(("minor", "minor pentatonic"), (60, 95), ("sad", "melancholy", "gloomy", "sorrowful", "downcast")),
    "mysterious": Mood(("harmonic minor", "whole tone"), (70, 115),
                       ("mysterious", "eerie", "spooky", "uncanny", "suspenseful")),
    "triumphant": Mood(("major",), (100, 145), ("triumphant", "victorious", "heroic", "celebratory", "proud")),
}
CONTOURS = {
    "rising": ("rising", "ascending", "upward", "climbing"),
    "falling": ("falling", "descending", "downward", "sinking"),
    "arch": ("arching", "rise-and-fall", "up-and-down", "peaking"),
    "bounce": ("bouncing", "bouncy", "zigzag", "hopping"),
}
TEMPOS = {"slow": ("slow", "unhurried", "leisurely"), "medium": ("moderate", "mid-tempo", "medium-paced"),
          "fast": ("fast", "quick", "brisk")}


@dataclass(frozen=True)
class Instrument:
    program: int  # General MIDI program (0-based)
    family: str
    low: int  # comfortable MIDI note range
    high: int
    words: tuple[str, ...]


INSTRUMENTS = {
    "marimba": Instrument(12, "mallets", 60, 84, ("marimba",)),
    "xylophone": Instrument(13, "mallets", 65, 89, ("xylophone",)),
    "glockenspiel": Instrument(9, "mallets", 72, 96, ("glockenspiel", "glock")),
    "vibraphone": Instrument(11, "mallets", 60, 84, ("vibraphone", "vibes")),
    "celesta": Instrument(8, "mallets", 62, 86, ("celesta",)),
    "piano": Instrument(0, "keys", 58, 84, ("piano", "grand piano")),
    "electric piano": Instrument(4, "keys", 55, 80, ("electric piano", "e-piano")),
    "harpsichord": Instrument(6, "keys", 55, 80, ("harpsichord",)),
    "harp": Instrument(46, "plucked", 55, 84, ("harp",)),
    "pizzicato strings": Instrument(45, "plucked", 55, 79, ("pizzicato strings", "plucked strings")),
    "nylon guitar": Instrument(24, "plucked", 52, 76, ("nylon guitar", "acoustic guitar", "classical guitar")),
    "trumpet": Instrument(56, "brass", 58, 80, ("trumpet",)),
    "brass section": Instrument(61, "brass", 50, 74, ("brass section", "brass ensemble")),
    "french horn": Instrument(60, "brass", 48, 72, ("French horn", "horn")),
    "strings": Instrument(48, "strings", 55, 79, ("strings", "string section", "string ensemble")),
    "violin": Instrument(40, "strings", 60, 86, ("violin",)),
    "square lead": Instrument(80, "synth", 60, 84, ("square-wave synth", "chiptune lead", "square lead")),
    "saw lead": Instrument(81, "synth", 55, 79, ("sawtooth synth", "saw lead", "synth lead")),
    "flute": Instrument(73, "woodwind", 65, 89, ("flute",)),
    "clarinet": Instrument(71, "woodwind", 55, 79, ("clarinet",)),
    "oboe": Instrument(68, "woodwind", 60, 84, ("oboe",)),
}
FAMILIES = tuple(sorted({i.family for i in INSTRUMENTS.values()}))

# Every caption holds one of NOUNS; the held-out phrasings hold none of them, so no caption can
# ever equal a held-out phrasing.
NOUNS = ("jingle", "melody", "tune", "motif", "sting", "riff")
TEMPLATES = (
    "{mood} {contour} {instrument} {noun}, {tempo}",
    "a {mood} {instrument} {noun}, {contour} and {tempo}",
    "{instrument} {noun}: {mood}, {contour}, {tempo}",
    "a {tempo} {mood} {noun} played on {instrument}, {contour}",
    "{contour} {noun} on {instrument}, {mood}",
    "{tempo} {instrument} {noun}",
)
HELD_OUT_PROMPTS = {
    "mallets": ("a tinkly wooden-bar ditty", "a happy little ditty struck with mallets", "a plinky percussive phrase"),
    "keys": ("a short keyboard ditty", "a few notes tinkled on the ivories", "a brief keyboard phrase going up"),
    "plucked": ("a little plucky ditty", "fingerpicked notes climbing", "a twangy short phrase"),
    "brass": ("a royal fanfare blast", "horns announcing a victory", "a bold bugle call"),
    "strings": ("a bowed orchestral flourish", "a cinematic violin swell", "a sweeping orchestral phrase"),
    "synth": ("a retro console victory fanfare", "an electronic beepy ditty", "a chip music flourish"),
    "woodwind": ("a breathy pipe ditty", "a reedy little phrase", "a pastoral wind-instrument air"),
}


@dataclass(frozen=True)
class Note:
    start: float  # s
    duration: float  # s, until note-off
    pitch: int  # MIDI note number
    velocity: int


@dataclass(frozen=True)
class Jingle:
    mood: str
    scale: str
    contour: str
    instrument: str
    bpm: float
    seconds: float  # length of the rendered clip
    notes: tuple[Note, ...]

    @property
    def family(self) -> str:
        return INSTRUMENTS[self.instrument].family

    @property
    def tempo(self) -> str:
        return "slow" if self.bpm < 95 else "medium" if self.bpm < 130 else "fast"


def _contour_steps(contour: str, count: int, rng: np.random.Generator) -> list[int]:
    """Scale-degree steps between ``count`` notes that follow ``contour``."""
    sizes = rng.choice([1, 1, 2, 2, 3], size=count - 1).tolist()
    if contour == "rising":
        return sizes
    if contour == "falling":
        return [-s for s in sizes]
    if contour == "arch":
        peak = max(1, (count - 1) // 2 + int(rng.integers(-1, 2)))
        return [s if i < peak else -s for i, s in enumerate(sizes)]
    if contour == "bounce":  # up a larger step, down a smaller one (or the reverse), in turn
        first = int(rng.choice([1, -1]))
        return [(s + 1) * first if i % 2 == 0 else -max(1, s - 1) * first for i, s in enumerate(sizes)]
    raise ValueError(f"unknown contour {contour!r}; valid: {', '.join(CONTOURS)}")


def _pitch(tonic: int, scale: Sequence[int], degree: int) -> int:
    octave, step = divmod(degree, len(scale))
    return tonic + 12 * octave + scale[step]


def compose(rng: np.random.Generator, seconds: float | None = None, mood: str | None = None,
            contour: str | None = None, instrument: str | None = None) -> Jingle:
    """A random jingle ``seconds`` long (drawn from 1-4 s when None); the other choices are drawn
    when not given. The notes end :data:`RELEASE_SECONDS` before the clip does."""
    mood = mood or str(rng.choice(list(MOODS)))
    contour = contour or str(rng.choice(list(CONTOURS)))
    if instrument is None:  # family first, so that each family gets the same share of jingles
        family = str(rng.choice(FAMILIES))
        instrument = str(rng.choice([name for name, i in INSTRUMENTS.items() if i.family == family]))
    for name, value, valid in (("mood", mood, MOODS), ("contour", contour, CONTOURS),
                               ("instrument", instrument, INSTRUMENTS)):
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    seconds = float(rng.uniform(*SECONDS_RANGE)) if seconds is None else float(seconds)
    if not SECONDS_RANGE[0] <= seconds <= SECONDS_RANGE[1]:
        raise ValueError(f"seconds must be within {SECONDS_RANGE[0]}-{SECONDS_RANGE[1]} s, got {seconds}")
    spec = MOODS[mood]
    scale_name = str(rng.choice(spec.scales))
    scale = SCALES[scale_name]
    bpm = float(rng.uniform(*spec.bpm))
    beat = 60.0 / bpm
    span = seconds - RELEASE_SECONDS
    # Durations in beats: eighths and quarters (sixteenths when fast), a held last note.
    last = float(rng.choice([1.0, 1.5]))
    choices = [0.25, 0.5, 0.5, 1.0] if bpm >= 130 else [0.5, 0.5, 0.5, 1.0]
    beats: list[float] = []
    while True:
        step = float(rng.choice(choices))
        if (sum(beats) + step + last) * beat > span:
            break
        beats.append(step)
    if len(beats) < 2:  # a short clip at a slow tempo: squeeze three notes in
        beats = [0.5, 0.5]
    beats.append(last)
    scale_beat = span / (sum(beats) * beat)  # stretch the rhythm to end exactly at the span
    durations = [b * beat * scale_beat for b in beats]
    inst = INSTRUMENTS[instrument]
    steps = np.array(_contour_steps(contour, len(durations), rng))
    while True:  # narrow the largest leaps (keeping their direction) until the tune fits the instrument
        degrees = np.cumsum([0, *steps])
        degrees -= degrees.min()
        width = _pitch(0, scale, int(degrees.max()))
        if width <= inst.high - inst.low or np.abs(steps).max() <= 1:
            break
        widest = int(np.argmax(np.abs(steps)))
        steps[widest] -= np.sign(steps[widest])
    tonic = int(rng.integers(inst.low, max(inst.low, inst.high - width) + 1))
    notes, start = [], 0.0
    for i, (degree, duration) in enumerate(zip(degrees, durations, strict=True)):
        accent = 12 if i == 0 or i == len(durations) - 1 else 0
        velocity = int(np.clip(rng.integers(85, 105) + accent, 1, 127))
        # legato-ish: a note is held for 90% of its slot, the last one to the end of the span
        held = duration if i == len(durations) - 1 else 0.9 * duration
        notes.append(Note(round(start, 5), round(held, 5), _pitch(tonic, scale, int(degree)), velocity))
        start += duration
    return Jingle(mood, scale_name, contour, instrument, round(bpm, 1), seconds, tuple(notes))


def caption(jingle: Jingle, rng: np.random.Generator) -> str:
    """A random wording of the jingle's mood, contour, instrument and tempo."""
    def pick(options: Sequence[str]) -> str:
        return options[int(rng.integers(len(options)))]

    return tidy(pick(TEMPLATES).format(mood=pick(MOODS[jingle.mood].words), contour=pick(CONTOURS[jingle.contour]),
                                       instrument=pick(INSTRUMENTS[jingle.instrument].words), noun=pick(NOUNS),
                                       tempo=pick(TEMPOS[jingle.tempo])))


class SoundFontRenderer:
    """Renders jingles with one loaded SoundFont (loading FluidR3_GM takes seconds; rendering a
    jingle takes milliseconds)."""

    def __init__(self, soundfont: Path, sample_rate: int = SAMPLE_RATE) -> None:
        try:
            import tinysoundfont
        except ImportError:
            raise MissingSource("the Python package tinysoundfont is not installed: "
                                "`pip install --no-deps tinysoundfont`; pyaudio is not needed") from None
        self.sample_rate = sample_rate
        self.synth = tinysoundfont.Synth(samplerate=sample_rate)
        try:
            self.sfid = self.synth.sfload(str(soundfont))
        except Exception as err:  # tinysoundfont raises its own error type for unreadable files
            raise MissingSource(f"{soundfont} is not a SoundFont tinysoundfont can read ({err})") from None

    def _generate(self, frames: int) -> np.ndarray:
        stereo = np.frombuffer(self.synth.generate(frames), dtype=np.float32)
        return stereo.reshape(-1, 2).mean(axis=1)

    def render(self, jingle: Jingle) -> np.ndarray:
        """1 × frames float32, exactly ``jingle.seconds`` long; what still sounds at the end fades out."""
        self.synth.sounds_off()
        self._generate(256)  # let the cut voices go
        self.synth.program_select(0, self.sfid, 0, INSTRUMENTS[jingle.instrument].program)
        events = sorted([(n.start, 1, n.pitch, n.velocity) for n in jingle.notes]
                        + [(n.start + n.duration, 0, n.pitch, 0) for n in jingle.notes])
        total = int(round(jingle.seconds * self.sample_rate))
        parts, position = [], 0
        for time, is_on, pitch, velocity in events:
            frame = min(total, int(round(time * self.sample_rate)))
            if frame > position:
                parts.append(self._generate(frame - position))
                position = frame
            if is_on:
                self.synth.noteon(0, pitch, velocity)
            else:
                self.synth.noteoff(0, pitch)
        if total > position:
            parts.append(self._generate(total - position))
        audio = np.concatenate(parts)[None]
        fade = int(END_FADE_SECONDS * self.sample_rate)
        audio[:, -fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return audio


def find_soundfont(given: Path | None) -> Path:
    """The SoundFont to use: ``given``, or the first of the apt locations that exists."""
    if given is not None:
        if not given.is_file():
            raise MissingSource(f"SoundFont {given} does not exist")
        return given
    for path in SOUNDFONTS:
        if path.is_file():
            return path
    raise MissingSource(
        "no SoundFont found (looked for " + ", ".join(str(p) for p in SOUNDFONTS) + "). Install one:\n"
        "  sudo apt-get install fluid-soundfont-gm            (FluidR3_GM, MIT)\n"
        "or without root:\n"
        "  apt-get download fluid-soundfont-gm && dpkg -x fluid-soundfont-gm_*.deb sf\n"
        "  then pass --soundfont sf/usr/share/sounds/sf2/FluidR3_GM.sf2\n"
        "(musescore-general-soundfont-small, MIT, works too: sf/usr/share/sounds/sf3/MuseScore_General_Lite.sf3)")


def soundfont_licence(name: str) -> str:
    """The licence of the renders of the SoundFont file ``name``, as far as this recipe knows it."""
    for path, licence in SOUNDFONTS.items():
        if path.name == name:
            return f"{licence} (rendered with {name})"
    if any(gpl in name.lower() for gpl in GPL_SOUNDFONTS):
        return f"GPL (rendered with {name})"
    return f"unknown (rendered with {name}: check its licence)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (created; rebuilt when the settings differ)")
    parser.add_argument("--count", type=int, default=2000,
                        help="number of jingles (those in recipes/heldout.csv held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--soundfont", type=Path, help="an .sf2/.sf3 General MIDI SoundFont (default: apt locations)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the folder is up to date")
    args = parser.parse_args()
    if args.count < 1:
        fail(f"--count must be at least 1, got {args.count}")
    try:
        soundfont = find_soundfont(args.soundfont)
    except MissingSource as err:
        fail(str(err))
    if any(name in soundfont.name.lower() for name in GPL_SOUNDFONTS):
        print(f"warning: {soundfont.name} is GPL-licensed: do not ship a model trained on these renders; "
              "use FluidR3_GM or MuseScore General (MIT)", file=sys.stderr)
    held = read_heldout()["jingles"]
    settings = {"count": args.count, "seed": args.seed, "soundfont": soundfont.name,
                "soundfont_bytes": soundfont.stat().st_size, "version": 4, "heldout": sorted(held)}
    licence = soundfont_licence(soundfont.name)
    writer = DatasetWriter(args.out, "jingles", settings, SAMPLE_RATE)
    if writer.up_to_date() and not args.force:
        print(f"{args.out} is up to date (same settings); --force rebuilds it")
        print_summary(args.out, writer.read_stamp()["statistics"])
        return
    try:
        renderer = SoundFontRenderer(soundfont)
    except MissingSource as err:
        fail(str(err))
    writer.begin()
    try:
        rows = []
        for index in tqdm(range(args.count), desc="jingles", unit="jingle"):
            rng = np.random.default_rng([args.seed, index])
            jingle = compose(rng)
            clip = finish_clip(renderer.render(jingle), SAMPLE_RATE, SECONDS_RANGE[1])
            name = f"jingle_{index:05d}"
            split = "heldout" if name in held else "train"
            writer.add(split, name, clip, jingle.family, caption(jingle, rng), f"jingles:{name}.wav", licence)
            rows.append((name, split, jingle.family, jingle.instrument, jingle.mood, jingle.scale, jingle.contour,
                         jingle.bpm, jingle.tempo, len(jingle.notes)))
        writer.write_table("jingles.csv", ("name", "split", "label", "instrument", "mood", "scale", "contour", "bpm",
                                           "tempo", "notes"), rows)
        stats = writer.commit(HELD_OUT_PROMPTS)
    except BaseException:
        writer.abort()
        raise
    print_summary(args.out, stats)


if __name__ == "__main__":
    main()
