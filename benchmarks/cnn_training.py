"""Training throughput on CPU, every Keras backend side by side with PyTorch at its best.

    python benchmarks/cnn_training.py                          # ResNet-18, 32x32x3, batch 64, SGD
    python benchmarks/cnn_training.py --model dcgan            # one DCGAN step (D then G), 32x32x1
    python benchmarks/cnn_training.py --model transformer      # one pre-norm transformer block
    python benchmarks/cnn_training.py --rounds 7 --steps 10 --configs keras_torch keras_torch_cf torch_channels_last

Every configuration runs in its own worker process (backends and XLA flags are chosen at start-up).
The workers are started and warmed up one at a time (tracing, XLA compilation and `torch.compile`
excluded), then timed in alternation, the order rotated each round (A, B, C; then B, C, A; then C, A,
B; ...), `--rounds` times, while the other workers wait on a pipe: the configuration timed first in a
round ran about 5% slower than the same one timed second (DCGAN, both orders tried), so a fixed order
would favour the configurations listed later. Give a multiple of the number of configurations as
`--rounds` for each to take every place equally often. The median over rounds is reported, with the 1-minute load
average before and after the run and around each round. A run above a load of about 1.5 on two cores
is not one to publish.

Both frameworks set their thread count to the machine's cores. Keras trains through `fit()` on numpy
arrays (what a user runs); PyTorch runs its own loop on tensors already in memory, with its fastest
optimizer on a CPU: the fused Adam and AdamW (`fused=True`, since 2026-12-01; the defaults before), the
default SGD.
The `keras_layers` configurations are Keras as it ships: the library's layers, graph runner, training
step and optimizer updates switched off. Keras' ResNet-18 trains with `keras_models.optimizers.SGD`
(Keras' SGD, since 2026-12-01 updating one variable at a time on PyTorch). PyTorch
(`pip install torch==2.13.0`) and JAX are test-extra dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# What each model trains on: batch, per-sample shape and what one step is.
MODELS = {
    "resnet18": {"batch": 64, "what": "ResNet-18 (the resnet18 builder), 32x32x3, 10 classes, SGD 0.01 momentum 0.9"},
    "dcgan": {"batch": 64, "what": "DCGAN (the dcgan builder, width 32, latent 32), 32x32x1, one D and one G update, Adam"},
    "transformer": {"batch": 32, "what": "embedding + one pre-norm transformer block (d=256, 4 heads, MLP 1024) "
                                         "+ token logits, sequence 128, vocabulary 1000, AdamW"},
}

# name -> (framework, options, what it is)
CONFIGS = {
    "keras_tf_graph": ("keras", {"backend": "tensorflow", "jit_compile": False}, "Keras, TensorFlow graph"),
    "keras_tf_xla": ("keras", {"backend": "tensorflow", "jit_compile": True}, "Keras, TensorFlow + XLA"),
    "keras_jax": ("keras", {"backend": "jax", "jit_compile": True}, "Keras, JAX (XLA)"),
    "keras_torch": ("keras", {"backend": "torch", "jit_compile": False},
                    "Keras, PyTorch backend (the library's defaults)"),
    "keras_torch_cf": ("keras", {"backend": "torch", "jit_compile": False, "data_format": "channels_first"},
                       "Keras, PyTorch backend, channels-first convolutions"),
    "keras_torch_layer_calls": ("keras", {"backend": "torch", "jit_compile": False, "layer_calls": True},
                                "Keras, PyTorch backend, the library's layers, each through Layer.__call__"),
    "keras_torch_keras_layers": ("keras", {"backend": "torch", "jit_compile": False, "keras_layers": True},
                                 "Keras, PyTorch backend, Keras' own layers and functional call"),
    "keras_torch_cf_keras_layers": ("keras", {"backend": "torch", "jit_compile": False, "keras_layers": True,
                                              "data_format": "channels_first"},
                                    "Keras, PyTorch backend, channels-first, Keras' own layers and functional call"),
    "keras_torch_compile": ("keras", {"backend": "torch", "jit_compile": True},
                            "Keras, PyTorch backend, torch.compile"),
    "torch_eager": ("torch", {"channels_last": False, "compile": False}, "PyTorch eager, NCHW"),
    "torch_channels_last": ("torch", {"channels_last": True, "compile": False}, "PyTorch eager, channels_last"),
    "torch_compile": ("torch", {"channels_last": False, "compile": True}, "PyTorch torch.compile, NCHW"),
    "torch_compile_channels_last": ("torch", {"channels_last": True, "compile": True},
                                    "PyTorch torch.compile, channels_last"),
}
# The layout options only mean something for convolutional models.
LAYOUT_ONLY = {"keras_torch_cf", "keras_torch_layer_calls", "keras_torch_keras_layers", "keras_torch_cf_keras_layers", "torch_channels_last",
               "torch_compile_channels_last"}
CLASSES, SEQUENCE, VOCABULARY = 10, 128, 1000


# ------------------------------------------------------------------------------------------------
# Keras workers: the library's builders (the transformer block is written with keras.layers until
# the transformer family lands).


def keras_transformer(jit_compile):
    import keras

    tokens = keras.Input((SEQUENCE,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 256)(tokens)
    h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    h = keras.layers.MultiHeadAttention(4, 64)(h, h, use_causal_mask=True)
    x = keras.layers.Add()([x, h])
    h = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    h = keras.layers.Dense(1024, activation="gelu")(h)
    x = keras.layers.Add()([x, keras.layers.Dense(256)(h)])
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    model = keras.Model(tokens, keras.layers.Dense(VOCABULARY)(x))
    model.compile(keras.optimizers.AdamW(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return model


def keras_setup(model_name, options, steps):
    import keras
    import numpy as np

    import keras_models

    if options.get("keras_layers") or options.get("layer_calls"):
        # The comparison rows: Keras' own functional call and training step, each layer through
        # `Layer.__call__`.
        from keras_models import eager_step, graph_runner

        graph_runner.plan = lambda model: None
        eager_step.train_step = lambda model, data: eager_step.KERAS
    if options.get("keras_layers"):
        # The builders' convolutions, batch normalizations and poolings as Keras' own layers and Keras'
        # optimizer updates as well, the library's PyTorch paths switched off (the variables then keep
        # Keras' memory layout): Keras 3.15 as it is.
        from keras.src.backend.torch.optimizers.torch_sgd import SGD as KerasTorchSGD

        from keras_models import optimizers
        from keras_models.layers.batch_normalization import BatchNormalization
        from keras_models.layers.conv2d import Conv2D, Conv2DTranspose
        from keras_models.layers.pooling import AveragePooling2D, MaxPooling2D

        Conv2D.build, Conv2D.call = keras.layers.Conv2D.build, keras.layers.Conv2D.call
        Conv2D.convolution_op = keras.layers.Conv2D.convolution_op
        Conv2DTranspose.build = keras.layers.Conv2DTranspose.build
        Conv2DTranspose.call = keras.layers.Conv2DTranspose.call
        optimizers.Adam._fused_update = optimizers.AdamW._fused_update = lambda self, grads, variables: False
        optimizers._PerVariableUpdate._parallel_update_step = KerasTorchSGD._parallel_update_step
        BatchNormalization.call = keras.layers.BatchNormalization.call
        MaxPooling2D.call, AveragePooling2D.call = keras.layers.MaxPooling2D.call, keras.layers.AveragePooling2D.call
    batch = MODELS[model_name]["batch"]
    rng = np.random.default_rng(0)
    jit = options["jit_compile"]
    if model_name == "resnet18":
        model = keras_models.build("resnet18", input_shape=(32, 32, 3), num_classes=CLASSES, compile=False,
                                   data_format=options.get("data_format", "channels_last"))
        keras_models.compile_model(model, optimizer=keras_models.optimizers.SGD(0.01, momentum=0.9),
                                   loss="sparse_categorical_crossentropy", jit_compile=jit, family="cnn")
        data = (rng.uniform(size=(batch * steps, 32, 32, 3)).astype("float32"),
                rng.integers(0, CLASSES, size=batch * steps))
    elif model_name == "dcgan":
        model = keras_models.build("dcgan", image_shape=(32, 32, 1), jit_compile=jit)
        data = (rng.uniform(size=(batch * steps, 32, 32, 1)).astype("float32"), None)
    else:
        model = keras_transformer(jit)
        data = (rng.integers(0, VOCABULARY, size=(batch * steps, SEQUENCE)).astype("int32"),
                rng.integers(0, VOCABULARY, size=(batch * steps, SEQUENCE)).astype("int32"))
    x, y = data

    def epoch(count=steps):
        model.fit(x[: batch * count], None if y is None else y[: batch * count], batch_size=batch, epochs=1,
                  verbose=0, shuffle=False)

    facts = {"backend": keras.backend.backend(), "jit_compile": bool(model.jit_compile),
             "parameters": int(model.count_params())}
    return epoch, facts


# ------------------------------------------------------------------------------------------------
# PyTorch workers: the same architectures, written here.


def torch_modules(model_name):
    import torch
    from torch import nn

    def bn(channels):
        # Keras' BatchNormalization: epsilon 1.001e-5, momentum 0.99 (PyTorch counts 1 - momentum).
        return nn.BatchNorm2d(channels, eps=1.001e-5, momentum=0.01)

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1), bn(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1), bn(cout)
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
            return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))

    if model_name == "resnet18":
        return {"model": ResNet18()}
    if model_name == "dcgan":
        # The dcgan builder at 32x32x1, width 32, latent 32: 4x4 start, three 2x upsamplings.
        def up(cin, cout):
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout, momentum=0.1), nn.ReLU()]

        def down(cin, cout, norm):
            layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm2d(cout, momentum=0.01))
            return layers + [nn.LeakyReLU(0.2)]

        generator = nn.Sequential(
            nn.Linear(32, 4 * 4 * 256, bias=False), nn.Unflatten(1, (256, 4, 4)), nn.BatchNorm2d(256, momentum=0.1),
            nn.ReLU(), *up(256, 128), *up(128, 64), *up(64, 32), nn.Conv2d(32, 1, 3, 1, 1), nn.Tanh())
        discriminator = nn.Sequential(*down(1, 32, False), *down(32, 64, True), *down(64, 128, True),
                                      *down(128, 256, True), nn.Flatten(), nn.Linear(256 * 2 * 2, 1))
        return {"generator": generator, "discriminator": discriminator}

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCABULARY, 256)
            self.block = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, activation="gelu", batch_first=True,
                                                    norm_first=True, layer_norm_eps=1e-5)
            self.norm = nn.LayerNorm(256, eps=1e-5)
            self.out = nn.Linear(256, VOCABULARY)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQUENCE))

        def forward(self, tokens):
            return self.out(self.norm(self.block(self.embed(tokens), src_mask=self.mask, is_causal=True)))

    return {"model": Block()}


def torch_setup(model_name, options, steps):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count())
    batch = MODELS[model_name]["batch"]
    rng = np.random.default_rng(0)
    modules = torch_modules(model_name)
    fmt = torch.channels_last if options["channels_last"] else torch.contiguous_format
    for module in modules.values():
        module.to(memory_format=fmt) if model_name != "transformer" else None
        module.train()

    def compiled(fn):
        return torch.compile(fn) if options["compile"] else fn

    if model_name == "resnet18":
        model = modules["model"]
        # PyTorch's default SGD (a loop over the parameters) is its fastest on a CPU: on ResNet-18's 11.2M
        # parameters 7.1 ms a step against 9.0 with `foreach` and 22 `fused`.
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.from_numpy(rng.uniform(size=(batch * steps, 3, 32, 32)).astype("float32"))
        x = x.contiguous(memory_format=fmt)
        y = torch.from_numpy(rng.integers(0, CLASSES, size=batch * steps))

        @compiled
        def step(xb, yb):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            return loss

        def one(i):
            step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
    elif model_name == "dcgan":
        generator, discriminator = modules["generator"], modules["discriminator"]
        g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
        bce = nn.BCEWithLogitsLoss()
        x = torch.from_numpy(rng.uniform(size=(batch * steps, 1, 32, 32)).astype("float32") * 2 - 1)
        x = x.contiguous(memory_format=fmt)
        ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

        @compiled
        def step(real):
            fake = generator(torch.randn(batch, 32))
            d_opt.zero_grad(set_to_none=True)
            d_loss = bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)
            d_loss.backward()
            d_opt.step()
            g_opt.zero_grad(set_to_none=True)
            g_loss = bce(discriminator(generator(torch.randn(batch, 32))), ones)
            g_loss.backward()
            g_opt.step()
            return d_loss, g_loss

        def one(i):
            step(x[i * batch:(i + 1) * batch])
    else:
        model = modules["model"]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        loss_fn = nn.CrossEntropyLoss()
        x = torch.from_numpy(rng.integers(0, VOCABULARY, size=(batch * steps, SEQUENCE)))
        y = torch.from_numpy(rng.integers(0, VOCABULARY, size=(batch * steps, SEQUENCE)))

        @compiled
        def step(xb, yb):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb).reshape(-1, VOCABULARY), yb.reshape(-1))
            loss.backward()
            optimizer.step()
            return loss

        def one(i):
            step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])

    def epoch(count=steps):
        for i in range(count):
            one(i)

    parameters = sum(p.numel() for m in modules.values() for p in m.parameters())
    return epoch, {"torch": torch.__version__, "threads": torch.get_num_threads(), "parameters": int(parameters)}


def worker(name, model_name, steps):
    """Builds and warms up, says `ready`, then times one epoch of `steps` steps per `run` line."""
    framework, options, _ = CONFIGS[name]
    start = time.perf_counter()
    setup = keras_setup if framework == "keras" else torch_setup
    epoch, facts = setup(model_name, options, steps)
    epoch(2)
    epoch(2)  # the second warm-up call catches a recompilation on the first real call
    facts["warmup_seconds"] = time.perf_counter() - start
    print(json.dumps({"ready": facts}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        begin = time.perf_counter()
        epoch()
        print(json.dumps({"seconds": time.perf_counter() - begin}), flush=True)


# ------------------------------------------------------------------------------------------------
# Driver


def start_worker(name, model_name, steps):
    framework, options, _ = CONFIGS[name]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if framework == "keras":
        env["KERAS_BACKEND"] = options["backend"]
        # XLA:CPU compiles the partitionable Threefry initializers slowly (README, "JAX"); warm-up only.
        env.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
    process = subprocess.Popen([sys.executable, __file__, "--worker", name, "--model", model_name, "--steps", str(steps)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    return process


def read_message(process, name):
    line = process.stdout.readline()
    if not line:
        error = process.stderr.read().strip().splitlines()
        raise RuntimeError(f"worker {name} stopped: {error[-1] if error else process.wait()}")
    return json.loads(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (at least 5 to publish)")
    parser.add_argument("--configs", nargs="*", help=f"default: all that apply; known: {sorted(CONFIGS)}")
    parser.add_argument("--output", help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.steps)
        return
    names = args.configs or [n for n in CONFIGS if args.model == "resnet18" or n not in LAYOUT_ONLY]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {sorted(CONFIGS)}")
    batch = MODELS[args.model]["batch"]
    load_start = os.getloadavg()[0]
    workers, facts = {}, {}
    for name in names:  # warm up one at a time, so compilation never overlaps a timed epoch
        workers[name] = start_worker(name, args.model, args.steps)
        facts[name] = read_message(workers[name], name)["ready"]
        print(f"ready {name}: {json.dumps(facts[name])}", flush=True)
    seconds = {name: [] for name in names}
    loads = []
    for round_index in range(args.rounds):
        loads.append(os.getloadavg()[0])
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            workers[name].stdin.write("run\n")
            workers[name].stdin.flush()
            seconds[name].append(read_message(workers[name], name)["seconds"])
        print(f"round {round_index + 1}: " + ", ".join(f"{n} {batch * args.steps / seconds[n][-1]:.1f}" for n in names),
              flush=True)
    loads.append(os.getloadavg()[0])
    for process in workers.values():
        process.stdin.close()
        process.wait(timeout=60)
    results = {}
    for name in names:
        rates = [batch * args.steps / s for s in seconds[name]]
        results[name] = {"what": CONFIGS[name][2], "samples_per_second": statistics.median(rates),
                         "rates": rates, **facts[name]}
    best_torch = max((r["samples_per_second"], n) for n, r in results.items() if CONFIGS[n][0] == "torch") \
        if any(CONFIGS[n][0] == "torch" for n in names) else None
    print(f"\n{MODELS[args.model]['what']}; batch {batch}, {args.steps} steps per epoch, {args.rounds} rounds; "
          f"load {load_start:.2f} at start, {min(loads):.2f}-{max(loads):.2f} over the rounds")
    print("| config | what | samples/s (median) | min-max | vs best PyTorch |")
    print("|---|---|---|---|---|")
    for name in names:
        r = results[name]
        ratio = f"{r['samples_per_second'] / best_torch[0]:.2f}" if best_torch else "-"
        print(f"| `{name}` | {r['what']} | {r['samples_per_second']:.1f} | {min(r['rates']):.1f}-{max(r['rates']):.1f} "
              f"| {ratio} |")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"model": args.model, "batch": batch, "steps": args.steps, "rounds": args.rounds,
                       "load_start": load_start, "round_loads": loads, "cpu_count": os.cpu_count(),
                       "date": time.strftime("%Y-%m-%d"), "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
