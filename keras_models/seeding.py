"""Seeding every random generator a training run draws from, without importing TensorFlow off it."""

from __future__ import annotations

import random
import sys

import keras
import numpy as np


def set_random_seed(seed: int) -> None:
    """Seeds Python's, NumPy's and Keras' global generators, and the backend's own.

    As `keras.utils.set_random_seed`, except that TensorFlow is seeded only when it is the backend or
    already imported: that function imports TensorFlow whenever it is installed, which a JAX or PyTorch
    run should not pay for (TensorFlow's start-up, and on a GPU its claim on the device's memory).

    Raises:
        ValueError: `seed` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got seed={seed!r}.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    # Keras' global seed, and a fresh global SeedGenerator drawn from it (what keras.random uses when no
    # seed is given), as keras.utils.set_random_seed sets them.
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    backend = keras.backend.backend()
    if backend == "tensorflow" or sys.modules.get("tensorflow") is not None:
        import tensorflow as tf

        tf.random.set_seed(seed)
    if backend == "torch":
        import torch

        torch.manual_seed(seed)
