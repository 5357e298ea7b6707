"""Ingest: run a dataset's importer, probe every audio header in-process, and account for every utterance.

Result: the kept ``Utterance`` records (the manifest) and ``Reject`` rows for everything else: missing or
unreadable audio, duplicate ids, paths outside the corpus root, and every ``Problem`` the importer found.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ttsprep.stages.core.audio_io import AudioInfo, file_checksum, probe_audio
from ttsprep.stages.core.errors import InvalidAudio
from ttsprep.stages.core.reasons import Reason
from ttsprep.stages.core.records import Reject, SourceUtterance, Utterance, utt_id_for
from ttsprep.stages.step1_ingest.importers import IMPORTERS
from ttsprep.stages.step1_ingest.importers.base import Problem, resolved_directories_memo
from ttsprep.stages.step1_ingest.probe_cache import FileStamp, ProbeCache, file_stamp
from ttsprep.stages.step1_ingest.project import Dataset

STAGE = "ingest"


@dataclass(frozen=True)
class IngestResult:
    utterances: list[Utterance]
    rejects: list[Reject]
    #: Audio files whose probe and checksum came from the previous run's ``ProbeCache``.
    num_cached_probes: int = 0

    @property
    def num_inputs(self) -> int:
        return len(self.utterances) + len(self.rejects)


def _stamp(source: SourceUtterance, dataset: str) -> FileStamp | Reject:
    """The stamp of ``source``'s audio file (one ``stat``), or the Reject when it is missing or not a file."""
    utt_id = utt_id_for(dataset, source.local_id)
    try:
        status = os.stat(source.audio_path)
    except FileNotFoundError:
        return Reject(utt_id, dataset, STAGE, Reason.MISSING_AUDIO, f"audio file not found: {source.audio_path}",
                      source.audio_path)
    except OSError as exc:
        return Reject(utt_id, dataset, STAGE, Reason.UNREADABLE_AUDIO, str(exc), source.audio_path)
    if not stat.S_ISREG(status.st_mode):
        return Reject(utt_id, dataset, STAGE, Reason.UNREADABLE_AUDIO,
                      f"{source.audio_path} is not a regular file (a directory or a device)", source.audio_path)
    return file_stamp(status)


def _read_audio_header(source: SourceUtterance, dataset: str) -> tuple[AudioInfo, str] | Reject:
    """The header probe and checksum of ``source``'s audio, or the Reject saying why it cannot be read."""
    try:
        return probe_audio(Path(source.audio_path)), file_checksum(Path(source.audio_path))
    except (InvalidAudio, OSError) as exc:
        reason = exc.reason if isinstance(exc, InvalidAudio) and exc.reason != "invalid_audio" else Reason.UNREADABLE_AUDIO
        return Reject(utt_id_for(dataset, source.local_id), dataset, STAGE, reason, str(exc), source.audio_path)


def _utterance(source: SourceUtterance, dataset: str, info: AudioInfo, checksum: str) -> Utterance:
    return Utterance(
        utt_id=utt_id_for(dataset, source.local_id), dataset=dataset, speaker=source.speaker,
        language=source.language, text=source.text, audio_path=source.audio_path, sample_rate=info.sample_rate,
        channels=info.channels, num_samples=info.num_samples, duration_s=info.duration_s, checksum=checksum,
        audio_format=info.audio_format, text_normalized=source.text_normalized, pinyin=source.pinyin,
        accent=source.accent, gender=source.gender, split=source.split, extra=dict(source.extra),
    )


def ingest_dataset(dataset: Dataset, *, workers: int = 8, cache_path: Path | None = None) -> IngestResult:
    """Scan ``dataset`` with its importer and probe its audio.

    Every file is stat'ed here; the headers and checksums of new or changed files are read by a thread pool
    of ``workers`` (I/O-bound). ``cache_path``: a ``ProbeCache`` file; unchanged files reuse its probes, and
    it is rewritten with this run's when they differ.
    """
    importer = IMPORTERS[dataset.importer]
    language = dataset.language or importer.DEFAULT_LANGUAGE
    sources: list[SourceUtterance] = []
    rejects: list[Reject] = []
    occurrences: Counter[str] = Counter()
    with resolved_directories_memo():
        items = list(importer.scan(dataset.root, dataset.options, language))
    for item in items:
        occurrences[item.local_id] += 1
        if occurrences[item.local_id] > 1:  # the n-th listing is its own ledger row, ``<utt_id>#<n>``
            rejects.append(Reject(f"{utt_id_for(dataset.name, item.local_id)}#{occurrences[item.local_id]}",
                                  dataset.name, STAGE, Reason.DUPLICATE_ID,
                                  f"id '{item.local_id}' listed more than once: occurrence "
                                  f"{occurrences[item.local_id]}; the first is the utterance", item.audio_path))
        elif isinstance(item, Problem):
            rejects.append(Reject(utt_id_for(dataset.name, item.local_id), dataset.name, STAGE, item.reason,
                                  item.detail, item.audio_path))
        else:
            sources.append(item)
    cache = ProbeCache(cache_path) if cache_path is not None else None
    stamps = [_stamp(source, dataset.name) for source in sources]
    probed: list[tuple[AudioInfo, str] | Reject | None] = [
        cache.get(source.audio_path, stamp) if cache is not None and not isinstance(stamp, Reject) else None
        for source, stamp in zip(sources, stamps)]
    unread = [i for i, stamp in enumerate(stamps) if probed[i] is None and not isinstance(stamp, Reject)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, result in zip(unread, pool.map(lambda i: _read_audio_header(sources[i], dataset.name), unread)):
            probed[i] = result
    utterances: list[Utterance] = []
    probes: dict[str, tuple[FileStamp, AudioInfo, str]] = {}
    for source, stamp, result in zip(sources, stamps, probed):
        if isinstance(stamp, Reject) or isinstance(result, Reject):
            rejects.append(stamp if isinstance(stamp, Reject) else result)
            continue
        info, checksum = result
        probes[source.audio_path] = (stamp, info, checksum)
        utterances.append(_utterance(source, dataset.name, info, checksum))
    if cache is None:
        return IngestResult(utterances, rejects)
    cache.save(probes)
    return IngestResult(utterances, rejects, cache.hits)
