"""`keras.layers.MelSpectrogram` and `keras.ops.stft` through ONNX, for every option that changes the STFT.

Keras computes the STFT with `tf.signal.stft`, an RFFT that onnxruntime does not run;
`export.rewrites` writes it as frames times the windowed DFT tables (one strided convolution). Each
file is run by onnxruntime and compared with Keras (float32) on noise.

Tolerance. Each real or imaginary part of the STFT is a float32 sum of `n = fft_length` products
`x[k] w[k] cos(...)`. Rounding the sum (and the tables) leaves an error that grows like `sqrt(n) * eps`
times the root-sum-square of the terms in practice, and at most like `n * eps` when the roundings
share one sign; by Parseval's theorem the frame's largest bin is at least that root-sum-square. So
every part is within `n * eps` of the largest magnitude, relatively. `|X| ** mag_exp` multiplies the
relative error by `mag_exp`, and the mel filters add one more sum of at most `n // 2 + 1` non-negative
terms (relative error below `n * eps`): the linear outputs agree to `(mag_exp + 1) * n * eps` of the
largest one. A decibel value `10 log10(P)` turns an error of `tau * P_max` into
`10 / ln(10) * tau * P_max / P` decibels.
"""

import math

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
from keras.src.backend.tensorflow import math as backend_math

import export

EPS = float(np.finfo(np.float32).eps)
BATCH = 2

# name -> (MelSpectrogram arguments, samples per waveform)
CONFIGS = {
    "hann_power_db": (dict(fft_length=64, sequence_stride=16, num_mel_bins=16), 400),
    "hamming_power_db": (dict(fft_length=64, sequence_stride=16, window="hamming", num_mel_bins=16), 400),
    "no_window_power_db": (dict(fft_length=64, sequence_stride=16, window=None, num_mel_bins=16), 400),
    "hann_magnitude_db": (dict(fft_length=64, sequence_stride=16, mag_exp=1.0, num_mel_bins=16), 400),
    "hann_power_linear": (dict(fft_length=64, sequence_stride=16, power_to_db=False, num_mel_bins=16), 400),
    "hann_magnitude_linear": (
        dict(fft_length=64, sequence_stride=24, mag_exp=1.0, power_to_db=False, num_mel_bins=16), 400),
    # Frames shorter than the DFT: Keras pads the window with (64 - 41) // 2 zeros left, the rest right.
    "short_frames_hamming_db": (
        dict(fft_length=64, sequence_length=41, sequence_stride=20, window="hamming", num_mel_bins=16), 400),
    # Whisper's frame: 400 samples, no power of two.
    "fft_400_db": (dict(fft_length=400, sequence_stride=160, num_mel_bins=40), 3200),
    # An odd DFT length and an odd frame inside it.
    "fft_75_frame_49_linear": (
        dict(fft_length=75, sequence_length=49, sequence_stride=25, power_to_db=False, num_mel_bins=16), 600),
    # Keras' defaults: fft_length 2048, hop 512, 128 mel bands, Hann, power in decibels.
    "keras_defaults": (dict(), 8192),
}


def _waveforms(samples, seed=0):
    return np.random.default_rng(seed).normal(size=(BATCH, samples)).astype("float32")


def _onnx_outputs(model, x, path):
    """Exports `model` to ONNX and runs it with onnxruntime on `x`; also returns the graph's operators."""
    report = export.to_onnx(model, path)
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    operators = {node.op_type for node in onnx.load(str(report.path)).graph.node}
    return outputs, operators


def _assert_no_fourier_operators(operators):
    assert not operators & {"RFFT", "DFT", "FFT", "STFT"}, sorted(operators)
    assert "Conv" in operators, sorted(operators)


def _mel_model(arguments, samples):
    inputs = keras.Input((samples,), name="waveforms")
    outputs = keras.layers.MelSpectrogram(name="mel", **arguments)(inputs)
    return keras.Model(inputs, outputs, name="mel_spectrogram")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_mel_spectrogram_onnx_equals_keras(name, tmp_path):
    arguments, samples = CONFIGS[name]
    model = _mel_model(arguments, samples)
    layer = model.get_layer("mel")
    x = _waveforms(samples)
    expected = keras.ops.convert_to_numpy(model(x))  # (batch, mel bands, frames)
    (actual,), operators = _onnx_outputs(model, x, tmp_path / f"{name}.onnx")
    _assert_no_fourier_operators(operators)
    assert actual.shape == expected.shape

    tau = (layer.mag_exp + 1) * layer.fft_length * EPS
    if layer.power_to_db:
        # dB below the largest value -> how many times larger that value's linear quantity is.
        below = 10.0 ** ((expected.max() - expected) / 10.0)
        atol = 10.0 / math.log(10.0) * tau * below
        # The floor top_db under the maximum was not reached: every element is a real comparison.
        assert expected.min() > expected.max() - layer.top_db + 1.0
    else:
        atol = tau * np.abs(expected).max()
    difference = np.abs(actual - expected)
    worst = np.unravel_index(np.argmax(difference - atol), difference.shape)
    assert np.all(difference <= atol), (
        f"{name}: |onnx - keras| = {difference[worst]:.3g} > {np.broadcast_to(atol, difference.shape)[worst]:.3g} "
        f"at {worst}")


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize(("fft_length", "sequence_length", "window"),
                         [(64, 64, "hann"), (48, 33, "hamming"), (30, 30, None)])
def test_stft_real_and_imaginary_parts_onnx_equal_keras(center, fft_length, sequence_length, window, tmp_path):
    """`keras.ops.stft` itself: both parts, signs included, with and without the centring padding."""
    samples, bins = 300, fft_length // 2 + 1
    inputs = keras.Input((samples,), name="signal")
    parts = keras.layers.Lambda(  # (batch, frames, 2 * bins): the real parts, then the imaginary ones
        lambda t: keras.ops.concatenate(
            keras.ops.stft(t, sequence_length, 16, fft_length, window=window, center=center), axis=-1),
        name="stft")(inputs)
    model = keras.Model(inputs, parts, name="stft")
    x = _waveforms(samples, seed=1)
    expected = keras.ops.convert_to_numpy(model(x))
    (actual,), operators = _onnx_outputs(model, x, tmp_path / "stft.onnx")
    _assert_no_fourier_operators(operators)
    frames = 1 + (samples + (fft_length if center else 0) - fft_length) // 16
    assert actual.shape == expected.shape == (BATCH, frames, 2 * bins)
    assert np.abs(expected[..., bins:]).max() > 1.0  # the imaginary parts are no zeros: their sign is tested
    np.testing.assert_array_less(np.abs(actual - expected), fft_length * EPS * np.abs(expected).max())


class _StopsTracing(keras.layers.Layer):
    """The identity while the model is built; once `armed`, records the STFT function it sees and fails."""

    armed = False
    seen = None

    def call(self, inputs):
        if _StopsTracing.armed:
            _StopsTracing.seen = backend_math.stft
            raise RuntimeError("tracing stops here")
        return inputs


def test_stft_is_restored_after_an_export_and_after_a_failed_one(tmp_path):
    original = backend_math.stft
    arguments, samples = CONFIGS["hann_power_db"]
    export.to_onnx(_mel_model(arguments, samples), tmp_path / "mel.onnx")
    assert backend_math.stft is original

    inputs = keras.Input((samples,), name="waveforms")
    features = keras.layers.MelSpectrogram(name="mel", **arguments)(_StopsTracing(name="stops")(inputs))
    model = keras.Model(inputs, features, name="fails")
    _StopsTracing.armed = True
    try:
        with pytest.raises((RuntimeError, export.ExportError), match="tracing stops here"):
            export.to_onnx(model, tmp_path / "fails.onnx")
    finally:
        _StopsTracing.armed = False
    assert _StopsTracing.seen is not None and _StopsTracing.seen is not original  # rewritten while tracing
    assert backend_math.stft is original
    assert not (tmp_path / "fails.onnx").exists()
