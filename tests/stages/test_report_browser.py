"""The report in headless Chromium at 1400 px: every section renders, players load, nothing overflows the
window, and the alignment pictures' token labels, as laid out by the browser, never overlap."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.stages.test_report import KEPT, _add_similarity, attrs_of, build_dataset
from ttsprep.stages.core.schema import list_of
from ttsprep.stages.step7_finalize.report import write_report
from ttsprep.stages.step7_finalize.vc_pairs import PAIRS_SCHEMA

pytestmark = pytest.mark.slow

WINDOW_PX = 1400
CLIENT_ID = "2be1e68badd910bbbbee14f6688a9dc4e385e7bdfe1ecafc186ceb2d93ce0230" * 2  # Common Voice: 128 hex
# Labels of every width the layout meets: IPA with ties and stress marks, pauses, punctuation, CJK.
TOKENS = ["ˈaɪ", "t͡ʃ", "sil", "ŋ", "ə", "ˌoʊ", "spn", ",", "中", "ʒ", "k", "ˈɛ"]

# Measures what the browser laid out and writes it into the DOM, for --dump-dom (the test's copy only).
_PROBE = """<script>
window.addEventListener("load", () => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; };
  const figures = [...document.querySelectorAll("div.mel")].map(fig => ({
    frame: box(fig), labels: [...fig.querySelectorAll("text.lab")].map(t => [t.textContent, ...box(t)])}));
  let widest = ["", 0];
  for (const e of document.body.querySelectorAll("*")) {
    const right = e.getBoundingClientRect().right;
    if (right > widest[1]) widest = [e.tagName + "." + e.getAttribute("class"), right];
  }
  const probe = {scrollWidth: document.documentElement.scrollWidth, widest, figures};
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>"""


def _dense_tokens(dataset_dir: Path, seed: int = 0) -> None:
    """Rewrite every shard row's phonemes/durations as many short tokens (0 to 7 frames), so that labels
    must be staggered and some left out."""
    rng = np.random.default_rng(seed)
    for shard in sorted((dataset_dir / "shards").glob("*.parquet")):
        table = pq.read_table(shard)
        phonemes, durations = [], []
        for num_frames in table["num_frames"].to_pylist():
            units: list[int] = []
            while sum(units) < num_frames:
                units.append(int(min(rng.integers(0, 8), num_frames - sum(units))))
            durations.append(units)
            phonemes.append([TOKENS[k] for k in rng.integers(0, len(TOKENS), len(units))])
        for name, values, kind in (("phonemes", phonemes, pa.string()), ("durations", durations, pa.int32())):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, table.schema.field(index), pa.array(values, list_of(kind)))
        pq.write_table(table, shard)


def _pairs(dataset_dir: Path, rows: list[dict]) -> None:
    pq.write_table(pa.Table.from_pylist([
        {"source_utt_id": a["utt_id"], "target_utt_id": b["utt_id"], "source_speaker": a["speaker"],
         "target_speaker": b["speaker"], "num_source_frames": a["num_frames"], "num_target_frames": b["num_frames"],
         "durations": None, "mcd_db": 5.0 + index, "snt_duration": None}
        for index, (a, b) in enumerate(itertools.pairwise(rows))], schema=PAIRS_SCHEMA), dataset_dir / "pairs.parquet")


def _apart(labels: list[list], tolerance: float = 0.25) -> list[str]:
    """Pairs of labels (text, left, right, top, bottom) whose boxes overlap by more than ``tolerance`` px."""
    clashes = []
    for index, (text, left, right, top, bottom) in enumerate(labels):
        for other, o_left, o_right, o_top, o_bottom in labels[index + 1:]:
            if (min(right, o_right) - max(left, o_left) > tolerance
                    and min(bottom, o_bottom) - max(top, o_top) > tolerance):
                clashes.append(f"{text!r} at {left:.1f}-{right:.1f} and {other!r} at {o_left:.1f}-{o_right:.1f}")
    return clashes


def test_report_renders_at_1400_px_without_overflow_or_overlapping_labels(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    kept = [(CLIENT_ID if speaker == "s1" else speaker, *rest) for speaker, *rest in KEPT]
    dataset_dir, rows = build_dataset(tmp_path, kept=kept, features=True)
    _dense_tokens(dataset_dir)
    _add_similarity(dataset_dir, {row["utt_id"]: 0.5 + index / 20 for index, row in enumerate(rows)})
    _pairs(dataset_dir, rows)
    page = write_report(dataset_dir, examples=len(KEPT), seed=0).read_text(encoding="utf-8")
    assert "<script>" in page and _PROBE not in page
    probe_copy = tmp_path / "probe.html"
    probe_copy.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--window-size={WINDOW_PX},1000", "--virtual-time-budget=5000", "--dump-dom", probe_copy.as_uri()],
        check=False, capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]

    headings = re.findall(r"<h2>([^<]*)</h2>", dom)
    assert headings == ["Utterances", "Hours", "Rejects by reason", "Rejected audio", "Distributions",
                        "Per speaker", "Phone durations", "Alignment", "Lowest-SNR kept clips",
                        "Speaker similarity", "Voice-conversion pairs", "Examples", "Run files"]
    assert attrs_of(dom, "html")[0]["data-errors"] == ""
    states = [attrs.get("data-state") for attrs in attrs_of(dom, "audio")]
    assert len(states) == 2 * len(KEPT) + 2 + 3 + 2 * 2 and states == ["ok"] * len(states)
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]
    assert console == []

    probe = json.loads(re.search(r'<pre id="probe">([^<]*)</pre>', dom).group(1).replace("&amp;", "&"))
    assert probe["scrollWidth"] <= WINDOW_PX, f"the page is {probe['scrollWidth']} px wide: {probe['widest']}"
    assert probe["widest"][1] <= WINDOW_PX
    assert len(probe["figures"]) == 3
    for figure in probe["figures"]:
        left, right, _, _ = figure["frame"]
        labels = figure["labels"]
        assert len(labels) >= 20  # dense, yet many labels are shown
        assert all(left - 0.5 <= label[1] and label[2] <= right + 0.5 for label in labels)
        assert _apart(labels) == []
