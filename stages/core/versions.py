"""What a shard's content depends on besides its inputs and config: our code and the tools it calls."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

TOOLS = ("numpy", "scipy", "soundfile", "soxr", "librosa", "noisereduce", "pyworld", "pyloudnorm",
         "webrtcvad-wheels", "pypinyin", "pyopenjtalk-plus", "phonemizer", "num2words", "cn2an", "praatio", "pyarrow",
         "speechmos", "onnxruntime", "pocketsphinx", "numba", "swift-f0", "resemblyzer")
#: Programs run as subprocesses, with the argument that prints their version.
PROGRAMS = {"espeak-ng": "--version", "mfa": "version"}


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


#: The folders whose code turns source audio into the cached audio and frame-feature columns (the costly
#: stages; ``step4_features.acoustic_row``): every module under them counts. Editing anything else recomputes
#: text, durations and shards from the cached features.
ACOUSTIC_FOLDERS = ("stages/core", "stages/step2_audio", "stages/step4_features")
#: The folders of the pure packages: every module under them counts for ``code_version``.
CODE_FOLDERS = ("stages", "aligners")
_ROOT = Path(__file__).resolve().parents[2]


def _digest(folders: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for path in sorted(path for folder in folders for path in (_ROOT / folder).rglob("*.py")):
        digest.update(str(path.relative_to(_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def code_version() -> str:
    """SHA-256 (16 hex) of the source of the pure packages: any edit to stages/ or aligners/ changes it."""
    return _digest(CODE_FOLDERS)


@functools.cache
def acoustic_code_version() -> str:
    """SHA-256 (16 hex) of every module under ``ACOUSTIC_FOLDERS``: what the cached audio and features depend on."""
    return _digest(ACOUSTIC_FOLDERS)
