"""`LogMelSpectrogram`: the Slaney mel filterbank, Whisper's log-mel features against a float64 numpy
reference (FFT of explicitly cut frames), a pure tone in its band, export to TFLite and ONNX, the
other backends, configuration and bad arguments."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_export

from keras_models.layers import LogMelSpectrogram
from keras_models.layers.log_mel_spectrogram import hz_to_mel, mel_filterbank, mel_to_hz


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def reference_filterbank(num_mels, n_fft, sample_rate):
    """Slaney's filters written per band with np.interp: (bins, mels)."""
    low, high = 0.0, 1000.0 / (200.0 / 3.0)  # mels of 0 Hz and of the 1 kHz break

    def to_mel(hz):
        return hz / (200.0 / 3.0) if hz < 1000.0 else high + 27.0 * np.log(hz / 1000.0) / np.log(6.4)

    def to_hz(mel):
        return mel * (200.0 / 3.0) if mel < high else 1000.0 * 6.4 ** ((mel - high) / 27.0)

    edges = [to_hz(m) for m in np.linspace(low, to_mel(sample_rate / 2), num_mels + 2)]
    frequencies = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    filters = np.zeros((n_fft // 2 + 1, num_mels))
    for band in range(num_mels):
        lower, peak, upper = edges[band:band + 3]
        filters[:, band] = np.interp(frequencies, [lower, peak, upper], [0.0, 1.0, 0.0], left=0.0, right=0.0)
        filters[:, band] *= 2.0 / (upper - lower)
    return filters


def reference_log_mel(waveforms, num_mels=80, n_fft=400, hop_length=160, sample_rate=16000):
    """Whisper's features in float64: reflect padding, frames cut by indexing, np.fft.rfft."""
    pad = n_fft // 2
    x = np.pad(np.asarray(waveforms, np.float64), ((0, 0), (pad, pad)), mode="reflect")
    count = 1 + (x.shape[1] - n_fft) // hop_length
    frames = x[:, np.arange(n_fft)[None, :] + hop_length * np.arange(count)[:, None]]  # (batch, count, n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = power[:, :-1] @ reference_filterbank(num_mels, n_fft, sample_rate)
    log_mel = np.log10(np.maximum(mel, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max(axis=(1, 2), keepdims=True) - 8.0)
    return (log_mel + 4.0) / 4.0


def _waveforms(samples=8000, seed=0):
    """A tone with noise, amplitude-modulated noise, and a row ending in silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    rows = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.normal(size=samples),
                     0.1 * rng.normal(size=samples) * np.sin(2 * np.pi * 3 * t),
                     0.5 * rng.normal(size=samples)])
    rows[2, samples // 2:] = 0.0
    return rows.astype(np.float32)


# -- the filterbank ------------------------------------------------------------------------------------------

def test_slaney_scale_is_linear_below_1khz_and_logarithmic_above():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(500.0) == pytest.approx(7.5)
    assert hz_to_mel(6400.0) - hz_to_mel(1000.0) == pytest.approx(27.0)  # 27 mels per factor 6.4
    frequencies = np.array([0.0, 123.0, 999.0, 1000.0, 4321.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(frequencies)), frequencies, rtol=1e-12)


def test_filterbank_equals_the_per_band_reference_and_has_unit_area():
    filters = mel_filterbank(80, 400, 16000)
    assert filters.shape == (201, 80)
    np.testing.assert_allclose(filters, reference_filterbank(80, 400, 16000), rtol=1e-9, atol=1e-15)
    # Slaney's normalization: every triangle has unit area in Hz; bands wider than a few bins sum to it.
    area = filters.sum(axis=0) * (16000 / 400)
    np.testing.assert_allclose(area[41:], 1.0, rtol=0.03)  # bands above 1.8 kHz: 3 bins and more
    assert (filters >= 0).all() and (filters.max(axis=0) > 0).all()  # no empty band


# -- the features --------------------------------------------------------------------------------------------

def test_features_equal_the_float64_numpy_reference():
    waveforms = _waveforms()
    features = _numpy(LogMelSpectrogram()(waveforms))
    expected = reference_log_mel(waveforms)
    assert features.shape == expected.shape == (3, 50, 80)
    # float32 DFT as a convolution against float64 FFT: the largest difference is where a band's power
    # is small next to the frame's, the median is at float32 rounding.
    assert np.abs(features - expected).max() < 2e-4
    assert np.median(np.abs(features - expected)) < 1e-6
    # Whisper's floor: nothing below the utterance's maximum minus 8 (in log10, scaled by 1/4); the row
    # ending in silence reaches it.
    spread = features.max(axis=(1, 2)) - features.min(axis=(1, 2))
    assert (spread <= 2.0 + 1e-6).all() and spread[2] == pytest.approx(2.0, abs=1e-6)


def test_other_frame_sizes_follow_the_reference():
    waveforms = _waveforms(samples=3000, seed=1)
    layer = LogMelSpectrogram(num_mels=40, n_fft=512, hop_length=128, sample_rate=8000)
    features = _numpy(layer(waveforms))
    assert features.shape == (3, 3000 // 128, 40)
    expected = reference_log_mel(waveforms, num_mels=40, n_fft=512, hop_length=128, sample_rate=8000)
    assert np.abs(features - expected).max() < 2e-4


def test_a_pure_tone_is_loudest_in_the_band_centred_on_it():
    t = np.arange(8000) / 16000
    filters = mel_filterbank(80, 400, 16000)
    centres = np.argmax(filters, axis=0) * 16000 / 400  # the bin at each band's peak, in Hz
    for frequency in (300.0, 1250.0, 3000.0):
        features = _numpy(LogMelSpectrogram()(np.sin(2 * np.pi * frequency * t)[None].astype(np.float32)))
        loudest = np.argmax(features[0, 5:-5].mean(axis=0))
        assert abs(centres[loudest] - frequency) <= 16000 / 400 * 2  # within two DFT bins
    silence = _numpy(LogMelSpectrogram()(np.zeros((1, 800), np.float32)))
    np.testing.assert_allclose(silence, (-10.0 + 4.0) / 4.0, atol=1e-6)  # log10 of the 1e-10 floor


# -- export and backends -------------------------------------------------------------------------------------

def test_exports_to_builtin_tflite_and_onnx_equal_to_keras(tmp_path):
    inputs = keras.Input((3200,), name="waveforms")
    model = keras.Model(inputs, LogMelSpectrogram(name="log_mel")(inputs), name="log_mel_model")
    waveforms = _waveforms(3200, seed=2)
    # A 440 Hz tone over noise 30 dB lower: its weakest bands are differences of large float32 sums,
    # rounded differently by each runtime's convolution. Keras itself is 1.6e-5 from the float64
    # reference there, LiteRT 1.0e-5; they differ from each other by 1.8e-5 at most (one band of one
    # frame) and by float32 rounding elsewhere.
    results = check_export(model, waveforms, tmp_path, atol=3e-5)
    assert results["tflite"].max_abs <= 3e-5 and results["onnx"].max_abs <= 3e-5
    features = _numpy(model(waveforms))
    assert np.abs(features - reference_log_mel(waveforms)).max() < 3e-5
    assert np.median(np.abs(features - reference_log_mel(waveforms))) < 1e-6


def test_float16_weights_keep_the_features_and_dynamic_int8_does_not(tmp_path):
    """Why whisper ships with float16 weights (README): dynamic-range int8 kernels quantize their inputs,
    a waveform and a power spectrum spanning 80 dB, to 8 bits on the fly."""
    import export
    from export.verification import run_tflite

    inputs = keras.Input((16000,), name="waveforms")
    model = keras.Model(inputs, LogMelSpectrogram(name="log_mel")(inputs))
    waveforms = _waveforms(16000, seed=3)
    expected = _numpy(model(waveforms))
    errors = {}
    for quantization in ("float16", "dynamic"):
        path = tmp_path / f"log_mel_{quantization}.tflite"
        export.to_tflite(model, path, quantization=quantization)
        got = np.concatenate([run_tflite(path, [row[None]])[0] for row in waveforms])
        errors[quantization] = float(np.abs(got - expected).max())
    # float16's 11-bit mantissa on the tables: features within 0.05 on a range of about 2.3.
    assert errors["float16"] <= 0.05
    assert errors["dynamic"] >= 0.2  # measured 1.31 on synthesized speech; documented, not shipped


_BACKEND_WORKER = r"""
import sys
import numpy as np
import keras
from keras_models.layers import LogMelSpectrogram
waveforms = np.load(sys.argv[1])
np.save(sys.argv[2], keras.ops.convert_to_numpy(LogMelSpectrogram()(waveforms)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_jax_and_torch_compute_the_same_features(backend, tmp_path):
    waveforms = _waveforms()
    np.save(tmp_path / "waveforms.npy", waveforms)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, str(tmp_path / "waveforms.npy"),
                          str(tmp_path / "out.npy")], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), _numpy(LogMelSpectrogram()(waveforms)), atol=1e-4)


# -- configuration and bad arguments ---------------------------------------------------------------------------

def test_config_round_trip():
    layer = LogMelSpectrogram(num_mels=64, sample_rate=22050, n_fft=512, hop_length=256, dynamic_range=6.0)
    config = layer.get_config()
    rebuilt = LogMelSpectrogram.from_config(config)
    assert rebuilt.get_config() == config and config["n_fft"] == 512
    waveforms = _waveforms(4000)
    np.testing.assert_array_equal(_numpy(rebuilt(waveforms)), _numpy(layer(waveforms)))


@pytest.mark.parametrize("kwargs, message", [
    ({"num_mels": 0}, "num_mels"),
    ({"n_fft": 401}, "n_fft must be even"),
    ({"num_mels": 300}, "num_mels must be at most the 201 DFT bins"),
    ({"hop_length": 2.5}, "hop_length"),
    ({"dynamic_range": -1.0}, "dynamic_range"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LogMelSpectrogram(**kwargs)


def test_too_short_or_misshapen_waveforms_raise():
    with pytest.raises(ValueError, match="more than n_fft // 2 = 200 samples"):
        LogMelSpectrogram()(np.zeros((1, 150), np.float32))
    with pytest.raises(ValueError, match=r"waveforms \(batch, samples\)"):
        LogMelSpectrogram()(np.zeros((1, 800, 1), np.float32))
