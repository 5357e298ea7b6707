"""The voice-conversion pairs of ``OUT/<dataset>/pairs.parquet`` (``vc_pairs.py``): count, MCD, worst pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ttsprep.stages.step7_finalize.report_html import Raw, fixed, short_id, table
from ttsprep.stages.step7_finalize.report_plots import histogram_svg

MAX_WORST_PAIRS = 10
_COLUMNS = ["source_utt_id", "target_utt_id", "source_speaker", "target_speaker", "num_source_frames",
            "num_target_frames", "mcd_db"]


def pairs_html(path: Path, kept_ids: set[str]) -> str:
    """Pairs, speaker pairs, the MCD (dB) histogram and quantiles, the MAX_WORST_PAIRS highest-MCD pairs
    (with the pair's ``speaker_similarity`` where the file has it), and how many pairs name an utterance
    that is not in the shards (a pairs file left from an older run)."""
    similarity = "speaker_similarity" in pq.ParquetFile(path).schema_arrow.names  # newer pairs files
    pairs = pq.read_table(path, columns=_COLUMNS + ["speaker_similarity"] * similarity).to_pydict()
    count = len(pairs["mcd_db"])
    if count == 0:
        return '<p id="pairs" data-pairs="0">pairs.parquet holds no pairs.</p>'
    mcd = np.array([np.nan if value is None else value for value in pairs["mcd_db"]], np.float64)
    speaker_pairs = len(set(zip(pairs["source_speaker"], pairs["target_speaker"])))
    utterances = len(set(pairs["source_utt_id"]) | set(pairs["target_utt_id"]))
    stale = sum(source not in kept_ids or target not in kept_ids
                for source, target in zip(pairs["source_utt_id"], pairs["target_utt_id"]))
    finite = mcd[np.isfinite(mcd)]
    p50, p90 = np.percentile(finite, [50, 90]) if finite.size else (np.nan, np.nan)
    worst = [int(index) for index in np.argsort(-np.nan_to_num(mcd, nan=-np.inf), kind="stable")[:MAX_WORST_PAIRS]]
    rows = [[pairs["source_utt_id"][i], pairs["target_utt_id"][i], Raw(short_id(pairs["source_speaker"][i])),
             Raw(short_id(pairs["target_speaker"][i])),
             Raw(f"{pairs['num_source_frames'][i]:,} → {pairs['num_target_frames'][i]:,}", "num"), fixed(mcd[i], 2)]
            + ([fixed(pairs["speaker_similarity"][i], 3)] if similarity else []) for i in worst]
    warning = (f'<p class="bad">{stale:,} pairs name an utterance that is not in the shards: pairs.parquet is '
               "older than the shards.</p>" if stale else "")
    return (f'<p id="pairs" data-pairs="{count}">{count:,} pairs between {speaker_pairs:,} (source, target) '
            f"speaker pairs over {utterances:,} utterances; MCD along the DTW path: median {p50:.2f} dB, "
            f"90th percentile {p90:.2f} dB.</p>" + warning
            + histogram_svg(mcd, "mel-cepstral distortion of the pairs", "dB")
            + f"<h3>The {len(rows)} pairs with the highest MCD</h3>"
            + table(["source", "target", "source speaker", "target speaker", "frames", "MCD dB"]
                    + ["voice similarity"] * similarity, rows, css_class="pairs-worst"))
