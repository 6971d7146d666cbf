"""`keras-models tour`: train one small model per family, export it, run the files, print a table.

Training runs in this process on the current Keras backend (`KERAS_BACKEND`). Export always goes
through TensorFlow:

- on TensorFlow, each trained model is exported and its files run in LiteRT and onnxruntime here, and
  compared with the model's own outputs;
- on JAX or PyTorch, each trained model is saved as `<output>/<family>_<model>.keras`, with its sample
  inputs and this backend's outputs on them in `<family>_<model>_samples.npz`; then one TensorFlow
  subprocess (`python -m export.tour STEM ...`) loads every `.keras` file, exports it, runs the files and
  compares them with the training backend's outputs;
- where TensorFlow is not installed, the models are trained and saved, and the table says that export
  was skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from export.tour_cases import tour_cases

# What the XLA column means on each backend: whether `fit()` ran a compiled step, and compiled how.
_COMPILER = {"tensorflow": "XLA", "jax": "jit", "torch": "torch.compile"}
_COMPILED_WITH = {"tensorflow": "XLA", "jax": "jax.jit", "torch": "torch.compile"}
_BACKEND_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


@dataclasses.dataclass
class TourRow:
    family: str
    model: str
    parameters: int | None = None
    train_seconds: float | None = None
    metric_name: str = ""
    metric: float | None = None
    tflite_bytes: int | None = None
    tflite_diff: float | None = None  # max abs difference from the training backend's outputs
    onnx_bytes: int | None = None
    onnx_diff: float | None = None
    xla: bool | None = None  # whether fit() ran a compiled step; None where training is not Keras'
    error: str | None = None
    skipped: str | None = None  # why the case did not run, when a module it needs is not installed


def _columns(backend: str):
    return (
        ("family", "{}"), ("model", "{}"), ("params", "{:,}"), (_COMPILER.get(backend, "jit"), "{}"),
        ("train s", "{:.1f}"), ("test metric", "{}"), ("TFLite bytes", "{:,}"), ("TFLite max diff", "{:.2e}"),
        ("ONNX bytes", "{:,}"), ("ONNX max diff", "{:.2e}"),
    )


def _cells(row: TourRow, columns):
    metric = f"{row.metric_name} {row.metric:.4f}" if row.metric is not None else "-"
    xla = {True: "yes", False: "no", None: None}[row.xla]
    values = (row.family, row.model, row.parameters, xla, row.train_seconds, metric, row.tflite_bytes,
              row.tflite_diff, row.onnx_bytes, row.onnx_diff)
    return [fmt.format(v) if v is not None else "-" for (_, fmt), v in zip(columns, values)]


def format_table(rows, backend: str = "tensorflow", notes=()) -> str:
    """The tour's table; `backend` names the backend that trained, `notes` are printed below it."""
    columns = _columns(backend)
    header = [name for name, _ in columns]
    body = [_cells(row, columns) for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(header), line(["-" * w for w in widths]), *map(line, body)]
    compiler = _COMPILER.get(backend, "jit")
    name = _BACKEND_NAMES.get(backend, backend)
    legend = f"Trained on {name}. {compiler}: whether fit() ran a training step compiled with " \
             f"{_COMPILED_WITH.get(backend, compiler)}."
    if any(row.tflite_diff is not None or row.onnx_diff is not None for row in rows):
        legend += f" max diff: the exported file's outputs against {name}'s on the same inputs."
    out.append(legend)
    out += list(notes)
    for row in rows:
        if row.skipped:
            out.append(f"{row.family}/{row.model} skipped: {row.skipped}")
        if row.error:
            out.append(f"{row.family}/{row.model} failed: {row.error}")
    return "\n".join(out)


def tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _skip_reason(error: ImportError) -> str | None:
    """Why a case cannot run here, when `error` says that something it needs is not installed; None when
    `error` is a fault (a name missing from an installed module)."""
    name = getattr(error, "name", None)
    if not name:
        return str(error)  # the library's own "needs TensorFlow" messages name no module
    try:
        installed = importlib.util.find_spec(name.split(".")[0]) is not None
    except (ImportError, ValueError):
        installed = False
    return None if installed else f"it needs {name}, which is not installed"


def _flat_inputs(inputs) -> list:
    import numpy as np

    if isinstance(inputs, dict):
        inputs = list(inputs.values())
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    return [np.asarray(array) for array in inputs]


def _model_outputs(model, inputs) -> list:
    """`model`'s inference outputs on `inputs` (as given to the case), as a flat list of numpy arrays."""
    import keras
    import numpy as np

    flat = _flat_inputs(inputs)
    outputs = model(flat[0] if len(flat) == 1 else flat, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]


def save_for_export(model, sample_inputs, stem: Path) -> None:
    """Writes `stem.keras` and `stem_samples.npz` (`input_<i>`, `output_<i>`: this backend's outputs)."""
    import numpy as np

    model.save(stem.with_suffix(".keras"))
    arrays = {f"input_{i}": a for i, a in enumerate(_flat_inputs(sample_inputs))}
    arrays.update({f"output_{i}": a for i, a in enumerate(_model_outputs(model, sample_inputs))})
    np.savez(_samples_path(stem), **arrays)


def _samples_path(stem: Path) -> Path:
    return stem.with_name(stem.name + "_samples.npz")


def _indexed(data, prefix: str) -> list:
    names = sorted((name for name in data.files if name.startswith(prefix)), key=lambda n: int(n[len(prefix):]))
    return [data[name] for name in names]


def _max_abs(expected, actual) -> float:
    import numpy as np

    if len(expected) != len(actual):
        raise ValueError(f"the file has {len(actual)} outputs; the trained model had {len(expected)}")
    diffs = []
    for i, (e, a) in enumerate(zip(expected, actual)):
        e, a = np.asarray(e, np.float64), np.asarray(a, np.float64)
        if e.shape != a.shape:
            raise ValueError(f"output {i} has shape {a.shape} in the file and {e.shape} in the trained model")
        diffs.append(float(np.abs(a - e).max(initial=0.0)))
    return max(diffs)


def export_saved(stem: Path) -> dict:
    """Loads `stem.keras` on TensorFlow, writes `stem.tflite` and `stem.onnx`, runs both on the saved
    inputs, and returns sizes and max abs differences from the saved (training backend's) outputs."""
    import keras
    import numpy as np

    import keras_models  # noqa: F401  (registers the library's classes for loading)
    from export.onnx import to_onnx
    from export.tflite import to_tflite
    from export.verification import run_artifact

    model = keras.saving.load_model(stem.with_suffix(".keras"), compile=False)
    with np.load(_samples_path(stem), allow_pickle=False) as data:
        inputs, expected = _indexed(data, "input_"), _indexed(data, "output_")
    result = {}
    for kind, exporter in (("tflite", to_tflite), ("onnx", to_onnx)):
        report = exporter(model, stem.with_suffix(f".{kind}"))
        result[f"{kind}_bytes"] = report.size_bytes
        result[f"{kind}_diff"] = _max_abs(expected, run_artifact(report.path, inputs))
    return result


def _export_in_tensorflow(stems, verbose: bool) -> tuple[dict, str | None]:
    """Runs `export_saved` for every stem in one TensorFlow subprocess.

    Returns `({stem: result or {"error": ...}}, None)`, or `({}, why)` when the subprocess failed.
    """
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "export.json"
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        command = [sys.executable, "-m", "export.tour", "--report", str(report), *map(str, stems)]
        if verbose:
            print(f"\n== export on TensorFlow (one subprocess for {len(stems)} models) ==", flush=True)
            done = subprocess.run(command, env=env)
            output = ""
        else:
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            output = done.stdout + done.stderr
        if done.returncode != 0 or not report.is_file():
            tail = " | ".join(output.strip().splitlines()[-3:]) if output else "see the output above"
            return {}, f"the TensorFlow export subprocess exited with status {done.returncode}: {tail}"
        return json.loads(report.read_text()), None


def _train(case, row: TourRow, verbose: bool, jit_compile, epochs, seed: int | None = 0):
    """Runs `case`, fills `row` with what training gave; returns the `TourResult` or None.

    With a `seed`, Python's, NumPy's and the backend's random generators are seeded just before the
    case, so a case's initial weights and shuffling do not depend on which cases ran before it.
    """
    if seed is not None:
        from keras_models.seeding import set_random_seed

        set_random_seed(seed)
    try:
        result = case.run(verbose, jit_compile, epochs)
    except ImportError as error:
        row.skipped = _skip_reason(error)
        if row.skipped is None:
            raise
        return None
    if getattr(result.trained_model, "compiled", False):
        row.xla = bool(result.trained_model.jit_compile)
    row.parameters, row.train_seconds = result.parameters, result.train_seconds
    row.metric_name, row.metric = result.metric_name, result.metric
    return result


def _export_here(result, row: TourRow, stem: Path):
    from export.onnx import to_onnx
    from export.tflite import to_tflite
    from export.verification import verify

    tflite = to_tflite(result.model, stem.with_suffix(".tflite"))
    row.tflite_bytes = tflite.size_bytes
    row.tflite_diff = verify(result.model, tflite.path, result.sample_inputs).max_abs
    onnx = to_onnx(result.model, stem.with_suffix(".onnx"))
    row.onnx_bytes = onnx.size_bytes
    row.onnx_diff = verify(result.model, onnx.path, result.sample_inputs).max_abs


def run_tour(
    output_dir: Path = Path("tour_output"),
    families=None,
    verbose: bool = True,
    xla: bool | None = True,
    epochs: int | None = None,
    seed: int | None = 0,
) -> list[TourRow]:
    """Runs the tour cases of `families` on the current Keras backend and prints the summary table.

    Args:
        output_dir: where the exported files (and, off TensorFlow, the saved `.keras` files) go.
        families: only these families (all when None or empty).
        verbose: show Keras progress bars and the export subprocess' output.
        xla: passed to every builder as `jit_compile`: True compiles the training step (XLA on
            TensorFlow, `jax.jit` on JAX, `torch.compile` on PyTorch), False does not, None takes the
            library's default for the family on this backend and device.
        epochs: train every Keras case for this many epochs instead of the demo's count (a quick check).
        seed: seeds the random generators before each case, so that a tour on one backend and
            machine gives the same table every time; None leaves them unseeded.

    Returns:
        One row per case. `tflite_diff` and `onnx_diff` are the largest absolute differences between
        the exported files' outputs and the training backend's.

    Raises:
        ValueError: a family has no tour case (nothing is trained or written).
    """
    import keras

    cases = tour_cases(families)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive integer or None; got epochs={epochs!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None; got seed={seed!r}.")
    backend = keras.backend.backend()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    export_here = backend == "tensorflow"
    rows, saved, notes = [], {}, []
    start = time.perf_counter()
    for case in cases:
        print(f"\n== {case.family}: {case.model_name} ==", flush=True)
        row = TourRow(case.family, case.model_name)
        rows.append(row)
        stem = output_dir / f"{case.family}_{case.model_name}"
        try:
            result = _train(case, row, verbose, xla, epochs, seed)
            if result is not None:
                if export_here:
                    _export_here(result, row, stem)
                else:
                    save_for_export(result.model, result.sample_inputs, stem)
                    saved[str(stem)] = row
        except Exception as error:  # noqa: BLE001 - one family's failure is its row's, not the tour's
            row.error = f"{type(error).__name__}: {error}"
            if verbose:
                traceback.print_exc()
        print(row.error or row.skipped or f"{case.family}/{case.model_name}: {row.metric_name} {row.metric}",
              flush=True)
    if saved and not tensorflow_installed():
        notes.append(f"export skipped: TensorFlow is not installed, and TFLite and ONNX export runs on it. "
                     f"The trained models are saved in {output_dir}/ as .keras files; export them where "
                     f"TensorFlow is installed with `keras-models export FILE.keras --tflite OUT.tflite --onnx OUT.onnx`.")
    elif saved:
        results, failure = _export_in_tensorflow(list(saved), verbose)
        for stem, row in saved.items():
            outcome = results.get(stem, {"error": failure or "no result from the export subprocess"})
            if "error" in outcome:
                row.error = outcome["error"]
            else:
                row.tflite_bytes, row.tflite_diff = outcome["tflite_bytes"], outcome["tflite_diff"]
                row.onnx_bytes, row.onnx_diff = outcome["onnx_bytes"], outcome["onnx_diff"]
    print(f"\nkeras-models tour: {len(rows)} {'family' if len(rows) == 1 else 'families'} trained on {_BACKEND_NAMES.get(backend, backend)} in "
          f"{time.perf_counter() - start:.0f} s; artifacts in {output_dir}/\n")
    print(format_table(rows, backend, notes))
    return rows


def main(argv=None) -> int:
    """`python -m export.tour --report OUT.json STEM ...`: the TensorFlow side of a tour trained
    elsewhere. Exports every saved `STEM.keras` (see `save_for_export`) and writes one JSON object,
    `{STEM: {"tflite_bytes", "tflite_diff", "onnx_bytes", "onnx_diff"} or {"error": ...}}`."""
    parser = argparse.ArgumentParser(prog="python -m export.tour", description=main.__doc__)
    parser.add_argument("--report", required=True, help="the JSON file to write")
    parser.add_argument("stems", nargs="+", help="paths of saved models without the .keras suffix")
    args = parser.parse_args(argv)
    import keras

    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"error: export runs on the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}")
    results = {}
    for stem in args.stems:
        try:
            results[stem] = export_saved(Path(stem))
        except Exception as error:  # noqa: BLE001 - one model's failure is reported in its row
            results[stem] = {"error": f"{type(error).__name__}: {error}"}
            traceback.print_exc()
    Path(args.report).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
