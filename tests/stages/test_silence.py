"""ttsprep.stages.step2_audio.silence: pydub-exact silence detection (compared with pydub itself), trimming, pause splitting."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from pydub import AudioSegment
from pydub.silence import detect_nonsilent

from tests.helpers import tone_bursts
from ttsprep.stages.core.audio_io import encode_flac
from ttsprep.stages.core.config import PauseConfig, TrimConfig
from ttsprep.stages.core.errors import Rejected
from ttsprep.stages.core.frames import num_frames_for
from ttsprep.stages.step2_audio.silence import (clip_dbfs, detect_nonsilent_ms, segment_frames, split_at_pauses,
                                                to_pcm16, trim_silence)

#: ~14 s of real speech at four sample rates, wav and flac; pydub takes ~0.2 s per second of audio here.
REAL_CLIPS = [
    "ljspeech/LJSpeech-1.1/wavs/LJ002-0020.wav",
    "ljspeech/LJSpeech-1.1/wavs/LJ001-0045.wav",
    "vctk/VCTK-Corpus-0.92/wav48_silence_trimmed/p225/p225_001_mic1.flac",
    "aishell3/data_aishell3/train/wav/SSB0139/SSB01390001.wav",
    "aishell3/data_aishell3/train/wav/SSB0139/SSB01390017.wav",
    "cmu_arctic/cmu_us_slt_arctic/wav/arctic_a0009.wav",
]
#: (min_silence_len_ms, threshold in dB, relative to the clip's dBFS?, seek_step_ms)
SETTINGS = [(300, -40.0, True, 1), (100, -16.0, True, 1), (500, -45.0, False, 10), (50, -30.0, True, 7),
            (1000, -60.0, False, 3)]


def _segment(pcm: np.ndarray, sample_rate: int) -> AudioSegment:
    return AudioSegment(pcm.tobytes(), frame_rate=sample_rate, sample_width=2, channels=1)


def _pydub_ranges(segment: AudioSegment, min_silence_len_ms: int, thresh_dbfs: float, seek_step_ms: int):
    return [tuple(r) for r in detect_nonsilent(segment, min_silence_len_ms, thresh_dbfs, seek_step_ms)]


def _assert_same_as_pydub(pcm: np.ndarray, sample_rate: int, min_silence_len_ms: int, thresh_dbfs: float,
                          seek_step_ms: int) -> list[tuple[int, int]]:
    expected = _pydub_ranges(_segment(pcm, sample_rate), min_silence_len_ms, thresh_dbfs, seek_step_ms)
    got = detect_nonsilent_ms(pcm, sample_rate, min_silence_len_ms=min_silence_len_ms,
                              silence_thresh_dbfs=thresh_dbfs, seek_step_ms=seek_step_ms)
    assert got == expected, (sample_rate, pcm.size, min_silence_len_ms, thresh_dbfs, seek_step_ms)
    return got


@pytest.fixture(scope="module")
def real_clips(shared_corpora: Path) -> list[tuple[str, np.ndarray, int]]:
    return [(name, *sf.read(shared_corpora / name, dtype="int16")) for name in REAL_CLIPS]


def test_matches_pydub_on_real_speech(real_clips):
    found_pause = False
    for name, pcm, sample_rate in real_clips:
        segment = _segment(pcm, sample_rate)
        assert clip_dbfs(pcm) == segment.dBFS, name
        for min_silence_len_ms, thresh_db, relative, seek_step_ms in SETTINGS:
            thresh_dbfs = segment.dBFS + thresh_db if relative else thresh_db
            ranges = _assert_same_as_pydub(pcm, sample_rate, min_silence_len_ms, thresh_dbfs, seek_step_ms)
            found_pause |= len(ranges) > 1
    assert found_pause, "the real clips should exercise internal pauses"


def test_float_input_matches_the_pcm_it_was_decoded_from(real_clips):
    _, pcm, sample_rate = real_clips[0]
    as_float = pcm.astype(np.float32) / 32768  # what soundfile / load_audio return for PCM_16
    assert np.array_equal(to_pcm16(as_float), pcm)
    assert detect_nonsilent_ms(as_float, sample_rate, min_silence_len_ms=200, silence_thresh_dbfs=-45.0) == \
        detect_nonsilent_ms(pcm, sample_rate, min_silence_len_ms=200, silence_thresh_dbfs=-45.0)


def test_pydub_reading_the_wav_file_sees_the_same_pcm(shared_corpora):
    path = shared_corpora / REAL_CLIPS[0]
    samples, sample_rate = sf.read(path, dtype="float32")
    segment = AudioSegment.from_wav(str(path))
    assert detect_nonsilent_ms(samples, sample_rate, min_silence_len_ms=250, silence_thresh_dbfs=-42.0) == \
        _pydub_ranges(segment, 250, -42.0, 1)


def test_float_conversion_equals_libsndfile_and_encode_flac():
    """``to_pcm16`` is libsndfile's own float to PCM-16 conversion (ties to even, clipping), which
    ``encode_flac`` now does itself before handing int16 to the encoder."""
    samples = np.random.default_rng(3).uniform(-1.1, 1.1, 50_000).astype(np.float32)
    samples[:6] = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 32767.5], np.float32) / 32768  # rounding ties
    by_libsndfile = io.BytesIO()
    sf.write(by_libsndfile, samples, 16000, format="FLAC", subtype="PCM_16")  # float in: libsndfile converts
    expected, _ = sf.read(io.BytesIO(by_libsndfile.getvalue()), dtype="int16")
    stored, _ = sf.read(io.BytesIO(encode_flac(samples, 16000)), dtype="int16")
    assert np.array_equal(to_pcm16(samples), expected)
    assert np.array_equal(stored, expected)


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("min_silence_len_ms,seek_step_ms", [(300, 1), (200, 9), (57, 4)])
def test_matches_pydub_on_tone_bursts(sample_rate, min_silence_len_ms, seek_step_ms):
    pcm = to_pcm16(tone_bursts(sample_rate, bursts=2, burst_s=0.3, gap_s=0.4, lead_s=0.25))
    ranges = _assert_same_as_pydub(pcm, sample_rate, min_silence_len_ms, -40.0, seek_step_ms)
    assert len(ranges) == 2  # two bursts, the gaps are longer than every min_silence_len here


@pytest.mark.parametrize("num_samples", [0, 1, 7, 1000, 7999, 22051])
def test_matches_pydub_on_silence_and_short_clips(num_samples):
    zeros = np.zeros(num_samples, np.int16)
    _assert_same_as_pydub(zeros, 22050, 300, -50.0, 1)
    noise = to_pcm16(np.random.default_rng(num_samples).normal(0, 0.1, num_samples))
    _assert_same_as_pydub(noise, 22050, 300, -50.0, 1)
    _assert_same_as_pydub(noise, 22050, 5, -10.0, 2)
    gapped = noise.copy()
    gapped[num_samples // 4: num_samples // 2] = 0
    _assert_same_as_pydub(gapped, 22050, 3, -math.inf, 1)  # a digital-silence clip's relative threshold


def test_all_silent_and_too_short_follow_pydub():
    silent = np.zeros(22050, np.int16)
    assert detect_nonsilent_ms(silent, 22050, min_silence_len_ms=300, silence_thresh_dbfs=-50.0) == []
    # shorter than min_silence_len: pydub calls it all non-silent
    assert detect_nonsilent_ms(silent[:2000], 22050, min_silence_len_ms=300, silence_thresh_dbfs=-50.0) == [(0, 91)]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sample_rate=st.sampled_from([8000, 11025, 16000, 22050, 44100]),
       duration_ms=st.integers(1, 1500), min_silence_len_ms=st.integers(1, 400), seek_step_ms=st.integers(1, 40),
       thresh_dbfs=st.floats(-80, -10))
def test_matches_pydub_on_random_bursts(seed, sample_rate, duration_ms, min_silence_len_ms, seek_step_ms, thresh_dbfs):
    rng = np.random.default_rng(seed)
    num_samples = duration_ms * sample_rate // 1000
    signal = rng.normal(0, 10 ** rng.uniform(-6, -3), num_samples)
    for _ in range(rng.integers(0, 4)):
        start = int(rng.integers(0, max(num_samples, 1)))
        stop = min(num_samples, start + int(rng.integers(1, sample_rate // 2)))
        signal[start:stop] += rng.normal(0, 10 ** rng.uniform(-3, -0.5), stop - start)
    _assert_same_as_pydub(to_pcm16(signal), sample_rate, min_silence_len_ms, thresh_dbfs, seek_step_ms)


def test_trim_keeps_pydub_split_region_of_tone_bursts():
    sample_rate = 22050
    samples = tone_bursts(sample_rate, bursts=2, lead_s=0.5, gap_s=0.7)
    cfg = TrimConfig(min_silence_len_ms=300, keep_silence_ms=100, silence_thresh_dbfs=-40.0, relative=True)
    start, end = trim_silence(samples, sample_rate, cfg)
    segment = _segment(to_pcm16(samples), sample_rate)
    ranges = _pydub_ranges(segment, 300, segment.dBFS - 40.0, 1)
    assert start == int((ranges[0][0] - 100) * (sample_rate / 1000.0))
    assert end == int((ranges[-1][1] + 100) * (sample_rate / 1000.0))
    assert 0.35 * sample_rate < start < 0.5 * sample_rate  # the 0.5 s lead minus ~0.1 s kept
    assert end < samples.size - 0.4 * sample_rate  # most of the trailing 0.7 s gap is removed


def test_trim_of_real_speech_removes_leading_silence(shared_corpora):
    samples, sample_rate = sf.read(shared_corpora / REAL_CLIPS[3], dtype="float32")  # ~0.33 s of lead
    start, end = trim_silence(samples, sample_rate, TrimConfig())
    assert 0.15 * sample_rate < start < 0.35 * sample_rate
    assert end == samples.size


def test_trim_absolute_threshold_and_none():
    samples = tone_bursts(16000, bursts=1, lead_s=0.4, gap_s=0.5)
    assert trim_silence(samples, 16000, TrimConfig(method="none")) == (0, samples.size)
    start, end = trim_silence(samples, 16000, TrimConfig(relative=False, silence_thresh_dbfs=-50.0,
                                                         keep_silence_ms=0))
    assert 0.3 * 16000 < start < 0.45 * 16000 and end < samples.size


def test_trim_rejects_all_silence():
    with pytest.raises(Rejected) as error:
        trim_silence(np.zeros(16000, np.float32), 16000, TrimConfig())
    assert error.value.reason == "all_silence"
    quiet_noise = np.random.default_rng(0).normal(0, 1e-4, 16000).astype(np.float32)
    with pytest.raises(Rejected):
        trim_silence(quiet_noise, 16000, TrimConfig(relative=False, silence_thresh_dbfs=-40.0))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lead_s=st.floats(0, 1), gap_s=st.floats(0.05, 1), bursts=st.integers(1, 3),
       keep_silence_ms=st.integers(0, 400), min_silence_len_ms=st.integers(1, 600))
def test_trimmed_region_is_inside_the_clip(seed, lead_s, gap_s, bursts, keep_silence_ms, min_silence_len_ms):
    samples = tone_bursts(16000, bursts=bursts, lead_s=lead_s, gap_s=gap_s, burst_s=0.2, seed=seed % 1000)
    cfg = TrimConfig(keep_silence_ms=keep_silence_ms, min_silence_len_ms=min_silence_len_ms)
    start, end = trim_silence(samples, 16000, cfg)
    assert 0 <= start < end <= samples.size


def test_webrtcvad_trims_tone_bursts_in_silence():
    sample_rate = 22050
    samples = tone_bursts(sample_rate, bursts=2, lead_s=0.6, gap_s=0.8)
    start, end = trim_silence(samples, sample_rate, TrimConfig(method="webrtcvad", keep_silence_ms=50, vad_mode=3))
    last_burst_end_s = 0.6 + 2 * 0.4 + 0.8
    assert 0.35 < start / sample_rate < 0.6 + 0.1
    assert last_burst_end_s - 0.2 < end / sample_rate < samples.size / sample_rate - 0.4


def test_webrtcvad_trims_real_speech(shared_corpora):
    samples, sample_rate = sf.read(shared_corpora / REAL_CLIPS[3], dtype="float32")
    energy_start, _ = trim_silence(samples, sample_rate, TrimConfig(keep_silence_ms=0))
    start, end = trim_silence(samples, sample_rate, TrimConfig(method="webrtcvad", keep_silence_ms=0))
    assert abs(start - energy_start) < 0.1 * sample_rate  # both find where the speech begins
    assert end > samples.size - 0.3 * sample_rate


def test_webrtcvad_rejects_silence():
    with pytest.raises(Rejected):
        trim_silence(np.zeros(22050, np.float32), 22050, TrimConfig(method="webrtcvad"))


def test_split_at_pauses_of_tone_bursts():
    sample_rate = 22050
    samples = tone_bursts(sample_rate, bursts=3, lead_s=0.0, burst_s=0.4, gap_s=0.6)[: int(2.6 * sample_rate)]
    segments = split_at_pauses(samples, sample_rate, PauseConfig(min_silence_len_ms=400))
    assert len(segments) == 3
    pause_middles_s = [0.4 + 0.3, 1.4 + 0.3]  # bursts at [0, 0.4), [1.0, 1.4), [2.0, 2.4)
    for (_, boundary), middle_s in zip(segments[:-1], pause_middles_s):
        assert abs(boundary / sample_rate - middle_s) < 0.1
    assert split_at_pauses(samples, sample_rate, PauseConfig(min_silence_len_ms=700)) == [(0, samples.size)]
    assert split_at_pauses(samples, sample_rate, PauseConfig(enabled=False)) == [(0, samples.size)]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), bursts=st.integers(1, 4), gap_s=st.floats(0.05, 1.0),
       min_silence_len_ms=st.integers(50, 800), hop_length=st.sampled_from([64, 256, 300]))
def test_split_segments_tile_the_input_and_frames_sum(seed, bursts, gap_s, min_silence_len_ms, hop_length):
    samples = tone_bursts(16000, bursts=bursts, gap_s=gap_s, burst_s=0.25, seed=seed)
    segments = split_at_pauses(samples, 16000, PauseConfig(min_silence_len_ms=min_silence_len_ms))
    assert segments[0][0] == 0 and segments[-1][1] == samples.size
    assert all(end == next_start for (_, end), (next_start, _) in zip(segments, segments[1:]))
    assert all(start < end for start, end in segments)
    frames = segment_frames([start for start, _ in segments[1:]], samples.size, hop_length)
    assert frames.dtype == np.int32 and frames.size == len(segments)
    assert int(frames.sum()) == num_frames_for(samples.size, hop_length)


@settings(max_examples=60, deadline=None)
@given(num_samples=st.integers(2, 50_000), hop_length=st.integers(16, 512), data=st.data())
def test_segment_frames_assigns_each_centred_frame_to_its_segment(num_samples, hop_length, data):
    boundaries = sorted(data.draw(st.sets(st.integers(1, num_samples - 1), max_size=6)))
    frames = segment_frames(boundaries, num_samples, hop_length)
    centres = np.arange(num_frames_for(num_samples, hop_length)) * hop_length
    expected = np.bincount(np.searchsorted(boundaries, centres, side="right"), minlength=len(boundaries) + 1)
    assert np.array_equal(frames, expected)


def test_segment_frames_rejects_bad_boundaries():
    with pytest.raises(ValueError):
        segment_frames([0, 100], 1000, 256)
    with pytest.raises(ValueError):
        segment_frames([500, 300], 1000, 256)
