"""Trains and saves model cases on one Keras backend, for the TensorFlow side to reload and export.

    KERAS_BACKEND=jax python tests/backend_worker.py --cases mlp,dcgan --out DIR

For each case of `model_cases.CASES` named: build it small, check the output shape, run one `fit`
epoch with the builder's own compile (the library's policy for this backend) asserting a finite loss
and moved weights (estimators fit by their own engine instead, and their Keras model must reproduce
their predictions), save `DIR/NAME.keras`, and save the shipped model's inputs and outputs as
`DIR/NAME.npz` (`input_0`, ..., `output_0`, ...). `DIR/results.json` gets every case's status, and
the error and traceback of a case that failed; one failing case does not stop the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import keras  # noqa: E402
import model_cases  # noqa: E402

import keras_models  # noqa: E402
from keras_models.seeding import set_random_seed  # noqa: E402

BATCH_SIZE = 8


def _numpy(values):
    return [keras.ops.convert_to_numpy(v) for v in keras.tree.flatten(values)]


def _weights(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _moved(before, variables):
    return any(not np.array_equal(b, a) for b, a in zip(before, _weights(variables)))


def _check_shape(outputs, expected):
    shape = tuple(outputs[0].shape)
    assert shape == tuple(expected), f"output shape {shape}, expected {tuple(expected)}"
    for output in outputs:
        assert np.all(np.isfinite(output)), "outputs contain NaN or infinity"


def _fit_one_epoch(model, arguments, watched: dict):
    """One epoch of `model.fit(*arguments)`; asserts finite losses and that every `watched` group of
    trainable weights (`{"generator": [...], ...}`) moved."""
    before = {group: _weights(variables) for group, variables in watched.items()}
    history = model.fit(*arguments, batch_size=BATCH_SIZE, epochs=1, verbose=0, shuffle=False)
    losses = {key: float(values[-1]) for key, values in history.history.items() if "loss" in key}
    assert losses, f"fit reported no loss; history keys: {sorted(history.history)}"
    for key, value in losses.items():
        assert np.isfinite(value), f"{key} is {value} after one epoch"
    for group, variables in watched.items():
        assert _moved(before[group], variables), f"one epoch of fit changed no trainable weight of the {group}"
    return losses


def run_case(case, out_dir: Path) -> dict:
    """Runs one case; returns what the TensorFlow side needs to know besides the saved files."""
    set_random_seed(0)
    built = case.build()
    report = {"kind": case.kind}
    if case.kind == model_cases.ESTIMATOR:
        x, y = case.data()
        built.fit(x, y)
        model = case.shipped(built)
        inputs = case.shipped_inputs(built)
        outputs = _numpy(model(inputs, training=False))
        _check_shape(outputs, case.output_shape)
        case.agrees(built, x, outputs[0])
        saved = model
    elif case.kind == model_cases.GAN:
        networks = {"generator": built.generator.trainable_weights,
                    "discriminator": built.discriminator.trainable_weights}
        report["losses"] = _fit_one_epoch(built, case.data(), networks)
        model = case.shipped(built)
        inputs = case.shipped_inputs(built)
        outputs = _numpy(model(inputs, training=False))
        _check_shape(outputs, case.output_shape)
        saved = built  # the whole GAN: the TensorFlow side takes its generator after loading
    else:
        x, y = case.data()
        _check_shape(_numpy(built(x, training=False)), case.output_shape)
        own_loss = type(built).compute_loss is not keras.Model.compute_loss  # a VAE's ELBO
        if getattr(built, "loss", None) is None and not own_loss:  # a backbone (gpt): regress it on targets
            keras_models.compile_model(built, loss="mean_squared_error",
                                       family=keras_models.get_model_info(case.name).family)
        report["losses"] = _fit_one_epoch(built, (x, y), {"model": built.trainable_weights})
        model = saved = built
        inputs = x
        outputs = _numpy(model(inputs, training=False))
        _check_shape(outputs, case.output_shape)
    saved.save(out_dir / f"{case.name}.keras")
    arrays = {f"input_{i}": np.asarray(a) for i, a in enumerate(inputs if isinstance(inputs, list) else [inputs])}
    arrays.update({f"output_{i}": o for i, o in enumerate(outputs)})
    np.savez(out_dir / f"{case.name}.npz", **arrays)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", required=True, help="comma-separated registered model names")
    parser.add_argument("--out", required=True, help="folder for NAME.keras, NAME.npz and results.json")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [name for name in args.cases.split(",") if name]
    unknown = [name for name in names if name not in model_cases.CASES]
    if unknown:
        parser.error(f"no case for {unknown}; cases exist for {sorted(model_cases.CASES)}")
    results = {"backend": keras.backend.backend(), "cases": {}}
    for name in names:
        start = time.perf_counter()
        try:
            entry = {"status": "passed", **run_case(model_cases.CASES[name], out_dir)}
        except Exception as error:  # noqa: BLE001 - one failing model must not hide the others' results
            entry = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                     "traceback": traceback.format_exc()}
        entry["seconds"] = round(time.perf_counter() - start, 2)
        results["cases"][name] = entry
        print(f"{name}: {entry['status']} in {entry['seconds']} s", flush=True)
        # Replaced whole, never half-written: the checking process reads it while this one trains.
        (out_dir / "results.json.tmp").write_text(json.dumps(results, indent=1))
        (out_dir / "results.json.tmp").replace(out_dir / "results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
