"""Audio payloads: a real 44-byte WAV header followed by synthetic 16-bit PCM.

The PCM is a tone from a small pool plus noise read at a random offset of a larger noise pool:
each recording gets its own bytes (so the payload does not compress, like real speech), built
with gathers over precomputed pools instead of per-sample random numbers.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa

from generators import rng
from generators.config import WAV_HEADER_BYTES

TONES = 256
NOISE_SAMPLES = 1 << 22


def wav_header(data_bytes: int, sample_rate: int) -> bytes:
    """RIFF/WAVE header for mono 16-bit PCM."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1,
                       1, sample_rate, sample_rate * 2, 2, 16, b"data", data_bytes)


class AudioSynth:
    def __init__(self, seed: int, payload_bytes: int, sample_rate: int = 16_000) -> None:
        self.sample_rate = sample_rate
        self.payload_bytes = payload_bytes
        self.samples = (payload_bytes - WAV_HEADER_BYTES) // 2
        self.header = np.frombuffer(wav_header(self.samples * 2, sample_rate), np.uint8)
        g = np.random.Generator(np.random.PCG64(seed))
        t = np.arange(self.samples) / sample_rate
        freq = g.uniform(90, 300, TONES)[:, None]  # voice fundamental frequencies
        env = np.abs(np.sin(np.pi * (t[None, :] * g.uniform(2, 6, TONES)[:, None])))
        tone = 6000 * env * (np.sin(2 * np.pi * freq * t) + 0.4 * np.sin(6 * np.pi * freq * t))
        self.tones = tone.astype(np.int16)
        pool = max(NOISE_SAMPLES, 4 * self.samples)
        self.noise = g.normal(0, 900, pool).astype(np.int16)
        self.st_tone, self.st_noise = rng.salt(seed, "tone"), rng.salt(seed, "noise")

    @property
    def duration_ms(self) -> int:
        return self.samples * 1000 // self.sample_rate

    def payloads(self, keys: np.ndarray) -> tuple[pa.BinaryArray, int]:
        """One WAV payload per key, as a zero-copy Arrow binary array."""
        n, s = len(keys), self.samples
        tone = rng.below(keys, self.st_tone, TONES)
        off = rng.below(keys, self.st_noise, len(self.noise) - s)
        windows = np.lib.stride_tricks.sliding_window_view(self.noise, s)
        pcm = self.tones[tone] + windows[off]  # int16 wraparound is fine for noise
        buf = np.empty((n, self.payload_bytes), np.uint8)
        buf[:, :WAV_HEADER_BYTES] = self.header
        buf[:, WAV_HEADER_BYTES:] = pcm.view(np.uint8).reshape(n, 2 * s)
        offsets = np.arange(0, (n + 1) * self.payload_bytes, self.payload_bytes, dtype=np.int64)
        if offsets[-1] < 2**31:
            arr = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(
                offsets.astype(np.int32)), pa.py_buffer(buf.reshape(-1))])
        else:
            arr = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets),
                                                               pa.py_buffer(buf.reshape(-1))])
            arr = arr.cast(pa.binary())
        return arr, self.duration_ms
