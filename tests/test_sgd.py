"""`keras_models.optimizers.SGD` against Keras' SGD on PyTorch: the same numbers, one variable at a time
with no multi-tensor operator (on TensorFlow it is Keras' class: tests/test_optimizers_losses.py)."""

from __future__ import annotations

import pytest

from torch_worker import run_on_torch

WORKER = r'''
import json, os, tempfile
from unittest import mock
import numpy as np, keras, torch
import keras_models
from keras_models.layers.conv2d import _pytorch_order
from keras_models.optimizers import SGD

rng = np.random.default_rng(0)
shapes = [(3, 3, 8, 16), (16,), (3, 3, 16, 16), (16,), (1, 1, 8, 16), (64, 10), (10,)]

def variables():
    made = [keras.Variable(rng_weights.normal(size=shape).astype("float32")) for shape in shapes]
    _pytorch_order(made[2].value, "channels_last")  # a kernel laid out as the library's Conv2D lays it out
    return made

schedule = keras.optimizers.schedules.ExponentialDecay(0.05, 3, 0.5)
options = {
    "momentum": dict(learning_rate=0.01, momentum=0.9),
    "plain": dict(learning_rate=0.01),
    "nesterov": dict(learning_rate=0.01, momentum=0.9, nesterov=True),
    "schedule": dict(learning_rate=schedule, momentum=0.5),
    "clip_decay": dict(learning_rate=0.01, momentum=0.9, global_clipnorm=1.0, weight_decay=0.01),
    "clipvalue": dict(learning_rate=0.01, momentum=0.9, clipvalue=0.1),
}
result = {}
for name, kwargs in options.items():
    rng_weights = np.random.default_rng(1); ours = variables()
    rng_weights = np.random.default_rng(1); theirs = variables()
    ours_optimizer, their_optimizer = SGD(**kwargs), keras.optimizers.SGD(**kwargs)
    calls = []
    for step in range(6):
        grads = [torch.tensor(rng.normal(size=shape).astype("float32") * (0.1, 10.0)[step % 2]) for shape in shapes]
        with mock.patch.object(torch, "_foreach_add_", wraps=torch._foreach_add_) as foreach_add:
            with torch.no_grad():
                ours_optimizer.apply(grads, ours)
        calls.append(foreach_add.call_count)
        with torch.no_grad():
            their_optimizer.apply([g.clone() for g in grads], theirs)
    result[name] = {
        "weights": all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(ours, theirs)),
        "slots": all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(ours_optimizer.variables,
                                                                        their_optimizer.variables)),
        "iterations": [int(ours_optimizer.iterations), int(their_optimizer.iterations)],
        "foreach_calls": sum(calls),
        "layout_kept": ours[2].value.stride() == theirs[2].value.stride(),
    }

# stateless_apply: the same new values as Keras', and the values passed in treated as Keras treats them.
rng_weights = np.random.default_rng(2); model_vars = variables()
stateless = []
for cls in (SGD, keras.optimizers.SGD):
    optimizer = cls(learning_rate=0.01, momentum=0.9)
    optimizer.build(model_vars)
    values = [v.value.detach().clone() for v in model_vars]
    before = [v.clone() for v in values]
    slots = [v.value.detach().clone() for v in optimizer.variables]
    grads = [torch.full(shape, 0.5) for shape in shapes]
    new_values, _ = optimizer.stateless_apply(slots, grads, values)
    stateless.append(([v.detach().numpy() for v in new_values],
                      all(bool(torch.equal(a, b)) for a, b in zip(values, before))))
result["stateless_equal"] = all(np.array_equal(a, b) for a, b in zip(stateless[0][0], stateless[1][0]))
result["stateless_inputs_kept"] = [stateless[0][1], stateless[1][1]]

# fit and a .keras file.
x = rng.normal(size=(32, 8)).astype("float32")
y = rng.integers(0, 3, size=32)
histories = []
for cls in (SGD, keras.optimizers.SGD):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer=cls(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    histories.append(model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False).history["loss"])
path = os.path.join(tempfile.mkdtemp(), "sgd.keras")
model.compile(optimizer=SGD(0.05, momentum=0.9, nesterov=True), loss="mse")
model.save(path)
restored = keras.saving.load_model(path)
result["fit"] = histories
result["file"] = [type(restored.optimizer).__name__, type(restored.optimizer).__module__,
                  restored.optimizer.get_config()["nesterov"]]
print(json.dumps(result))
'''


@pytest.fixture(scope="module")
def torch_result():
    return run_on_torch(WORKER)


@pytest.mark.parametrize("name", ["momentum", "plain", "nesterov", "schedule", "clip_decay", "clipvalue"])
def test_sgd_is_keras_sgd_on_torch_one_variable_at_a_time(torch_result, name):
    case = torch_result[name]
    assert case["weights"] and case["slots"]  # bit for bit
    assert case["iterations"] == [6, 6]
    assert case["foreach_calls"] == 0  # Keras' update calls the multi-tensor add every step
    assert case["layout_kept"]


def test_sgd_stateless_apply_is_keras(torch_result):
    assert torch_result["stateless_equal"]
    # Keras' SGD on PyTorch updates the tensors passed in, in place, as well as returning them; so does this.
    ours, theirs = torch_result["stateless_inputs_kept"]
    assert ours == theirs


def test_sgd_fit_and_file(torch_result):
    ours, theirs = torch_result["fit"]
    assert ours == theirs and ours[-1] < ours[0]
    name, module, nesterov = torch_result["file"]
    assert name == "SGD" and module == "keras_models.optimizers" and nesterov is True
