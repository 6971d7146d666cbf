"""Data-parallel training over 1, 2 and 4 local processes: time per step and the share of communication;
and, on paper, the gradient all-reduce of resnet50 and the 124M GPT on 8, 64 and 512 workers.

    python benchmarks/scaleout.py                      # 1, 2, 4 processes; small resnet and small GPT
    python benchmarks/scaleout.py --tiny               # a quick check that the script runs (a tiny GPT)
    python benchmarks/scaleout.py --paper-only         # only the expected scaling, no training
    python benchmarks/scaleout.py --collectives        # all-reduces per compiled data-parallel training step

Measured (JAX backend, one CPU device per process, gloo collectives on 127.0.0.1): each configuration
runs as N processes started by `keras_models.distributed.launch`. Every process feeds its own
`--batch` rows per step (weak scaling: the global batch is N x batch). Each process first trains alone
(`keras.distribution` unset: the same per-process batch, no collectives) and then, joined, under
`DataParallel` over the N processes, both in the same process, so both see the same machine load; a
step's time is the median over `--steps` steps of one `fit`, after 3 steps left out (compilation). The step time under `DataParallel` minus the step time
alone is the time the gradient all-reduce (and the metrics' reduction) adds; its share of the step is
the communication share. Process 0's numbers are reported (the processes wait for each other every
step). On a machine with fewer cores than N processes need, the processes also compete for cores:
read the share for 4 processes with `os.cpu_count()` in mind (printed).

On paper: a ring all-reduce moves `2 (N - 1) / N` times the gradient bytes in and out of every worker,
in `2 (N - 1)` hops each paying a latency; with float32 gradients (4 bytes per parameter) the time
is `2 (N - 1) latency + 2 (N - 1) / N * 4 * parameters / bandwidth`. The assumed links and per-step
compute times are printed with the table; overlap of communication with the backward pass is not
assumed (the efficiency is a lower bound).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

COMMAND = "python benchmarks/scaleout.py"

# name -> (registered model, builder arguments, input kind)
MODELS = {
    "resnet": ("resnet18", {"input_shape": (32, 32, 3), "num_classes": 10, "width_multiplier": 0.25}, "images"),
    "gpt": ("gpt_causal_lm", {"vocabulary_size": 512, "num_layers": 2, "num_heads": 4, "hidden_dim": 128,
                              "intermediate_dim": 512, "max_sequence_length": 64}, "tokens"),
}
TINY_MODELS = {
    "resnet": ("resnet18", {"input_shape": (32, 32, 3), "num_classes": 10, "width_multiplier": 0.0625}, "images"),
    "gpt": ("gpt_causal_lm", {"vocabulary_size": 64, "num_layers": 1, "num_heads": 2, "hidden_dim": 16,
                              "intermediate_dim": 32, "max_sequence_length": 16}, "tokens"),
}

# On paper: parameters, and assumed compute seconds per step of one worker (forward and backward).
PAPER_MODELS = {
    # 32 images of 224 x 224 per worker; about 0.1 s on one V100-class GPU in float32
    "resnet50": {"parameters": 25.6e6, "compute_seconds": 0.10, "per_worker": "32 images of 224 x 224"},
    # 8 sequences of 1024 tokens per worker: 6 * 124e6 * 8192 = 6.1 TFLOP, about 0.06 s at 100 TFLOP/s
    "gpt 124M": {"parameters": 124e6, "compute_seconds": 0.06, "per_worker": "8 x 1024 tokens"},
}
# (name, bytes per second, latency per hop in seconds)
LINKS = (
    ("10 Gb/s Ethernet", 10e9 / 8, 50e-6),
    ("100 Gb/s (EDR InfiniBand, RoCE)", 100e9 / 8, 5e-6),
    ("400 Gb/s (NDR InfiniBand)", 400e9 / 8, 3e-6),
)
WORKERS = (8, 64, 512)
WARMUP = 3  # steps left out of the timing


# ------------------------------------------------------------------------------------------------
# One process of a measured configuration


def _data(kind, config, rows, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    if kind == "images":
        return (rng.uniform(0, 1, (rows, *config["input_shape"])).astype("float32"),
                rng.integers(0, config["num_classes"], rows).astype("int32"))
    tokens = rng.integers(0, config["vocabulary_size"], (rows, config["max_sequence_length"] + 1)).astype("int32")
    return tokens[:, :-1], tokens[:, 1:]


class _StepClock:
    """Times every training step: the end of a step waits for the updated weights (JAX dispatches
    asynchronously), so an interval is the step's compute and communication."""

    def __init__(self):
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.ends = []

            def on_train_batch_end(self, batch, logs=None):
                import jax

                jax.block_until_ready(self.model.trainable_variables[0].value)
                self.ends.append(time.perf_counter())

        self.callback = Clock()


def _step_seconds(model, x, y, batch, steps):
    """Median seconds per step of one `fit` over `WARMUP + steps` steps, the first `WARMUP` (compiling,
    and recompiling once the optimizer's state exists) left out."""
    clock = _StepClock().callback
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    intervals = [b - a for a, b in zip(clock.ends, clock.ends[1:])][WARMUP - 1:]
    return statistics.median(intervals)


def worker(args) -> None:
    import keras

    import keras_models
    from keras_models import distributed

    distribution = distributed.initialize()
    name, config, kind = (TINY_MODELS if args.tiny else MODELS)[args.model]
    x, y = _data(kind, config, args.batch * (WARMUP + args.steps), seed=distributed.process_index())
    results = {}
    for mode in ("alone", "data_parallel"):
        keras.distribution.set_distribution(distribution if mode == "data_parallel" else None)
        model = keras_models.build(name, **config)
        results[mode] = _step_seconds(model, x, y, args.batch, args.steps)
    results["parameters"] = int(model.count_params())
    if distributed.process_index() == 0:
        Path(args.out).write_text(json.dumps(results))


# ------------------------------------------------------------------------------------------------
# Collectives per training step, counted in the compiled program


def collectives_worker(args) -> None:
    """Trains `args.model` two steps under `DataParallel` over two virtual CPU devices, with XLA dumping
    its programs to `args.out`; the parent counts the all-reduces of the compiled training step."""
    import keras

    import keras_models

    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
    name, config, kind = MODELS[args.model]
    x, y = _data(kind, config, 2 * args.batch, seed=0)
    keras_models.build(name, **config).fit(x, y, batch_size=args.batch, epochs=1, verbose=0)


def count_collectives(model, batch, timeout):
    """All-reduce operations in the XLA-optimized training step of `model` under `DataParallel` (two
    devices): XLA combines gradients into few; every batch-norm layer adds its own."""
    import re
    import subprocess

    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count=2 --xla_dump_to={folder}"}
        subprocess.run([sys.executable, __file__, "--collectives-worker", "--model", model, "--batch", str(batch)],
                       env=env, check=True, timeout=timeout, capture_output=True)
        (step,) = [path for path in Path(folder).glob("*train_step*after_optimizations.txt")]
        return len(re.findall(r" all-reduce(?:-start)?\(", step.read_text()))


# ------------------------------------------------------------------------------------------------
# The parent: launch every configuration, then the paper table


def measure(args):
    from keras_models import distributed

    rows = []
    for model in args.models.split(","):
        for processes in [int(p) for p in args.processes.split(",")]:
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "result.json"
                worker_args = ["--worker", "--model", model, "--batch", args.batch, "--steps", args.steps,
                               "--out", out, *(["--tiny"] if args.tiny else [])]
                distributed.launch(__file__, processes, worker_args, timeout=args.timeout, devices_per_process=1,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, echo=args.verbose)
                result = json.loads(out.read_text())
            extra = max(0.0, result["data_parallel"] - result["alone"])
            rows.append({"model": model, "processes": processes, "parameters": result["parameters"],
                         "global_batch": processes * args.batch, "step_alone_ms": 1e3 * result["alone"],
                         "step_data_parallel_ms": 1e3 * result["data_parallel"],
                         "communication_share": extra / result["data_parallel"]})
            row = rows[-1]
            print(f"{model}, {processes} process(es): {row['step_data_parallel_ms']:.1f} ms per step, alone "
                  f"{row['step_alone_ms']:.1f} ms, communication {100 * row['communication_share']:.0f}%", flush=True)
    return rows


def ring_allreduce_seconds(parameters, workers, bandwidth, latency, bytes_per_value=4):
    """Time of a ring all-reduce of `parameters` float32 gradients over `workers` workers."""
    if workers == 1:
        return 0.0
    return 2 * (workers - 1) * latency + 2 * (workers - 1) / workers * bytes_per_value * parameters / bandwidth


def paper():
    rows = []
    for model, spec in PAPER_MODELS.items():
        for link, bandwidth, latency in LINKS:
            for workers in WORKERS:
                seconds = ring_allreduce_seconds(spec["parameters"], workers, bandwidth, latency)
                rows.append({"model": model, "link": link, "workers": workers,
                             "gradient_mb": 4 * spec["parameters"] / 1e6,
                             "sent_per_worker_mb": 2 * (workers - 1) / workers * 4 * spec["parameters"] / 1e6,
                             "allreduce_ms": 1e3 * seconds,
                             "efficiency": spec["compute_seconds"] / (spec["compute_seconds"] + seconds)})
    return rows


def markdown(measured, expected, args):
    lines = [f"Run: `{COMMAND} {' '.join(sys.argv[1:])}` on {platform.platform()}, {os.cpu_count()} CPU cores, "
             f"{args.date}.", ""]
    if measured:
        lines += ["| model | processes | parameters | global batch | step alone (ms) | step, DataParallel (ms) | "
                  "communication share |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['processes']} | {r['parameters']:,} | {r['global_batch']} | "
                  f"{r['step_alone_ms']:.1f} | {r['step_data_parallel_ms']:.1f} | "
                  f"{100 * r['communication_share']:.0f}% |"
                  for r in measured]
        lines.append("")
    assumptions = "; ".join(f"{m}: {s['per_worker']} per worker, {1e3 * s['compute_seconds']:.0f} ms of compute"
                            for m, s in PAPER_MODELS.items())
    lines += [f"Expected, ring all-reduce of float32 gradients, no overlap ({assumptions}):", "",
              "| model | link | workers | gradient (MB) | sent per worker (MB) | all-reduce (ms) | efficiency |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['link']} | {r['workers']} | {r['gradient_mb']:.0f} | "
              f"{r['sent_per_worker_mb']:.0f} | {r['allreduce_ms']:.1f} | {100 * r['efficiency']:.0f}% |"
              for r in expected]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--models", default="resnet,gpt", help=f"comma-separated, of {sorted(MODELS)}")
    parser.add_argument("--batch", type=int, default=32, help="rows per process per step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    parser.add_argument("--tiny", action="store_true", help="the tiny GPT on 1 and 2 processes, 3 timed steps of 4")
    parser.add_argument("--paper-only", action="store_true", help="only the expected scaling")
    parser.add_argument("--verbose", action="store_true", help="show the processes' output")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--collectives", action="store_true",
                        help="only count the all-reduces in each model's compiled data-parallel training step")
    # the processes' side
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--collectives-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.collectives_worker:
        collectives_worker(args)
        return 0
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(MODELS)}")
    if args.tiny:
        args.batch, args.steps, args.processes, args.models = 4, 3, "1,2", "gpt"
    if args.collectives:
        for model in args.models.split(","):
            print(f"{model}: {count_collectives(model, args.batch, args.timeout)} all-reduce operations per "
                  "training step under DataParallel")
        return 0
    measured = [] if args.paper_only else measure(args)
    expected = paper()
    print(markdown(measured, expected, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"measured": measured, "expected": expected}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
