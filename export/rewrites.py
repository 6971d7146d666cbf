"""Rewrites that let Keras layers without a builtin TFLite (or plain ONNX) operator export anyway.

While a model is traced for export, `rewritten_layers(model, target)` swaps a few TensorFlow and Keras
functions for equivalents made of builtin operators, and restores them on exit (also on error), as
`unrolled_recurrent_layers` does for recurrent layers:

- 3D pooling (`MaxPooling3D`, `AveragePooling3D`, the adaptive 3D pools, `keras.ops.max_pool` /
  `average_pool` on volumes): TFLite has no builtin 3D pooling (`MaxPool3D` and `AvgPool3D` are Flex
  ops). A 3D window is a box, so a 3D pool is a 2D pool over (height, width) of every frame followed by
  a 2D pool over (frames, 1) of the result: the maximum over a box is the maximum of the maxima of its
  rows, and the mean over a box that `padding="same"` clips at the borders divides by
  `frames * rows * columns` of the clipped box, a product, so it is the mean of the per-frame means.
  Builtin `MAX_POOL_2D`, `AVERAGE_POOL_2D` and `RESHAPE` only.
- Grouped convolutions (`Conv1D`/`Conv2D`/`Conv3D` with `groups > 1`): Keras' TensorFlow backend runs
  them inside an XLA-compiled function, which tf2onnx cannot convert (a `StatefulPartitionedCall`
  node) and TFLite's `CONV_3D` computes wrongly at run time. They are written as a split of the
  channels, one convolution per group and a concatenation, which every runtime has.
- The random augmentation layers are the identity at inference, yet some draw (and discard) random
  numbers first, advancing their seed in a variable: the assignment fails TFLite conversion. Their seed
  generators are read without being advanced while tracing; the draws are unused and pruned.
- `CategoryEncoding(output_mode="multi_hot" | "count")`: Keras' TensorFlow fast path uses
  `DenseBincount`, a Flex op; Keras' own general path (one-hot, then max or sum) is used instead.
- `Discretization` (ONNX only): TensorFlow's `Bucketize` has no ONNX counterpart in tf2onnx; the bucket
  of `x` is the number of boundaries at or below it, a comparison and a sum. TFLite keeps its builtin
  `BUCKETIZE`.
- `MelSpectrogram` and `keras.ops.stft` (ONNX only): Keras' TensorFlow backend computes the STFT with
  `tf.signal.stft`, whose `RFFT` tf2onnx writes as a node onnxruntime does not run. The DFT of a real
  frame is a matrix product with the DFT's cosine and sine tables, the window folded in
  (`keras_models.layers.log_mel_spectrogram.dft_tables`); framing and transform together are one
  convolution with those tables as kernel and the hop as stride (`Conv`), after the same reflection
  padding, for any `fft_length`. TFLite keeps its builtin `RFFT2D`.
- Preprocessing layers built with fixed statistics (`Normalization(mean=..., variance=...)`) hold them
  as eager tensors, which tf2onnx turns into extra graph inputs; they are given as arrays while
  tracing, so they become constants.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from keras_models.layers.log_mel_spectrogram import dft_tables

TARGETS = ("tflite", "onnx")


# --------------------------------------------------------------------------------------------------
# 3D pooling as two 2D pools


def _triple(value, name):
    """A 3-tuple from an int, a 3-list or a 5-list (N, D, H, W, C) of window sizes or strides."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * 3
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * 3
    if len(value) == 3:
        return value
    if len(value) == 5:
        return value[1:4]
    raise ValueError(f"{name} must hold 1, 3 or 5 values for a 3D pool; got {name}={value!r}.")


def pool3d_as_2d(x, window, strides, padding, kind):
    """`kind` ("max" or "avg") 3D pooling of NDHWC `x` as a 2D pool per frame, then over frames.

    Returns None when the non-batch axes of `x` are not all known (the caller falls back).
    """
    frames, height, width, channels = x.shape[1:]
    if None in (frames, height, width, channels):
        return None
    pool2d = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
    window, strides, padding = _triple(window, "window"), _triple(strides, "strides"), padding.upper()
    y = tf.reshape(x, (-1, height, width, channels))  # (batch * frames, h, w, c)
    y = pool2d(y, window[1:], strides[1:], padding)  # (batch * frames, h2, w2, c)
    rows, columns = y.shape[1], y.shape[2]
    y = tf.reshape(y, (-1, frames, rows * columns, channels))  # (batch, frames, h2 * w2, c)
    y = pool2d(y, (window[0], 1), (strides[0], 1), padding)  # (batch, frames2, h2 * w2, c)
    return tf.reshape(y, (-1, y.shape[1], rows, columns, channels))  # (batch, frames2, h2, w2, c)


def _is_ndhwc(x, data_format):
    return len(x.shape) == 5 and (data_format in (None, "NDHWC"))


def _pooling_functions():
    """{name: replacement} for the `tf.nn` pooling entry points Keras' TensorFlow backend calls."""
    original = {name: getattr(tf.nn, name) for name in ("max_pool", "avg_pool", "pool", "max_pool3d", "avg_pool3d")}

    def make(function, kind):
        def pool(input, ksize, strides, padding, data_format=None, name=None):  # noqa: A002 - tf.nn's names
            x = tf.convert_to_tensor(input)
            if _is_ndhwc(x, data_format):
                result = pool3d_as_2d(x, ksize, strides, padding, kind)
                if result is not None:
                    return result
            keywords = {"name": name} if data_format is None else {"data_format": data_format, "name": name}
            return original[function](input, ksize, strides, padding, **keywords)

        return pool

    def generic_pool(input, window_shape, pooling_type, strides=None, padding="VALID", data_format=None,  # noqa: A002
                     dilations=None, name=None):
        x = tf.convert_to_tensor(input)
        plain = dilations is None or all(int(d) == 1 for d in np.ravel(dilations))
        if pooling_type in ("MAX", "AVG") and plain and _is_ndhwc(x, data_format):
            result = pool3d_as_2d(x, window_shape, window_shape if strides is None else strides, padding,
                                  "max" if pooling_type == "MAX" else "avg")
            if result is not None:
                return result
        return original["pool"](input, window_shape, pooling_type, strides=strides, padding=padding,
                                data_format=data_format, dilations=dilations, name=name)

    return original, {
        "max_pool": make("max_pool", "max"),
        "avg_pool": make("avg_pool", "avg"),
        "max_pool3d": make("max_pool3d", "max"),
        "avg_pool3d": make("avg_pool3d", "avg"),
        "pool": generic_pool,
    }


# --------------------------------------------------------------------------------------------------
# Grouped convolutions as split, convolutions, concatenation


def _grouped_conv(original):
    from keras.src import backend as keras_backend

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        data_format = keras_backend.standardize_data_format(data_format)
        inputs = tf.convert_to_tensor(inputs)
        channels = inputs.shape[-1]
        per_group = kernel.shape[-2]
        if data_format != "channels_last" or channels is None or channels == per_group:
            return original(inputs, kernel, strides=strides, padding=padding, data_format=data_format,
                            dilation_rate=dilation_rate)
        groups = channels // per_group
        kernel = tf.convert_to_tensor(kernel)
        outputs = [
            tf.nn.convolution(x, k, strides, padding.upper(), dilations=dilation_rate)
            for x, k in zip(tf.split(inputs, groups, axis=-1), tf.split(kernel, groups, axis=-1))
        ]  # each (batch, ..., filters / groups)
        return tf.concat(outputs, axis=-1)

    return conv


# --------------------------------------------------------------------------------------------------
# Resizing kernels without a builtin operator as two matrix products

# tf.image.resize methods TFLite runs as builtins (RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR) unless
# antialiased; every other method is rewritten.
_BUILTIN_RESIZE = ("nearest", "bilinear")


def resize_matrix(size_in: int, size_out: int, method: str, antialias: bool) -> np.ndarray:
    """The `(size_out, size_in)` matrix of TensorFlow's `method` resize along one axis.

    Every `tf.image.resize` kernel is separable and linear in the pixels, so the resize of one axis
    is a matrix; it is read off TensorFlow's own kernel applied to the identity (each input pixel a
    channel), with the other axis kept at size 1, which every kernel leaves unchanged.
    """
    with tf.init_scope():  # computed eagerly, once per export, into a constant
        basis = tf.eye(size_in, dtype=tf.float32)[None, :, None, :]  # (1, size_in, 1, size_in)
        resized = _ORIGINAL_RESIZE(basis, (size_out, 1), method=method, antialias=antialias)
        return resized.numpy()[0, :, 0, :]  # (size_out, size_in)


def resize_as_matmul(images, size, method, antialias):
    """`tf.image.resize(images, size, method, antialias)` of NHWC float `images` as two matrix
    products (BATCH_MATMUL and RESHAPE in TFLite, MatMul in ONNX); None when shapes are not static."""
    height, width, channels = images.shape[1:]
    size = tuple(int(s) for s in size)
    if None in (height, width, channels) or len(size) != 2:
        return None
    rows = tf.constant(resize_matrix(height, size[0], method, antialias), images.dtype)  # (h2, h)
    columns = tf.constant(resize_matrix(width, size[1], method, antialias), images.dtype)  # (w2, w)
    x = tf.reshape(images, (-1, height, width * channels))
    x = tf.matmul(rows[None], x)  # (batch, h2, w * c)
    x = tf.reshape(x, (-1, width, channels))  # (batch * h2, w, c)
    x = tf.matmul(columns[None], x)  # (batch * h2, w2, c)
    return tf.reshape(x, (-1, size[0], size[1], channels))


def _resize(images, size, method="bilinear", preserve_aspect_ratio=False, antialias=False, name=None):
    x = tf.convert_to_tensor(images)
    method_name = getattr(method, "value", method)
    rewritable = (
        len(x.shape) == 4 and x.dtype.is_floating and not preserve_aspect_ratio
        and (method_name not in _BUILTIN_RESIZE or antialias)
    )
    if rewritable:
        result = resize_as_matmul(x, size, method_name, antialias)
        if result is not None:
            return result
    return _ORIGINAL_RESIZE(images, size, method=method, preserve_aspect_ratio=preserve_aspect_ratio,
                            antialias=antialias, name=name)


_ORIGINAL_RESIZE = tf.image.resize


# --------------------------------------------------------------------------------------------------
# Discretization without Bucketize


def _digitize(original):
    def digitize(x, bins):
        x = tf.convert_to_tensor(x)
        if isinstance(x, (tf.RaggedTensor, tf.SparseTensor)) or not x.dtype.is_floating:
            return original(x, bins)
        boundaries = tf.constant([float(b) for b in bins], dtype=x.dtype)
        # Bucketize's bucket: the number of boundaries at or below x.
        return tf.reduce_sum(tf.cast(x[..., None] >= boundaries, tf.int32), axis=-1)

    return digitize


def _no_bincount_fast_path(*args, **kwargs):
    raise ValueError("bincount is a Flex op; Keras falls back to one-hot encoding")


# --------------------------------------------------------------------------------------------------
# The STFT of real frames as a strided convolution with the windowed DFT tables

_WINDOWS = {"hann": tf.signal.hann_window, "hamming": tf.signal.hamming_window}


def stft_window(window, sequence_length, fft_length, dtype):
    """The window Keras' `stft` multiplies each frame by, zero-padded to `fft_length` on both sides as
    Keras pads it, as numpy: ones for `window=None`; None when `window` is no constant of
    `sequence_length` values (the caller falls back to Keras, which names the problem)."""
    if isinstance(window, str) and window not in _WINDOWS:
        return None
    with tf.init_scope():  # computed eagerly, once per export, into a constant
        if window is None:
            values = np.ones(sequence_length)
        elif isinstance(window, str):  # TensorFlow's own window, as Keras makes it
            values = _WINDOWS[window](sequence_length, periodic=True, dtype=dtype).numpy()
        else:
            try:
                values = np.asarray(window, dtype=dtype.as_numpy_dtype)
            except (TypeError, ValueError, NotImplementedError):  # a symbolic tensor
                return None
    if values.shape != (sequence_length,):
        return None
    left = (fft_length - sequence_length) // 2
    return np.pad(values, (left, fft_length - sequence_length - left))


def stft_as_convolution(x, sequence_length, sequence_stride, fft_length, window, center):
    """Keras' `stft` of real float32 `x` `(..., samples)`: `(real, imag)`, each `(..., frames, bins)`
    with `bins = fft_length // 2 + 1`, as one convolution of stride `sequence_stride` whose kernel holds
    the windowed DFT tables; None when the window is not a constant or a signal is shorter than a
    frame (the caller falls back)."""
    padded_window = stft_window(window, sequence_length, fft_length, x.dtype)
    samples = x.shape[-1]
    no_frame = samples is not None and not center and samples < fft_length  # Keras' framing gives none
    if padded_window is None or no_frame:
        return None
    if center:
        pad_width = [(0, 0)] * (len(x.shape) - 1) + [(fft_length // 2, fft_length // 2)]
        x = tf.pad(x, pad_width, mode="reflect")
    bins = fft_length // 2 + 1
    kernel = tf.constant(dft_tables(fft_length, padded_window)[:, None, :], dtype=x.dtype)  # (fft_length, 1, 2 * bins)
    samples = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]  # after the padding
    signals = tf.reshape(x, (-1, samples, 1))  # (signals, samples, 1)
    spectrum = tf.nn.conv1d(signals, kernel, stride=sequence_stride, padding="VALID")  # (signals, frames, 2 * bins)
    if len(x.shape) == 1:
        spectrum = spectrum[0]
    elif len(x.shape) > 2:
        spectrum = tf.reshape(spectrum, tf.concat([tf.shape(x)[:-1], tf.shape(spectrum)[1:]], axis=0))
    return spectrum[..., :bins], spectrum[..., bins:]


def _stft(original):
    def stft(x, sequence_length, sequence_stride, fft_length, window="hann", center=True):
        x = tf.convert_to_tensor(x)
        sizes = (sequence_length, sequence_stride, fft_length)
        plain = all(isinstance(size, (int, np.integer)) and size > 0 for size in sizes)
        if plain and x.dtype == tf.float32 and len(x.shape) >= 1 and sequence_length <= fft_length:
            result = stft_as_convolution(x, sequence_length, sequence_stride, fft_length, window, center)
            if result is not None:
                return result
        return original(x, sequence_length, sequence_stride, fft_length, window=window, center=center)

    return stft


# --------------------------------------------------------------------------------------------------
# The context manager


def _is_keras_preprocessing(layer) -> bool:
    return type(layer).__module__.startswith("keras.src.layers.preprocessing")


@contextlib.contextmanager
def _patched(target, name, value):
    """Sets `target.name` to `value` for the block; restores it (or removes an instance attribute)."""
    own = name in vars(target)
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        if own:
            setattr(target, name, saved)
        else:
            delattr(target, name)


@contextlib.contextmanager
def rewritten_layers(model, target="tflite"):
    """Traces inside this block see the builtin-operator forms of the layers listed in the module doc.

    Args:
        model: the Keras model being exported (its augmentation and preprocessing layers are adjusted).
        target: `"tflite"` or `"onnx"`, the format being written.

    Yields:
        Nothing; everything is restored on exit.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got target={target!r}.")
    from keras.src.backend.tensorflow import math as backend_math
    from keras.src.backend.tensorflow import nn as backend_nn
    from keras.src.backend.tensorflow import numpy as backend_numpy
    from keras.src.utils import tf_utils

    layers = [layer for layer in model._flatten_layers() if _is_keras_preprocessing(layer)]
    with contextlib.ExitStack() as stack:
        original, pools = _pooling_functions()
        for name, replacement in pools.items():
            stack.enter_context(_patched(tf.nn, name, replacement))
        stack.enter_context(_patched(backend_nn, "conv", _grouped_conv(backend_nn.conv)))
        stack.enter_context(_patched(tf.image, "resize", _resize))
        stack.enter_context(_patched(tf_utils, "tf_encode_categorical_inputs", _no_bincount_fast_path))
        if target == "onnx":
            stack.enter_context(_patched(backend_numpy, "digitize", _digitize(backend_numpy.digitize)))
            stack.enter_context(_patched(backend_math, "stft", _stft(backend_math.stft)))
        for layer in layers:
            for attribute, value in list(vars(layer).items()):
                if isinstance(value, keras.random.SeedGenerator):
                    # Read the seed without advancing it: the draws of an inference call are unused.
                    stack.enter_context(_patched(value, "next", lambda ordered=True, g=value: g.state.value))
                elif isinstance(value, tf.Tensor) and not isinstance(value, tf.Variable) and hasattr(value, "numpy"):
                    stack.enter_context(_patched(layer, attribute, value.numpy()))
        yield
