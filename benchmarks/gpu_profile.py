"""Where a training step's time goes on a GPU: kernel time by kind, and the time the GPU waits.

    python benchmarks/gpu_profile.py                              # keras_gpt2 and torch_gpt2_compile
    python benchmarks/gpu_profile.py --configs keras_dcgan torch_dcgan --steps 10

Each configuration of `benchmarks/gpu_training.py` named runs in its own process: it is built and warmed
up as there, then two epochs of `--steps` steps run under the framework's profiler (JAX's trace, PyTorch's
`torch.profiler`), both written as Chrome trace events. From the GPU's kernel events the script prints,
per step: the wall time, the GPU's busy time (the union of kernel intervals) and its idle share between
the first and last kernel, the kernel time by kind (matrix products, convolutions, attention, copies, the
rest: fused elementwise and reduction kernels), and the kernels that take longest. A large idle share
means the host does not keep the GPU fed. Without a GPU the trace holds no kernels and the script says so.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import gpu_training  # noqa: E402  (the benchmark's configurations and their set-up)

def kind_of(name):
    """attention, convolution, matrix product, copy, or the rest (fused elementwise and reductions, XLA's
    `fusion`/`convert` kernels and Triton's `triton_*`), from a kernel's name."""
    lowered = name.lower()
    if any(mark in lowered for mark in ("flash", "fmha", "sdpa")):
        return "attention"
    if lowered.startswith(("memcpy", "memset")) or "memcpy" in lowered:
        return "copy"
    if lowered.startswith("triton_") or "convert" in lowered and "gemm" not in lowered:
        return "other (fused elementwise, reductions)"
    if any(mark in lowered for mark in ("conv", "implicit_gemm", "wgrad", "dgrad", "fprop")):
        return "convolution"
    if any(mark in lowered for mark in ("gemm", "cutlass", "xmma", "nvjet", "cublas", "matmul")):
        return "matrix product"
    return "other (fused elementwise, reductions)"


def kernel_events(trace):
    """(start_us, duration_us, name) of every GPU kernel in a Chrome trace written by PyTorch or JAX."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    if kernels:  # PyTorch
        return [(float(e["ts"]), float(e["dur"]), e["name"]) for e in kernels]
    # JAX: the GPU's processes are named after the device; their stream threads hold the kernels.
    gpu = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
           and "gpu" in str(e.get("args", {}).get("name", "")).lower()}
    threads = {(e["pid"], e["tid"]): str(e.get("args", {}).get("name", "")).lower() for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name" and e.get("pid") in gpu}
    streams = {key for key, name in threads.items() if "stream" in name}
    if not streams:  # other names: every GPU thread but the derived module, op and step lines
        streams = {key for key, name in threads.items() if not any(m in name for m in ("module", "ops", "step"))}
    return [(float(e["ts"]), float(e["dur"]), e["name"]) for e in events
            if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in streams and "dur" in e]


def busy_time(kernels):
    """The union of the kernels' intervals, in microseconds."""
    total, end = 0.0, None
    for start, duration, _ in sorted(kernels):
        stop = start + duration
        if end is None or start > end:
            total += duration
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def summarise(kernels, steps, wall_seconds):
    if not kernels:
        return {"steps": steps, "wall_ms": wall_seconds * 1e3 / steps, "kernels": 0}
    span = max(s + d for s, d, _ in kernels) - min(s for s, _, _ in kernels)
    busy = busy_time(kernels)
    kinds, names = collections.Counter(), collections.Counter()
    counts = collections.Counter()
    for _, duration, name in kernels:
        kinds[kind_of(name)] += duration
        names[name] += duration
        counts[name] += 1
    return {
        "steps": steps, "wall_ms": wall_seconds * 1e3 / steps, "kernels": len(kernels),
        "span_ms": span / 1e3 / steps, "busy_ms": busy / 1e3 / steps, "idle_share": 1 - busy / span,
        "kinds_ms": {k: v / 1e3 / steps for k, v in kinds.most_common()},
        "top": [(name, duration / 1e3 / steps, counts[name] / steps) for name, duration in names.most_common(15)],
    }


def worker(name, steps, small):
    framework = gpu_training.CONFIGS[name][1]
    setup = gpu_training.keras_setup if framework == "keras" else gpu_training.torch_setup
    run, facts = setup(name, steps, small)
    run(epochs=2)  # warm-up: compilation and the first recompilation stay out of the trace
    run(epochs=2)
    directory = tempfile.mkdtemp(prefix="gpu_profile_")
    if framework == "keras":
        import jax

        jax.profiler.start_trace(directory, create_perfetto_trace=True)
        begin = time.perf_counter()
        run(epochs=2)
        wall = time.perf_counter() - begin
        jax.profiler.stop_trace()
        found = glob.glob(os.path.join(directory, "**", "perfetto_trace.json.gz"), recursive=True)
        trace = json.load(gzip.open(found[0])) if found else {"traceEvents": []}
    else:
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        with profile(activities=activities) as profiler:
            begin = time.perf_counter()
            run(epochs=2)
            wall = time.perf_counter() - begin
        path = os.path.join(directory, "trace.json")
        profiler.export_chrome_trace(path)
        trace = json.load(open(path))
    summary = summarise(kernel_events(trace), 2 * steps, wall)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    summary["trace_events"] = len(events)
    summary["processes"] = sorted({str(e.get("args", {}).get("name")) for e in events
                                   if e.get("ph") == "M" and e.get("name") == "process_name"})[:12]
    summary["threads"] = sorted({str(e.get("args", {}).get("name")) for e in events
                                 if e.get("ph") == "M" and e.get("name") == "thread_name"})[:30]
    print(json.dumps({"summary": summary, "facts": facts}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=["keras_gpt2", "torch_gpt2_compile"],
                        help=f"known: {sorted(gpu_training.CONFIGS)}")
    parser.add_argument("--steps", type=int, default=5, help="steps per epoch; two epochs are traced")
    parser.add_argument("--small", action="store_true", help="tiny sizes, to check the script on a CPU")
    parser.add_argument("--output", help="also write the summaries to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.small)
        return
    unknown = sorted(set(args.configs) - set(gpu_training.CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {sorted(gpu_training.CONFIGS)}")
    results = {}
    for name in args.configs:
        done = subprocess.run(gpu_training.worker_command(__file__, name, args.steps, args.small), capture_output=True,
                              text=True, env=gpu_training.worker_env(name))
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"FAILED {name}: {' | '.join(done.stderr.strip().splitlines()[-3:])}", flush=True)
            continue
        result = json.loads(lines[-1])
        results[name] = result
        s = result["summary"]
        print(f"\n{name}: {gpu_training.CONFIGS[name][3]}; {s['steps']} steps traced")
        if not s["kernels"]:
            print(f"  no GPU kernels among the trace's {s['trace_events']} events (processes: {s['processes']}); "
                  f"wall {s['wall_ms']:.2f} ms per step")
            continue
        print(f"  per step: wall {s['wall_ms']:.2f} ms, kernels from first to last {s['span_ms']:.2f} ms, "
              f"GPU busy {s['busy_ms']:.2f} ms, idle {100 * s['idle_share']:.1f}% of that span")
        print("  | kernel kind | ms per step |\n  |---|---:|")
        for kind, ms in s["kinds_ms"].items():
            print(f"  | {kind} | {ms:.2f} |")
        print("  | longest kernels | ms per step | launches per step |\n  |---|---:|---:|")
        for kernel, ms, count in s["top"]:
            print(f"  | `{kernel[:90]}` | {ms:.2f} | {count:.1f} |")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
