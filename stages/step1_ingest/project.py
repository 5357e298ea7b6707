"""The project file ``datasets.yaml``: its datasets, their importers and options, and each one's ``StageConfig``.

Layout of ``datasets.yaml``::

    defaults:            # optional: stage settings shared by every dataset
      audio: {sample_rate: 22050}
    datasets:
      - name: lj                       # required, [a-z0-9_]+
        importer: ljspeech             # required, see ttsprep.stages.step1_ingest.importers.IMPORTERS
        root: /data/LJSpeech-1.1       # required, a directory (relative paths: to the yaml file)
        language: en                   # optional, the importer's default otherwise
        mic: mic2                      # importer options sit beside the common keys (here: vctk)
        stages:                        # optional per-dataset overrides of ``defaults``
          filter: {max_duration_s: 12}

Unknown keys anywhere are errors that name the dataset and the key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ttsprep.stages.core.config import StageConfig, Strict, describe_validation_error
from ttsprep.stages.core.errors import ConfigError
from ttsprep.stages.step1_ingest.importers import IMPORTERS


class DatasetEntry(BaseModel):
    """One entry of ``datasets:``. Keys that are not common keys are the importer's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    importer: str
    root: Path
    language: str | None = None
    stages: dict[str, Any] = {}

    @property
    def importer_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Dataset(BaseModel):
    """A fully validated dataset: its entry, the importer's options and the effective stage config."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    importer: str
    root: Path
    language: str | None
    options: BaseModel
    config: StageConfig


class Project(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    datasets: list[Dataset]
    source: str = "<memory>"

    def select(self, names: list[str] | None) -> list[Dataset]:
        if not names:
            return list(self.datasets)
        known = {d.name: d for d in self.datasets}
        unknown = [n for n in names if n not in known]
        if unknown:
            hints = "".join(closest_name(name, known) for name in unknown)
            raise ConfigError(f"unknown dataset(s) {unknown}{hints}; {self.source} declares {sorted(known)}")
        return [known[n] for n in names]


class _File(Strict):
    defaults: dict[str, Any] = {}
    datasets: list[dict[str, Any]]

    @field_validator("datasets")
    @classmethod
    def _not_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("must list at least one dataset")
        return value


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dataset_label(source: str, index: int, raw: Any) -> str:
    """How errors name entry ``index`` (0-based) of ``datasets:``: ``<source>: dataset #1 'lj'``."""
    name = f" '{raw['name']}'" if isinstance(raw, dict) and "name" in raw else ""
    return f"{source}: dataset #{index + 1}{name}"


def _existing(path: Path | None, base_dir: Path, where: str, *, is_dir: bool) -> Path | None:
    """``path`` made absolute (relative to the yaml's folder); ``ConfigError`` unless it exists."""
    if path is None:
        return None
    path = path if path.is_absolute() else (base_dir / path).resolve()
    if not (path.is_dir() if is_dir else path.is_file()):
        raise ConfigError(f"{where}: '{path}' is not a {'directory' if is_dir else 'file'}")
    return path


def _resolve_paths(config: StageConfig, base_dir: Path, label: str) -> StageConfig:
    """Make the file paths in ``config`` absolute (relative to the yaml's folder) and check they exist."""
    blocklist = _existing(config.filter.blocklist, base_dir, f"{label}: stages.filter.blocklist", is_dir=False)
    textgrid_dir = _existing(config.align.textgrid_dir, base_dir, f"{label}: stages.align.textgrid_dir", is_dir=True)
    pair_list = _existing(config.pairs.pair_list, base_dir, f"{label}: stages.pairs.pair_list", is_dir=False)
    if config.align.method == "textgrid" and textgrid_dir is None:
        raise ConfigError(f"{label}: stages.align.method 'textgrid' needs stages.align.textgrid_dir")
    if config.align.method == "mfa" and not config.align.mfa_dictionary:
        raise ConfigError(f"{label}: stages.align.method 'mfa' needs stages.align.mfa_dictionary "
                          "(an MFA dictionary name such as english_us_arpa, or a path)")
    if config.pairs.mode == "list" and pair_list is None:
        raise ConfigError(f"{label}: stages.pairs.mode 'list' needs stages.pairs.pair_list")
    if config.filter.min_dnsmos is not None and not config.features.dnsmos:
        raise ConfigError(f"{label}: stages.filter.min_dnsmos needs stages.features.dnsmos: true "
                          "(the filter reads the DNSMOS score, which is computed only when that is on)")
    if config.filter.min_speaker_similarity is not None and not config.features.speaker_embedding:
        raise ConfigError(f"{label}: stages.filter.min_speaker_similarity needs stages.features.speaker_embedding: "
                          "true (the check compares speaker embeddings, computed only when that is on)")
    return config.model_copy(update={
        "filter": config.filter.model_copy(update={"blocklist": blocklist}),
        "align": config.align.model_copy(update={"textgrid_dir": textgrid_dir}),
        "pairs": config.pairs.model_copy(update={"pair_list": pair_list}),
    })


def _validated(model: type[BaseModel], data: Any, label: str, prefix: str = "", note: str = "") -> Any:
    """``model.model_validate(data)``, or ``ConfigError`` naming ``label`` and each bad key (``prefix`` first)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{label}: {describe_validation_error(exc, prefix)}{note}") from None


def closest_name(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to a misspelt ``name``, else an empty string."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def build_project(data: Any, *, base_dir: Path, source: str = "<memory>") -> Project:
    """Validate parsed YAML ``data`` into a ``Project``; raise ``ConfigError`` naming entry and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'datasets:' list")
    parsed = _validated(_File, data, source)
    _validated(StageConfig, parsed.defaults, source, "defaults.")

    datasets: list[Dataset] = []
    for index, raw in enumerate(parsed.datasets):
        label = _dataset_label(source, index, raw)
        if not isinstance(raw, dict):
            raise ConfigError(f"{label}: expected a mapping")
        entry = _validated(DatasetEntry, raw, label)
        if entry.importer not in IMPORTERS:
            raise ConfigError(f"{label}: unknown importer '{entry.importer}'{closest_name(entry.importer, IMPORTERS)}; "
                              f"known: {', '.join(sorted(IMPORTERS))}")
        root = entry.root if entry.root.is_absolute() else (base_dir / entry.root)
        if not root.is_dir():
            raise ConfigError(f"{label}: root: '{root}' is not a directory")
        options = _validated(IMPORTERS[entry.importer].Options, entry.importer_options, label,
                             note=f" (options of importer '{entry.importer}')")
        config = _validated(StageConfig, _deep_merge(parsed.defaults, entry.stages), label, "stages.")
        config = _resolve_paths(config, base_dir, label)
        datasets.append(Dataset(name=entry.name, importer=entry.importer, root=root.resolve(),
                                language=entry.language, options=options, config=config))
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: dataset names must be unique; repeated: {duplicates}")
    _check_one_phone_set_per_language(datasets, source)
    return Project(datasets=datasets, source=source)


def _phone_set(dataset: Dataset) -> str:
    """``"g2p"`` where the dataset's tokens are its G2P's (or ARPAbet TextGrids mapped into them), else the
    TextGrid folder or MFA dictionary whose labels are kept as they are."""
    align = dataset.config.align
    if align.method in ("textgrid", "mfa") and align.textgrid_phones == "as_is":
        return f"TextGrid labels of {align.textgrid_dir or align.mfa_dictionary}"
    return "the G2P's phones"


def _check_one_phone_set_per_language(datasets: list[Dataset], source: str) -> None:
    """Refuse an output where one language would hold two phone sets (``en:`` symbols of two systems)."""
    sets: dict[str, dict[str, list[str]]] = {}
    for dataset in datasets:
        language = (dataset.language or IMPORTERS[dataset.importer].DEFAULT_LANGUAGE).split("-")[0].lower()
        if language:
            sets.setdefault(language, {}).setdefault(_phone_set(dataset), []).append(dataset.name)
    for language, by_set in sorted(sets.items()):
        if len(by_set) > 1:
            described = "; ".join(f"{', '.join(names)} use {phones}" for phones, names in by_set.items())
            raise ConfigError(f"{source}: language '{language}' would mix phone sets in one output ({described}); "
                              "use align.textgrid_phones: arpabet, or process them into separate outputs")


@dataclass(frozen=True)
class _RefusedTag:
    """Stands in for a node whose tag ``yaml.safe_load`` would refuse (``!!python/object``, ``!custom``)."""

    tag: str
    line: int


class _PlainLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a node with a tag it cannot construct becomes a
    ``_RefusedTag`` (nothing is built from it) instead of an error, so the error can name its key."""


_PlainLoader.add_constructor(None, lambda loader, node: _RefusedTag(node.tag, node.start_mark.line + 1))


def _refused_tags(value: Any, keys: tuple = ()) -> Iterator[tuple[tuple, _RefusedTag]]:
    """``(key path, tag)`` for every ``_RefusedTag`` in parsed YAML (as a value or as a mapping key)."""
    if isinstance(value, _RefusedTag):
        yield keys, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _refused_tags(key, keys)
            yield from _refused_tags(item, keys + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _refused_tags(item, keys + (index,))


def _refused_tag_error(source: str, data: Any, keys: tuple, refused: _RefusedTag) -> ConfigError:
    label, inner = source, keys
    if len(keys) >= 2 and keys[0] == "datasets" and isinstance(keys[1], int):
        label, inner = _dataset_label(source, keys[1], data["datasets"][keys[1]]), keys[2:]
    where = ".".join(str(key) for key in inner)
    tag = refused.tag.replace("tag:yaml.org,2002:", "!!")
    return ConfigError(f"{label}: {where + ': ' if where else ''}not valid YAML: the tag '{tag}' (line {refused.line}) is refused; "
                       f"only plain YAML (mappings, lists, strings, numbers, booleans) is accepted")


def load_project(path: Path) -> Project:
    """Read ``datasets.yaml`` as plain YAML (``yaml.safe_load``'s rules: no tag builds an object), validate it.

    Raises ``ConfigError``; a refused tag is named with the dataset entry and key that hold it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader; refused tags become markers
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    refused = next(_refused_tags(data), None)
    if refused is not None:
        raise _refused_tag_error(str(path), data, *refused)
    return build_project(data, base_dir=path.parent.resolve(), source=str(path))
