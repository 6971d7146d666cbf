"""Whole-sequence ONNX export of a recurrent model: ONNX's own LSTM operator vs the unrolled graph.

One model, an LSTM(64) over 16 features and a softmax Dense(10) (the LSTM of export_latency.py), is
exported at 32, 128 and 512 steps with `export.to_onnx(..., recurrent="native")` (one `LSTM` node, any
length) and `recurrent="unrolled"` (tf2onnx over the loop unrolled for that length). For each length it
measures file size, conversion time, onnxruntime session creation and latency at batch 1 and 32. The
two forms alternate everywhere: conversions native, unrolled, native, ... and latency in interleaved
rounds on the same inputs, so both share the machine's state. Both files are first checked against
Keras. The load average is printed before and after: publish only a run on a quiet machine.

    python benchmarks/recurrent_export.py [--steps 32 128 512] [--repeats 5] [--conversions 1]
        [--date YYYY-MM-DD] [--output benchmarks/sections/recurrent_export.md]

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
from export_latency import onnx_runner, time_ms  # noqa: E402 - the same runner and interleaved timing

COMMAND = "python benchmarks/recurrent_export.py"
FORMS = ("native", "unrolled")
FEATURES, UNITS, CLASSES = 16, 64, 10
BATCHES = (1, 32)


def lstm(steps, name="bench_lstm"):
    inputs = keras.Input((steps, FEATURES), name="sequence")
    x = keras.layers.LSTM(UNITS, name=name + "_lstm")(inputs)  # (batch, 64)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name=name + "_predictions")(x)
    return keras.Model(inputs, outputs, name=f"{name}_{steps}")


def load_average():
    return tuple(round(value, 2) for value in os.getloadavg())


def convert(model, folder, conversions):
    """Exports `model` in both forms, alternating, `conversions` times each (native at least 3 times: it
    takes well under a second); returns {form: (report, median seconds)}."""
    seconds = {form: [] for form in FORMS}
    reports = {}
    for round_index in range(max(conversions, 3)):
        forms = FORMS if round_index % 2 == 0 else tuple(reversed(FORMS))
        for form in forms if round_index < conversions else ("native",):
            start = time.perf_counter()
            reports[form] = export.to_onnx(model, folder / f"{model.name}_{form}.onnx", recurrent=form)
            seconds[form].append(time.perf_counter() - start)
    return {form: (reports[form], statistics.median(seconds[form])) for form in FORMS}


def warm_up(folder, threads):
    """One export of each form and a session of each on a 4-step model: imports and first-call costs of
    TensorFlow, tf2onnx, onnx and onnxruntime stay out of the timings."""
    model = lstm(4, name="warm_up")
    for form in FORMS:
        session_ms(export.to_onnx(model, folder / f"warm_up_{form}.onnx", recurrent=form).path, threads, repeats=1)


def session_ms(path, threads, repeats=3):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def measure(steps_list, repeats, conversions, threads, folder):
    rows = []
    weights = None
    warm_up(folder, threads)
    for steps in steps_list:
        keras.utils.set_random_seed(0)
        model = lstm(steps)
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)  # one set of weights for every length
        print(f"[{steps} steps] converting (load {load_average()})", file=sys.stderr)
        converted = convert(model, folder, conversions)
        reports = {form: converted[form][0] for form in FORMS}
        row = {"steps": steps, "load": load_average()}
        for form in FORMS:
            report, seconds = converted[form]
            row[form] = {"bytes": report.size_bytes, "convert_s": seconds, "ops": sum(report.operators.values()),
                         "session_ms": session_ms(report.path, threads)}
        assert "LSTM" in reports["native"].operators and "LSTM" not in reports["unrolled"].operators
        rng = np.random.default_rng(steps)
        for batch in BATCHES:
            x = rng.normal(size=(batch, steps, FEATURES)).astype("float32")
            for form in FORMS:  # the timings mean nothing unless both files compute what Keras computes
                difference = export.verify(model, reports[form].path, x).max_abs
                if difference > 1e-5:
                    raise RuntimeError(f"{steps} steps, {form}: differs from Keras by {difference}")
            runners = {form: onnx_runner(reports[form].path, x, threads) for form in FORMS}
            for form, ms in time_ms(runners, repeats).items():
                row[form][f"batch{batch}_ms"] = ms
        print(f"[{steps} steps] {row}", file=sys.stderr)
        rows.append(row)
    return rows


def render(rows, repeats, conversions, threads, date, loads, steps_list):
    versions = (f"TensorFlow {__import__('tensorflow').__version__}, Keras {keras.__version__}, tf2onnx "
                f"{__import__('tf2onnx').__version__}, onnxruntime {__import__('onnxruntime').__version__}")
    lines = [
        "## Export: recurrent layers as ONNX operators vs unrolled",
        "",
        f"Command: `{COMMAND} --steps {' '.join(map(str, steps_list))} --repeats {repeats} --conversions "
        f"{conversions} --date {date}`. Machine: 2 CPU cores, no GPU. Date: {date}. Load average (1, 5, 15 min) "
        f"at start {loads[0]} and end {loads[1]}. {versions}; onnxruntime runs with {threads} threads.",
        f"Model: LSTM({UNITS}) over {FEATURES} features, softmax Dense({CLASSES}), many-to-one. `native` is "
        "`export.to_onnx(model, path, recurrent=\"native\")`: one ONNX `LSTM` node with a dynamic time axis, "
        "so one file serves every length (it is converted again at each length only to time it). `unrolled` "
        "is `recurrent=\"unrolled\"`: the Keras loop unrolled for that length and converted by tf2onnx. "
        f"Conversion (after one warm-up export of each form): median of {conversions} alternating "
        f"conversion(s) for unrolled, of at least 3 for native. Latency: median over {repeats} "
        "interleaved rounds of the mean time of one `session.run`, on the same inputs, both files checked "
        "against Keras to 1e-5 first.",
        "",
        "| steps | form | file bytes | ONNX nodes | conversion s | session load ms | batch 1 ms | batch 32 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for form in FORMS:
            r = row[form]
            lines.append(
                f"| {row['steps']} | {form} | {r['bytes']:,} | {r['ops']} | {r['convert_s']:.3f} | "
                f"{r['session_ms']:.1f} | {r['batch1_ms']:.3f} | {r['batch32_ms']:.3f} |"
            )
    lines += ["", "Unrolled over native (higher means native is better):", "",
              "| steps | file size | conversion time | session load | batch 1 latency | batch 32 latency |",
              "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        n, u = row["native"], row["unrolled"]
        lines.append(
            f"| {row['steps']} | {u['bytes'] / n['bytes']:.1f}x | {u['convert_s'] / n['convert_s']:.1f}x | "
            f"{u['session_ms'] / n['session_ms']:.1f}x | {u['batch1_ms'] / n['batch1_ms']:.2f}x | "
            f"{u['batch32_ms'] / n['batch32_ms']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--conversions", type=int, default=1, help="alternating conversions per form and length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).parent / "sections" / "recurrent_export.md"))
    parser.add_argument("--date", default=datetime.date.today().isoformat(),
                        help="the date written in the section (the day of the measurement)")
    args = parser.parse_args(argv)
    start_load = load_average()
    print(f"load average before: {start_load}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(args.steps, args.repeats, args.conversions, args.threads, Path(folder))
    end_load = load_average()
    print(f"load average after: {end_load}", file=sys.stderr)
    section = render(rows, args.repeats, args.conversions, args.threads, args.date, (start_load, end_load), args.steps)
    print(section)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(section)
        print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
