"""libespeak-ng through ctypes: synthesised speech plus the start sample of every phoneme it spoke.

espeak-ng keeps its state in globals, so this module loads a private copy of the shared library (copied
into a temporary directory, as phonemizer does for each of its backends): it never shares a handle with
phonemizer's G2P in the same process. One engine per process (``engine()``, cached), initialised with
``espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA``; the voice may change on every call
(it is reloaded only when it changes). Calls are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES = 0x100  # espeakPHONEMES: ``[[...]]`` in the text is phoneme input
_EE_OK = 0
_RATE = 1  # espeakRATE, words per minute


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


class EspeakError(RuntimeError):
    """libespeak-ng could not be loaded, or refused a voice or a text."""


@dataclass(frozen=True)
class Synthesis:
    """``samples`` float32 ``[N]`` in [-1, 1) at ``sample_rate`` Hz; ``phonemes[k]`` starts at sample
    ``starts[k]`` (int64 ``[K]``, non-decreasing). Phonemes are espeak mnemonics (``t_s\\``, ``_:`` for a
    pause), or IPA when the engine was made with ``ipa=True``."""

    samples: np.ndarray
    sample_rate: int
    phonemes: list[str]
    starts: np.ndarray


def _library_path() -> Path:
    """The real file of libespeak-ng: ``$PHONEMIZER_ESPEAK_LIBRARY`` or what the loader finds."""
    configured = os.environ.get("PHONEMIZER_ESPEAK_LIBRARY")
    if configured:
        return Path(configured).resolve()
    name = ctypes.util.find_library("espeak-ng")
    if name is None:
        raise EspeakError("libespeak-ng not found (install espeak-ng or set PHONEMIZER_ESPEAK_LIBRARY)")
    ctypes.CDLL(name)  # now mapped: /proc/self/maps names its file
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if Path(path).name.startswith(name):
            return Path(path)
    raise EspeakError(f"cannot locate the file of {name}")


class EspeakEngine:
    """A private copy of libespeak-ng that reports phoneme events (module docstring)."""

    def __init__(self, *, ipa: bool = False, data_path: str | None = None):
        self._tempdir = tempfile.TemporaryDirectory(prefix="ttsprep-espeak-")
        copy = Path(self._tempdir.name) / _library_path().name
        shutil.copyfile(_library_path(), copy)
        self._lib = ctypes.CDLL(str(copy))
        options = _INITIALIZE_PHONEME_EVENTS | (_INITIALIZE_PHONEME_IPA if ipa else 0)
        path = data_path.encode() if data_path else None
        self.sample_rate = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, options))
        if self.sample_rate <= 0:
            raise EspeakError("espeak_Initialize failed")
        self._callback = _SynthCallback(self._on_synth)  # kept alive as long as the engine
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                           ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self._lock = threading.Lock()
        self._voice: str | None = None
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []

    def _on_synth(self, wav, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        k = 0
        while events[k].type != _EVENT_LIST_TERMINATED:
            if events[k].type == _EVENT_PHONEME:
                self._events.append((events[k].id.string.decode("utf-8", "replace"), events[k].sample))
            k += 1
        return 0  # 0: continue synthesis

    def synthesize(self, text: str, voice: str, *, rate_wpm: int = 175) -> Synthesis:
        """Speak ``text`` (UTF-8; ``[[...]]`` spans are espeak phoneme mnemonics) with ``voice``.

        Raises ``EspeakError`` for an unknown voice or a failed synthesis.
        """
        with self._lock:
            if voice != self._voice:  # loading a voice reads its dictionary: only on a change
                if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                    raise EspeakError(f"espeak-ng has no voice {voice!r}")
                self._voice = voice
            self._lib.espeak_SetParameter(_RATE, rate_wpm, 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8") + b"\0"
            status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _PHONEMES,
                                            None, None)
            if status != _EE_OK or self._lib.espeak_Synchronize() != _EE_OK:
                raise EspeakError(f"espeak_Synth failed ({status}) on {text[:40]!r}")
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            phonemes = [name for name, _ in self._events]
            starts = np.array([sample for _, sample in self._events], dtype=np.int64)
        return Synthesis(pcm.astype(np.float32) / 32768.0, self.sample_rate, phonemes, starts)


@functools.cache
def engine() -> EspeakEngine:
    """This process's one engine (IPA phoneme names); raises ``EspeakError`` if it cannot load."""
    return EspeakEngine(ipa=True)


def reset_engine() -> None:
    """Make the next ``engine()`` a fresh one. espeak-ng's synthesiser carries state from one utterance to the
    next (the same text then comes out a sample or two shifted), so a caller that needs outputs independent of
    what the process synthesised before resets first. An engine costs ~5 ms and ~1 MB that stays mapped."""
    engine.cache_clear()
