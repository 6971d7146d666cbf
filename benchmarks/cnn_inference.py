"""Batch-1 inference latency of convolutional networks: Keras (eager call, compiled function, XLA)
against LiteRT (float32 and int8 files) and onnxruntime, on the same inputs.

    python benchmarks/cnn_inference.py [--runs 200] [--output results.json]

Models: LeNet-5 on 32x32x1 digits and ResNet-18 on 32x32x3 (10 classes). The int8 file is calibrated
on 200 digits (LeNet-5) or 200 random images (ResNet-18); int8 accuracy is tested in tests/cnn.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, runs):
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def measure(model, sample, calibration, runs, folder):
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    import export

    x = sample[None].astype("float32")
    results = {}
    results["keras_eager_call"] = _median_ms(lambda: model(x, training=False), runs)
    graph = tf.function(lambda t: model(t, training=False), jit_compile=False)
    results["keras_tf_function"] = _median_ms(lambda: graph(x).numpy(), runs)
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
    results["keras_xla_function"] = _median_ms(lambda: xla(x).numpy(), runs)

    for label, options in [("tflite_float32", {}),
                           ("tflite_int8", {"quantization": "int8", "representative_data": calibration})]:
        report = export.to_tflite(model, folder / f"{model.name}_{label}.tflite", batch_size=1, **options)
        interpreter = Interpreter(model_path=str(report.path), num_threads=os.cpu_count())
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]
        output = interpreter.get_output_details()[0]["index"]

        def invoke():
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return interpreter.get_tensor(output)

        results[label] = _median_ms(invoke, runs)
        results[label + "_bytes"] = report.size_bytes

    report = export.to_onnx(model, folder / f"{model.name}.onnx", batch_size=1)
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    results["onnxruntime"] = _median_ms(lambda: session.run(None, feed), runs)
    results["onnx_bytes"] = report.size_bytes
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args()

    import keras_models
    from keras_models.data import load_digits

    (x_train, _), (x_test, _) = load_digits(32)
    rng = np.random.default_rng(0)
    cases = {
        "lenet5": (keras_models.build("lenet5", compile=False), x_test[0], x_train[:200]),
        "resnet18": (keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=10, compile=False),
                     rng.uniform(size=(32, 32, 3)).astype("float32"),
                     rng.uniform(size=(200, 32, 32, 3)).astype("float32")),
    }
    results = {"load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, sample, calibration) in cases.items():
            results[name] = measure(model, sample, calibration, args.runs, Path(folder))
            print(name, json.dumps(results[name]), flush=True)
    results["load_average_end"] = os.getloadavg()[0]
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
