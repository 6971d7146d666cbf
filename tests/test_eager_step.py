"""`keras_models.eager_step`: a model's outermost call and its training step eagerly on PyTorch, against
Keras' own `Layer.__call__` and `train_step` on the same weights and data (a PyTorch worker process)."""

from __future__ import annotations

import pytest

from torch_worker import run_on_torch

WORKER = r'''
import json, warnings
import numpy as np, keras, torch
import keras_models
from keras_models import eager_step, graph_runner
from keras.src.backend.common import global_state

result = {}
calls = []
keras_call = keras.layers.Layer.__call__

def counted(self, *args, **kwargs):
    calls.append(self.name)
    return keras_call(self, *args, **kwargs)

keras.layers.Layer.__call__ = counted

def gpt(dropout=0.0, seed=6):
    keras.utils.set_random_seed(seed)
    return keras_models.build("gpt_causal_lm", vocabulary_size=40, num_layers=2, num_heads=4, hidden_dim=32,
                              intermediate_dim=64, max_sequence_length=16, dropout=dropout, compile=False)

rng = np.random.default_rng(0)
tokens = torch.tensor(rng.integers(0, 40, size=(3, 16)).astype("int32"))

# The outermost call: the plan without Layer.__call__, inside a call context that holds `training`.
model = gpt(dropout=0.1)
contexts = []
plan_run = graph_runner.run

def recording_run(graph, inputs, training):
    context = global_state.get_global_attribute("current_call_ctx")
    contexts.append(None if context is None else (context.entry_layer is model, context.training))
    return plan_run(graph, inputs, training)

graph_runner.run = recording_run
outputs = {}
for training in (True, False, None):
    calls.clear(); contexts.clear()
    keras.utils.set_random_seed(7)
    ours = model(tokens, training=training) if training is not None else model(tokens)
    result[f"calls_{training}"] = len(calls)
    result[f"context_{training}"] = contexts[0]
    keras.utils.set_random_seed(7)
    theirs = keras_call(model, tokens, training=training)
    result[f"equal_{training}"] = bool(torch.equal(ours, theirs))
    outputs[training] = ours
graph_runner.run = plan_run
result["dropout_on_only_in_training"] = (not torch.equal(outputs[True], outputs[False])
                                         and torch.equal(outputs[False], outputs[None]))
result["context_cleared"] = global_state.get_global_attribute("current_call_ctx") is None

# Calls that take Keras' path: each reaches the model's own Layer.__call__ and gives Keras' output.
model = gpt()
reference = model(tokens)
inputs = keras.Input((16,), dtype="int32")
outer = keras.Model(inputs, model(inputs))
hooked = []
handle = model.register_forward_hook(lambda module, args, output: hooked.append(1))
cases = {"hook": lambda: model(tokens)}
cases["numpy"] = lambda: model(tokens.numpy())
cases["keyword"] = lambda: model(tokens, mask=None)
cases["nested"] = lambda: outer(tokens)
masked = tokens.clone()
masked._keras_mask = torch.ones((3, 16), dtype=torch.bool)
cases["masked"] = lambda: model(masked)

def stateless():
    with keras.StatelessScope():
        return model(tokens)

cases["stateless"] = stateless
fallback = {}
for name, case in cases.items():
    calls.clear()
    output = case()
    fallback[name] = [model.name in calls, bool(torch.equal(output, reference))]
    if name == "hook":
        handle.remove()
result["fallback"] = fallback
result["hook_ran"] = len(hooked)
calls.clear(); model(tokens)
result["fast_after_hook_removed"] = model.name not in calls
# A loss left on a layer: Keras' path clears it, as Keras clears losses at every outermost call.
model.backbone.transformer_layers[0].add_loss(keras.ops.convert_to_tensor(3.0))
result["loss_left"] = len(model.losses)
calls.clear(); model(tokens)
result["losses_cleared"] = [model.name in calls, len(model.losses)]
# Wrong shapes (one axis; more steps than positions): the error of Keras' path, without its wrapping.
errors = {}
for name, bad in (("rank", tokens[:, 0]), ("steps", torch.zeros((3, 17), dtype=torch.int32))):
    errors[name] = []
    for call in (lambda: model(bad), lambda: keras_call(model, bad)):
        try:
            call()
            errors[name].append(None)
        except ValueError as error:
            errors[name].append(str(error))
result["shape_errors"] = errors

# The training step against Keras' own, from the same weights, for a GPT (with dropout) and a CNN with
# batch normalization (moving statistics: non-trainable variables), with sample weights.
keras_step = eager_step.train_step

def steps(build, data, lean, count=3):
    eager_step.train_step = keras_step if lean else (lambda model, batch: eager_step.KERAS)
    model = build()
    keras_models.compile_model(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                               metrics=["sparse_categorical_accuracy"], family="transformer")
    logs = []
    keras.utils.set_random_seed(11)
    for _ in range(count):
        if not lean:  # Keras' zero_grad misses variables added after the model was tracked (LoRA)
            for variable in model.trainable_variables:
                variable.value.grad = None
        logs.append({k: float(v) for k, v in model.train_step(data).items()})
    eager_step.train_step = keras_step
    return logs, [np.array(v.numpy()) for v in model.variables], model.optimizer.iterations.numpy().item()

def compare(build, data):
    ours, theirs = steps(build, data, True), steps(build, data, False)
    return {"logs_equal": ours[0] == theirs[0], "logs": ours[0],
            "weights_equal": all(np.array_equal(a, b) for a, b in zip(ours[1], theirs[1])),
            "count": len(ours[1]), "iterations": [ours[2], theirs[2]]}

targets = torch.tensor(rng.integers(0, 40, size=(3, 16)).astype("int32"))
result["step_gpt"] = compare(lambda: gpt(dropout=0.1), (tokens, targets))
images = torch.tensor(rng.normal(size=(6, 32, 32, 3)).astype("float32"))
labels = torch.tensor(rng.integers(0, 4, size=(6,)).astype("int32"))
weights = torch.tensor([1.0, 0.5, 2.0, 0.0, 1.0, 1.0])

def cnn():
    keras.utils.set_random_seed(3)
    return keras_models.build("resnet18", num_classes=4, input_shape=(32, 32, 3), width_multiplier=0.25,
                              compile=False)

result["step_cnn"] = compare(cnn, (images, labels, weights))
# LoRA variables added after building take part in the step (the step collects trainable weights anew).
def lora():
    model = gpt()
    model.backbone.transformer_layers[0].attention.query_dense.enable_lora(2)
    return model
result["step_lora"] = compare(lora, (tokens, targets))

# fit on both steps: the same history.
def history(lean):
    eager_step.train_step = keras_step if lean else (lambda model, batch: eager_step.KERAS)
    model = gpt()
    keras_models.compile_model(model, family="transformer",
                               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng_fit.integers(0, 40, size=(12, 16)).astype("int32")
    values = model.fit(x, np.roll(x, -1, axis=1), batch_size=4, epochs=2, verbose=0, shuffle=False).history["loss"]
    eager_step.train_step = keras_step
    return values

rng_fit = np.random.default_rng(5); ours = history(True)
rng_fit = np.random.default_rng(5); theirs = history(False)
result["fit"] = [ours, theirs]

# Nothing to train: Keras' step and its warning.
model = gpt()
keras_models.compile_model(model, family="transformer",
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.trainable = False
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.train_step((tokens, targets))
result["frozen_warning"] = any("trainable weights" in str(w.message) for w in caught)
print(json.dumps(result))
'''


@pytest.fixture(scope="module")
def torch_result():
    return run_on_torch(WORKER)


@pytest.mark.parametrize("training", ["True", "False", "None"])
def test_outermost_call_runs_the_plan_with_training_in_context(torch_result, training):
    assert torch_result[f"calls_{training}"] == 0  # not one Layer.__call__, the model's included
    assert torch_result[f"equal_{training}"]  # the same output as Keras' __call__, dropout masks included
    # The call context Keras would open: entered by the model, holding `training` for layers called inside.
    assert torch_result[f"context_{training}"] == [True, None if training == "None" else training == "True"]


def test_training_switches_dropout_and_the_context_is_left_cleared(torch_result):
    assert torch_result["dropout_on_only_in_training"]
    assert torch_result["context_cleared"]


@pytest.mark.parametrize("case", ["hook", "numpy", "keyword", "nested", "masked", "stateless"])
def test_calls_the_plan_cannot_take_go_through_keras(torch_result, case):
    reached_keras, same_output = torch_result["fallback"][case]
    assert reached_keras and same_output


def test_hooks_run_and_losses_are_cleared_as_in_keras(torch_result):
    assert torch_result["hook_ran"] == 1
    assert torch_result["fast_after_hook_removed"]
    assert torch_result["loss_left"] == 1 and torch_result["losses_cleared"] == [True, 0]


@pytest.mark.parametrize("case, words", [("rank", "incompatible shape"), ("steps", "got 17 steps")])
def test_wrong_input_shape_raises_keras_error(torch_result, case, words):
    ours, theirs = torch_result["shape_errors"][case]
    assert ours is not None and words in ours
    assert ours in theirs  # Keras' path adds "Exception encountered when calling ..." around it


@pytest.mark.parametrize("case", ["step_gpt", "step_cnn", "step_lora"])
def test_training_step_equals_keras_step(torch_result, case):
    entry = torch_result[case]
    assert entry["logs_equal"], entry["logs"]
    assert entry["weights_equal"] and entry["count"] > 10
    assert entry["iterations"] == [3, 3]
    losses = [log["loss"] for log in entry["logs"]]
    assert all(loss > 0 for loss in losses)


def test_fit_history_equals_keras_step(torch_result):
    ours, theirs = torch_result["fit"]
    assert ours == theirs and len(ours) == 2 and ours[1] < ours[0]


def test_model_without_trainable_weights_keeps_keras_warning(torch_result):
    assert torch_result["frozen_warning"]
