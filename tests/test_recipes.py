"""The recipes' data preparation: captions, the game_sfx label mapping, the jingle generator and the
dataset writer. The SoundFont render runs on a SoundFont the test writes (tests/soundfont.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiodiff.data.captions import CaptionBank, CaptionError, tidy
from recipes import folder_dataset
from recipes.folder_dataset import DatasetWriter, read_heldout
from recipes.game_sfx import prepare as game_sfx
from recipes.jingles import prepare as jingles
from recipes.vocoder import prepare as vocoder_data

from .soundfont import ORIGINAL_PITCH, write_tiny_soundfont


def test_captions_vary_and_never_use_a_held_out_phrasing():
    rng = np.random.default_rng(0)
    for label in game_sfx.BANK.labels:
        drawn = {game_sfx.BANK.caption(label, rng) for _ in range(300)}
        assert len(drawn) >= 30, (label, sorted(drawn))
        held = {p.lower() for p in game_sfx.BANK.held_out[label]}
        assert len(held) >= 3
        assert not held & {c.lower() for c in game_sfx.BANK.all_captions(label)}
        assert drawn <= game_sfx.BANK.all_captions(label)


def test_caption_bank_refuses_a_held_out_phrasing_it_can_produce():
    with pytest.raises(CaptionError, match="held-out"):
        CaptionBank(descriptions={"coin": ("coin pickup",)}, templates=("a {d}",), adjectives=(),
                    held_out={"coin": ("A coin pickup",)})
    with pytest.raises(CaptionError, match="placeholder"):
        CaptionBank(descriptions={"coin": ("coin",)}, templates=("just words",), adjectives=())


def test_articles_follow_the_next_word():
    assert tidy("a  eerie  tune") == "an eerie tune"
    assert tidy("A 8-bit coin") == "An 8-bit coin"
    assert tidy("a UI blip and a coin") == "a UI blip and a coin"


@pytest.mark.parametrize(("source", "stem", "label"), [
    ("kenney", "coin3", "coin"), ("kenney", "gameover2", "game_over"), ("kenney", "lose5", "game_over"),
    ("kenney", "phaseJump1", "jump"), ("kenney", "rockHit2", "hit"), ("kenney", "secret4", "upgrade"),
    ("kenney", "laser1", "laser"), ("sonic_pi", "bd_haus", "kick"), ("sonic_pi", "drum_heavy_kick", "kick"),
    ("sonic_pi", "elec_hi_snare", "snare"), ("sonic_pi", "drum_cymbal_open", "cymbal"),
    ("sonic_pi", "elec_blip2", "blip"), ("sonic_pi", "ambi_swoosh", "whoosh"),
    ("sonic_pi", "misc_cineboom", "explosion"), ("sonic_pi", "perc_impact1", "hit"),
    ("sonic_pi", "tabla_na_o", "tabla"),
])
def test_game_sfx_labels_from_file_names(source, stem, label):
    assert game_sfx.label_for(source, stem) == (label, "")


@pytest.mark.parametrize(("source", "stem", "reason"), [
    ("kenney", "spaceship1", "no label rule"), ("sonic_pi", "loop_amen", "loop"), ("sonic_pi", "ambi_drone", "drone"),
    ("sonic_pi", "bass_hit_c", "bass"), ("sonic_pi", "glitch_bass_g", "bass"), ("sonic_pi", "misc_crow", "one-off"),
])
def test_game_sfx_drops_files_with_a_reason(source, stem, reason):
    label, why = game_sfx.label_for(source, stem)
    assert label is None and reason in why


def test_game_sfx_sources_drop_duplicates_and_thin_labels(tmp_path):
    kenney, sonic = tmp_path / "kenney", tmp_path / "sonic"
    kenney.mkdir(), sonic.mkdir()
    for name in ("coin1.wav", "coin2.wav", "coin3.wav", "coin1.ogg", "laser1.wav", "laser2.wav", "readme.txt"):
        (kenney / name).touch()
    (sonic / "loop_amen.flac").touch()
    by_label, dropped = game_sfx.list_sources({"kenney": kenney, "sonic_pi": sonic})
    assert list(by_label) == ["coin"]
    assert [p.name for _, p in by_label["coin"]] == ["coin1.wav", "coin2.wav", "coin3.wav"]
    reasons = dict(dropped)
    assert "another format" in reasons["kenney:coin1.ogg"]
    assert "only 2 files" in reasons["kenney:laser1.wav"] and "only 2 files" in reasons["kenney:laser2.wav"]
    assert "loop" in reasons["sonic_pi:loop_amen.flac"]


def test_the_shared_heldout_list_is_read_by_stem_per_source(tmp_path):
    listed = tmp_path / "heldout.csv"
    listed.write_text("source,file\nkenney,coin4.wav\nsonic_pi,bd_ada.flac\njingles,jingle_00004.wav\n")
    assert read_heldout(listed) == {"kenney": {"coin4"}, "sonic_pi": {"bd_ada"}, "jingles": {"jingle_00004"}}
    listed.write_text("source,file\nendless-sky-data,usr/share/games/endless-sky/sounds/blaster.wav\n")
    assert read_heldout(listed) == {"kenney": set(), "sonic_pi": set(), "jingles": set(),
                                    "endless-sky-data": {"blaster"}}  # kept for evaluation: no recipe trains on it


def test_the_shipped_heldout_list_keeps_files_to_train_on_in_every_game_sfx_label():
    held = read_heldout()
    assert (len(held["kenney"]), len(held["sonic_pi"]), len(held["jingles"])) == (11, 23, 400)
    assert held["jingles"] == {f"jingle_{i:05d}" for i in range(4, 2000, 5)}
    for source in ("kenney", "sonic_pi"):
        labels = [game_sfx.label_for(source, stem)[0] for stem in held[source]]
        assert None not in labels, (source, held[source])


def test_jingle_composition_is_deterministic_and_follows_its_contour():
    first = jingles.compose(np.random.default_rng([0, 7]))
    assert jingles.compose(np.random.default_rng([0, 7])) == first
    assert any(jingles.compose(np.random.default_rng([0, i])) != first for i in range(8, 12))
    for seed in range(40):
        for contour in jingles.CONTOURS:
            jingle = jingles.compose(np.random.default_rng(seed), seconds=2.5, contour=contour)
            pitches = np.array([n.pitch for n in jingle.notes])
            steps = np.diff(pitches)
            if contour == "rising":
                assert (steps > 0).all(), pitches
            elif contour == "falling":
                assert (steps < 0).all(), pitches
            elif contour == "arch":
                top = int(np.argmax(pitches))
                assert (steps[:top] > 0).all() and (steps[top:] < 0).all(), pitches
            else:
                assert (np.sign(steps[1:]) == -np.sign(steps[:-1])).all(), pitches
            end = max(n.start + n.duration for n in jingle.notes)
            assert end == pytest.approx(2.5 - jingles.RELEASE_SECONDS, abs=1e-3)
            assert len(jingle.notes) >= 3
            inst = jingles.INSTRUMENTS[jingle.instrument]
            assert inst.low <= pitches.min() and pitches.max() <= inst.high, (jingle.instrument, pitches)


def test_jingle_composition_rejects_unknown_choices():
    with pytest.raises(ValueError, match="unknown contour 'wobbly'"):
        jingles.compose(np.random.default_rng(0), contour="wobbly")
    with pytest.raises(ValueError, match="seconds must be within"):
        jingles.compose(np.random.default_rng(0), seconds=9.0)


def test_jingle_captions_describe_the_jingle_and_avoid_held_out_phrasings():
    rng = np.random.default_rng(1)
    held = {p for phrasings in jingles.HELD_OUT_PROMPTS.values() for p in phrasings}
    assert set(jingles.HELD_OUT_PROMPTS) == set(jingles.FAMILIES)
    for phrasing in held:  # captions always name one of NOUNS; held-out phrasings never do
        assert not set(phrasing.split()) & set(jingles.NOUNS), phrasing
    captions = set()
    for i in range(400):
        jingle = jingles.compose(np.random.default_rng([3, i]))
        text = jingles.caption(jingle, rng)
        captions.add(text)
        words = set(text.replace(",", " ").replace(":", " ").split())
        assert words & set(jingles.NOUNS), text
        assert any(w in text for w in jingles.INSTRUMENTS[jingle.instrument].words), text
    assert len(captions) > 300
    assert not captions & held


# tinysoundfont cannot come with the test extra: every wheel of it lists pyaudio as a dependency (used
# only by its live playback, which the recipe never calls), and pyaudio has no Linux wheel and does
# not build without PortAudio's headers, so `pip install '.[test]'` would fail on a bare machine. As the
# recipe says (`pip install --no-deps tinysoundfont`), it is installed here without dependencies, into
# pytest's cache folder, once, when this environment lacks it.
TINYSOUNDFONT = "tinysoundfont>=0.3.1,<0.4"


@pytest.fixture(scope="session")
def tinysoundfont(request, tmp_path_factory):
    try:
        import tinysoundfont  # noqa: F401

        yield
        return
    except ImportError:
        pass
    cache = getattr(request.config, "cache", None)
    name = f"tinysoundfont-{sys.implementation.cache_tag}"
    target = cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name)
    if not (target / "tinysoundfont" / "__init__.py").is_file():
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-deps", "--upgrade", "--target", str(target), TINYSOUNDFONT],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"pip install --no-deps {TINYSOUNDFONT} failed:\n{proc.stderr[-2000:]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(target))
        import tinysoundfont  # noqa: F401

        yield


def peak_hz(audio: np.ndarray, rate: int) -> float:
    """The frequency of the strongest spectral peak (Hann window, 16x zero padding)."""
    n = len(audio)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(n), 16 * n))
    return float(np.fft.rfftfreq(16 * n, 1 / rate)[spectrum.argmax()])


@pytest.mark.slow
def test_jingle_render_has_the_asked_length_and_plays_each_note_at_its_pitch(tinysoundfont, tmp_path, monkeypatch):
    """With the test's own SoundFont (a looped 440 Hz sine for every program the recipe uses), never one
    installed on the machine: each note sounds at its MIDI pitch while it is held."""
    monkeypatch.setattr(jingles, "SOUNDFONTS", {})  # an installed FluidR3_GM is not looked at
    font = write_tiny_soundfont(tmp_path / "sine.sf2", {i.program for i in jingles.INSTRUMENTS.values()})
    renderer = jingles.SoundFontRenderer(jingles.find_soundfont(font))
    rate = jingles.SAMPLE_RATE
    for seconds, instrument in ((1.0, "marimba"), (2.75, "trumpet"), (4.0, "strings")):
        jingle = jingles.compose(np.random.default_rng(5), seconds=seconds, instrument=instrument)
        audio = renderer.render(jingle)
        assert audio.shape == (1, round(seconds * rate))
        assert np.abs(audio).max() > 1e-3 and np.isfinite(audio).all()
        assert audio[0, -1] == 0.0  # what still rang at the end was faded out
        again = renderer.render(jingle)
        np.testing.assert_allclose(again, audio, atol=1e-5)
        assert len(jingle.notes) >= 3
        for note in jingle.notes:  # from 20 ms after its onset to 10 ms before its note-off (or the end fade)
            start = int((note.start + 0.02) * rate)
            end = int(min(note.start + note.duration - 0.01, seconds - jingles.END_FADE_SECONDS) * rate)
            assert end - start > 0.03 * rate, note
            expected = 440.0 * 2 ** ((note.pitch - ORIGINAL_PITCH) / 12)
            assert peak_hz(audio[0, start:end], rate) == pytest.approx(expected, rel=0.01), (instrument, note)


def test_missing_soundfont_says_how_to_get_one(tmp_path):
    with pytest.raises(folder_dataset.MissingSource, match="does not exist"):
        jingles.find_soundfont(tmp_path / "none.sf2")


def _write_dataset(out: Path, settings: dict, label: str = "beep") -> DatasetWriter:
    writer = DatasetWriter(out, "test", settings, 8000)
    writer.begin()
    tone = np.sin(np.linspace(0, 200, 4000, dtype=np.float32))[None] * 0.5
    writer.add("train", "a", tone, label, f"a {label}", "test:a.wav", "CC0")
    writer.add("train", "a2", tone, label, f"a {label}", "test:a.wav", "CC0")
    writer.add("heldout", "b", tone, label, f"the {label}", "test:b.wav", "CC0")
    writer.commit({label: ("a held-out phrasing",)})
    return writer


def test_dataset_writer_publishes_a_complete_folder_and_rebuilds_on_new_settings(tmp_path):
    out = tmp_path / "data"
    writer = _write_dataset(out, {"n": 1})
    assert writer.up_to_date()
    with (out / "metadata.csv").open() as f:
        assert [r["path"] for r in csv.DictReader(f)] == ["train/a.wav", "train/a2.wav"]
    with (out / "training_data.csv").open() as f:
        assert list(csv.DictReader(f)) == [{"source": "test", "file": "a.wav", "licence": "CC0"}]
    with (out / "heldout" / "metadata.csv").open() as f:
        assert [r["path"] for r in csv.DictReader(f)] == ["b.wav"]
    stamp = json.loads((out / "prepare.json").read_text())
    assert stamp["statistics"]["train"]["beep"] == {"clips": 2, "sources": 1, "seconds": 1.0}
    assert not DatasetWriter(out, "test", {"n": 2}, 8000).up_to_date()
    _write_dataset(out, {"n": 2}, label="boop")
    with (out / "metadata.csv").open() as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["boop", "boop"]
    assert not list(tmp_path.glob(".data.*")), "temporary folders left behind"


def test_dataset_writer_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        DatasetWriter(tmp_path, "test", {}, 8000).begin()
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_vocoder_data_holds_out_the_listed_recordings_and_takes_no_listed_jingle(tmp_path, monkeypatch):
    from audiodiff.audio import save_audio

    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(5512) / 22050).astype(np.float32)
    for name in ("rec_a", "rec_b", "rec_c", "rec_d"):
        save_audio(tmp_path / "recordings" / f"{name}.wav", tone, 22050)
    for i in range(6):
        save_audio(tmp_path / "jingles" / "train" / f"jingle_{i:02d}.wav", tone, 22050)
    save_audio(tmp_path / "jingles" / "heldout" / "jingle_99.wav", tone, 22050)
    listed = tmp_path / "heldout.csv"
    listed.write_text("source,file\nkenney,rec_c.flac\njingles,jingle_02.wav\n")  # the stem counts, not the format
    monkeypatch.setattr(folder_dataset, "HELDOUT_LIST", listed)
    monkeypatch.setattr(vocoder_data, "SOURCES", {
        "kenney": (lambda cache: sorted((tmp_path / "recordings").glob("*.wav")), "n/a")})
    out = tmp_path / "out"
    save_audio(out / "train" / "kenney__rec_c.wav", tone, 22050)  # left by an earlier split: must go
    assert vocoder_data.main(["--out", str(out), "--jingles", str(tmp_path / "jingles"), "--jingles-every", "2"]) == 0
    assert sorted(p.name for p in (out / "train").glob("jingles__*")) == [
        "jingles__jingle_00.wav", "jingles__jingle_04.wav"]
    assert [p.name for p in (out / "heldout").iterdir()] == ["kenney__rec_c.wav"]
    assert not (out / "train" / "kenney__rec_c.wav").exists()
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "jingles" for r in rows) == 2
    with (out / "training_data.csv").open() as f:
        trained = [(r["source"], r["file"]) for r in csv.DictReader(f)]
    assert trained == [("jingles", "jingle_00.wav"), ("jingles", "jingle_04.wav"), ("kenney", "rec_a.wav"),
                       ("kenney", "rec_b.wav"), ("kenney", "rec_d.wav"), vocoder_data.SYNTHETIC[:2]]
    with pytest.raises(SystemExit):
        vocoder_data.main(["--out", str(out), "--jingles", str(tmp_path / "nothing_here")])
