"""The explicit registry of corpus importers: ``datasets.yaml``'s ``importer:`` names a key here."""

from __future__ import annotations

from types import ModuleType

from ttsprep.stages.step1_ingest.importers import (aishell3, cmu_arctic, common_voice, css10, jsut, jvs, librispeech,
                                                   libritts, ljspeech, manifest, vctk)

IMPORTERS: dict[str, ModuleType] = {
    "aishell3": aishell3,
    "cmu_arctic": cmu_arctic,
    "common_voice": common_voice,
    "css10": css10,
    "jsut": jsut,
    "jvs": jvs,
    "librispeech": librispeech,
    "libritts": libritts,
    "ljspeech": ljspeech,
    "manifest": manifest,
    "vctk": vctk,
}
