"""Bundled data sets (shipped inside scikit-learn) split and scaled the same way for every family."""

from __future__ import annotations

import numpy as np


def _split(x, y, test_fraction, seed):
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got test_fraction={test_fraction!r}.")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(round(len(x) * (1.0 - test_fraction)))
    train, test = order[:cut], order[cut:]
    return (x[train], y[train]), (x[test], y[test])


def load_digits(image_size: int = 8, *, channels: int = 1, test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's 8x8 handwritten digits as float32 images in [0, 1].

    Args:
        image_size: 8 for the original images, or a larger size (32 for LeNet-5) reached by bilinear
            resizing.
        channels: 1, or 3 to repeat the grey channel for RGB networks.
        test_fraction: the share of the 1,797 images held out, stratification by random permutation.
        seed: the permutation seed.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, images `(n, size, size, channels)`, int32 labels.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got channels={channels!r}.")
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    if image_size != 8:
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8; got image_size={image_size!r}.")
        import keras

        # keras.ops resizes with the backend's own kernels (tf.image.resize on TensorFlow), so the data
        # loads without TensorFlow under JAX and PyTorch.
        resized = keras.ops.image.resize(images, (image_size, image_size), interpolation="bilinear")
        images = np.clip(keras.ops.convert_to_numpy(resized), 0.0, 1.0).astype(np.float32)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    return _split(images, bunch.target.astype(np.int32), test_fraction, seed)


def load_breast_cancer(*, standardize: bool = True, test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's Wisconsin breast cancer table (569 x 30), labels 1 = benign.

    Features are standardized with the training split's mean and standard deviation when asked.
    """
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    bunch = sklearn_breast_cancer()
    x = bunch.data.astype(np.float32)
    (x_train, y_train), (x_test, y_test) = _split(x, bunch.target.astype(np.int32), test_fraction, seed)
    if standardize:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return (x_train, y_train), (x_test, y_test)
