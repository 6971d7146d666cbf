"""A 100-tree, depth-10 random forest at batch 1 and batch 10,000, one thread per runtime, side by side
with the deployment peer: scikit-learn converted by skl2onnx to ONNX-ML's `TreeEnsemble` in onnxruntime.

    python benchmarks/forest_latency.py [--rounds 7] [--output benchmarks/sections/classical.md]

Engines, every one limited to one thread: scikit-learn `predict_proba` (`n_jobs=1`); skl2onnx's
`TreeEnsembleClassifier` in onnxruntime; and the model `compile_sklearn` makes, in each tree form, as
a TFLite file in the LiteRT interpreter, as an ONNX file in onnxruntime, under TensorFlow's XLA
(a jit-compiled `tf.function`) and under JAX's XLA (Keras' JAX backend, `predict_on_batch`, in a
worker process).

Batch 1 is timed two ways, every engine in turn in both. Warm: short blocks (one untimed call, then
calls for 5 ms), many times over, the median of every timed call. Cold: one call per engine per turn,
so each call finds the caches holding the other engines' tables. Blocks this short matter on a shared
machine whose speed flips between two states (measured here: the same TFLite file at 22 µs or 42 µs
for seconds at a time): every engine passes through both states in the same proportion. Batch 10,000
is timed in rounds that alternate the engines (each round runs every engine once, in a rotated order),
the median over rounds of each round's median call. The load average before, during and after is
reported. Every engine's output is checked against `predict_proba` on the 10,000 rows
in the same run. The matmul form is measured at batch 1 and batch 100 only (its work grows with
splits x leaves: about 160 MFLOP per row here).

Prints a Markdown section; with --output it also writes it there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
os.environ.update(ONE_THREAD)

import numpy as np  # noqa: E402

ROOT = str(Path(__file__).resolve().parents[1])
FORMS = ("perfect", "gather")
BIG = 10_000
BLOCK_SECONDS = 0.005  # a warm block at batch 1


def make_forest(depth=10):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=30000, n_features=20, n_informative=12, n_classes=3, random_state=0)
    x = x.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=100, max_depth=depth, random_state=0, n_jobs=1)
    return forest.fit(x[:20000], y[:20000]), x[20000:]


def depth_sweep(depths, rounds, turns, calls_big):
    """TFLite files of the matmul and perfect forms for 100 trees of each depth, alternating (warm
    blocks at batch 1, rounds at batch 10,000): {(depth, form, batch): median seconds}, and the form
    `auto` picks per depth."""
    import export
    from keras_models.classical import compile_sklearn, tree_strategy

    directory = Path(tempfile.mkdtemp(prefix="forest_depths_"))
    runs, auto = {}, {}
    for depth in depths:
        forest, x_test = make_forest(depth)
        auto[depth] = tree_strategy(compile_sklearn(forest, strategy="auto"))
        expected = forest.predict_proba(x_test[:BIG])
        for form in ("matmul", "perfect"):
            path = export.to_tflite(compile_sklearn(forest, strategy=form), directory / f"{form}{depth}.tflite").path
            for size in (1, BIG):
                run = _tflite_runner(path, x_test[:size])
                np.testing.assert_allclose(run(), expected[:size], rtol=1e-6, atol=1e-6)
                runs[(depth, form, size)] = run
    times = in_turns({key: run for key, run in runs.items() if key[2] == 1}, turns, BLOCK_SECONDS)
    big = [key for key in runs if key[2] == BIG]
    for round_index in range(rounds):
        shift = round_index % len(big)
        for key in big[shift:] + big[:shift]:
            times.setdefault(key, []).append(_median_call(runs[key], calls_big))
    return {key: statistics.median(values) for key, values in times.items()}, auto


def _median_call(fn, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _block(fn, seconds):
    """Seconds of each call of `fn` in one block: an untimed call, then timed calls until `seconds`
    have passed (at least one). `seconds=0`: one timed call and nothing before it (a cold call)."""
    if seconds:
        fn()
    times, start = [], time.perf_counter()
    while True:
        begin = time.perf_counter()
        fn()
        end = time.perf_counter()
        times.append(end - begin)
        if end - start >= seconds:
            return times


def in_turns(runs, turns, seconds):
    """{key: [seconds of every timed call]}: `turns` turns, each running every engine's block in a
    rotated order. A run is a callable, or an object with `.block(seconds)` that times itself."""
    times = {key: [] for key in runs}
    keys = list(runs)
    for turn in range(turns):
        shift = turn % len(keys)
        for key in keys[shift:] + keys[:shift]:
            run = runs[key]
            times[key] += run.block(seconds) if hasattr(run, "block") else _block(run, seconds)
    return times


# ------------------------------------------------------------------------------------------------
# The JAX worker: loads the saved models under Keras' JAX backend and times them on request.


def jax_worker(directory):
    import keras

    import keras_models.classical  # noqa: F401  (registers TreeEnsemble for loading)

    directory = Path(directory)
    x_test = np.load(directory / "x_test.npy")
    expected = np.load(directory / "expected.npy")
    models, facts = {}, {}
    for form in FORMS + ("matmul",):
        path = directory / f"{form}.keras"
        if not path.exists():
            continue
        model = keras.saving.load_model(path)
        models[form] = model
        sizes = (1, 100) if form == "matmul" else (1, BIG)
        for size in sizes:
            model.predict_on_batch(x_test[:size])  # compile
        rows = 100 if form == "matmul" else BIG
        facts[form] = float(np.abs(model.predict_on_batch(x_test[:rows]) - expected[:rows]).max())
    print(json.dumps({"ready": facts, "backend": keras.backend.backend()}), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] != "run":
            break
        form, size = parts[1], int(parts[2])
        batch, model = x_test[:size], models[form]
        if parts[3] == "block":
            times = _block(lambda: model.predict_on_batch(batch), float(parts[4]))
            print(json.dumps({"times": times}), flush=True)
        else:
            seconds = _median_call(lambda: model.predict_on_batch(batch), int(parts[3]))
            print(json.dumps({"seconds": seconds}), flush=True)


class JaxEngine:
    def __init__(self, directory):
        env = {**os.environ, "KERAS_BACKEND": "jax",
               "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen([sys.executable, __file__, "--jax-worker", str(directory)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self.ready = self._read()["ready"]

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            error = self.process.stderr.read().strip().splitlines()
            raise RuntimeError(f"the JAX worker stopped: {error[-1] if error else self.process.wait()}")
        return json.loads(line)

    def _ask(self, request):
        self.process.stdin.write(f"run {request}\n")
        self.process.stdin.flush()
        return self._read()

    def median_call(self, form, size, calls):
        return self._ask(f"{form} {size} {calls}")["seconds"]

    def runner(self, form, size):
        """A run for `in_turns`: the worker times its own blocks."""
        engine = self

        class Remote:
            def block(self, seconds):
                return engine._ask(f"{form} {size} block {seconds}")["times"]

        return Remote()

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


# ------------------------------------------------------------------------------------------------
# In-process engines. Each maker returns `run(batch)` after checking the output on the big batch.


def _tflite_runner(path, rows):
    from export_latency import litert_runner  # the benchmarks' one LiteRT runner

    return litert_runner(path, rows, threads=1)


def _onnx_runner(model, rows, output=0):
    from export_latency import onnx_runner

    run = onnx_runner(model, rows, threads=1)
    return lambda: run()[output]


def build_engines(forest, x_test, directory, with_matmul):
    """[(engine, form, {batch: run})], and the largest difference from `predict_proba` of each."""
    import tensorflow as tf
    from skl2onnx import to_onnx

    import export
    from keras_models.classical import compile_sklearn, tree_strategy

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    one, big = x_test[:1], x_test[:BIG]
    expected = forest.predict_proba(big)
    np.save(directory / "x_test.npy", big)
    np.save(directory / "expected.npy", expected)
    engines, errors = [], {}

    def add(engine, form, runs):
        out = np.asarray(runs[max(runs)]())
        rows = len(out)
        errors[(engine, form)] = float(np.abs(out - expected[:rows]).max())
        engines.append((engine, form, runs))

    add("scikit-learn predict_proba", "-",
        {1: lambda: forest.predict_proba(one), BIG: lambda: forest.predict_proba(big)})
    peer = to_onnx(forest, one, options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    peer = peer.SerializeToString()
    add("skl2onnx TreeEnsemble, onnxruntime", "-", {1: _onnx_runner(peer, one, 1), BIG: _onnx_runner(peer, big, 1)})

    auto = tree_strategy(compile_sklearn(forest, strategy="auto"))
    for form in FORMS + (("matmul",) if with_matmul else ()):
        model = compile_sklearn(forest, strategy=form, name=f"forest_{form}")
        model.save(directory / f"{form}.keras")
        sizes = (1, 100) if form == "matmul" else (1, BIG)
        label = f"{form} (auto)" if form == auto else form
        tflite = export.to_tflite(model, directory / f"{form}.tflite").path
        runs = {size: _tflite_runner(tflite, x_test[:size]) for size in sizes}
        add("TFLite, LiteRT interpreter", label, runs)
        if form != "matmul":
            onnx = export.to_onnx(model, directory / f"{form}.onnx").path
            add("ONNX, onnxruntime", label, {size: _onnx_runner(onnx, x_test[:size]) for size in sizes})
            serve = tf.function(lambda inputs, m=model: m(inputs), jit_compile=True)
            inputs = {size: tf.constant(x_test[:size]) for size in sizes}
            add("Keras on TensorFlow, XLA (jit-compiled tf.function)", label,
                {size: (lambda s=size: serve(inputs[s]).numpy()) for size in sizes})
    return engines, errors, auto


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (at least 5 to publish)")
    parser.add_argument("--turns", type=int, default=300,
                        help="turns at batch 1: warm blocks per engine, and cold calls per engine")
    parser.add_argument("--calls-big", type=int, default=3, help="timed calls per round at batch 10,000")
    parser.add_argument("--no-matmul", action="store_true", help="leave out the matmul form")
    parser.add_argument("--depths", type=int, nargs="*", default=[3, 4, 5, 6, 8],
                        help="depths of the matmul-against-perfect sweep in TFLite (none: skip it)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--jax-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jax_worker:
        return jax_worker(args.jax_worker)

    import onnxruntime
    import sklearn
    import tensorflow as tf

    load_before = os.getloadavg()[0]
    forest, x_test = make_forest()
    directory = Path(tempfile.mkdtemp(prefix="forest_latency_"))
    engines, errors, auto = build_engines(forest, x_test, directory, not args.no_matmul)
    jax_engine = JaxEngine(directory)
    for form, error in jax_engine.ready.items():
        label = f"{form} (auto)" if form == auto else form
        sizes = (1, 100) if form == "matmul" else (1, BIG)
        errors[("Keras on JAX, XLA (predict_on_batch)", label)] = error
        engines.append(("Keras on JAX, XLA (predict_on_batch)", label,
                        {size: "jax" for size in sizes}))
    calls = {BIG: args.calls_big, 100: max(args.calls_big, 3)}

    def runner(form, run, size):
        return jax_engine.runner(form.split()[0], size) if run == "jax" else run

    # Warm every in-process engine twice.
    for _, _, runs in engines:
        for run in runs.values():
            if run != "jax":
                run()
                run()
    loads = [os.getloadavg()[0]]
    # Batch 1: warm blocks, then cold calls, every engine in turn.
    ones = {(engine, form, 1): runner(form, runs[1], 1) for engine, form, runs in engines}
    warm = in_turns(ones, args.turns, BLOCK_SECONDS)
    loads.append(os.getloadavg()[0])
    cold = in_turns(ones, args.turns, 0)
    loads.append(os.getloadavg()[0])
    # Larger batches: alternating rounds, the median call of each.
    timings = {(engine, form, size): [] for engine, form, runs in engines for size in runs if size != 1}
    for round_index in range(args.rounds):
        loads.append(os.getloadavg()[0])
        shift = round_index % len(engines)
        for engine, form, runs in engines[shift:] + engines[:shift]:
            for size, run in runs.items():
                if size == 1:
                    continue
                if run == "jax":
                    seconds = jax_engine.median_call(form.split()[0], size, calls[size])
                else:
                    seconds = _median_call(run, calls[size])
                timings[(engine, form, size)].append(seconds)
    loads.append(os.getloadavg()[0])
    jax_engine.close()
    sweep, sweep_auto = depth_sweep(args.depths, max(args.rounds // 2, 3), max(args.turns // 3, 1), args.calls_big)
    loads.append(os.getloadavg()[0])
    load_after = os.getloadavg()[0]
    timings.update(warm)
    cold = {key[:2]: statistics.median(values) for key, values in cold.items()}

    median = {key: statistics.median(values) for key, values in timings.items()}
    sk = {size: median[("scikit-learn predict_proba", "-", size)] for size in (1, BIG)}
    peer = {size: median[("skl2onnx TreeEnsemble, onnxruntime", "-", size)] for size in (1, BIG)}

    peer_cold = cold[("skl2onnx TreeEnsemble, onnxruntime", "-")]

    def cell(engine, form, size, unit):
        key = (engine, form, size)
        if key not in median:
            return "-", "-", "-"
        seconds = median[key]
        scale = 1e6 if unit == "µs" else 1e3
        return (f"{seconds * scale:,.{0 if unit == 'µs' else 1}f} {unit}", f"{sk[size] / seconds:.2f}x",
                f"{peer[size] / seconds:.2f}x")

    def cold_cell(engine, form):
        seconds = cold[(engine, form)]
        return f"{seconds * 1e6:,.0f} µs", f"{peer_cold / seconds:.2f}x"

    command = "python benchmarks/forest_latency.py"
    if args.rounds != 7:
        command += f" --rounds {args.rounds}"
    if args.turns != 300:
        command += f" --turns {args.turns}"
    if args.output:
        command += f" --output {args.output}"
    nodes = sum(e.tree_.node_count for e in forest.estimators_)
    lines = [
        "## Decision trees, random forests and SVMs: compiled forest latency against scikit-learn and skl2onnx",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU; every runtime "
        "limited to one thread. TensorFlow " + tf.__version__ + ", scikit-learn " + sklearn.__version__
        + ", onnxruntime " + onnxruntime.__version__ + f", skl2onnx {__import__('skl2onnx').__version__}.  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d, %H:%M} UTC. Load average (1 min): {load_before:.2f} before, "
        f"{min(loads):.2f}-{max(loads):.2f} during the rounds, {load_after:.2f} after.  ",
        f"Model: `RandomForestClassifier(n_estimators=100, max_depth=10)` on 20 features, 3 classes ({nodes:,} "
        f"nodes). `strategy=\"auto\"` picks `{auto}` for these trees.  ",
        f"Batch 1, warm: {args.turns} turns, each running every engine for one block (an untimed call, then "
        f"{BLOCK_SECONDS * 1e3:g} ms of calls); the median of every timed call. Batch 1, cold: {args.turns} turns of "
        "one call per engine, each call finding the caches full of the other engines' tables; the median call. "
        f"Batch 10,000: {args.rounds} alternating rounds, each the median of {args.calls_big} calls; the median over "
        "rounds.",
        "",
        "| engine | tree form | batch 1, warm | vs scikit-learn | vs TreeEnsemble | batch 1, cold | vs TreeEnsemble "
        "| batch 10,000 | vs scikit-learn | vs TreeEnsemble | max difference from predict_proba |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for engine, form, runs in engines:
        if 100 in runs:
            continue
        one = cell(engine, form, 1, "µs")
        big = cell(engine, form, BIG, "ms")
        lines.append(f"| {engine} | {form} | {' | '.join(one)} | {' | '.join(cold_cell(engine, form))} | "
                     f"{' | '.join(big)} | {errors[(engine, form)]:.1e} |")
    matmul = [(engine, form) for engine, form, runs in engines if 100 in runs]
    if matmul:
        lines += ["", "The matmul form (batch 1 warm and batch 100 only):", "",
                  "| engine | batch 1 | batch 100 | per row at batch 100 | max difference |", "|---|---:|---:|---:|---:|"]
        for engine, form in matmul:
            t1, t100 = median[(engine, form, 1)], median[(engine, form, 100)]
            lines.append(f"| {engine} | {t1 * 1e3:,.2f} ms | {t100 * 1e3:,.1f} ms | {t100 * 10:,.2f} ms | "
                         f"{errors[(engine, form)]:.1e} |")
    if args.depths:
        lines += ["", "Matmul against perfect by depth (100 trees, TFLite files in LiteRT, one thread; batch 1 warm "
                  f"over {max(args.turns // 3, 1)} turns, batch 10,000 the median over {max(args.rounds // 2, 3)} alternating "
                  "rounds):", "",
                  "| depth | batch 1: matmul | batch 1: perfect | batch 10,000: matmul | batch 10,000: perfect | auto |",
                  "|---:|---:|---:|---:|---:|---|"]
        for depth in args.depths:
            lines.append(f"| {depth} | {sweep[(depth, 'matmul', 1)] * 1e6:,.0f} µs | {sweep[(depth, 'perfect', 1)] * 1e6:,.0f} µs"
                         f" | {sweep[(depth, 'matmul', BIG)] * 1e3:,.1f} ms | {sweep[(depth, 'perfect', BIG)] * 1e3:,.1f} ms"
                         f" | {sweep_auto[depth]} |")
    compiled = [(engine, form) for engine, form, runs in engines if engine.startswith(("Keras", "TFLite", "ONNX"))
                and BIG in runs]
    best_big = min(compiled, key=lambda key: median[key + (BIG,)])
    tflite_one = min((key for key in compiled if key[0].startswith("TFLite")), key=lambda key: median[key + (1,)])
    ratio_big = sk[BIG] / median[best_big + (BIG,)]
    ratio_one = peer[1] / median[tflite_one + (1,)]
    ratio_cold = peer_cold / cold[tflite_one]
    lines += [
        "",
        f"Goal (issue 16), batch 10,000: the best compiled path at least 1.5x scikit-learn — "
        f"{'met' if ratio_big >= 1.5 else 'NOT met'}: {ratio_big:.2f}x ({best_big[0]}, {best_big[1]}).  ",
        f"Goal, batch 1: our TFLite file at least as fast as TreeEnsemble — warm "
        f"{'met' if ratio_one >= 1.0 else 'NOT met'}: {ratio_one:.2f}x ({tflite_one[1]}); cold "
        f"{'met' if ratio_cold >= 1.0 else 'NOT met'}: {ratio_cold:.2f}x.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    print(json.dumps({"rounds": {f"{e} | {f} | {s}": v for (e, f, s), v in timings.items() if s != 1},
                      "loads": loads}), file=sys.stderr)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
