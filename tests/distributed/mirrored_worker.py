"""Trains model cases under `tf.distribute.MirroredStrategy` over two logical CPU devices, or, with
`--multi-worker`, as one worker of `keras_models.distributed.multi_worker_strategy()` (started by
`keras_models.distributed.launch(..., backend="tensorflow")`, one CPU device per worker).

    python tests/distributed/mirrored_worker.py mlp,dcgan,vae

Prints one line `RESULT{json}`: per case, whether training ran, the compile decision, the last losses
and whether the weights moved; for the cases in `EQUAL`, the largest difference between the weights
trained on two replicas and on one device from the same start with the same global batch; for the VAE,
the reported loss and the sum of its reconstruction and KL terms; and the `gradients.minimize` check.
Logical devices must be set before TensorFlow starts, hence a process of its own.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import traceback
from pathlib import Path

import tensorflow as tf

MULTI_WORKER = "--multi-worker" in sys.argv
if not MULTI_WORKER:
    _CPU = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import model_cases  # noqa: E402
import numpy as np  # noqa: E402

from keras_models import compile_model, gradients  # noqa: E402
from keras_models.seeding import set_random_seed  # noqa: E402

BATCH = 8
# Models whose training step draws no random numbers (dropout off): two replicas must reach one device's
# weights. The value overrides the case's configuration.
EQUAL = {"mlp": {"dropout": 0.0}, "gpt_causal_lm": {}, "rnn_classifier": {}}


def _strategy():
    if MULTI_WORKER:
        from keras_models import distributed

        return distributed.multi_worker_strategy()
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _build(case, scope):
    with scope:
        model = case.build()
        own_loss = type(model).compute_loss is not keras.Model.compute_loss
        if case.kind == model_cases.KERAS and getattr(model, "loss", None) is None and not own_loss:
            compile_model(model, loss="mean_squared_error")
    return model


def _fit(model, case):
    arguments = case.data()
    history = model.fit(*arguments, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    return {key: float(values[-1]) for key, values in history.history.items()}


def run_case(name, strategy):
    case = model_cases.CASES[name]
    if name in EQUAL:
        case = dataclasses.replace(case, config={**case.config, **EQUAL[name]})
    set_random_seed(0)
    model = _build(case, strategy.scope())
    before = [np.array(w) for w in model.trainable_weights]
    logs = _fit(model, case)
    out = {
        "jit_compile": bool(model.jit_compile),
        "reason": getattr(model, "jit_compile_reason", ""),
        "logs": logs,
        "moved": any(not np.array_equal(b, np.array(a)) for b, a in zip(before, model.trainable_weights)),
    }
    if name in EQUAL:
        # The same seed builds the same initial weights in or out of the strategy's scope.
        set_random_seed(0)
        single = _build(case, tf.distribute.get_strategy().scope())
        _fit(single, case)
        out["max_weight_difference"] = max(
            float(np.max(np.abs(np.array(a) - np.array(b)))) for a, b in zip(model.weights, single.weights))
    return out


def minimize_check(strategy):
    """One SGD step of `gradients.minimize` on replica slices equals one step on the whole batch."""
    x = np.random.default_rng(0).normal(size=(BATCH, 2)).astype("float32")

    def step(variable, optimizer, inputs):
        return gradients.minimize(lambda: keras.ops.mean((keras.ops.matmul(inputs, variable) - 1.0) ** 2),
                                  [variable], optimizer)

    with strategy.scope():
        shared = keras.Variable(np.ones((2, 1), "float32"))
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build([shared])
    halves = strategy.experimental_distribute_values_from_function(
        lambda context: x[context.replica_id_in_sync_group * 4:(context.replica_id_in_sync_group + 1) * 4])
    tf.function(lambda: strategy.run(step, args=(shared, optimizer, halves)))()
    alone = keras.Variable(np.ones((2, 1), "float32"))
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([alone])
    step(alone, optimizer, x)
    return float(np.max(np.abs(np.array(shared) - np.array(alone)))), float(np.max(np.abs(np.array(alone) - 1.0)))


def main(names):
    strategy = _strategy()
    results = {"replicas": strategy.num_replicas_in_sync, "cases": {}}
    for name in names:
        try:
            results["cases"][name] = run_case(name, strategy)
        except Exception as error:  # noqa: BLE001 - one case's failure is reported, the others still run
            results["cases"][name] = {"error": f"{type(error).__name__}: {error}"[:2000],
                                      "traceback": traceback.format_exc()[-3000:]}
    results["minimize"] = minimize_check(strategy)
    print("RESULT" + json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1].split(","))
