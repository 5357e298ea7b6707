"""The package's shape: layers import only downwards, the acoustic cache covers its code, nothing generic installs.

The layers, lowest first (a module may import its own layer and the ones below):
``stages.core`` < ``stages.step1_ingest`` < ``step2_audio`` < ``step3_text`` < ``step4_features`` < ``aligners``
< ``step5_durations`` < ``models`` < ``train`` < ``step6_shards`` < ``step7_finalize`` < ``stages`` < ``pipelines``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ttsprep.stages.core.reasons import REASONS, readme_table
from ttsprep.stages.core.versions import ACOUSTIC_FOLDERS

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["stages.core", "stages.step1_ingest", "stages.step2_audio", "stages.step3_text", "stages.step4_features",
          "aligners", "stages.step5_durations", "models", "train", "stages.step6_shards", "stages.step7_finalize",
          "stages", "pipelines"]
PACKAGES = ("stages", "aligners", "models", "train", "pipelines")


def _layer(module: str) -> int:
    """Index in ``LAYERS`` of the longest prefix of ``module`` (without the ``ttsprep.``)."""
    matches = [i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + ".")]
    return max(matches, key=lambda i: len(LAYERS[i]))


def _imports(path: Path) -> list[str]:
    """The ``ttsprep.*`` modules ``path`` imports (top level and inside functions), without the prefix."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ttsprep."):
            found.append(node.module.removeprefix("ttsprep."))
        elif isinstance(node, ast.Import):
            found += [alias.name.removeprefix("ttsprep.") for alias in node.names if alias.name.startswith("ttsprep.")]
    return found


def test_every_import_goes_down_the_layers():
    upward = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            upward += [f"{module} -> {target}" for target in _imports(path) if _layer(target) > _layer(module)]
    assert upward == []


def test_only_pipelines_imports_prefect():
    offenders = [str(path.relative_to(REPO)) for package in PACKAGES if package != "pipelines"
                 for path in (REPO / package).rglob("*.py")
                 if any(name == "prefect" or name.startswith("prefect.") for name in _all_imports(path))]
    assert offenders == []


def _all_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_the_acoustic_cache_version_covers_every_module_the_acoustic_row_imports():
    """Editing any module that computes the cached audio and features must change ``acoustic_code_version``."""
    script = ("import json, sys; import ttsprep.stages.step4_features.acoustic_row; "
              "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items() "
              "if n.startswith('ttsprep.') and getattr(m, '__file__', None))))")
    files = json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                                      cwd="/").stdout)
    covered = [REPO / folder for folder in ACOUSTIC_FOLDERS]
    outside = [f for f in files if not any(Path(f).is_relative_to(folder) for folder in covered)
               and Path(f).name != "__init__.py"]
    assert len(files) > 10 and outside == []


def test_no_generic_top_level_module_is_installed():
    """The distribution installs ``ttsprep.*`` only (``stages``, ``train``... would collide with other projects)."""
    distribution = metadata.distribution("ttsprep")
    top_level = (distribution.read_text("top_level.txt") or "").split()
    assert set(top_level) <= {"ttsprep"}
    for name in PACKAGES:
        found = subprocess.run([sys.executable, "-c", f"import importlib.util as u; print(u.find_spec('{name}'))"],
                               capture_output=True, text=True, cwd="/").stdout.strip()
        assert found == "None", f"{name} is importable as a top-level module: {found}"


def test_the_readme_lists_every_ledger_reason():
    assert readme_table() in (REPO / "README.md").read_text(encoding="utf-8")
    assert len(REASONS) >= 40
