"""The explicit registry of corpus importers: ``datasets.yaml``'s ``importer:`` names a key here."""

from __future__ import annotations

from types import ModuleType

from stages.importers import ljspeech

IMPORTERS: dict[str, ModuleType] = {
    "ljspeech": ljspeech,
}
