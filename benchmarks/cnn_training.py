"""ResNet-18 training throughput on 32x32x3 images, batch 64: Keras with and without XLA (and XLA under
the CPU flags that decide its convolution speed) against PyTorch eager running the same architecture.

    python benchmarks/cnn_training.py [--steps 20] [--repeats 3] [--output results.json]

Each configuration runs in its own process, because XLA_FLAGS and TF_ENABLE_ONEDNN_OPTS are read once
at start-up. Achieved FLOP/s are reported as a fraction of a 4096x4096 float32 matmul measured in the
same run. PyTorch (`pip install torch==2.13.0`) is a benchmark-only dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 64
IMAGE = (32, 32, 3)
CLASSES = 10

# name -> (backend, jit_compile, extra environment, what it shows)
CONFIGS = {
    "keras_default": ("keras", None, {}, "library default (compile_model family='cnn')"),
    "keras_no_xla": ("keras", False, {}, "TensorFlow graph, oneDNN kernels"),
    "keras_no_xla_no_onednn": ("keras", False, {"TF_ENABLE_ONEDNN_OPTS": "0"}, "TensorFlow graph, Eigen kernels"),
    "keras_xla": ("keras", True, {}, "XLA, default CPU flags"),
    "keras_xla_legacy_runtime": ("keras", True, {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"},
                                 "XLA, pre-thunk runtime"),
    "keras_xla_single_thread_eigen": ("keras", True, {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"},
                                      "XLA, single-threaded Eigen convolutions"),
    "keras_xla_onednn": ("keras", True, {"XLA_FLAGS": "--xla_cpu_use_onednn=true "
                                         "--xla_cpu_experimental_onednn_custom_call=true"},
                         "XLA, oneDNN custom calls"),
    "keras_xla_xnnpack": ("keras", True, {"XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}, "XLA, XNNPACK"),
    "torch_eager": ("torch", None, {}, "PyTorch 2.13 eager, same architecture"),
}


# ------------------------------------------------------------------------------------------------
# FLOPs of one forward pass, counted from the Keras graph (multiply-adds x 2, convolutions and dense).


def forward_flops(model) -> int:
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += 2 * h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def matmul_gflops(n=4096, repeats=10) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    product = tf.function(lambda a, b: tf.matmul(a, b))
    product(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


# ------------------------------------------------------------------------------------------------
# Workers


def keras_worker(jit_compile, steps, repeats):
    import numpy as np

    import keras_models

    model = keras_models.build("resnet18", input_shape=IMAGE, num_classes=CLASSES, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(BATCH * steps, *IMAGE)).astype("float32")
    y = rng.integers(0, CLASSES, size=BATCH * steps)
    start = time.perf_counter()
    model.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)  # compile + warm up
    compile_seconds = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        rates.append(BATCH * steps / (time.perf_counter() - start))
    return {
        "images_per_second": float(np.median(rates)),
        "all_rates": rates,
        "jit_compile": bool(model.jit_compile),
        "warmup_seconds": compile_seconds,
        "parameters": int(model.count_params()),
        "forward_flops_per_image": forward_flops(model),
        "matmul_gflops": matmul_gflops(),
    }


def torch_worker(steps, repeats):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count())

    def bn(channels):
        # Keras' BatchNormalization: epsilon 1.001e-5, momentum 0.99 (PyTorch counts 1 - momentum).
        return nn.BatchNorm2d(channels, eps=1.001e-5, momentum=0.01)

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
            self.bn1 = bn(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.bn2 = bn(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), bn(cout))

        def forward(self, x):
            shortcut = x if self.short is None else self.short(x)
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(shortcut + self.bn2(self.conv2(y)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3), bn(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            blocks, cin = [], 64
            for stage, cout in enumerate((64, 128, 256, 512)):
                for index in range(2):
                    blocks.append(Basic(cin, cout, 2 if index == 0 and stage > 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, CLASSES)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(x.mean(dim=(2, 3)))

    model = ResNet18()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(size=(BATCH * steps, 3, 32, 32)).astype("float32"))
    y = torch.from_numpy(rng.integers(0, CLASSES, size=BATCH * steps))

    def epoch(count):
        for i in range(count):
            xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        return float(loss)

    model.train()
    epoch(2)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch(steps)
        rates.append(BATCH * steps / (time.perf_counter() - start))
    a = torch.randn(4096, 4096)
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return {
        "images_per_second": float(np.median(rates)),
        "all_rates": rates,
        "parameters": sum(p.numel() for p in model.parameters()) + sum(b.numel() for n, b in model.named_buffers()
                                                                        if "num_batches" not in n),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_matmul_gflops": 2 * 4096**3 / best / 1e9,
    }


def hlo_convolutions(batch=BATCH):
    """Counts how XLA lowers the convolutions of the ResNet-18 training step (optimized HLO).

    The multiply-adds of each `convolution` instruction are counted from its shapes; those with
    `lhs_dilate` (the input gradient of a strided convolution, computed on a zero-inflated map) do
    most of their work on inserted zeros.
    """
    import re

    import numpy as np
    import tensorflow as tf

    import keras_models
    from keras_models.training import _step_functions

    model = keras_models.build("resnet18", input_shape=IMAGE, num_classes=CLASSES, jit_compile=True)
    x = np.zeros((batch, *IMAGE), "float32")
    y = np.zeros((batch,), "int64")
    model.train_on_batch(x, y)
    step = [fn for fn in _step_functions(model.train_function) if getattr(fn, "_jit_compile", False)][0]
    hlo = step.experimental_get_compiler_ir((tf.constant(x), tf.constant(y)))(stage="optimized_hlo")
    counts = {"convolutions": 0, "lhs_dilated": 0, "rhs_dilated": 0, "transpose_or_copy_fusions": 0,
              "multiply_adds": 0, "multiply_adds_lhs_dilated": 0}
    for line in hlo.splitlines():
        if " convolution(" in line:
            counts["convolutions"] += 1
            out = [int(d) for d in re.search(r"= f32\[([\d,]+)\]", line).group(1).split(",")]
            window = [int(d) for d in re.search(r"size=([\dx]+)", line).group(1).split("x")]
            operands = re.search(r"convolution\(%([\w.-]+), %([\w.-]+)\)", line)
            kernel = re.search(rf"%{re.escape(operands.group(2))} = f32\[([\d,]+)\]", hlo)
            labels = re.search(r"dim_labels=\w+_(\w+)->", line).group(1)
            kernel_dims = [int(d) for d in kernel.group(1).split(",")] if kernel else []
            in_features = kernel_dims[labels.index("i")] if kernel_dims else 0
            macs = int(np.prod(out)) * int(np.prod(window)) * in_features
            counts["multiply_adds"] += macs
            if "lhs_dilate" in line:
                counts["lhs_dilated"] += 1
                counts["multiply_adds_lhs_dilated"] += macs
            if "rhs_dilate" in line:
                counts["rhs_dilated"] += 1
        elif re.search(r"= f32\[[\d,]+\]\{[\d,]+\} (fusion|copy|transpose)\(", line) and (
                "transpose" in line or " copy(" in line):
            counts["transpose_or_copy_fusions"] += 1
    counts["forward_multiply_adds"] = forward_flops(model) * batch // 2
    return counts


def conv_worker(repeats=20):
    """One 3x3 convolution, 64 -> 64 channels on 16x16 maps, batch 64: forward, and forward + both
    gradients, as a TensorFlow graph (oneDNN) and XLA-compiled, in GFLOP/s."""
    import tensorflow as tf

    x = tf.random.normal((BATCH, 16, 16, 64))
    kernel = tf.Variable(tf.random.normal((3, 3, 64, 64)) * 0.05)
    flops = 2 * BATCH * 16 * 16 * 9 * 64 * 64

    def forward(x):
        return tf.nn.conv2d(x, kernel, 1, "SAME")

    def both(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 1, "SAME") ** 2)
        return tape.gradient(loss, [x, kernel])

    result = {}
    for label, fn, work in (("forward", forward, flops), ("train", both, 3 * flops)):
        for jit in (False, True):
            compiled = tf.function(fn, jit_compile=jit)
            tf.nest.map_structure(lambda t: t.numpy(), compiled(x))
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), compiled(x))
                best = min(best, time.perf_counter() - start)
            result[f"{label}_{'xla' if jit else 'graph'}_gflops"] = work / best / 1e9
    result["matmul_gflops"] = matmul_gflops()
    return result


def run_config(name, steps, repeats, conv=False):
    env = {**os.environ, **CONFIGS[name][2], "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--worker", name, "--steps", str(steps), "--repeats", str(repeats)]
    if conv:
        command.append("--conv")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--output", help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--hlo", action="store_true", help="only count the convolutions XLA emits")
    parser.add_argument("--conv", action="store_true",
                        help="only time one 3x3 convolution, graph vs XLA, under each config's flags")
    args = parser.parse_args()
    if args.hlo:
        print(json.dumps(hlo_convolutions()))
        return
    if args.worker:
        backend, jit_compile, _, _ = CONFIGS[args.worker]
        if args.conv:
            result = conv_worker()
        elif backend == "torch":
            result = torch_worker(args.steps, args.repeats)
        else:
            result = keras_worker(jit_compile, args.steps, args.repeats)
        print(json.dumps(result))
        return
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {sorted(CONFIGS)}")
    results = {}
    for name in args.configs:
        load_before = os.getloadavg()[0]
        results[name] = run_config(name, args.steps, args.repeats, args.conv)
        # Other work on the machine shows here; ratios within one run are what to compare.
        results[name]["load_average"] = [load_before, os.getloadavg()[0]]
        results[name]["what"] = CONFIGS[name][3]
        print(name, json.dumps(results[name]), flush=True)
    if args.output:
        with open(args.output, "w") as handle:
                json.dump({"steps": args.steps, "repeats": args.repeats, "batch": BATCH, "results": results},
                      handle, indent=1)


if __name__ == "__main__":
    main()
