"""Logit on a Dask cluster of 1, 2 and 4 local workers against one-machine fits, on the same 10M rows.

    python benchmarks/dask_logit.py                                # 10,000,000 x 20, 3 rounds
    python benchmarks/dask_logit.py --rows 200000 --rounds 1       # a quick check that it runs

The data (standard normal features, y drawn from a logistic model) is generated partition by partition,
each from its own seed, so every configuration fits exactly the same rows: the Dask fits generate and
persist the partitions on the workers of a fresh `distributed.LocalCluster(n_workers=k,
threads_per_worker=1)` before timing (generation and cluster start are not timed; one small untimed
fit warms the workers), and the one-machine fits concatenate the same partitions in this process.

Configurations, alternated in every round (the order rotates from round to round, so all of them see
the same machine load): `DaskLogisticRegression().fit` with 1, 2 and 4 workers; the library's one-machine
`LogisticRegression().fit` (XLA-compiled float64 passes); statsmodels' `Logit(...).fit(method=m)` for
each method of `--statsmodels-methods` (the fastest is named). statsmodels and the one-machine fit run
only if the data fits in memory (`--memory-factor` times the design's size must be available); the
output says when they were skipped. Reported: the median over rounds of the time per fit and per Newton
iteration (Dask: the median pass time; others: fit time over iterations), the load average before and
after, the machine and the date; the coefficients of every configuration are compared with the 1-worker
Dask fit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

COMMAND = "python benchmarks/dask_logit.py"


def make_partition(index, rows, features, seed):
    """Partition `index` of the data: (X (rows, features), y (rows,)), from its own seed."""
    rng = np.random.default_rng([seed, index])
    X = rng.normal(size=(rows, features))
    beta = np.linspace(-0.6, 0.6, features)
    y = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-(X @ beta - 0.5)))).astype(np.float64)
    return X, y


def partition_sizes(rows, partitions):
    """Uneven partition sizes (the last ones larger), as data read from files of different sizes tends to be."""
    weights = np.linspace(1.0, 2.0, partitions)
    sizes = np.floor(weights / weights.sum() * rows).astype(int)
    sizes[-1] += rows - sizes.sum()
    return [int(s) for s in sizes]


def available_bytes():
    with open("/proc/meminfo") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return int(fields["MemAvailable"].split()[0]) * 1024


def dask_collections(sizes, features, seed):
    import dask
    import dask.array as da

    parts = [dask.delayed(make_partition)(k, n, features, seed) for k, n in enumerate(sizes)]
    X = da.concatenate([da.from_delayed(part[0], shape=(n, features), dtype=np.float64)
                        for part, n in zip(parts, sizes)])
    y = da.concatenate([da.from_delayed(part[1], shape=(n,), dtype=np.float64) for part, n in zip(parts, sizes)])
    return X, y


def time_dask(workers, sizes, features, seed):
    """One timed Dask fit on a fresh cluster of `workers` processes: (seconds, pass seconds, model)."""
    import dask
    from distributed import Client, LocalCluster

    from keras_models.statistical import DaskLogisticRegression

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster):
        X, y = dask.persist(*dask_collections(sizes, features, seed))
        warm_X, warm_y = dask_collections([2000] * workers, features, seed + 1)
        DaskLogisticRegression().fit(warm_X, warm_y)  # imports on the workers, untimed
        start = time.perf_counter()
        model = DaskLogisticRegression().fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, model.pass_seconds_, model


def time_library(X, y):
    from keras_models.statistical import LogisticRegression

    start = time.perf_counter()
    model = LogisticRegression().fit(X, y)
    return time.perf_counter() - start, model.n_iter_, model.params_.to_numpy()


def time_statsmodels(X, y, method):
    import statsmodels.api as sm

    start = time.perf_counter()
    result = sm.Logit(y, sm.add_constant(X, prepend=True)).fit(method=method, disp=0, maxiter=100)
    seconds = time.perf_counter() - start
    return seconds, int(result.mle_retvals.get("iterations", 0)) or None, np.asarray(result.params)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=40)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--statsmodels-methods", default="newton,lbfgs")
    parser.add_argument("--memory-factor", type=float, default=6.0,
                        help="one-machine fits run when this many times the design's bytes are available")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    sizes = partition_sizes(args.rows, args.partitions)
    workers = [int(w) for w in args.workers.split(",")]
    configs = [f"dask, {w} worker{'s' if w > 1 else ''}" for w in workers]
    design_bytes = args.rows * (args.features + 1) * 8
    one_machine = available_bytes() >= args.memory_factor * design_bytes
    X = y = None
    if one_machine:
        parts = [make_partition(k, n, args.features, args.seed) for k, n in enumerate(sizes)]
        X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        del parts
        configs += ["keras_models LogisticRegression (one machine)"]
        configs += [f"statsmodels Logit, method={m}" for m in args.statsmodels_methods.split(",")]
    seconds = {c: [] for c in configs}
    per_iteration = {c: [] for c in configs}
    params = {}
    for round_index in range(args.rounds):
        order = configs[round_index % len(configs):] + configs[: round_index % len(configs)]
        for config in order:
            if config.startswith("dask"):
                total, passes, model = time_dask(int(config.split()[1]), sizes, args.features, args.seed)
                iteration, coef = statistics.median(passes), model.params_.to_numpy()
            elif config.startswith("keras_models"):
                total, iterations, coef = time_library(X, y)
                iteration = total / iterations
            else:
                total, iterations, coef = time_statsmodels(X, y, config.split("method=")[1])
                iteration = total / iterations if iterations else float("nan")
            seconds[config].append(total)
            per_iteration[config].append(iteration)
            params[config] = coef
            print(f"round {round_index + 1}: {config}: {total:.2f} s", file=sys.stderr)
    load_end = os.getloadavg()

    reference = params[configs[0]]
    rows = []
    for config in configs:
        difference = float(np.max(np.abs(params[config] - reference) / np.abs(reference)))
        rows.append(dict(config=config, fit_seconds=statistics.median(seconds[config]),
                         iteration_seconds=statistics.median(per_iteration[config]), all_seconds=seconds[config],
                         params_rel_diff=difference))
    statsmodels_rows = [r for r in rows if r["config"].startswith("statsmodels")]
    fastest = min(statsmodels_rows, key=lambda r: r["fit_seconds"])["config"] if statsmodels_rows else None

    print(f"## Dask Logit: {args.rows:,} x {args.features} with {', '.join(map(str, workers))} workers\n")
    print(f"Command: `{COMMAND} --rows {args.rows} --features {args.features} --partitions {args.partitions} "
          f"--workers {args.workers} --rounds {args.rounds}`. Machine: {platform.machine()}, "
          f"{os.cpu_count()} CPU cores, "
          f"{platform.python_implementation()} {platform.python_version()}. Date: {args.date}. "
          f"Load average (1, 5, 15 min) before: {load_start[0]:.1f}, {load_start[1]:.1f}, {load_start[2]:.1f}; "
          f"after: {load_end[0]:.1f}, {load_end[1]:.1f}, {load_end[2]:.1f}.\n")
    print(f"{args.partitions} uneven partitions ({min(sizes):,} to {max(sizes):,} rows); medians over "
          f"{args.rounds} alternated rounds. A Dask fit's time includes its first pass, which checks the "
          "partitions and keeps them in the workers' memory. statsmodels' quasi-Newton methods stop at their "
          "own tolerance (see the last column); Newton's reach the same estimate as ours.\n")
    print("| configuration | fit (s, median) | per Newton iteration (s) | all fits (s) "
          "| coef. rel. diff. vs 1 worker |")
    print("|---|---:|---:|---|---:|")
    for r in rows:
        name = r["config"] + (" (fastest statsmodels)" if r["config"] == fastest else "")
        print(f"| {name} | {r['fit_seconds']:.2f} | {r['iteration_seconds']:.3f} | "
              f"{', '.join(f'{s:.2f}' for s in r['all_seconds'])} | {r['params_rel_diff']:.1e} |")
    if not one_machine:
        print(f"\nstatsmodels and the one-machine fit were skipped: {args.memory_factor:g} x "
              f"{design_bytes / 2**30:.1f} GiB of design needed, {available_bytes() / 2**30:.1f} GiB available.")
    result = dict(rows=args.rows, features=args.features, partitions=args.partitions, rounds=args.rounds,
                  date=args.date, cores=os.cpu_count(), load_start=load_start, load_end=load_end,
                  one_machine=one_machine, results=rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
