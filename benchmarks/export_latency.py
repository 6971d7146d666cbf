"""Inference latency: Keras `predict` vs a direct model call vs TFLite (LiteRT) vs onnxruntime.

Three small models stand for the families that ship to edge devices: a CNN on 32x32 RGB images, an
LSTM over 32 steps and one transformer encoder block over 32 tokens. Each is exported with
`export.to_tflite` (float32 and int8) and `export.to_onnx`, and every runtime is timed on the same
inputs at batch 1 and batch 64 in one run, interleaved, so the ratios share the machine's state.
The digits CNN of the quantization test is also trained and exported float32 and int8 to report the
issue's accuracy and size numbers.

    python benchmarks/export_latency.py [--repeats 7] [--date YYYY-MM-DD] [--output benchmarks/sections/export.md]

Prints a Markdown section and writes it to `--output`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import export  # noqa: E402
import keras_models  # noqa: E402
from keras_models.data import load_digits  # noqa: E402

COMMAND = "python benchmarks/export_latency.py"


# --------------------------------------------------------------------------------------------------
# Models


def cnn(name="bench_cnn"):
    inputs = keras.Input((32, 32, 3), name="image")
    x = inputs
    for index, filters in enumerate((16, 32, 64)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv{index + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{index + 1}")(x)  # halves height and width
    x = keras.layers.GlobalAveragePooling2D(name=name + "_gap")(x)  # (batch, 64)
    outputs = keras.layers.Dense(10, activation="softmax", name=name + "_predictions")(x)
    return keras.Model(inputs, outputs, name=name), (32, 32, 3)


def lstm(name="bench_lstm"):
    inputs = keras.Input((32, 16), name="sequence")
    x = keras.layers.LSTM(64, name=name + "_lstm")(inputs)  # (batch, 64)
    outputs = keras.layers.Dense(10, activation="softmax", name=name + "_predictions")(x)
    return keras.Model(inputs, outputs, name=name), (32, 16)


def transformer_block(name="bench_transformer", width=64, heads=4):
    inputs = keras.Input((32, width), name="tokens")
    attention = keras.layers.MultiHeadAttention(heads, width // heads, name=name + "_attention")(inputs, inputs)
    x = keras.layers.LayerNormalization(name=name + "_norm1")(inputs + attention)
    hidden = keras.layers.Dense(2 * width, activation="gelu", name=name + "_ffn1")(x)
    x = keras.layers.LayerNormalization(name=name + "_norm2")(x + keras.layers.Dense(width, name=name + "_ffn2")(hidden))
    x = keras.layers.GlobalAveragePooling1D(name=name + "_pool")(x)  # (batch, width)
    outputs = keras.layers.Dense(10, activation="softmax", name=name + "_predictions")(x)
    return keras.Model(inputs, outputs, name=name), (32, width)


MODELS = {"CNN 32x32x3": cnn, "LSTM(64), 32 steps": lstm, "Transformer block, 32x64": transformer_block}


# --------------------------------------------------------------------------------------------------
# Runners: each returns a zero-argument callable that runs one batch


def litert_runner(path, x, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    output = interpreter.get_output_details()[0]["index"]

    def run():
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return run


def onnx_runner(model, x, threads):
    """`run()` -> the session's outputs; `model` is a path or the serialized model."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    model = model if isinstance(model, bytes) else str(model)
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


def time_ms(runners: dict, repeats, min_seconds=0.2):
    """Median (ms per call) of every runner, timed in interleaved rounds of at least `min_seconds` each.

    Interleaving puts every runtime through the same moments of a shared machine's load.
    """
    for run in runners.values():
        run()
        run()  # warm-up: tracing, allocation, caches
    rounds = {key: [] for key in runners}
    for _ in range(repeats):
        for key, run in runners.items():
            calls, start = 0, time.perf_counter()
            while True:
                run()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            rounds[key].append(1000.0 * elapsed / calls)
    return {key: statistics.median(values) for key, values in rounds.items()}


def latency_rows(folder: Path, repeats: int, threads: int):
    rows = []
    rng = np.random.default_rng(0)
    for label, factory in MODELS.items():
        keras.utils.set_random_seed(0)
        model, shape = factory()
        calibration = rng.normal(size=(128, *shape)).astype("float32")
        float_path = export.to_tflite(model, folder / f"{model.name}.tflite").path
        int8_path = export.to_tflite(
            model, folder / f"{model.name}_int8.tflite", quantization="int8", representative_data=calibration
        ).path
        onnx_path = export.to_onnx(model, folder / f"{model.name}.onnx").path
        for batch in (1, 64):
            x = rng.normal(size=(batch, *shape)).astype("float32")
            direct = keras.ops.convert_to_numpy(model(x, training=False))
            runners = {
                "predict": lambda: model.predict(x, batch_size=batch, verbose=0),
                "call": lambda: model(x, training=False),
                "tflite": litert_runner(float_path, x, threads),
                "tflite_int8": litert_runner(int8_path, x, threads),
                "onnx": onnx_runner(onnx_path, x, threads),
            }
            # The float artifacts must compute what Keras computes, or their timings mean nothing.
            for key in ("tflite", "onnx"):
                out = runners[key]()
                out = out[0] if isinstance(out, list) else out
                difference = float(np.abs(np.asarray(out) - direct).max())
                if difference > 1e-5:
                    raise RuntimeError(f"{label}: {key} differs from Keras by {difference}")
            times = time_ms(runners, repeats)
            rows.append((label, batch, times))
            print(f"  {label:28s} batch {batch:3d}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in times.items()),
                  file=sys.stderr)
    return rows


def quantization_numbers(folder: Path):
    """The issue's number: digits CNN, float32 vs int8 TFLite, both run in LiteRT on the test split."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "export_layer"))
    from test_quantization import _digits_cnn  # the same model the test asserts on

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits()
    model = _digits_cnn()
    keras_models.compile_model(model, loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
    model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    reports = {
        "float32": export.to_tflite(model, folder / "digits.tflite"),
        "dynamic": export.to_tflite(model, folder / "digits_dynamic.tflite", quantization="dynamic"),
        "float16": export.to_tflite(model, folder / "digits_float16.tflite", quantization="float16"),
        "int8": export.to_tflite(model, folder / "digits_int8.tflite", quantization="int8",
                                 representative_data=x_train[:300]),
        "int8, int8 I/O": export.to_tflite(model, folder / "digits_int8_io.tflite", quantization="int8",
                                           representative_data=x_train[:300], int8_io=True),
    }
    results = {}
    for name, report in reports.items():
        (probabilities,) = export.run_artifact(report.path, x_test)
        results[name] = (float(np.mean(np.argmax(probabilities, -1) == y_test)), report.size_bytes)
    return results, len(x_test)


# --------------------------------------------------------------------------------------------------
# Report


def render(rows, quantization, test_count, repeats, threads, date, load):
    lines = [
        "## Export: inference latency and quantization",
        "",
        f"Command: `{COMMAND} --repeats {repeats} --date {date}`. Machine: 2 CPU cores, no GPU. "
        f"Date: {date}. Load average at start and end of the run: {load[0]:.1f} and {load[1]:.1f}.",
        f"TensorFlow {__import__('tensorflow').__version__}, Keras {keras.__version__}, "
        f"onnxruntime {__import__('onnxruntime').__version__}; LiteRT and onnxruntime run with "
        f"{threads} threads. Each number is the median over {repeats} rounds of the mean time of one "
        "call, all runtimes timed in interleaved rounds of the same run on the same inputs; the float "
        "files were first checked to agree with Keras to 1e-5. int8 files take float input and output "
        "(quantize and dequantize inside), calibrated on 128 random inputs.",
        "",
        "Milliseconds per batch (lower is better); `x` columns are the speed-up over a direct "
        "`model(x)` call.",
        "",
        "| model | batch | Keras `predict` | `model(x)` | TFLite float32 | TFLite int8 | onnxruntime "
        "| TFLite x | int8 x | ONNX x | int8 vs float TFLite |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, batch, t in rows:
        lines.append(
            f"| {label} | {batch} | {t['predict']:.3f} | {t['call']:.3f} | {t['tflite']:.3f} | "
            f"{t['tflite_int8']:.3f} | {t['onnx']:.3f} | {t['call'] / t['tflite']:.1f} | "
            f"{t['call'] / t['tflite_int8']:.1f} | {t['call'] / t['onnx']:.1f} | "
            f"{t['tflite'] / t['tflite_int8']:.2f} |"
        )
    float_accuracy, float_size = quantization["float32"]
    lines += [
        "",
        f"Quantization of the digits CNN (`tests/export_layer/test_quantization.py`: 8 epochs on "
        f"scikit-learn digits, {test_count} held-out images, every file run in LiteRT). The issue asks "
        "int8 to keep accuracy within 1 point of float32 at no more than 30% of its size.",
        "",
        "| TFLite file | test accuracy | vs float32 (points) | bytes | share of float32 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (accuracy, size) in quantization.items():
        lines.append(
            f"| {name} | {100 * accuracy:.2f}% | {100 * (accuracy - float_accuracy):+.2f} | {size:,} | "
            f"{100 * size / float_size:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).parent / "sections" / "export.md"))
    parser.add_argument("--date", default=datetime.date.today().isoformat(),
                        help="the date written in the section (the day of the measurement)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        start_load = os.getloadavg()[0]
        rows = latency_rows(folder, args.repeats, args.threads)
        quantization, test_count = quantization_numbers(folder)
    section = render(rows, quantization, test_count, args.repeats, args.threads, args.date, (start_load, os.getloadavg()[0]))
    print(section)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(section)
        print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
