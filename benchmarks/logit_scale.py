"""Logit at scale: our XLA-compiled Newton fit against statsmodels, and a streamed fit with bounded memory.

    python benchmarks/logit_scale.py                       # 1,000,000 x 20 side by side, then 10,000,000 x 20 streamed
    python benchmarks/logit_scale.py --rows 200000 --stream-rows 1000000   # a quick run

Part 1 fits the same in-memory 1,000,000 x 20 data with `statsmodels.api.Logit(...).fit()` (Newton, its
default) and with `keras_models.statistical.LogisticRegression().fit`, alternately, `--repeats` times,
and reports the times, their ratio and the largest relative difference of the coefficients.

Part 2 writes 10,000,000 x 20 rows as .npz files into a temporary directory (in a subprocess), then
fits them with `LogisticRegression().fit_stream(directory)` in a fresh subprocess and reports the peak
resident memory of that process (VmHWM from /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(rows, features, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    beta = np.linspace(-0.6, 0.6, features)
    y = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-(X @ beta - 0.5)))).astype(np.float64)
    return X, y, beta


def side_by_side(rows, features, repeats):
    import statsmodels.api as sm

    from keras_models.statistical import LogisticRegression

    X, y, _ = make_data(rows, features, seed=0)
    timings = {"statsmodels": [], "keras_models": []}
    for _ in range(repeats):
        start = time.perf_counter()
        reference = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
        timings["statsmodels"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = LogisticRegression().fit(X, y)
        timings["keras_models"].append(time.perf_counter() - start)
    difference = float(np.max(np.abs(ours.params_.to_numpy() - reference.params) / np.abs(reference.params)))
    bse_difference = float(np.max(np.abs(ours.bse_.to_numpy() - reference.bse) / reference.bse))
    return dict(rows=rows, features=features, timings=timings, params_rel_diff=difference,
                bse_rel_diff=bse_difference, iterations=(ours.n_iter_, int(reference.mle_retvals["iterations"])))


_WRITER = """
import sys, numpy as np
folder, rows, features, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
beta = np.linspace(-0.6, 0.6, features)
for index, start in enumerate(range(0, rows, block)):
    rng = np.random.default_rng(1000 + index)
    n = min(block, rows - start)
    X = rng.normal(size=(n, features))
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(X @ beta - 0.5)))).astype(np.float64)
    np.savez(f"{folder}/part{index:04d}.npz", X=X, y=y)
"""

_FITTER = """
import json, sys, time
import numpy as np
from keras_models.statistical import LogisticRegression
start = time.perf_counter()
model = LogisticRegression(batch_size=int(sys.argv[2])).fit_stream(sys.argv[1])
seconds = time.perf_counter() - start
status = open("/proc/self/status").read()
peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
beta = np.linspace(-0.6, 0.6, len(model.params_) - 1)
print(json.dumps(dict(seconds=seconds, peak_mib=peak_kib / 1024, nobs=model.nobs_, iterations=model.n_iter_,
                      converged=model.converged_, const=float(model.params_["const"]),
                      max_abs_error_vs_truth=float(np.max(np.abs(model.params_.to_numpy()[1:] - beta))),
                      max_bse=float(model.bse_.max()))))
"""


def streamed(rows, features, batch_size):
    with tempfile.TemporaryDirectory(prefix="logit_stream_") as folder:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _WRITER, folder, str(rows), str(features), "500000"], check=True)
        write_seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
        out = subprocess.run([sys.executable, "-c", _FITTER, folder, str(batch_size)], check=True,
                             capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        result.update(rows=rows, features=features, bytes_on_disk=size, write_seconds=write_seconds,
                      batch_size=batch_size)
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stream-rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=131072)
    parser.add_argument("--skip-stream", action="store_true")
    args = parser.parse_args()

    part1 = side_by_side(args.rows, args.features, args.repeats)
    ours, theirs = min(part1["timings"]["keras_models"]), min(part1["timings"]["statsmodels"])
    print(f"## Logit at {args.rows:,} x {args.features} (in memory)\n")
    print("| fit | times (s) | best (s) |\n|---|---|---|")
    for name, values in part1["timings"].items():
        print(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {min(values):.2f} |")
    print(f"\nratio keras_models / statsmodels (best of {args.repeats}): **{ours / theirs:.3f}**; "
          f"Newton iterations {part1['iterations'][0]} vs {part1['iterations'][1]}; largest relative "
          f"difference of coefficients {part1['params_rel_diff']:.2e}, of standard errors {part1['bse_rel_diff']:.2e}.\n")
    if not args.skip_stream:
        part2 = streamed(args.stream_rows, args.features, args.batch_size)
        print(f"## Logit streamed from files, {args.stream_rows:,} x {args.features}\n")
        print("| quantity | value |\n|---|---|")
        print(f"| data on disk (.npz) | {part2['bytes_on_disk'] / 2**30:.2f} GiB in 500,000-row files |")
        print(f"| fit time | {part2['seconds']:.1f} s ({part2['iterations']} Newton passes, converged={part2['converged']}) |")
        print(f"| peak resident memory (VmHWM) | **{part2['peak_mib']:.0f} MiB** |")
        print(f"| rows fitted | {part2['nobs']:,.0f} |")
        print(f"| largest |coef - true coef| | {part2['max_abs_error_vs_truth']:.2e} (largest std err {part2['max_bse']:.1e}) |")
    print("\n```json\n" + json.dumps({"side_by_side": part1, **({} if args.skip_stream else {"streamed": part2})}) + "\n```")


if __name__ == "__main__":
    main()
