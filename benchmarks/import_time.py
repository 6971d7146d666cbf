"""What `import keras_models` costs on each Keras backend, against `import keras` alone.

Every measurement is a fresh `python -c "import ..."` process, timed from outside (interpreter start-up
included, as a user sees it). Rounds alternate the backends and the two statements, so every
configuration sees the same machine load; each cell is the median over the rounds. The child also
says whether TensorFlow ended up in `sys.modules`.

    python benchmarks/import_time.py [--repeats 5] [--backends tensorflow jax torch] [--date YYYY-MM-DD]
                                     [--output benchmarks/sections/import.md]

Prints a Markdown section and writes it to `--output` when given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMAND = "python benchmarks/import_time.py"
BACKENDS = ("tensorflow", "jax", "torch")
STATEMENTS = {
    "keras": "import keras",
    "keras_models": "import keras_models",
}
# Printed by the child after the import: whether TensorFlow was imported along the way.
_PROBE = "; import sys; print('TENSORFLOW_IMPORTED', 'tensorflow' in sys.modules)"
_REPO = Path(__file__).resolve().parents[1]


def run_once(backend: str, statement: str) -> tuple[float, bool]:
    """Seconds of one fresh `python -c statement` on `backend`, and whether it imported TensorFlow."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", statement + _PROBE], env=env, cwd=_REPO,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{statement!r} failed on {backend}:\n{done.stderr[-2000:]}")
    imported = "TENSORFLOW_IMPORTED True" in done.stdout
    return seconds, imported


def measure(backends, repeats: int) -> dict:
    """`{(backend, statement): {"seconds": [...], "tensorflow": bool}}`, rounds alternating everything."""
    results = {(b, s): {"seconds": [], "tensorflow": False} for b in backends for s in STATEMENTS}
    for round_index in range(repeats):
        order = [(b, s) for b in backends for s in STATEMENTS]
        if round_index % 2:
            order.reverse()  # who goes first alternates too
        for backend, statement in order:
            seconds, imported = run_once(backend, STATEMENTS[statement])
            cell = results[(backend, statement)]
            cell["seconds"].append(seconds)
            cell["tensorflow"] = cell["tensorflow"] or imported
            print(f"round {round_index + 1}: {backend:<10} {STATEMENTS[statement]:<22} {seconds:6.2f} s",
                  file=sys.stderr)
    return results


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def render(results, backends, repeats: int, loads, date: str) -> str:
    versions = ", ".join(f"{name} {_version(name)}" for name in ("keras", "tensorflow", "jax", "torch"))
    lines = [
        "## What `import keras_models` costs",
        "",
        f"Command: `{COMMAND} --repeats {repeats} --date {date}`. Machine: {os.cpu_count()} CPU cores, "
        f"{platform.system()} {platform.machine()}. Date: {date}. Python {platform.python_version()}, {versions}. "
        f"Load average (1 min) at start and end of the run: {loads[0]:.1f} and {loads[1]:.1f}.",
        "",
        "Each cell is the median wall time, over "
        f"{repeats} rounds, of a fresh `python -c \"import ...\"` process (interpreter start-up included); "
        "rounds alternate the backends and the two statements. `import keras_models` imports every "
        "family, so that `keras.saving.load_model` finds every class of the library.",
        "",
        "| backend | `import keras` s | `import keras_models` s | added by keras_models s | TensorFlow imported |",
        "|---|---:|---:|---:|---|",
    ]
    for backend in backends:
        keras_cell, ours = results[(backend, "keras")], results[(backend, "keras_models")]
        base, total = statistics.median(keras_cell["seconds"]), statistics.median(ours["seconds"])
        lines.append(
            f"| {backend} | {base:.2f} | {total:.2f} | {total - base:.2f} | "
            f"{'yes' if ours['tensorflow'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    parser.add_argument("--output", default=None, help="also write the section to this file")
    parser.add_argument("--date", default=datetime.date.today().isoformat(),
                        help="the date written in the section (the day of the measurement)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; known: {list(BACKENDS)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}")
    start_load = os.getloadavg()[0]
    results = measure(args.backends, args.repeats)
    section = render(results, args.backends, args.repeats, (start_load, os.getloadavg()[0]), args.date)
    print(section)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(section)
        print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
