"""`LogMelSpectrogram`: waveforms to Whisper's normalized log-mel spectrogram, inside the graph.

The short-time Fourier transform is a strided convolution whose kernel holds the windowed cosine and
sine tables of the DFT (frames times tables: a matrix product per frame), so the whole layer is
padding, one convolution, squares, a matrix product with the mel filterbank, a logarithm and two
maxima: builtin TFLite operators and plain ONNX operators, with no FFT (TFLite's needs power-of-two
lengths, and Whisper's frame is 400 samples).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_models.checks import check_positive_float, check_positive_int

# The Slaney mel scale (Slaney, 1998, "Auditory Toolbox"): linear below 1 kHz, logarithmic above.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL  # 15
_LOG_MEL_STEP = math.log(6.4) / 27.0  # 27 mels per factor 6.4 in frequency above the break


def hz_to_mel(frequencies):
    """Frequencies in Hz to Slaney mels (linear below 1 kHz, logarithmic above), float64 numpy."""
    frequencies = np.asarray(frequencies, dtype=np.float64)
    linear = frequencies / _LINEAR_HZ_PER_MEL
    above = _BREAK_MEL + np.log(np.maximum(frequencies, _BREAK_HZ) / _BREAK_HZ) / _LOG_MEL_STEP
    return np.where(frequencies >= _BREAK_HZ, above, linear)


def mel_to_hz(mels):
    """The inverse of `hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    linear = mels * _LINEAR_HZ_PER_MEL
    above = _BREAK_HZ * np.exp(_LOG_MEL_STEP * (np.maximum(mels, _BREAK_MEL) - _BREAK_MEL))
    return np.where(mels >= _BREAK_MEL, above, linear)


def mel_filterbank(num_mels, n_fft, sample_rate, min_frequency=0.0, max_frequency=None):
    """Triangular mel filters as a float64 matrix `(n_fft // 2 + 1, num_mels)`: power spectrum bins to
    mel bands (the filters Whisper reads its features with).

    `num_mels + 2` points equally spaced on the Slaney mel scale between `min_frequency` and
    `max_frequency` (half the sample rate by default) give, in Hz, the lower edge, peak and upper edge
    of each triangle; a DFT bin's weight is the triangle's height at the bin's frequency. Each filter is
    scaled by `2 / (upper - lower)` (Slaney's area normalization: every triangle has unit area in Hz),
    so a band's energy does not grow with its width.
    """
    max_frequency = sample_rate / 2.0 if max_frequency is None else max_frequency
    bin_frequencies = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)  # (bins,)
    edges = mel_to_hz(np.linspace(hz_to_mel(min_frequency), hz_to_mel(max_frequency), num_mels + 2))
    lower, peak, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (mels, 1) each
    rising = (bin_frequencies - lower) / (peak - lower)
    falling = (upper - bin_frequencies) / (upper - peak)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))  # (mels, bins)
    return weights.T


def dft_tables(fft_length, window=None):
    """The DFT of a real frame of `fft_length` samples as one float64 matrix `(fft_length, 2 * bins)`,
    `bins = fft_length // 2 + 1`, with the frame's `window` (`fft_length` values; None: none) folded in.

    A frame (a row of samples) times the matrix gives in column `k` the real part of bin `k`,
    `sum_n w[n] x[n] cos(2 pi k n / fft_length)`, and in column `bins + k` its imaginary part,
    `-sum_n w[n] x[n] sin(2 pi k n / fft_length)`: `numpy.fft.rfft` of the windowed frame, for any
    length (no FFT, so no power-of-two sizes).
    """
    samples = np.arange(fft_length)
    angles = 2.0 * np.pi * np.outer(samples, np.arange(fft_length // 2 + 1)) / fft_length  # (fft_length, bins)
    tables = np.concatenate([np.cos(angles), -np.sin(angles)], axis=1)  # (fft_length, 2 * bins)
    if window is not None:
        tables = tables * np.asarray(window, dtype=np.float64)[:, None]
    return tables


def dft_kernel(n_fft):
    """The convolution kernel `(n_fft, 1, 2 * (n_fft // 2 + 1))` of a periodic-Hann-windowed DFT
    (`dft_tables`): output channel `k` is the real part of bin `k`, channel `bins + k` its imaginary
    part."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann, as torch.hann_window
    return dft_tables(n_fft, window)[:, None, :]


@keras.saving.register_keras_serializable(package="keras_models")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveforms `(batch, samples)` to Whisper's log-mel features `(batch, samples // hop_length,
    num_mels)` (Radford et al., 2022, "Robust Speech Recognition via Large-Scale Weak Supervision").

    As Whisper: the waveform is padded by `n_fft // 2` reflected samples at each end (frames centred
    on multiples of `hop_length`), cut into frames of `n_fft` samples every `hop_length`, windowed by a
    periodic Hann window; the power spectrum `|DFT|^2` of each frame goes through `mel_filterbank`
    (Slaney's scale and normalization); the last frame is dropped. Then `log10(max(mel, 1e-10))`,
    floored at the utterance's maximum minus `dynamic_range` (8: 80 dB below the loudest band), and
    scaled as `(x + 4) / 4`. The maximum is taken per utterance (over frames and bands).

    Computed in float32 whatever the dtype policy (the output is cast to the compute dtype): the DFT
    is a strided convolution with a constant kernel, no weights are stored.

    Args:
        num_mels: mel bands (80 in Whisper up to large-v2, 128 in large-v3).
        sample_rate: of the waveforms, in Hz (16,000 in Whisper); sets the filters' frequencies.
        n_fft: samples per frame, the DFT's length (400: 25 ms at 16 kHz), even. Any even length: the
            DFT is a matrix product, not an FFT.
        hop_length: samples between frames (160: 10 ms at 16 kHz).
        dynamic_range: the floor below the utterance's maximum, in log10 units.

    Call arguments:
        inputs: float waveforms `(batch, samples)`, samples above `n_fft // 2` (the reflected padding).

    Returns:
        `(batch, samples // hop_length, num_mels)`.
    """

    def __init__(self, num_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160,
                 dynamic_range: float = 8.0, **kwargs):
        self.num_mels = check_positive_int(num_mels, "num_mels")
        self.sample_rate = check_positive_int(sample_rate, "sample_rate")
        self.n_fft = check_positive_int(n_fft, "n_fft")
        self.hop_length = check_positive_int(hop_length, "hop_length")
        self.dynamic_range = check_positive_float(dynamic_range, "dynamic_range")
        if self.n_fft % 2:
            raise ValueError(f"n_fft must be even (frames centred on hops, as Whisper's); got n_fft={n_fft!r}.")
        if self.num_mels > self.n_fft // 2 + 1:
            raise ValueError(
                f"num_mels must be at most the {self.n_fft // 2 + 1} DFT bins of n_fft={self.n_fft} (a band "
                f"narrower than a bin is empty); got num_mels={num_mels!r}."
            )
        super().__init__(**kwargs)
        self._kernel = dft_kernel(self.n_fft).astype(np.float32)
        self._filters = mel_filterbank(self.num_mels, self.n_fft, self.sample_rate).astype(np.float32)

    def _check_samples(self, samples):
        if samples is not None and samples <= self.n_fft // 2:
            raise ValueError(
                f"LogMelSpectrogram needs waveforms of more than n_fft // 2 = {self.n_fft // 2} samples (the "
                f"reflected padding at each end); got {samples} samples."
            )

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"LogMelSpectrogram takes waveforms (batch, samples); got shape {tuple(input_shape)}.")
        self._check_samples(input_shape[1])

    def call(self, inputs):
        pad = self.n_fft // 2
        x = ops.cast(inputs, "float32")
        x = ops.pad(x, ((0, 0), (pad, pad)), mode="reflect")  # (batch, samples + n_fft)
        x = ops.expand_dims(x, -1)
        kernel = ops.convert_to_tensor(self._kernel)
        spectrum = ops.conv(x, kernel, strides=self.hop_length, padding="valid")  # (batch, frames + 1, 2 * bins)
        spectrum = spectrum[:, :-1, :]  # Whisper drops the frame centred past the last hop
        bins = self.n_fft // 2 + 1
        power = ops.square(spectrum[..., :bins]) + ops.square(spectrum[..., bins:])  # (batch, frames, bins)
        mel = ops.matmul(power, ops.convert_to_tensor(self._filters))  # (batch, frames, num_mels)
        log_mel = ops.log(ops.maximum(mel, 1e-10)) * (1.0 / math.log(10.0))
        floor = ops.max(log_mel, axis=(1, 2), keepdims=True) - self.dynamic_range
        log_mel = ops.maximum(log_mel, floor)
        return ops.cast((log_mel + 4.0) / 4.0, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        return (input_shape[0], None if samples is None else samples // self.hop_length, self.num_mels)

    def get_config(self):
        return {
            **super().get_config(),
            "num_mels": self.num_mels,
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "dynamic_range": self.dynamic_range,
        }
