"""What a run needs, checked where a run starts and by ``ttsprep validate``, before any work.

Config validation (``step1_ingest.project``) checks the file alone, so it holds on any machine. Here: the
tools a dataset's settings call for on this machine (never inside shard tasks: a Dask worker without ``mfa``
still processes shards aligned from TextGrids MFA wrote elsewhere), each dataset's language against the G2P,
and each importer against the folder it is pointed at (its first utterance is read).
"""

from __future__ import annotations

import shutil

from ttsprep.stages.core.errors import ConfigError, InvalidTranscript
from ttsprep.stages.step1_ingest.importers import IMPORTERS
from ttsprep.stages.step1_ingest.project import Dataset, Project, closest_name
from ttsprep.stages.step2_audio.dnsmos import dnsmos_available
from ttsprep.stages.step3_text.g2p import g2p_engine, supported_languages
from ttsprep.stages.step4_features.speaker_embedding import encoder_missing


def check_project(project: Project, datasets: list[Dataset] | None = None, *, layout: bool = True) -> None:
    """Raise ``ConfigError`` (one line naming the dataset and setting) for the first thing a run of
    ``datasets`` (default: all) would fail on; ``layout``: also read each importer's first utterance."""
    for dataset in datasets if datasets is not None else project.datasets:
        label = f"{project.source}: dataset '{dataset.name}'"
        check_environment(dataset, label)
        check_language(dataset, label)
        if layout:
            check_layout(dataset, label)


def check_environment(dataset: Dataset, label: str) -> None:
    """The programs and packages the dataset's settings need are here."""
    config = dataset.config
    if config.align.method == "mfa" and shutil.which("mfa") is None:
        raise ConfigError(f"{label}: stages.align.method 'mfa' needs the Montreal Forced Aligner's `mfa` "
                          "command on PATH (conda install -c conda-forge montreal-forced-aligner)")
    if config.features.dnsmos and not dnsmos_available():
        raise ConfigError(f"{label}: stages.features.dnsmos needs the packages speechmos and onnxruntime "
                          "(pip install 'speechmos>=0.0.1' onnxruntime)")
    if config.features.speaker_embedding and (missing := encoder_missing()):
        raise ConfigError(f"{label}: stages.features.speaker_embedding needs torch and Resemblyzer's encoder "
                          f"weights: {missing}")


def check_language(dataset: Dataset, label: str) -> None:
    """The dataset's language (its own or its importer's default) has a G2P, unless the text stage is off.
    Corpora whose utterances carry their own language (Common Voice, manifests) are checked per utterance."""
    language = dataset.language or IMPORTERS[dataset.importer].DEFAULT_LANGUAGE
    if not language or not dataset.config.text.enabled:
        return
    try:
        g2p_engine(language)
    except InvalidTranscript:
        raise ConfigError(f"{label}: language '{language}' has no G2P{closest_name(language, supported_languages())};"
                          f" the README's Languages section lists the {len(supported_languages())} supported codes"
                          ) from None


def check_layout(dataset: Dataset, label: str) -> None:
    """The importer finds at least one utterance (or a problem it reports per utterance) under the root."""
    importer = IMPORTERS[dataset.importer]
    language = dataset.language or importer.DEFAULT_LANGUAGE
    try:
        first = next(iter(importer.scan(dataset.root, dataset.options, language)), None)
    except ConfigError as error:
        raise ConfigError(f"{label}: {error}") from None
    except Exception as error:  # noqa: BLE001 - any failure here is a layout the importer cannot read
        raise ConfigError(f"{label}: importer '{dataset.importer}' cannot read {dataset.root}: "
                          f"{type(error).__name__}: {error}") from None
    if first is None:
        summary = (importer.__doc__ or "").strip().split("\n")[0]
        raise ConfigError(f"{label}: importer '{dataset.importer}' finds no utterance in {dataset.root} "
                          f"(expected: {summary})")
