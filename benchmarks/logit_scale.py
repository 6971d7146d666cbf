"""Logit at scale: our exact Newton fit against statsmodels' fastest Logit fit, and a streamed fit with bounded memory.

    python benchmarks/logit_scale.py                       # 1,000,000 x 20 side by side, then 10,000,000 x 20 streamed
    python benchmarks/logit_scale.py --skip-stream         # part 1 only
    python benchmarks/logit_scale.py --rows 200000 --stream-rows 1000000   # a quick run

Part 1 fits the same in-memory 1,000,000 x 20 data (standard normal features, an intercept, y drawn from
the logistic model) with `statsmodels.api.Logit(y, sm.add_constant(X)).fit(method=m, disp=0)` for m in
newton, bfgs and lbfgs, and with `keras_models.statistical.LogisticRegression().fit(X, y)`, alternately:
each of `--repeats` rounds runs newton, ours, bfgs, ours, lbfgs, ours. Both sides' times include building
the design (`sm.add_constant` for statsmodels). It reports the median and range of each, names
statsmodels' fastest method among those that converged to the Newton coefficients, the ratio of our
median to that method's median, how far every fit's coefficients are from ours, whether the two summary
tables are equal, and the machine, date and load average (`os.getloadavg`) before and after.

Part 2 writes 10,000,000 x 20 rows as .npz files into a temporary directory (in a subprocess), then
fits them with `LogisticRegression().fit_stream(directory)` in a fresh subprocess and reports the peak
resident memory of that process (VmHWM from /proc/self/status).
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

import numpy as np

METHODS = ("newton", "bfgs", "lbfgs")


def make_data(rows, features, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    beta = np.linspace(-0.6, 0.6, features)
    y = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-(X @ beta - 0.5)))).astype(np.float64)
    return X, y, beta


def _timed(fit):
    start = time.perf_counter()
    result = fit()
    return time.perf_counter() - start, result


def _table_lines(summary):
    return [line for line in str(summary).splitlines() if line.strip() and not line.startswith(("Date:", "Time:"))]


def side_by_side(rows, features, repeats, also_batch_size=None):
    import statsmodels.api as sm

    from keras_models.statistical import LogisticRegression

    X, y, _ = make_data(rows, features, seed=0)
    warm_X, warm_y = X[:2000], y[:2000]  # loads what each side loads lazily, untimed
    sm.Logit(warm_y, sm.add_constant(warm_X)).fit(disp=0)
    LogisticRegression().fit(warm_X, warm_y)

    load_before = os.getloadavg()
    timings = {**{f"statsmodels {m}": [] for m in METHODS}, "keras_models": []}
    other = f"keras_models, batch_size={also_batch_size}"
    if also_batch_size:  # a second chunk size, timed right after the default in every round
        timings[other] = []
    fits = {}
    ours_fits = [("ours", "keras_models", {})] + ([("other", other, {"batch_size": also_batch_size})]
                                                   if also_batch_size else [])
    for round_index in range(repeats):
        for method_index, method in enumerate(METHODS):
            seconds, fits[method] = _timed(lambda: sm.Logit(y, sm.add_constant(X)).fit(method=method, disp=0))
            timings[f"statsmodels {method}"].append(seconds)
            # with a second batch size, the two of ours take turns at following statsmodels' fit
            turn = (round_index * len(METHODS) + method_index) % len(ours_fits)
            for key, name, params in ours_fits[turn:] + ours_fits[:turn]:
                seconds, fits[key] = _timed(lambda: LogisticRegression(**params).fit(X, y))
                timings[name].append(seconds)
    load_after = os.getloadavg()

    ours, reference = fits["ours"], fits["newton"]
    params = ours.params_.to_numpy()
    methods = {}
    for method in METHODS:
        fit = fits[method]
        methods[method] = dict(
            median=statistics.median(timings[f"statsmodels {method}"]),
            converged=bool(fit.mle_retvals["converged"]),
            iterations=int(fit.mle_retvals.get("iterations", -1)),
            params_rel_diff_vs_ours=float(np.max(np.abs(fit.params - params) / np.abs(params))),
        )
    # bfgs and lbfgs stop on their own gradient tolerance: the fastest is taken among the methods that
    # reached the Newton coefficients (1e-6 relative), and the fastest of all is reported beside it.
    same = [m for m in METHODS if methods[m]["converged"] and methods[m]["params_rel_diff_vs_ours"] < 1e-6]
    fastest = min(same, key=lambda m: methods[m]["median"])
    fastest_any = min(METHODS, key=lambda m: methods[m]["median"])
    ours_median = statistics.median(timings["keras_models"])
    if also_batch_size:
        other_params = fits["other"].params_.to_numpy()
        if not np.allclose(other_params, params, rtol=1e-12, atol=0):
            raise SystemExit(f"{other}: coefficients differ from the default fit's beyond 1e-12")
    return dict(
        rows=rows, features=features, repeats=repeats, timings=timings, methods=methods, fastest=fastest,
        ratio_vs_fastest=ours_median / methods[fastest]["median"], fastest_any=fastest_any,
        ratio_vs_fastest_any=ours_median / methods[fastest_any]["median"],
        params_rel_diff=float(np.max(np.abs(params - reference.params) / np.abs(reference.params))),
        bse_rel_diff=float(np.max(np.abs(ours.bse_.to_numpy() - reference.bse) / reference.bse)),
        same_summary_table=_table_lines(ours.summary())[: len(_table_lines(reference.summary()))]
        == _table_lines(reference.summary()),
        iterations=(ours.n_iter_, methods["newton"]["iterations"]), converged=ours.converged_,
        load_before=load_before, load_after=load_after, machine=platform.platform(),
        processor=platform.processor(), cpu_count=os.cpu_count(), python=platform.python_version(),
        numpy=np.__version__, statsmodels=sm.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


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
model = LogisticRegression(**({"batch_size": int(sys.argv[2])} if sys.argv[2] != "None" else {})).fit_stream(sys.argv[1])
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


def _report_part1(part1):
    print(f"## Logit at {part1['rows']:,} x {part1['features']} (in memory)\n")
    print(f"Machine: {part1['machine']}, {part1['cpu_count']} CPUs ({part1['processor'] or 'unknown'}); Python "
          f"{part1['python']}, NumPy {part1['numpy']}, statsmodels {part1['statsmodels']}. Date: {part1['date']}.")
    print(f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in part1['load_before'])}; "
          f"after: {', '.join(f'{v:.2f}' for v in part1['load_after'])}.\n")
    print("| fit | runs | median (s) | range (s) | converged | iterations | largest rel. diff of coef vs ours |")
    print("|---|---:|---:|---|---|---:|---:|")
    for name, values in part1["timings"].items():
        method = part1["methods"].get(name.removeprefix("statsmodels "))
        extra = (f"{method['converged']} | {method['iterations']} | {method['params_rel_diff_vs_ours']:.1e}" if method
                 else f"{part1['converged']} | {part1['iterations'][0]} | -")
        print(f"| {name} | {len(values)} | {statistics.median(values):.3f} | {min(values):.3f} - {max(values):.3f} | "
              f"{extra} |")
    ratio = part1["ratio_vs_fastest"]
    print(f"\nstatsmodels' fastest method that reaches the Newton coefficients (1e-6): **{part1['fastest']}**; median "
          f"keras_models / statsmodels {part1['fastest']}: **{ratio:.3f}** ({1 / ratio:.1f}x faster).")
    if part1["fastest_any"] != part1["fastest"]:
        ratio_any = part1["ratio_vs_fastest_any"]
        print(f"Fastest of all (its coefficients differ from Newton's): {part1['fastest_any']}; ratio {ratio_any:.3f} "
              f"({1 / ratio_any:.1f}x faster).")
    print(f"Against statsmodels newton: coefficients agree to "
          f"{part1['params_rel_diff']:.1e} relative, standard errors to {part1['bse_rel_diff']:.1e}; summary tables "
          f"equal (but Date/Time): {part1['same_summary_table']}.\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of newton, ours, bfgs, ours, lbfgs, ours")
    parser.add_argument("--stream-rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=None, help="rows per chunk of the streamed fit's passes")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--also-batch-size", type=int, default=None,
                        help="part 1 also times our fit with this batch_size, right after the default in every round")
    args = parser.parse_args()

    part1 = side_by_side(args.rows, args.features, args.repeats, args.also_batch_size)
    _report_part1(part1)
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
