"""Per-step latency of streaming recurrent models and of generation decode steps at batch 1, on CPU.

Streaming (`export.to_tflite(model, path, streaming=True)` and `to_onnx`): one LSTM or GRU layer over 16
features with a Dense(10) head, 64 and 256 units; the step file takes one step and the states and returns
the output and the new states, as a device calls it for every sample of a stream. Generation
(`generation=True`): the decode part of `rnn_language_model` (vocabulary 2,000, embedding 64, two LSTM
layers of 256), one generated token per call. Runtimes: LiteRT (float32 and dynamic-range int8) and
onnxruntime, each with the same thread count; every file is first checked against Keras. Runners are
timed in interleaved rounds (`export_latency.time_ms`), and the load average is printed before and
after: publish only a run on a quiet machine.

    python benchmarks/streaming_latency.py [--repeats 7] [--threads 1] [--date YYYY-MM-DD]
        [--output benchmarks/sections/streaming_latency.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import export  # noqa: E402
import keras_models  # noqa: E402
from export_latency import time_ms  # noqa: E402 - interleaved rounds, medians

COMMAND = "python benchmarks/streaming_latency.py"
FEATURES, CLASSES = 16, 10


def stream_model(cell, units):
    inputs = keras.Input((None, FEATURES), name="sequence")
    layer = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
    x = layer(units, return_sequences=True, name=f"{cell}{units}")(inputs)
    outputs = keras.layers.Dense(CLASSES, name="scores")(x)
    return keras.Model(inputs, outputs, name=f"stream_{cell}{units}")


def litert_step(path, feed, threads):
    """A callable running the file's `serving_default` (streaming) or `decode` signature once."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner("decode" if "decode" in signatures else "serving_default")
    return lambda: runner(**feed)


def onnx_step(path, feed, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feed)


def stream_feed(model):
    """Step inputs at batch 1: one step of features and zero states, named as the step files name them."""
    rng = np.random.default_rng(0)
    units = model.layers[1].units
    states = 2 if isinstance(model.layers[1], keras.layers.LSTM) else 1
    feed = {"sequence": rng.normal(size=(1, FEATURES)).astype(np.float32)}
    feed.update({f"state_{i}": np.zeros((1, units), np.float32) for i in range(states)})
    return feed


def check_stream(model, path, feed, runtime):
    """The step file's first output equals Keras on a one-step sequence (zero states) to 1e-4."""
    expected = model.predict(feed["sequence"][:, None], verbose=0)[:, 0]
    if runtime == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    else:
        from ai_edge_litert.interpreter import Interpreter

        got = Interpreter(model_path=str(path)).get_signature_runner("serving_default")(**feed)
    scores = next(value for name, value in got.items() if not name.startswith("state_"))
    error = float(np.abs(scores - expected).max())
    if error > (1e-2 if "int8" in str(path) else 1e-4):
        raise SystemExit(f"{path.name} differs from Keras by {error}")


def streaming_rows(folder, repeats, threads):
    rows = []
    for cell in ("lstm", "gru"):
        for units in (64, 256):
            keras.utils.set_random_seed(0)
            model = stream_model(cell, units)
            feed = stream_feed(model)
            paths = {
                "LiteRT float32": folder / f"{cell}{units}.tflite",
                "LiteRT int8 (dynamic)": folder / f"{cell}{units}.int8.tflite",
                "onnxruntime": folder / f"{cell}{units}.onnx",
            }
            export.to_tflite(model, paths["LiteRT float32"], streaming=True)
            export.to_tflite(model, paths["LiteRT int8 (dynamic)"], streaming=True, quantization="dynamic")
            export.to_onnx(model, paths["onnxruntime"], streaming=True)
            runners = {}
            for runtime, path in paths.items():
                check_stream(model, path, feed, "onnx" if runtime == "onnxruntime" else "litert")
                make = onnx_step if runtime == "onnxruntime" else litert_step
                runners[runtime] = make(path, feed, threads)
            times = time_ms(runners, repeats)
            rows.append((f"streaming {cell.upper()}({units})", times))
    return rows


def generation_rows(folder, repeats, threads):
    keras.utils.set_random_seed(0)
    model = keras_models.build("rnn_language_model", vocab_size=2000, embedding_dim=64, units=256, num_layers=2,
                               compile=False)
    prompts = np.array([[5, 17, 42]], np.int32)
    paths = {"LiteRT float32": folder / "lm.tflite", "LiteRT int8 (dynamic)": folder / "lm.int8.tflite",
             "onnxruntime": folder / "lm.onnx"}
    export.to_tflite(model, paths["LiteRT float32"], generation=True, max_length=32)
    export.to_tflite(model, paths["LiteRT int8 (dynamic)"], generation=True, max_length=32, quantization="dynamic")
    export.to_onnx(model, paths["onnxruntime"], generation=True, max_length=32)
    expected = model.generate(prompts, 32)
    for runtime in ("LiteRT float32", "onnxruntime"):
        got = export.generate(paths[runtime], prompts)
        if not np.array_equal(got, expected):
            raise SystemExit(f"{runtime} generation differs from Keras: {got} vs {expected}")
    feed = {"token_ids": np.array([7], np.int32)}
    feed.update({f"state_{i}": np.zeros((1, 256), np.float32) for i in range(4)})
    runners = {
        "LiteRT float32": litert_step(paths["LiteRT float32"], feed, threads),
        "LiteRT int8 (dynamic)": litert_step(paths["LiteRT int8 (dynamic)"], feed, threads),
        "onnxruntime": onnx_step(folder / "lm.decode.onnx", feed, threads),
    }
    return [("rnn_language_model decode (2 x LSTM 256, vocabulary 2,000)", time_ms(runners, repeats))]


def render(rows, repeats, threads, date, loads):
    runtimes = list(rows[0][1])
    lines = [
        "### Recurrent steps at batch 1: streaming and generation latency",
        "",
        f"Measured {date} on {platform.machine()} ({os.cpu_count()} cores), {threads} thread(s) per runtime, "
        f"median of {repeats} interleaved rounds; load average {loads[0]} before and {loads[1]} after.",
        "",
        f"    {COMMAND} --repeats {repeats} --threads {threads}",
        "",
        "| step model | " + " | ".join(f"{runtime} (ms)" for runtime in runtimes) + " |",
        "|---|" + "---:|" * len(runtimes),
    ]
    for name, times in rows:
        lines.append(f"| {name} | " + " | ".join(f"{times[runtime]:.3f}" for runtime in runtimes) + " |")
    return "\n".join(lines) + "\n"


def run(description, measure, render, argv=None):
    """The command line both latency scripts share: `--repeats`, `--threads`, `--date`, `--output`;
    `measure(folder, repeats, threads)` in a temporary folder with the load average read before and
    after, `render(rows, repeats, threads, date, loads)` printed and written to `--output`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    before = tuple(round(v, 2) for v in os.getloadavg())
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(Path(folder), args.repeats, args.threads)
    after = tuple(round(v, 2) for v in os.getloadavg())
    text = render(rows, args.repeats, args.threads, args.date, (before, after))
    print(text)
    if args.output:
        args.output.write_text(text)


def main(argv=None):
    def measure(folder, repeats, threads):
        return streaming_rows(folder, repeats, threads) + generation_rows(folder, repeats, threads)

    run(__doc__.splitlines()[0], measure, render, argv)


if __name__ == "__main__":
    main()
