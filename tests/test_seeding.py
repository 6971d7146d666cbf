"""`keras_models.seeding.set_random_seed`: Keras' seeding, without importing TensorFlow off it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from keras_models.seeding import set_random_seed

_SCRIPT = textwrap.dedent("""
    import json, random, sys
    import keras, numpy as np
    from keras_models.seeding import set_random_seed

    def draws(seed_function, seed):
        seed_function(seed)
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
        return [random.random(), float(np.random.rand()),
                keras.ops.convert_to_numpy(keras.random.normal((2,))).tolist(),
                keras.ops.convert_to_numpy(layer.kernel).ravel().tolist()]

    ours = draws(set_random_seed, 7)
    out = {"repeat": draws(set_random_seed, 7) == ours, "other": draws(set_random_seed, 8) != ours,
           "tensorflow_imported": "tensorflow" in sys.modules}
    keras.utils.set_random_seed(7)  # imports TensorFlow where it is installed
    out["same_as_keras"] = draws(keras.utils.set_random_seed, 7) == ours
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.parametrize("backend", ["jax", pytest.param("torch", marks=pytest.mark.slow)])
def test_seeds_like_keras_without_importing_tensorflow(backend):
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=dict(os.environ, KERAS_BACKEND=backend),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))[len("RESULT"):])
    assert out == {"repeat": True, "other": True, "tensorflow_imported": False, "same_as_keras": True}


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_bad_seeds_are_refused(bad):
    with pytest.raises(ValueError, match=f"seed={bad!r}"):
        set_random_seed(bad)
