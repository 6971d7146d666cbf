"""Trains model cases under `keras.distribution` on JAX; run in a subprocess (or several) by the tests.

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python tests/distributed/distributed_worker.py families --cases mlp,vae --out results.json
    python -m keras_models.distributed --processes 2 tests/distributed/distributed_worker.py \
        equal --cases mlp --out DIR

`families`: for each case, one `fit` epoch (two steps of 8) under `DataParallel` over every device,
recording the loss, whether every trainable weight group moved, whether every weight and optimizer
variable is replicated on every device, and how a batch of the case's data is laid out (the sharded
axis and the rows per device), the way the JAX trainer distributes it.

`equal`: for each case, the same seeded model trained `--steps` steps on the same data, once on one
device without distribution (global batch B) and once under `DataParallel` over every device of every
process (each process feeding its `process_rows`); records both runs' weights and reported metrics.
Process 0 writes `DIR/NAME.npz` (`reference_i`, `distributed_i`) and `DIR/NAME.json` (histories).

`model_parallel`: the transformer cases under `initialize(distribution="model_parallel",
model_parallel=2)`, i.e. `transformer_model_parallel(2)` (a 2 x 2 mesh of 4
devices): records each weight's sharding spec and shard shape, and the losses of two training steps
against the unsharded model's.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

import keras  # noqa: E402
import model_cases  # noqa: E402
from keras.src.backend.common import global_state  # noqa: E402
from keras.src.random import seed_generator  # noqa: E402

import keras_models  # noqa: E402
from keras_models import distributed  # noqa: E402

BATCH_SIZE = 8


def _batch_norm_data():
    """Images whose first 3 rows of every 8 are shifted by 3: the halves of a batch have different means."""
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 2)).astype("float32")
    x[np.arange(32) % 8 < 3] += 3.0
    return x, (np.arange(32) % 3).astype("int32")


def _batch_norm_model():
    """Batch normalization on the input, then conv + batch norm: its moving mean is checkable by hand."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 2)), layers.BatchNormalization(name="input_bn"), layers.Conv2D(4, 3, name="conv"),
        layers.BatchNormalization(name="conv_bn"), layers.ReLU(), layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax", name="predictions")], name="batch_norm")
    # SGD: Adam would turn the rounding noise of the input beta's gradient (zero: conv_bn removes any
    # shift) into whole learning-rate steps.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class _LocalCase:
    """A case outside the registry, with the parts of `model_cases.ModelCase` the modes use."""

    kind = model_cases.KERAS

    def __init__(self, name, build, data):
        self.name, self.build, self.data = name, build, data


LOCAL_CASES = {"batch_norm": _LocalCase("batch_norm", _batch_norm_model, _batch_norm_data)}


def case_named(name):
    return model_cases.CASES[name] if name in model_cases.CASES else LOCAL_CASES[name]


def expected_input_moving_statistics(steps, global_batch, momentum=0.99):
    """The input batch norm's moving mean and variance after `steps` global batches, by NumPy.

    Synchronized statistics are each global batch's (biased) mean and variance; statistics of each
    device's rows alone would miss the spread between the shifted and unshifted rows.
    """
    x, _ = _batch_norm_data()
    x = x.astype("float64")
    mean, variance = np.zeros(x.shape[-1]), np.ones(x.shape[-1])
    for step in range(steps):
        batch = x[step * global_batch:(step + 1) * global_batch]
        mean = momentum * mean + (1 - momentum) * batch.mean(axis=(0, 1, 2))
        variance = momentum * variance + (1 - momentum) * batch.var(axis=(0, 1, 2))
    return mean, variance


def seed(value=0):
    """Seeds what weight initialization and the models' seed generators draw from (not TensorFlow)."""
    random.seed(value)
    np.random.seed(value)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)  # redrawn from `random`


def build(case):
    """The case's model, compiled as the library compiles it (a backbone regressed on its targets)."""
    seed(0)
    model = case.build()
    if isinstance(case, _LocalCase):
        return model
    own_loss = type(model).compute_loss is not keras.Model.compute_loss
    if case.kind == model_cases.KERAS and getattr(model, "loss", None) is None and not own_loss:
        keras_models.compile_model(model, loss="mean_squared_error",
                                   family=keras_models.get_model_info(case.name).family)
    return model


def fit_arguments(case):
    """(inputs, targets) of `fit`: a GAN's data tuple is its inputs (and second images or labels)."""
    data = case.data()
    if case.kind == model_cases.GAN:
        return data[0], (data[1] if len(data) > 1 else None)
    return data


def weight_groups(case, model):
    if case.kind == model_cases.GAN:
        return {"generator": model.generator.trainable_weights, "discriminator": model.discriminator.trainable_weights}
    return {"model": model.trainable_weights}


def values(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def replicated(variable):
    sharding = variable.value.sharding
    return bool(sharding.is_fully_replicated) and len(sharding.device_set) == len(keras.distribution.list_devices())


def batch_layout(x, y):
    """How the JAX trainer lays out one batch of (x, y) under the current distribution."""
    from keras.src.backend.jax.trainer import _distribute_data

    batch = keras.tree.map_structure(lambda a: None if a is None else np.asarray(a)[:BATCH_SIZE], (x, y))
    arrays = [a for a in keras.tree.flatten(_distribute_data(batch)) if a is not None]
    return [{"spec": [str(axis) for axis in a.sharding.spec], "rows_per_device": sorted({s.data.shape[0] for s in
             a.addressable_shards}), "devices": len(a.sharding.device_set)} for a in arrays]


def train_family(case) -> dict:
    model = build(case)
    x, y = fit_arguments(case)
    groups = weight_groups(case, model)
    before = {name: values(variables) for name, variables in groups.items()}
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, shuffle=False)
    after = {name: values(variables) for name, variables in groups.items()}
    state = [*model.weights, *model.optimizer.variables]
    return {
        "losses": {k: float(v[-1]) for k, v in history.history.items() if "loss" in k},
        "moved": {name: any(not np.array_equal(b, a) for b, a in zip(before[name], after[name])) for name in groups},
        "not_replicated": [v.path for v in state if not replicated(v)],
        "variables": len(state),
        "batch": batch_layout(x, y),
    }


def train_steps(case, steps, global_batch, rows_of_process, sgd=False):
    """Seeded model trained `steps` steps of `global_batch`; returns (weights, history).

    With `sgd`, a Keras case is recompiled with plain SGD: Adam divides by the root of the squared
    gradients, so a gradient that is zero but for rounding (a convolution's bias direction ahead of
    batch normalization) moves by a whole learning rate either way, whatever the reduction order.
    """
    model = build(case)
    if sgd and case.kind == model_cases.KERAS:
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=model.loss, metrics=["accuracy"])
    x, y = fit_arguments(case)
    count = steps * global_batch
    x, y = keras.tree.map_structure(lambda a: None if a is None else np.asarray(a)[:count], (x, y))
    batch = global_batch
    if rows_of_process:
        x, y = distributed.process_rows((x, y), global_batch)
        batch = global_batch // distributed.process_count()
    history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return values(model.weights), {k: [float(value) for value in v] for k, v in history.history.items()}


def equal(names, out_dir: Path, steps: int, global_batch: int, sgd: bool) -> None:
    distribution = distributed.initialize()
    for name in names:
        case = case_named(name)
        keras.distribution.set_distribution(None)
        reference, reference_history = train_steps(case, steps, global_batch, rows_of_process=False, sgd=sgd)
        keras.distribution.set_distribution(distribution)
        weights, history = train_steps(case, steps, global_batch, rows_of_process=True, sgd=sgd)
        if distributed.process_index() == 0:
            arrays = {f"reference_{i}": w for i, w in enumerate(reference)}
            arrays.update({f"distributed_{i}": w for i, w in enumerate(weights)})
            np.savez(out_dir / f"{name}.npz", **arrays)
            report = {"reference": reference_history, "distributed": history, "devices":
                      len(keras.distribution.list_devices()), "processes": distributed.process_count()}
            if name == "batch_norm":
                mean, variance = expected_input_moving_statistics(steps, global_batch)
                report["input_moving_mean"], report["input_moving_variance"] = mean.tolist(), variance.tolist()
            (out_dir / f"{name}.json").write_text(json.dumps(report))
        print(f"{name}: trained on {len(keras.distribution.list_devices())} devices", flush=True)


def model_parallel(names, out_dir: Path) -> None:
    results = {}
    for name in names:
        case = case_named(name)
        x, y = fit_arguments(case)
        batch = keras.tree.map_structure(lambda a: None if a is None else np.asarray(a)[:BATCH_SIZE], (x, y))
        losses = {}
        for mode in ("unsharded", "sharded"):
            if mode == "sharded":
                distributed.initialize(distribution="model_parallel", model_parallel=2)
            else:
                keras.distribution.set_distribution(None)
            model = build(case)
            # The second step's loss is computed with the weights the first step updated.
            losses[mode] = [float(model.train_on_batch(*batch, return_dict=True)["loss"]) for _ in range(2)]
            if mode == "sharded":
                specs = {v.path: [None if a is None else str(a) for a in v.value.sharding.spec] for v in model.weights}
                shapes = {v.path: [list(s.data.shape) for s in v.value.addressable_shards][:1] for v in model.weights}
                full = {v.path: list(v.shape) for v in model.weights}
        results[name] = {"losses": losses, "specs": specs, "shard_shapes": shapes, "full_shapes": full}
        print(f"{name}: {losses}", flush=True)
    (out_dir / "model_parallel.json").write_text(json.dumps(results, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("families", "equal", "model_parallel"))
    parser.add_argument("--cases", required=True, help="comma-separated names of model_cases.CASES")
    parser.add_argument("--out", required=True, help="folder for the results")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=BATCH_SIZE)
    parser.add_argument("--equal", default="", help="families mode: cases then run as in equal mode")
    parser.add_argument("--sgd", action="store_true", help="recompile Keras cases with SGD (equal mode)")
    args = parser.parse_args(argv)
    names = [name for name in args.cases.split(",") if name]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.mode == "equal":
        equal(names, out_dir, args.steps, args.global_batch, args.sgd)
        return 0
    if args.mode == "model_parallel":
        model_parallel(names, out_dir)
        return 0
    distributed.initialize()
    results = {}
    for name in names:
        start = time.perf_counter()
        try:
            results[name] = {"status": "passed", **train_family(case_named(name))}
        except Exception as error:  # noqa: BLE001 - one failing family must not hide the others
            results[name] = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                             "traceback": traceback.format_exc()}
        results[name]["seconds"] = round(time.perf_counter() - start, 2)
        print(f"{name}: {results[name]['status']} in {results[name]['seconds']} s", flush=True)
        # Replaced whole after every case: a process that dies still leaves the cases it finished.
        (out_dir / "families.json.tmp").write_text(json.dumps(results, indent=1))
        (out_dir / "families.json.tmp").replace(out_dir / "families.json")
    if args.equal:
        equal([name for name in args.equal.split(",") if name], out_dir, args.steps, args.global_batch, args.sgd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
