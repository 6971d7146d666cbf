"""Latency per generated token at batch 1 for GPT on the device runtimes, with and without the KV cache.

With the cache: the `decode` part written by `export.to_tflite(model, path, generation=True,
max_length=N)` (and `to_onnx`), one token and the cache in, the logits and the cache out. Without it:
the whole model exported for a fixed length N (`input_signature=[((1, N), "int32")]`) and run on the
sequence so far for every new token (causal attention makes the positions after it irrelevant), which
is what a device without a cache must do. Two sizes of `gpt_causal_lm`; LiteRT (float32) and
onnxruntime with the same thread count; runners timed in interleaved rounds (`export_latency.time_ms`);
the load average is printed before and after: publish only a run on a quiet machine.

    python benchmarks/gpt_latency.py [--repeats 7] [--threads 1] [--date YYYY-MM-DD]
        [--output benchmarks/sections/gpt_latency.md] [--keep DIR] [--against DIR]

A change to the decode graph is measured against the code before it in one interleaved run: export
with the old code and keep its decode files (`--keep old`, run from a worktree of the old commit),
then run the new code with `--against old`, which times those files beside its own (the same seeded
weights: each kept file must generate what this run's model generates).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import export  # noqa: E402
import keras_models  # noqa: E402
from export_latency import time_ms  # noqa: E402 - interleaved rounds, medians
from streaming_latency import litert_step, onnx_step, run  # noqa: E402 - step runners, the command line

COMMAND = "python benchmarks/gpt_latency.py"
SIZES = {
    "2 layers x 128, 4 heads, context 128": dict(num_layers=2, hidden_dim=128, num_heads=4, intermediate_dim=512,
                                                 max_sequence_length=128),
    "4 layers x 256, 8 heads, context 256": dict(num_layers=4, hidden_dim=256, num_heads=8, intermediate_dim=1024,
                                                 max_sequence_length=256),
}
VOCABULARY = 2000


def _full_runner(kind, path, tokens, threads):
    if kind == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: tokens}
        return lambda: session.run(None, feed)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]

    def run():
        interpreter.set_tensor(index, tokens)
        interpreter.invoke()

    return run


def measure(folder, repeats, threads, keep=None, against=None):
    rows = []
    for label, config in SIZES.items():
        keras.utils.set_random_seed(0)
        model = keras_models.build("gpt_causal_lm", vocabulary_size=VOCABULARY, compile=False, **config)
        length = config["max_sequence_length"]
        prompts = np.array([[3, 14, 15, 92]], np.int32)
        expected = model.generate(prompts, 16)
        runners = {}
        for kind in ("tflite", "onnx"):
            cached = folder / f"{length}.cached.{kind}"
            full = folder / f"{length}.full.{kind}"
            exporter = export.to_tflite if kind == "tflite" else export.to_onnx
            report = exporter(model, cached, generation=True, max_length=length)
            exporter(model, full, input_signature=[((1, length), "int32")])
            if not np.array_equal(export.generate(cached, prompts, max_length=16), expected):
                raise SystemExit(f"{cached.name} does not generate what Keras generates")
            feed = {"token_ids": np.array([7], np.int32)}
            for tensor in report.inputs:
                if tensor.name.startswith("state_"):
                    shape = [1 if d in (None, -1) else d for d in tensor.shape]
                    feed[tensor.name] = np.zeros(shape, np.dtype(tensor.dtype))
            runtime = "LiteRT" if kind == "tflite" else "onnxruntime"
            step_path = cached if kind == "tflite" else cached.with_name(f"{cached.stem}.decode.onnx")
            make = litert_step if kind == "tflite" else onnx_step
            runners[f"{runtime}, cache"] = make(step_path, feed, threads)
            if keep:
                keep.mkdir(parents=True, exist_ok=True)
                for written in folder.glob(f"{cached.stem}*.{kind}"):
                    shutil.copy(written, keep / written.name)
            if against:
                if not np.array_equal(export.generate(against / cached.name, prompts, max_length=16), expected):
                    raise SystemExit(f"{against / cached.name} does not generate what this run's model generates")
                runners[f"{runtime}, cache, {against.name}"] = make(against / step_path.name, feed, threads)
            tokens = np.random.default_rng(1).integers(0, VOCABULARY, (1, length)).astype(np.int32)
            runners[f"{runtime}, no cache"] = _full_runner(kind, full, tokens, threads)
        rows.append((label, model.count_params(), time_ms(runners, repeats)))
    return rows


def render(rows, repeats, threads, date, loads):
    keys = list(rows[0][2])
    lines = [
        "### GPT: latency per generated token at batch 1, with and without the KV cache",
        "",
        f"Measured {date} on {platform.machine()} ({os.cpu_count()} cores), {threads} thread(s) per runtime, "
        f"median of {repeats} interleaved rounds; load average {loads[0]} before and {loads[1]} after. "
        "Without the cache, every token runs the whole model over the full context (the cost a device "
        "pays with no cache); with it, one decode step over a cache of the full context.",
        "",
        f"    {COMMAND} --repeats {repeats} --threads {threads}",
        "",
        "| model | parameters | " + " | ".join(f"{key} (ms)" for key in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for label, parameters, times in rows:
        lines.append(f"| {label} | {parameters:,} | " + " | ".join(f"{times[key]:.3f}" for key in keys) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--keep", type=Path, help="copy the decode files this run exports into this folder")
    parser.add_argument("--against", type=Path, help="also time the decode files kept in this folder")
    own, rest = parser.parse_known_args(argv)

    def measure_with_options(folder, repeats, threads):
        return measure(folder, repeats, threads, keep=own.keep, against=own.against)

    run(__doc__.splitlines()[0], measure_with_options, render, rest)


if __name__ == "__main__":
    main()
