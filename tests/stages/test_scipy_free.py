"""The pieces computed here instead of importing scipy.signal, scipy.ndimage, librosa.filters or pyloudnorm in
every shard worker (~0.9 CPU-s per worker process) give the same numbers as those libraries, bit for bit where
the library's arithmetic is reproduced; the loudness meter itself is checked against pyloudnorm in
test_conditioning.py (within 0.01 LU on real and synthetic speech)."""

from __future__ import annotations

import warnings

import librosa.filters
import numpy as np
import pyloudnorm
import pytest
import scipy.ndimage
import scipy.signal

from ttsprep.stages.step2_audio import conditioning
from ttsprep.stages.step2_audio.denoise import _triang
from ttsprep.stages.step4_features.extract import periodic_window, slaney_mel
from ttsprep.stages.step4_features.pitch_refine import CONTOUR_FRAMES, _median_filter


@pytest.mark.parametrize("window", ["hann", "hamming"])
@pytest.mark.parametrize("length", [1, 2, 3, 255, 256, 400, 551, 1024, 1025, 2048])
def test_periodic_windows_are_scipys(window, length):
    expected = scipy.signal.get_window(window, length, fftbins=True)
    got = periodic_window(window, length)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize("taps", [1, 3, 5, 7, 21, 101])
def test_triangles_are_scipys(taps):
    assert np.array_equal(_triang(taps), scipy.signal.windows.triang(taps))


@pytest.mark.parametrize("rate, n_fft, n_mels, fmin, fmax", [
    (22050, 1024, 80, 0.0, 8000.0), (22050, 1024, 80, 0.0, None), (16000, 512, 40, 60.0, 7600.0),
    (24000, 2048, 100, 20.0, 12000.0), (48000, 2048, 128, 0.0, None), (44100, 2048, 80, 55.0, 11025.0)])
def test_mel_filterbanks_are_librosas(rate, n_fft, n_mels, fmin, fmax):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about empty filters in some set-ups
        expected = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    got = slaney_mel(rate, n_fft, n_mels, fmin, fmax)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


@pytest.mark.parametrize("length", [1, 2, 15, 31, 32, 100, 1001])
def test_the_contour_median_is_ndimages(length):
    values = np.random.default_rng(length).normal(size=length)
    values[np.random.default_rng(0).random(length) < 0.3] = 0.5  # ties
    expected = scipy.ndimage.median_filter(values, size=CONTOUR_FRAMES, mode="nearest")
    assert np.array_equal(_median_filter(values, CONTOUR_FRAMES), expected)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_k_weighting_is_pyloudnorms(rate):
    meter_filters = list(pyloudnorm.Meter(rate)._filters.values())
    sos = conditioning._k_weighting_sos(rate)
    assert len(meter_filters) == len(sos) == 2
    for section, stage in zip(sos, meter_filters):
        assert np.array_equal(section[:3], stage.passband_gain * stage.b) and np.array_equal(section[3:], stage.a)


def test_k_weighted_block_energies_are_lfilters():
    samples = np.random.default_rng(3).normal(0, 0.1, 30_000).astype(np.float32)
    starts = np.array([0, 1000, 7000, 7001, 29_999])
    filtered = samples.astype(np.float64)
    for stage in pyloudnorm.Meter(22050)._filters.values():
        filtered = scipy.signal.lfilter(stage.passband_gain * stage.b, stage.a, filtered)
    expected = np.add.reduceat(filtered ** 2, starts)
    got = conditioning._k_weighted_piece_sums(samples, conditioning._k_weighting_sos(22050), starts)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
