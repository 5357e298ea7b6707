"""TextGrid reading, interval -> duration conversion (frame rule, trimming, r) and the real MFA TextGrids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from praatio import textgrid

from ttsprep.aligners.base import SILENCE, Interval
from ttsprep.aligners.durations import boundary_frames, intervals_to_durations, token_edges_s
from ttsprep.aligners.textgrid import TextGridAligner, read_tier
from ttsprep.stages.core.errors import AlignmentFailed, InvariantViolation
from ttsprep.stages.core.frames import num_frames_for

LJ_SAMPLE_RATE, LJ_HOP = 22050, 256


def write_textgrid(path: Path, tiers: dict[str, list[tuple[float, float, str]]], xmax_s: float) -> Path:
    grid = textgrid.Textgrid()
    for name, entries in tiers.items():
        grid.addTier(textgrid.IntervalTier(name, entries, 0.0, xmax_s))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=False)
    return path


# --- reading -------------------------------------------------------------------------------------------

def test_read_tier_maps_silences_fills_gaps_and_keeps_every_interval(tmp_path):
    phones = [(0.0, 0.2, "sil"), (0.2, 0.3, "HH"), (0.3, 0.5, "AH0"), (0.5, 0.6, "sp"), (0.8, 0.9, "spn"),
              (0.9, 1.0, "L")]  # a gap 0.6-0.8 and a gap 1.0-1.2 at the end
    path = write_textgrid(tmp_path / "a.TextGrid", {"words": [(0.2, 0.5, "hi")], "phones": phones}, 1.2)
    intervals = read_tier(path)
    assert [i.label for i in intervals] == [SILENCE, "HH", "AH0", SILENCE, SILENCE, "spn", "L", SILENCE]
    starts = [i.start_s for i in intervals]
    ends = [i.end_s for i in intervals]
    assert starts[0] == 0.0 and ends[-1] == 1.2 and starts[1:] == ends[:-1]
    assert (intervals[4].start_s, intervals[4].end_s) == (0.6, 0.8)
    words = read_tier(path, "words")
    assert [(w.label, w.start_s, w.end_s) for w in words] == [
        (SILENCE, 0.0, 0.2), ("hi", 0.2, 0.5), (SILENCE, 0.5, 1.2)]


def test_read_tier_rejects_missing_tier_and_garbage(tmp_path):
    path = write_textgrid(tmp_path / "a.TextGrid", {"words": [(0.0, 1.0, "hi")]}, 1.0)
    with pytest.raises(AlignmentFailed, match="no tier 'phones'") as missing:
        read_tier(path)
    assert missing.value.reason == "bad_textgrid"
    garbage = tmp_path / "b.TextGrid"
    garbage.write_text("not a textgrid at all\n", encoding="utf-8")
    with pytest.raises(AlignmentFailed) as unreadable:
        read_tier(garbage)
    assert unreadable.value.reason == "bad_textgrid"


# --- the frame rule on hand-made cases -----------------------------------------------------------------

def test_boundary_frames_counts_frame_centres_before_each_time():
    # hop 100 samples at 1 kHz: centres at 0, 0.1, 0.2 s ...; a boundary on a centre gives that frame away
    frames = boundary_frames(np.array([0.0, 0.05, 0.1, 0.1000001, 0.3, 0.29]), sample_rate=1000, hop_length=100)
    assert frames.tolist() == [0, 1, 1, 2, 3, 3]


def test_durations_without_trimming_follow_the_frame_centres():
    intervals = [Interval(SILENCE, 0.0, 0.12), Interval("a", 0.12, 0.31), Interval("b", 0.31, 0.55)]
    alignment = intervals_to_durations(intervals, num_frames=num_frames_for(550, 100), sample_rate=1000, hop_length=100)
    # centres 0..500 ms: sil owns 0, 100; a owns 200, 300; b owns 400, 500
    assert alignment.tokens == [SILENCE, "a", "b"]
    assert alignment.durations.tolist() == [2, 2, 2]
    assert alignment.durations.dtype == np.int32


def test_trimming_shifts_drops_outside_intervals_and_edge_silence():
    intervals = [Interval(SILENCE, 0.0, 0.40), Interval("a", 0.40, 0.61), Interval("b", 0.61, 0.90),
                 Interval(SILENCE, 0.90, 1.357), Interval("c", 1.357, 1.6), Interval(SILENCE, 1.6, 2.0)]
    # audio kept: [0.35, 1.36) s -> 1010 samples at 1 kHz, 11 frames (centres 0.35 .. 1.35 s in source time)
    alignment = intervals_to_durations(intervals, num_frames=11, sample_rate=1000, hop_length=100, offset_s=0.35)
    # sil owns centre 0.35; a: .45 .55; b: .65 .75 .85; sil: .95 .. 1.35 (5); "c" starts at 1.357: no centre
    # left but it is a phone, so it stays with 0 frames; the last silence starts after the grid and is dropped
    assert alignment.tokens == [SILENCE, "a", "b", SILENCE, "c"]
    assert alignment.durations.tolist() == [1, 2, 3, 5, 0]

    trimmed_into_speech = intervals_to_durations(intervals, num_frames=11, sample_rate=1000, hop_length=100,
                                                 offset_s=0.62)
    assert trimmed_into_speech.tokens[0] == "b"  # silence and "a" lie entirely before the kept audio
    assert int(trimmed_into_speech.durations.sum()) == 11


def test_edge_silence_without_frames_is_dropped_but_phones_are_kept():
    intervals = [Interval(SILENCE, 0.0, 0.1), Interval("a", 0.1, 0.55), Interval("b", 0.55, 0.65),
                 Interval("c", 0.65, 1.05), Interval(SILENCE, 1.05, 1.08)]
    # 1080 samples at 1 kHz: 11 frames, padded to 12 for r = 3. Boundary frames 0, 1, 6, 7, 11, (12) become
    # steps 0, 0, 2, 2, 4, 4: the silences are left without a step and dropped, "b" keeps its 0 steps
    alignment = intervals_to_durations(intervals, num_frames=12, sample_rate=1000, hop_length=100, reduction_factor=3)
    assert alignment.tokens == ["a", "b", "c"]
    assert alignment.durations.tolist() == [2, 0, 2]


def test_alignment_errors():
    with pytest.raises(AlignmentFailed) as outside:
        intervals_to_durations([Interval("a", 0.0, 1.0)], num_frames=10, sample_rate=1000, hop_length=100, offset_s=2.0)
    assert outside.value.reason == "alignment_outside_audio"
    with pytest.raises(AlignmentFailed) as short:
        intervals_to_durations([Interval("a", 0.0, 0.5)], num_frames=30, sample_rate=1000, hop_length=100)
    assert short.value.reason == "alignment_too_short"
    with pytest.raises(InvariantViolation):
        intervals_to_durations([Interval("a", 0.0, 1.0)], num_frames=10, sample_rate=1000, hop_length=100,
                               reduction_factor=3)
    with pytest.raises(ValueError, match="tile"):
        intervals_to_durations([Interval("a", 0.0, 0.5), Interval("b", 0.6, 1.0)], num_frames=10, sample_rate=1000,
                               hop_length=100)


# --- properties: sum invariant and the frame rule against a frame-by-frame reference -------------------

SAMPLE_RATE, HOP = 16000, 200


@st.composite
def aligned_utterances(draw, min_length: int = 0):
    """Tiling intervals on an exact sample grid, an offset and a kept length inside them, and r."""
    lengths = draw(st.lists(st.integers(min_length, 4000), min_size=1, max_size=12))
    edges = np.concatenate(([0], np.cumsum(lengths)))
    if edges[-1] == 0:
        edges[-1] = 1
    labels = draw(st.lists(st.sampled_from([SILENCE, "a", "b", "spn"]), min_size=len(lengths), max_size=len(lengths)))
    offset = draw(st.integers(0, int(edges[-1]) - 1))
    kept_samples = draw(st.integers(1, int(edges[-1]) - offset))
    r = draw(st.integers(1, 4))
    return edges, labels, offset, kept_samples, r


def reference_frame_counts(edges: np.ndarray, offset: int, num_frames: int) -> np.ndarray:
    """Frame by frame in integer samples: frame t goes to the interval holding its centre t * hop."""
    counts = np.zeros(edges.size - 1, dtype=np.int64)
    for t in range(num_frames):
        centre = t * HOP + offset
        counts[min(max(np.searchsorted(edges, centre, side="right") - 1, 0), counts.size - 1)] += 1
    return counts


@settings(max_examples=300, deadline=None)
@given(aligned_utterances())
def test_durations_sum_and_match_the_frame_by_frame_reference(case):
    edges, labels, offset, kept_samples, r = case
    real_frames = num_frames_for(kept_samples, HOP)
    num_frames = -(-real_frames // r) * r
    intervals = [Interval(lab, s / SAMPLE_RATE, e / SAMPLE_RATE) for lab, s, e in zip(labels, edges[:-1], edges[1:])]
    alignment = intervals_to_durations(intervals, num_frames=num_frames, sample_rate=SAMPLE_RATE, hop_length=HOP,
                                       offset_s=offset / SAMPLE_RATE, reduction_factor=r)
    assert alignment.durations.sum() == num_frames // r
    assert np.all(alignment.durations >= 0) and len(alignment.tokens) == alignment.durations.size

    inside = (edges[1:] > offset) & (edges[:-1] < offset + num_frames * HOP)
    counts = reference_frame_counts(edges, offset, num_frames)[inside]
    tokens = [lab for lab, keep in zip(labels, inside) if keep]
    steps = np.diff(np.concatenate(([0], (np.cumsum(counts) + r // 2) // r)))
    steps[-1] += num_frames // r - steps.sum()
    edge_silence = (steps == 0) & (np.array(tokens) == SILENCE)
    first, last = int(np.argmin(edge_silence)), len(tokens) - int(np.argmin(edge_silence[::-1]))
    assert alignment.tokens == tokens[first:last]
    assert alignment.durations.tolist() == steps[first:last].tolist()


@settings(max_examples=200, deadline=None)
@given(aligned_utterances(min_length=1))
def test_reconstructed_boundaries_are_within_half_a_step(case):
    edges, labels, _, _, r = case
    labels = ["a"] * len(labels)  # no edge silence to drop, no empty interval at 0: token i is interval i
    num_frames = -(-num_frames_for(int(edges[-1]), HOP) // r) * r
    intervals = [Interval(lab, s / SAMPLE_RATE, e / SAMPLE_RATE) for lab, s, e in zip(labels, edges[:-1], edges[1:])]
    alignment = intervals_to_durations(intervals, num_frames=num_frames, sample_rate=SAMPLE_RATE, hop_length=HOP,
                                       reduction_factor=r)
    recovered = token_edges_s(alignment.durations, sample_rate=SAMPLE_RATE, hop_length=HOP, reduction_factor=r)
    error_frames = np.abs(recovered - edges[1:-1] / SAMPLE_RATE) * SAMPLE_RATE / HOP
    assert np.all(error_frames <= r / 2 + 0.5 + 1e-9)  # half a frame, plus half a step of r frames


# --- the real MFA TextGrids of ljspeech (the acceptance criterion) ---------------------------------------

def lj_textgrids(shared_corpora: Path) -> list[tuple[Path, Path]]:
    root = shared_corpora / "ljspeech"
    grids = sorted((root / "alignments" / "mfa_fastspeech2" / "TextGrid" / "LJSpeech").glob("*.TextGrid"))
    return [(grid, root / "LJSpeech-1.1" / "wavs" / f"{grid.stem}.wav") for grid in grids]


def test_real_mfa_textgrids_are_reproduced_within_half_a_frame(shared_corpora):
    pairs = lj_textgrids(shared_corpora)
    assert len(pairs) == 19
    worst_frames = 0.0
    for grid, wav in pairs:
        intervals = read_tier(grid)
        num_samples = sf.info(str(wav)).frames
        assert intervals[-1].end_s == pytest.approx(num_samples / LJ_SAMPLE_RATE, abs=1e-9)
        num_frames = num_frames_for(num_samples, LJ_HOP)
        alignment = intervals_to_durations(intervals, num_frames=num_frames, sample_rate=LJ_SAMPLE_RATE,
                                           hop_length=LJ_HOP)
        assert alignment.durations.sum() == num_frames
        assert alignment.tokens == [i.label for i in intervals]  # one token per interval, silences included
        recovered = token_edges_s(alignment.durations, sample_rate=LJ_SAMPLE_RATE, hop_length=LJ_HOP)
        truth = np.array([i.start_s for i in intervals[1:]])
        worst_frames = max(worst_frames, float(np.max(np.abs(recovered - truth))) * LJ_SAMPLE_RATE / LJ_HOP)
    assert worst_frames <= 0.5 + 1e-9


def test_real_textgrids_keep_pauses_as_tokens(shared_corpora):
    grid, _ = lj_textgrids(shared_corpora)[1]  # LJ001-0002: "... modern" + "sp" + an empty final interval
    phones_tier = grid.read_text(encoding="utf-8").split('name = "phones"', 1)[1]
    raw_labels = [line.split("=", 1)[1].strip().strip('"') for line in phones_tier.splitlines()
                  if line.strip().startswith("text =")]
    assert len(raw_labels) == 25 and raw_labels[-2:] == ["sp", ""]
    expected = [SILENCE if label in ("", "sp", "sil") else label for label in raw_labels]
    assert [i.label for i in read_tier(grid)] == expected


def test_textgrid_aligner_finds_nested_files_and_applies_the_trim(shared_corpora, tmp_path):
    (grid, wav) = lj_textgrids(shared_corpora)[0]
    textgrid_dir = grid.parents[1]  # TextGrid/, with the files one level down in LJSpeech/
    aligner = TextGridAligner(textgrid_dir)
    num_samples = sf.info(str(wav)).frames
    whole = aligner.align(grid.stem, num_frames=num_frames_for(num_samples, LJ_HOP), trim_start_s=0.0,
                          sample_rate=LJ_SAMPLE_RATE, hop_length=LJ_HOP, reduction_factor=1)
    intervals = read_tier(grid)
    trim_start_s = intervals[3].start_s  # cut the first three phones away
    kept_frames = num_frames_for(num_samples - round(trim_start_s * LJ_SAMPLE_RATE), LJ_HOP)
    kept_frames += (-kept_frames) % 2
    trimmed = aligner.align(grid.stem, num_frames=kept_frames, trim_start_s=trim_start_s, sample_rate=LJ_SAMPLE_RATE,
                            hop_length=LJ_HOP, reduction_factor=2)
    assert trimmed.tokens == whole.tokens[3:]
    assert trimmed.durations.sum() == kept_frames // 2
    with pytest.raises(AlignmentFailed) as missing:
        aligner.align("LJ999-9999", num_frames=10, trim_start_s=0.0, sample_rate=LJ_SAMPLE_RATE, hop_length=LJ_HOP,
                      reduction_factor=1)
    assert missing.value.reason == "no_textgrid"
