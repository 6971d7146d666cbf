"""Train-step time of dcgan and wgan_gp with and without XLA, measured in one run.

    python benchmarks/gan_speed.py                       # 8x8 and 32x32 digits, batch 64
    python benchmarks/gan_speed.py --sizes 8 --repeats 5 --json out.json

Each configuration is built twice (jit_compile=True and False), warmed up with one epoch (tracing and
XLA compilation are excluded), then timed over `--epochs` epochs of `fit()`; the two are timed in
alternation `--repeats` times and the median step time is reported. wgan_gp's step holds five critic
updates, each with the gradient penalty's nested tape.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras_models  # noqa: E402
from keras_models.data import load_digits  # noqa: E402


def step_seconds(gan, images, batch_size, epochs):
    steps = epochs * int(np.ceil(len(images) / batch_size))
    start = time.perf_counter()
    gan.fit(images, epochs=epochs, batch_size=batch_size, verbose=0)
    return (time.perf_counter() - start) / steps


def measure(variant, size, batch_size=64, epochs=2, repeats=3):
    (images, _), _ = load_digits(size)
    images = images[: batch_size * 8]  # 8 steps per epoch
    models = {}
    for jit in (True, False):
        keras.utils.set_random_seed(0)
        models[jit] = keras_models.build(variant, image_shape=(size, size, 1), jit_compile=jit, seed=0)
        start = time.perf_counter()
        models[jit].fit(images[:batch_size], epochs=1, batch_size=batch_size, verbose=0)
        models[jit].warmup_seconds = time.perf_counter() - start
    times = {True: [], False: []}
    for _ in range(repeats):
        for jit in (True, False):
            times[jit].append(step_seconds(models[jit], images, batch_size, epochs))
    assert models[True].jit_compile is True and models[False].jit_compile is False
    xla, plain = float(np.median(times[True])), float(np.median(times[False]))
    return {
        "variant": variant,
        "image_size": size,
        "batch_size": batch_size,
        "parameters": int(models[True].generator.count_params() + models[True].discriminator.count_params()),
        "xla_ms_per_step": 1000 * xla,
        "no_xla_ms_per_step": 1000 * plain,
        "xla_speedup": plain / xla,
        "xla_first_epoch_seconds": models[True].warmup_seconds,
        "no_xla_first_epoch_seconds": models[False].warmup_seconds,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["dcgan", "wgan_gp"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        for variant in args.variants:
            row = measure(variant, size, repeats=args.repeats)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": "2 CPU cores, no GPU", "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
