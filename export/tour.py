"""`keras-models tour`: train one small model per family, export it, verify the files, print a table."""

from __future__ import annotations

import dataclasses
import time
import traceback
from pathlib import Path

from export._common import ExportError
from export.onnx import to_onnx
from export.tflite import to_tflite
from export.verify import verify


@dataclasses.dataclass
class TourRow:
    family: str
    model: str
    parameters: int | None = None
    train_seconds: float | None = None
    metric_name: str = ""
    metric: float | None = None
    tflite_bytes: int | None = None
    tflite_diff: float | None = None
    onnx_bytes: int | None = None
    onnx_diff: float | None = None
    xla: bool | None = None
    error: str | None = None


_COLUMNS = (
    ("family", "{}"), ("model", "{}"), ("params", "{:,}"), ("XLA", "{}"), ("train s", "{:.1f}"),
    ("test metric", "{}"), ("TFLite bytes", "{:,}"), ("TFLite max diff", "{:.2e}"),
    ("ONNX bytes", "{:,}"), ("ONNX max diff", "{:.2e}"),
)


def _cells(row: TourRow):
    metric = f"{row.metric_name} {row.metric:.4f}" if row.metric is not None else "-"
    xla = {True: "yes", False: "no", None: None}[row.xla]
    values = (row.family, row.model, row.parameters, xla, row.train_seconds, metric, row.tflite_bytes,
              row.tflite_diff, row.onnx_bytes, row.onnx_diff)
    return [fmt.format(v) if v is not None else "-" for (_, fmt), v in zip(_COLUMNS, values)]


def format_table(rows) -> str:
    header = [name for name, _ in _COLUMNS]
    body = [_cells(row) for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(header), line(["-" * w for w in widths]), *map(line, body)]
    for row in rows:
        if row.error:
            out.append(f"{row.family}/{row.model} failed: {row.error}")
    return "\n".join(out)


def run_tour(
    output_dir: Path = Path("tour_output"), families=None, verbose: bool = True, xla: bool | None = True
) -> list[TourRow]:
    """Runs every registered tour case and prints the summary table; returns the rows.

    Args:
        output_dir: where the .tflite and .onnx files go.
        families: only these families (all when None).
        verbose: show Keras progress bars.
        xla: True trains every Keras model with XLA, False without, None with each family's measured
            default on this device (`keras_models.default_jit_compile`). The table's XLA column says
            whether the trained model's step was XLA-compiled ("-" where training is not Keras').
    """
    from keras_models.tour import tour_cases
    from keras_models.training import jit_compile_default

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    for family, model_name, case in tour_cases(families):
        print(f"\n== {family}: {model_name} ==", flush=True)
        row = TourRow(family, model_name)
        rows.append(row)
        try:
            if xla is None:
                result = case(verbose)
            else:
                with jit_compile_default(xla):
                    result = case(verbose)
            if result.trained_model.compiled:
                row.xla = bool(result.trained_model.jit_compile)
            row.parameters, row.train_seconds = result.parameters, result.train_seconds
            row.metric_name, row.metric = result.metric_name, result.metric
            stem = output_dir / f"{family}_{model_name}"
            tflite = to_tflite(result.model, stem.with_suffix(".tflite"))
            row.tflite_bytes = tflite.size_bytes
            row.tflite_diff = verify(result.model, tflite.path, result.sample_inputs).max_abs
            onnx = to_onnx(result.model, stem.with_suffix(".onnx"))
            row.onnx_bytes = onnx.size_bytes
            row.onnx_diff = verify(result.model, onnx.path, result.sample_inputs).max_abs
        except (ExportError, ValueError, RuntimeError) as error:
            row.error = f"{type(error).__name__}: {error}"
            if verbose:
                traceback.print_exc()
        print(f"{family}/{model_name}: {row.metric_name} {row.metric}" if row.error is None else row.error, flush=True)
    print(f"\nkeras-models tour: {len(rows)} families in {time.perf_counter() - start:.0f} s; "
          f"artifacts in {output_dir}/\n")
    print(format_table(rows))
    return rows
