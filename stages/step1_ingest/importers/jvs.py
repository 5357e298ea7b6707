"""JVS ver1 (https://sites.google.com/site/shinnosuketakamichi/research-topics/jvs_corpus): 100 Japanese speakers.

Professional speakers (51 female, 49 male), about 30 hours, 24 kHz 16-bit mono PCM. Text: CC-BY-SA 4.0;
audio: research and personal use only, no redistribution, commercial use by agreement (same terms as JSUT).
Per speaker, four subsets: ``parallel100`` (the same 100 JSUT voiceactress100 sentences for everyone, i.e.
parallel data), ``nonpara30`` (30 speaker-specific sentences), ``whisper10`` and ``falsetto10``. Layout::

    jvs_ver1/gender_f0range.txt                               # speaker  Male_or_Female  minf0[Hz]  maxf0[Hz]
    jvs_ver1/jvs001/parallel100/transcripts_utf8.txt          # <ID>:<text>
    jvs_ver1/jvs001/parallel100/wav24kHz16bit/VOICEACTRESS100_001.wav

Sample line: ``VOICEACTRESS100_001:また、東寺のように、五大明王と呼ばれる、主要な明王の中央に配されることも多い。``

Quirks: IDs repeat across speakers and subsets, so the local id is ``<speaker>_<subset>_<ID>``
(``jvs001_parallel100_VOICEACTRESS100_001``). A few transcript lines have no wav (ingest reports those as
missing_audio). whisper10 and falsetto10 are not normal phonation and are left out by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.core.records import SourceUtterance
from ttsprep.stages.step1_ingest.importers.base import ImporterOptions, Problem, read_lines
from ttsprep.stages.step1_ingest.importers.jsut import scan_id_colon_text

DEFAULT_LANGUAGE = "ja"
TRANSCRIPT = "transcripts_utf8.txt"
WAV_DIR = "wav24kHz16bit"
GENDERS = {"M": "male", "F": "female"}


class Options(ImporterOptions):
    #: Subsets read for every speaker (whisper10 and falsetto10 are not modal phonation).
    subsets: list[Literal["parallel100", "nonpara30", "whisper10", "falsetto10"]] = ["parallel100", "nonpara30"]


def read_speaker_info(path: Path) -> dict[str, tuple[str, str, str]]:
    """``{speaker: (gender, min_f0_hz, max_f0_hz)}`` from ``gender_f0range.txt``; empty when absent."""
    if not path.is_file():
        return {}
    info = {}
    for _, line in read_lines(path):
        fields = line.split() if isinstance(line, str) else []
        if len(fields) == 4 and fields[1] in GENDERS:
            info[fields[0]] = (GENDERS[fields[1]], fields[2], fields[3])
    return info


def scan(root: Path, options: Options, language: str) -> Iterator[SourceUtterance | Problem]:
    speakers = sorted(folder.name for folder in root.glob("jvs[0-9][0-9][0-9]") if folder.is_dir())
    if not speakers:
        raise ConfigError(f"jvs: no speaker folders jvs001..jvs100 in {root} (root must be the jvs_ver1 folder)")
    info = read_speaker_info(root / "gender_f0range.txt")
    for speaker in speakers:
        gender, min_f0_hz, max_f0_hz = info.get(speaker, (None, None, None))
        f0_range = {"min_f0_hz": min_f0_hz, "max_f0_hz": max_f0_hz} if min_f0_hz else {}
        for subset in options.subsets:
            folder = root / speaker / subset
            if (folder / TRANSCRIPT).is_file():
                yield from scan_id_colon_text(
                    root, folder / TRANSCRIPT, folder / WAV_DIR, id_prefix=f"{speaker}_{subset}_",
                    extra={"subset": subset} | f0_range, speaker=speaker, language=language, gender=gender)
