"""Fixtures shared by the test folders."""

import struct

import numpy as np
import pytest


def write_tiny_soundfont(path, bank=0):
    """A minimal valid SF2: one preset (``bank``, program 0) playing one looped 250 Hz wave
    (bank 128 is the General MIDI drum bank)."""
    sr, n = 16000, 8000
    t = np.arange(n) / sr
    wave = 0.5 * np.sin(2 * np.pi * 250 * t) + 0.2 * np.sin(2 * np.pi * 500 * t)
    samples = (wave * 20000).astype("<i2").tobytes() + bytes(46 * 2)

    def chunk(tag, data):
        data = data + (b"\0" if len(data) % 2 else b"")
        return tag + struct.pack("<I", len(data)) + data

    def listing(tag, *chunks):
        return chunk(b"LIST", tag + b"".join(chunks))

    def name(text):
        return text.encode().ljust(20, b"\0")

    info = listing(b"INFO", chunk(b"ifil", struct.pack("<HH", 2, 1)),
                   chunk(b"isng", b"EMU8000\0"), chunk(b"INAM", b"tiny\0\0"))  # fmt: skip
    sdta = listing(b"sdta", chunk(b"smpl", samples))
    phdr = (name("tiny") + struct.pack("<HHHIII", 0, bank, 0, 0, 0, 0)
            + name("EOP") + struct.pack("<HHHIII", 0, 0, 1, 0, 0, 0))  # fmt: skip
    pbag = struct.pack("<HHHH", 0, 0, 1, 0)
    pgen = struct.pack("<HH", 41, 0) + struct.pack("<HH", 0, 0)  # instrument 0
    inst = name("tiny") + struct.pack("<H", 0) + name("EOI") + struct.pack("<H", 1)
    ibag = struct.pack("<HHHH", 0, 0, 2, 0)
    igen = struct.pack("<HHHHHH", 54, 1, 53, 0, 0, 0)  # loop continuously; sampleID 0
    shdr = (name("wave") + struct.pack("<IIIIIBbHH", 0, n, 1600, n, sr, 59, 21, 0, 1)
            + name("EOS") + bytes(26))  # fmt: skip
    zeros10 = bytes(10)
    pdta = listing(b"pdta", chunk(b"phdr", phdr), chunk(b"pbag", pbag), chunk(b"pmod", zeros10),
                   chunk(b"pgen", pgen), chunk(b"inst", inst), chunk(b"ibag", ibag),
                   chunk(b"imod", zeros10), chunk(b"igen", igen), chunk(b"shdr", shdr))  # fmt: skip
    body = b"sfbk" + info + sdta + pdta
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.fixture
def tiny_soundfont(tmp_path):
    return write_tiny_soundfont(tmp_path / "tiny.sf2")


@pytest.fixture
def tiny_drum_soundfont(tmp_path):
    return write_tiny_soundfont(tmp_path / "drums.sf2", bank=128)
