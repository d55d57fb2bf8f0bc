"""A tiny SoundFont 2 file written from scratch, so that the SoundFont renderer of the jingles
recipe is tested on every machine (no apt package, no download): one looped sine sample, one
instrument playing it, and a preset for each General MIDI program asked for (bank 0).

The sample is a 440 Hz sine at 22050 Hz whose loop holds exactly 44 periods, with ``ORIGINAL_PITCH``
69 (A4): a note at MIDI pitch p sounds at 440 · 2^((p - 69) / 12) Hz, a clean peak to check.
Layout after the SoundFont 2.01 specification: RIFF 'sfbk' holding the INFO, sdta and pdta lists.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050
ORIGINAL_PITCH = 69
LOOP = 2205  # frames: 0.1 s, 44 periods of 440 Hz
SAMPLE_ID, SAMPLE_MODES, RELEASE_VOL_ENV, INSTRUMENT = 53, 54, 38, 41  # generator operators


def _chunk(tag: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return tag + struct.pack("<I", len(data)) + data + pad


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def _name(text: str) -> bytes:
    return text.encode("ascii")[:19].ljust(20, b"\0")


def write_tiny_soundfont(path: Path, programs: Iterable[int]) -> Path:
    programs = sorted(set(programs))
    t = np.arange(2 * LOOP)
    sine = np.round(0.5 * 32767 * np.sin(2 * np.pi * 440 * t / SAMPLE_RATE)).astype("<i2")
    smpl = np.concatenate([sine, np.zeros(46, "<i2")]).tobytes()  # 46 zero frames after each sample
    info = _list(b"INFO", _chunk(b"ifil", struct.pack("<HH", 2, 1)), _chunk(b"isng", b"EMU8000\0"),
                 _chunk(b"INAM", b"audiodiff test sine\0"))
    sdta = _list(b"sdta", _chunk(b"smpl", smpl))
    # One preset zone per program (instrument 0), one instrument zone (sample 0, looped, 0.1 s release).
    phdr = b"".join(_name(f"sine {p}") + struct.pack("<HHHIII", p, 0, i, 0, 0, 0) for i, p in enumerate(programs))
    phdr += _name("EOP") + struct.pack("<HHHIII", 0, 0, len(programs), 0, 0, 0)
    pbag = b"".join(struct.pack("<HH", i, 0) for i in range(len(programs) + 1))
    pgen = b"".join(struct.pack("<HH", INSTRUMENT, 0) for _ in programs) + struct.pack("<HH", 0, 0)
    inst = _name("sine") + struct.pack("<H", 0) + _name("EOI") + struct.pack("<H", 1)
    ibag = struct.pack("<HH", 0, 0) + struct.pack("<HH", 3, 0)
    igen = (struct.pack("<Hh", RELEASE_VOL_ENV, -3986) + struct.pack("<HH", SAMPLE_MODES, 1)
            + struct.pack("<HH", SAMPLE_ID, 0) + struct.pack("<HH", 0, 0))
    mod = struct.pack("<HHhHH", 0, 0, 0, 0, 0)  # the terminal record only
    shdr = (_name("sine") + struct.pack("<IIIIIBbHH", 0, 2 * LOOP, LOOP, 2 * LOOP, SAMPLE_RATE, ORIGINAL_PITCH, 0, 0, 1)
            + _name("EOS") + struct.pack("<IIIIIBbHH", 0, 0, 0, 0, 0, 0, 0, 0, 0))
    pdta = _list(b"pdta", _chunk(b"phdr", phdr), _chunk(b"pbag", pbag), _chunk(b"pmod", mod), _chunk(b"pgen", pgen),
                 _chunk(b"inst", inst), _chunk(b"ibag", ibag), _chunk(b"imod", mod), _chunk(b"igen", igen),
                 _chunk(b"shdr", shdr))
    path.write_bytes(_chunk(b"RIFF", b"sfbk" + info + sdta + pdta))
    return path
