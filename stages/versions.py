"""What a shard's content depends on besides its inputs and config: our code and the tools it calls."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

TOOLS = ("numpy", "scipy", "soundfile", "soxr", "librosa", "noisereduce", "pyworld", "pyloudnorm",
         "webrtcvad-wheels", "pypinyin", "pyopenjtalk-plus", "phonemizer", "num2words", "cn2an", "praatio", "pyarrow",
         "speechmos", "onnxruntime", "pocketsphinx", "numba", "swift-f0")
#: Programs run as subprocesses, with the argument that prints their version.
PROGRAMS = {"espeak-ng": "--version", "mfa": "version"}
_CODE_PACKAGES = ("stages", "aligners")


@functools.cache
def tool_versions() -> dict[str, str]:
    """Installed versions of the libraries and programs that shape the output."""
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    for program, argument in PROGRAMS.items():
        try:
            output = subprocess.run([program, argument], capture_output=True, text=True, timeout=60).stdout
            versions[program] = output.split("\n")[0].strip()
        except (OSError, subprocess.SubprocessError):
            versions[program] = "absent"
    return versions


#: The modules that turn source audio into conditioned audio and frame features (the costly stages):
#: editing anything else recomputes text, durations and shards from the cached features.
ACOUSTIC_MODULES = ("stages/audio_io.py", "stages/conditioning.py", "stages/silence.py", "stages/signal_quality.py",
                    "stages/denoise.py", "stages/features.py", "stages/pitch.py", "stages/pitch_refine.py",
                    "stages/pitch_swift.py", "stages/frames.py", "stages/quality.py")


def _digest(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def code_version() -> str:
    """SHA-256 (16 hex) of the source of the pure packages: any edit to stages/ or aligners/ changes it."""
    root = Path(__file__).resolve().parents[1]
    return _digest([path for package in _CODE_PACKAGES for path in sorted((root / package).rglob("*.py"))], root)


@functools.cache
def acoustic_code_version() -> str:
    """SHA-256 (16 hex) of ``ACOUSTIC_MODULES``: what the cached audio and features depend on."""
    root = Path(__file__).resolve().parents[1]
    return _digest([root / module for module in ACOUSTIC_MODULES], root)
