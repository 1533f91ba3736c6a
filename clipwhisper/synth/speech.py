"""eSpeak NG through ctypes: speech samples plus a timed phoneme list.

The library and its voice data come from the ``espeakng-loader`` wheel, so no
system package is needed. eSpeak keeps global state, so each process
initialises it once (``Speaker`` is meant to live for a worker's lifetime).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_CHARS_AUTO = 0
_PHONEMES_INPUT = 0x100  # text inside [[...]] is read as phoneme mnemonics
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_RATE, _PITCH, _RANGE = 1, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    symbol: str
    start_s: float


@dataclass(frozen=True)
class Speech:
    samples: np.ndarray  # int16 mono
    sample_rate: int
    phonemes: list[Phoneme]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class Speaker:
    """One initialised eSpeak NG engine."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INIT_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise from {data.decode()}")
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[Phoneme] = []
        self._callback = _SYNTH_CALLBACK(self._on_synth)  # kept referenced: eSpeak holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                symbol = event.id.string.decode("ascii", "replace")
                self._phonemes.append(Phoneme(symbol, event.audio_position / 1000.0))
            i += 1
        return 0

    def say(self, text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, pitch_range: int = 50,
            seed: int = 0) -> Speech:
        """Speak ``text``; ``[[...]]`` spans are phoneme input (eSpeak's own mnemonics).

        eSpeak jitters its waveform with a random generator; seeding it per call makes the
        result independent of what the engine spoke before."""
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, value, 0)
        self._chunks, self._phonemes = [], []
        encoded = text.encode()
        status = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, _CHARS_AUTO | _PHONEMES_INPUT, None, None)
        if status != 0:
            raise RuntimeError(f"eSpeak NG failed to speak {text!r} (status {status})")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Speech(samples.astype(np.int16), self.sample_rate, list(self._phonemes))
