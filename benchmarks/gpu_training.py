"""Training throughput on a GPU: the library's models on Keras' JAX backend side by side with PyTorch.

    python benchmarks/gpu_training.py                      # resnet50, gpt2 and dcgan groups, 5 rounds
    python benchmarks/gpu_training.py --groups gpt2 --rounds 7 --output gpu.json
    python benchmarks/gpu_training.py --small              # tiny sizes: checks the script on a CPU

Groups (each runs on its own, so that only its workers hold GPU memory):

- `resnet50`: the `resnet50` builder, 224x224x3, 1,000 classes, batch 256, SGD (0.1, momentum 0.9),
  `dtype="mixed_bfloat16"`, trained by plain `fit()` on numpy arrays: fed from the device's memory (the
  library's default where the arrays fit) and, as a comparison, through Keras' own host path
  (`data_on_device=False`). PyTorch: torchvision's ResNet-50 (v1.5: stride on the 3x3 convolution, which
  costs 5% more FLOPs than the v1 the builder follows), channels_last, bf16 autocast, data already on
  the GPU, eager and `torch.compile`.
- `gpt2`: `gpt_causal_lm` with the `gpt2_small` preset (124M, tied embeddings), sequence 1024, batch 16,
  AdamW (6e-4, weight decay 0.1), `dtype="mixed_bfloat16"`, plain `fit()` on numpy token ids. PyTorch:
  the same network written here with `scaled_dot_product_attention` (flash attention) and fused AdamW,
  bf16 autocast, eager and `torch.compile`.
- `dcgan`: the `dcgan` builder at 64x64x3 (width 32, latent 100), batch 256, one D and one G update per
  step, float32; PyTorch: the same networks written here, eager and `torch.compile`.
- `lstm`: `rnn_language_model` (vocabulary 10,000, embedding 256, two LSTM layers of 1,024 units),
  sequence 128, batch 128, Adam (1e-3), float32, plain `fit()` on numpy token ids; PyTorch: the same
  network written here with `nn.LSTM` (cuDNN's fused LSTM), eager and `torch.compile`. Keras' JAX
  backend has no cuDNN LSTM: its LSTM is a `lax.scan` over the steps.

Every configuration runs in its own worker process. The workers of a group are started and warmed up one
at a time (XLA compilation and `torch.compile` excluded), then timed in alternation, `--rounds` rounds of
A, B, C, ... with the order rotated each round (B, C, A; ...); medians are reported. A Keras round is one `fit` call of three epochs over `--steps`
batches, timed from the start of its second epoch to its return (a copy of the arrays to the device and
Keras' set-up happen once per `fit`, before the first epoch); a PyTorch round is two epochs of `--steps`
steps, synchronised at the end.

Achieved TFLOP/s count the multiply-adds of the convolutions and dense layers (2 FLOPs each, a training
step 3x the forward pass) for the CNNs, and nanoGPT's 6N + 12 L d T per token for GPT (N the parameter
count, tied embeddings). Utilisation is over a bf16 matrix product's rate measured at the start of the
run on the same GPU (8192^3, PyTorch, median of 20). Without a GPU everything runs on the CPU, and the
output says so.
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

# What a group's throughput counts.
GROUPS = {"resnet50": "images", "gpt2": "tokens", "dcgan": "images", "lstm": "tokens"}
# name -> (group, framework, options, what it is)
CONFIGS = {
    "keras_resnet50": ("resnet50", "keras", {}, "resnet50 builder, Keras on JAX, fit() fed from the device"),
    "keras_resnet50_host": ("resnet50", "keras", {"data_on_device": False},
                            "resnet50 builder, Keras on JAX, fit() through Keras' host path"),
    "torch_resnet50": ("resnet50", "torch", {"compile": False}, "torchvision ResNet-50, eager, channels_last"),
    "torch_resnet50_compile": ("resnet50", "torch", {"compile": True},
                               "torchvision ResNet-50, torch.compile, channels_last"),
    "keras_gpt2": ("gpt2", "keras", {}, "gpt_causal_lm gpt2_small, Keras on JAX, fit()"),
    # The profile (BENCHMARKS.md) puts GPT's gap in XLA's Triton gemm fusions of the vocabulary-sized
    # products; this configuration asks XLA for cuBLAS instead.
    "keras_gpt2_cublas": ("gpt2", "keras", {"xla_flags": "--xla_gpu_enable_triton_gemm=false"},
                          "the same with XLA_FLAGS=--xla_gpu_enable_triton_gemm=false"),
    "torch_gpt2": ("gpt2", "torch", {"compile": False}, "GPT-2 small in PyTorch, SDPA, fused AdamW, eager"),
    "torch_gpt2_compile": ("gpt2", "torch", {"compile": True}, "GPT-2 small in PyTorch, torch.compile"),
    "keras_dcgan": ("dcgan", "keras", {}, "dcgan builder, Keras on JAX, fit()"),
    "torch_dcgan": ("dcgan", "torch", {"compile": False}, "DCGAN in PyTorch, eager, channels_last"),
    "torch_dcgan_compile": ("dcgan", "torch", {"compile": True}, "DCGAN in PyTorch, torch.compile, channels_last"),
    "keras_lstm": ("lstm", "keras", {}, "rnn_language_model, Keras on JAX, fit()"),
    "torch_lstm": ("lstm", "torch", {"compile": False}, "the same LSTM in PyTorch (cuDNN), eager"),
    "torch_lstm_compile": ("lstm", "torch", {"compile": True}, "the same LSTM in PyTorch (cuDNN), torch.compile"),
}
# The `lstm` group's language model: vocabulary, embedding width, units, layers.
LSTM_SIZES = {"vocab_size": 10000, "embedding_dim": 256, "units": 1024, "num_layers": 2}
LSTM_SMALL = {"vocab_size": 64, "embedding_dim": 8, "units": 16, "num_layers": 2}
CLASSES, SEQUENCE, LATENT, WIDTH = 1000, 1024, 100, 32


def sizes(group, small):
    """(batch, image side or sequence length, the model's options) of `group` at full or `--small` size."""
    if group == "resnet50":
        return (4, 32, {}) if small else (256, 224, {})
    if group == "gpt2":
        tiny = {"vocabulary_size": 512, "num_layers": 2, "num_heads": 2, "hidden_dim": 64,
                "intermediate_dim": 256, "max_sequence_length": 64}
        return (2, 64, tiny) if small else (16, SEQUENCE, {"preset": "gpt2_small"})
    if group == "lstm":
        return (4, 8, LSTM_SMALL) if small else (128, 128, LSTM_SIZES)
    return (4, 64, {}) if small else (256, 64, {})


def unit_count(group, batch, side):
    """Images or tokens in one step."""
    return batch * side if group in ("gpt2", "lstm") else batch


# ------------------------------------------------------------------------------------------------
# FLOP counts


def keras_forward_flops(model):
    """2 x the multiply-adds of every Conv2D, Conv2DTranspose and Dense layer in `model` (nested too),
    per sample, read from the layers' kernels and output shapes."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kernel = layer.kernel.shape  # (kh, kw, in, out); (kh, kw, out, in) for the transposed
            # A convolution computes the whole kernel at each output position; a transposed one
            # scatters it from each input position.
            shape = layer.input.shape if isinstance(layer, keras.layers.Conv2DTranspose) else layer.output.shape
            spatial = shape[1] * shape[2] if layer.data_format == "channels_last" else shape[2] * shape[3]
            total += 2 * spatial * kernel[0] * kernel[1] * kernel[2] * kernel[3]
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(total)


def torch_forward_flops(module, example):
    """The same count for PyTorch's Conv2d, ConvTranspose2d and Linear modules, by forward hooks."""
    import torch

    total = [0]

    def hook(layer, inputs, output):
        if isinstance(layer, torch.nn.Conv2d):
            total[0] += 2 * output.shape[2] * output.shape[3] * layer.weight.numel()
        elif isinstance(layer, torch.nn.ConvTranspose2d):
            total[0] += 2 * inputs[0].shape[2] * inputs[0].shape[3] * layer.weight.numel()
        elif isinstance(layer, torch.nn.Linear):
            total[0] += 2 * layer.weight.numel()

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    with torch.no_grad():
        module(example[:1])
    for handle in handles:
        handle.remove()
    return int(total[0])


def lstm_flops_per_token(sizes):
    """A training step's FLOPs per token of the `lstm` group's model: 3x the forward pass's 2 x the
    multiply-adds of the four gates of each layer (input and recurrent products) and of the output layer."""
    width, units, layers = sizes["embedding_dim"], sizes["units"], sizes["num_layers"]
    gates = sum(4 * ((width if layer == 0 else units) + units) * units for layer in range(layers))
    return 3 * 2 * (gates + units * sizes["vocab_size"])


def gpt_flops_per_token(parameters, layers, width, sequence):
    """nanoGPT's count: 6N for the matrix products with the weights, 12 L d T for attention."""
    return 6 * parameters + 12 * layers * width * sequence


# ------------------------------------------------------------------------------------------------
# Keras workers (JAX backend)


def keras_setup(name, steps, small):
    import keras
    import numpy as np

    import keras_models

    group, _, options, _ = CONFIGS[name]
    batch, side, model_options = sizes(group, small)
    rng = np.random.default_rng(0)
    data_on_device = options.get("data_on_device")
    if group == "resnet50":
        model = keras_models.build("resnet50", input_shape=(side, side, 3), num_classes=CLASSES,
                                   dtype="mixed_bfloat16", compile=False)
        keras_models.compile_model(model, optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                                   loss="sparse_categorical_crossentropy", jit_compile=True, family="cnn")
        x = rng.random((batch * steps, side, side, 3), dtype=np.float32)
        y = rng.integers(0, CLASSES, size=batch * steps).astype("int32")
        flops = 3 * keras_forward_flops(model)
    elif group == "gpt2":
        model = keras_models.build("gpt_causal_lm", dropout=0.0, dtype="mixed_bfloat16", compile=False,
                                   **model_options)
        vocabulary = model.backbone.vocabulary_size
        model.compile(optimizer=keras.optimizers.AdamW(6e-4, weight_decay=0.1, beta_2=0.95),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
        tokens = rng.integers(0, vocabulary, size=(batch * steps, side + 1)).astype("int32")
        x, y = tokens[:, :-1], tokens[:, 1:]
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        backbone = model.backbone
        flops = gpt_flops_per_token(model.count_params(), backbone.num_layers, backbone.hidden_dim, side)
    elif group == "lstm":
        model = keras_models.build("rnn_language_model", cell="lstm", sequence_length=side, compile=False,
                                   **model_options)
        keras_models.compile_model(model, optimizer=keras.optimizers.Adam(1e-3),
                                   loss=keras_models.recurrent.language_model_loss(), jit_compile=True,
                                   family="recurrent")
        tokens = rng.integers(1, model_options["vocab_size"], size=(batch * steps, side + 1)).astype("int32")
        x, y = np.ascontiguousarray(tokens[:, :-1]), np.ascontiguousarray(tokens[:, 1:])
        flops = lstm_flops_per_token(model_options)
    else:
        model = keras_models.build("dcgan", image_shape=(side, side, 3), latent_dim=LATENT, jit_compile=True)
        x = rng.random((batch * steps, side, side, 3), dtype=np.float32)
        y = None
        flops = 3 * sum(keras_forward_flops(network) for network in (model.generator, model.discriminator))
    marks, facts = {}, {}

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                marks["second_epoch"] = time.perf_counter()

    def run(epochs=3):
        begin = time.perf_counter()
        kwargs = {} if data_on_device is None else {"data_on_device": data_on_device}
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[Clock()], **kwargs)
        end = time.perf_counter()
        return {"seconds": end - marks["second_epoch"], "call_seconds": end - begin,
                "units": (epochs - 1) * steps * unit_count(group, batch, side)}

    import jax

    if group == "gpt2":  # whether keras.ops.dot_product_attention takes cuDNN's fused (flash) kernel here
        from keras.src.backend.jax import nn as jax_nn

        probe = jax.numpy.zeros((1, side, 2, 64), "bfloat16")
        facts["keras_flash_check"] = bool(jax_nn._can_use_flash_attention(probe, probe, probe, None))
    facts = {**facts, "backend": keras.backend.backend(), "device": str(jax.devices()[0].device_kind),
             "jax": jax.__version__, "keras": keras.__version__, "parameters": int(model.count_params()),
             "flops_per_unit": int(flops)}
    return run, facts


# ------------------------------------------------------------------------------------------------
# PyTorch workers


def torch_gpt(vocabulary, layers, heads, width, inner, positions):
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.up, self.down = nn.Linear(width, inner), nn.Linear(inner, width)

        def forward(self, x):
            batch, steps, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
            q, k, v = (t.view(batch, steps, heads, width // heads).transpose(1, 2) for t in (q, k, v))
            attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.out(attended.transpose(1, 2).reshape(batch, steps, width))
            return x + self.down(functional.gelu(self.up(self.norm2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens, self.positions = nn.Embedding(vocabulary, width), nn.Embedding(positions, width)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm = nn.LayerNorm(width)
            for parameter in self.parameters():
                if parameter.dim() > 1:
                    nn.init.normal_(parameter, std=0.02)

        def forward(self, ids):
            x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
            for block in self.blocks:
                x = block(x)
            return self.norm(x) @ self.tokens.weight.T  # tied embeddings

    return GPT()


def torch_dcgan(side):
    from torch import nn

    # The dcgan builder's networks (width 32): a dense projection to 4x4, stride-2 4x4 transposed
    # convolutions with batch norm and ReLU up to the image size, a 3x3 convolution to the channels;
    # the discriminator mirrors it with stride-2 4x4 convolutions (no norm on the first) and LeakyReLU.
    steps = {32: 3, 64: 4}[side]
    filters = WIDTH * 2 ** steps
    layers = [nn.Linear(LATENT, 16 * filters, bias=False), nn.Unflatten(1, (filters, 4, 4)),
              nn.BatchNorm2d(filters, momentum=0.1), nn.ReLU()]
    for _ in range(steps):
        layers += [nn.ConvTranspose2d(filters, filters // 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(filters // 2, momentum=0.1), nn.ReLU()]
        filters //= 2
    generator = nn.Sequential(*layers, nn.Conv2d(filters, 3, 3, 1, 1), nn.Tanh())
    down, cin = [], 3
    for step in range(steps + 1):
        cout = WIDTH * 2 ** step
        down += [nn.Conv2d(cin, cout, 4, 2, 1, bias=step == 0)]
        down += [nn.BatchNorm2d(cout, momentum=0.1)] if step else []
        down += [nn.LeakyReLU(0.2)]
        cin = cout
    spatial = side // 2 ** (steps + 1)
    discriminator = nn.Sequential(*down, nn.Flatten(), nn.Linear(cin * spatial * spatial, 1))
    return generator, discriminator


def torch_setup(name, steps, small):
    import torch
    from torch import nn

    group, _, options, _ = CONFIGS[name]
    batch, side, model_options = sizes(group, small)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    autocast = torch.autocast(device, dtype=torch.bfloat16)
    last = torch.channels_last

    def compiled(fn):
        return torch.compile(fn) if options["compile"] else fn

    if group == "resnet50":
        import torchvision

        model = torchvision.models.resnet50(num_classes=CLASSES).to(device, memory_format=last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        x = [torch.rand(batch, 3, side, side, device=device).contiguous(memory_format=last) for _ in range(steps)]
        y = torch.randint(0, CLASSES, (steps, batch), device=device)
        flops = 3 * torch_forward_flops(model, x[0])
        parameters = sum(p.numel() for p in model.parameters())

        @compiled
        def step(xb, yb):
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            return loss

        def one(i):
            step(x[i], y[i])
    elif group == "gpt2":
        config = model_options
        if "preset" in config:
            config = {"vocabulary_size": 50257, "num_layers": 12, "num_heads": 12, "hidden_dim": 768,
                      "intermediate_dim": 3072, "max_sequence_length": 1024}
        model = torch_gpt(config["vocabulary_size"], config["num_layers"], config["num_heads"],
                          config["hidden_dim"], config["intermediate_dim"], config["max_sequence_length"]).to(device)
        fused = device == "cuda"
        decay = [p for p in model.parameters() if p.dim() > 1]
        rest = [p for p in model.parameters() if p.dim() <= 1]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                      lr=6e-4, betas=(0.9, 0.95), fused=fused)
        tokens = torch.randint(0, config["vocabulary_size"], (steps, batch, side + 1), device=device)
        parameters = sum(p.numel() for p in model.parameters())
        flops = gpt_flops_per_token(parameters, config["num_layers"], config["hidden_dim"], side)
        vocabulary = config["vocabulary_size"]

        @compiled
        def step(ids, targets):
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                logits = model(ids)
            loss = nn.functional.cross_entropy(logits.float().view(-1, vocabulary), targets.reshape(-1))
            loss.backward()
            optimizer.step()
            return loss

        def one(i):
            step(tokens[i, :, :-1], tokens[i, :, 1:])
    elif group == "lstm":
        config = model_options

        class LanguageModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(config["vocab_size"], config["embedding_dim"])
                self.lstm = nn.LSTM(config["embedding_dim"], config["units"], num_layers=config["num_layers"],
                                    batch_first=True)
                self.head = nn.Linear(config["units"], config["vocab_size"])

            def forward(self, ids):
                return self.head(self.lstm(self.embedding(ids))[0])

        model = LanguageModel().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device == "cuda")
        tokens = torch.randint(1, config["vocab_size"], (steps, batch, side + 1), device=device)
        parameters = sum(p.numel() for p in model.parameters())
        flops = lstm_flops_per_token(config)
        vocabulary = config["vocab_size"]

        @compiled
        def step(ids, targets):
            optimizer.zero_grad(set_to_none=True)
            logits = model(ids)
            # Padding (id 0) left out, as the library's language-model loss does; the data has none.
            loss = nn.functional.cross_entropy(logits.reshape(-1, vocabulary), targets.reshape(-1), ignore_index=0)
            loss.backward()
            optimizer.step()
            return loss

        def one(i):
            step(tokens[i, :, :-1], tokens[i, :, 1:])
    else:
        generator, discriminator = torch_dcgan(side)
        generator, discriminator = generator.to(device), discriminator.to(device)
        generator, discriminator = generator.to(memory_format=last), discriminator.to(memory_format=last)
        g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        bce = nn.BCEWithLogitsLoss()
        x = [(torch.rand(batch, 3, side, side, device=device) * 2 - 1).contiguous(memory_format=last)
             for _ in range(steps)]
        ones, zeros = torch.ones(batch, 1, device=device), torch.zeros(batch, 1, device=device)
        flops = 3 * (torch_forward_flops(generator, torch.zeros(2, LATENT, device=device))
                     + torch_forward_flops(discriminator, x[0]))
        parameters = sum(p.numel() for m in (generator, discriminator) for p in m.parameters())

        @compiled
        def step(real):
            fake = generator(torch.randn(batch, LATENT, device=device))
            d_opt.zero_grad(set_to_none=True)
            d_loss = bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)
            d_loss.backward()
            d_opt.step()
            g_opt.zero_grad(set_to_none=True)
            g_loss = bce(discriminator(generator(torch.randn(batch, LATENT, device=device))), ones)
            g_loss.backward()
            g_opt.step()
            return d_loss

        def one(i):
            step(x[i])

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def run(epochs=2):
        sync()
        begin = time.perf_counter()
        for _ in range(epochs):
            for i in range(steps):
                one(i)
        sync()
        seconds = time.perf_counter() - begin
        return {"seconds": seconds, "call_seconds": seconds, "units": epochs * steps * unit_count(group, batch, side)}

    name_ = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    facts = {"torch": torch.__version__, "device": name_, "parameters": int(parameters), "flops_per_unit": int(flops)}
    return run, facts


def worker(name, steps, small):
    """Builds and warms up, says `ready`, then answers each `run` line with one timed round."""
    framework = CONFIGS[name][1]
    start = time.perf_counter()
    run, facts = (keras_setup if framework == "keras" else torch_setup)(name, steps, small)
    # One warm-up call: Keras compiles in its first epoch and shows no recompilation in its second;
    # torch.compile compiles at the first step and recompiles once the optimizer has state.
    run(epochs=2 if framework == "keras" else 1)
    facts["warmup_seconds"] = time.perf_counter() - start
    print(json.dumps({"ready": facts}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        print(json.dumps(run()), flush=True)


def matmul_peak():
    """bf16 matrix-product TFLOP/s on this GPU (8192^3, median of 20 after 3 warm-ups), or None on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(20):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(begin.elapsed_time(end) / 1e3)
    return 2 * n ** 3 / statistics.median(times) / 1e12


# ------------------------------------------------------------------------------------------------
# Driver


def worker_env(name):
    """The environment of configuration `name`'s worker process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if CONFIGS[name][1] == "keras":
        env["KERAS_BACKEND"] = "jax"
        flags = CONFIGS[name][2].get("xla_flags")
        if flags:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
        # Each worker takes GPU memory as it needs it, so that the group's workers fit side by side.
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "gpu_training_jax"))
    return env


def worker_command(script, name, steps, small):
    """The command line that runs configuration `name` as a worker of `script` (this file or gpu_profile.py)."""
    return [sys.executable, script, "--worker", name, "--steps", str(steps)] + (["--small"] if small else [])


def start_worker(name, steps, small):
    return subprocess.Popen(worker_command(__file__, name, steps, small), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env(name))


def read_message(process, name):
    while True:
        line = process.stdout.readline()
        if not line:
            error = process.stderr.read().strip().splitlines()
            raise RuntimeError(f"worker {name} stopped: {' | '.join(error[-3:]) if error else process.wait()}")
        if line.startswith("{"):
            return json.loads(line)


def run_group(group, names, steps, rounds, small, peak):
    workers, facts, failed = {}, {}, {}
    for name in names:  # warm up one at a time, so compilation never overlaps a timed round
        try:
            workers[name] = start_worker(name, steps, small)
            facts[name] = read_message(workers[name], name)["ready"]
            print(f"ready {name}: {json.dumps(facts[name])}", flush=True)
        except RuntimeError as error:
            failed[name] = str(error)
            print(f"FAILED {name}: {error}", flush=True)
            workers.pop(name, None)
    rounds_seen = {name: [] for name in workers}
    for round_index in range(rounds):
        names_now = list(workers)
        shift = round_index % max(len(names_now), 1)  # the order rotates: the first place in a round runs slower
        for name in names_now[shift:] + names_now[:shift]:
            try:
                workers[name].stdin.write("run\n")
                workers[name].stdin.flush()
                rounds_seen[name].append(read_message(workers[name], name))
            except (RuntimeError, BrokenPipeError) as error:
                failed[name] = str(error)
                workers.pop(name)
        print(f"round {round_index + 1}: " + ", ".join(
            f"{n} {r[-1]['units'] / r[-1]['seconds']:,.0f}" for n, r in rounds_seen.items() if r), flush=True)
    for process in workers.values():
        process.stdin.close()
        process.wait(timeout=120)
    results = {}
    for name, seen in rounds_seen.items():
        if not seen:
            continue
        rates = [r["units"] / r["seconds"] for r in seen]
        rate = statistics.median(rates)
        tflops = rate * facts[name]["flops_per_unit"] / 1e12
        results[name] = {"what": CONFIGS[name][3], "per_second": rate, "rates": rates, "tflops": tflops,
                         "utilisation": tflops / peak if peak else None,
                         "call_seconds": [r["call_seconds"] for r in seen], **facts[name]}
    return results, failed


def print_table(group, results, failed, steps, rounds, small):
    batch, side, _ = sizes(group, small)
    unit = GROUPS[group]
    compiled_torch = [r["per_second"] for n, r in results.items() if CONFIGS[n][1] == "torch" and "compile" in n]
    best_torch = max([r["per_second"] for n, r in results.items() if CONFIGS[n][1] == "torch"], default=None)
    print(f"\n{group}: batch {batch}, {'sequence' if group in ('gpt2', 'lstm') else 'side'} {side}, {steps} steps per epoch, "
          f"{rounds} rounds")
    print(f"| config | what | {unit}/s (median) | min-max | TFLOP/s | utilisation | vs torch.compile | vs best PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        versus = f"{r['per_second'] / compiled_torch[0]:.2f}x" if compiled_torch else "-"
        best = f"{r['per_second'] / best_torch:.2f}x" if best_torch else "-"
        use = f"{100 * r['utilisation']:.1f}%" if r["utilisation"] else "-"
        print(f"| `{name}` | {r['what']} | {r['per_second']:,.0f} | {min(r['rates']):,.0f}-{max(r['rates']):,.0f} "
              f"| {r['tflops']:.1f} | {use} | {versus} | {best} |")
    for name, error in failed.items():
        print(f"| `{name}` | failed: {error[:300]} | | | | | | |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="*", choices=sorted(GROUPS), default=["resnet50", "gpt2", "dcgan"])
    parser.add_argument("--configs", nargs="*", help=f"default: every config of the groups; known: {sorted(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=15, help="steps per epoch")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (at least 5 to publish)")
    parser.add_argument("--small", action="store_true", help="tiny sizes, to check the script on a CPU")
    parser.add_argument("--output", help="also write the results to this JSON file (after every group)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.small)
        return
    unknown = sorted(set(args.configs or ()) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {sorted(CONFIGS)}")
    try:
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    print(f"GPU: {gpu}" if gpu else "No GPU: every configuration runs on the CPU (figures not comparable to a GPU's)",
          flush=True)
    peak = matmul_peak() if gpu else None
    if peak:
        print(f"bf16 matmul 8192^3: {peak:.0f} TFLOP/s", flush=True)
    report = {"gpu": gpu, "bf16_matmul_tflops": peak, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "steps": args.steps, "rounds": args.rounds, "small": args.small, "groups": {}}
    for group in args.groups:
        names = [n for n, c in CONFIGS.items() if c[0] == group and (not args.configs or n in args.configs)]
        if not names:
            continue
        results, failed = run_group(group, names, args.steps, args.rounds, args.small, peak)
        print_table(group, results, failed, args.steps, args.rounds, args.small)
        report["groups"][group] = {"results": results, "failed": failed}
        if args.output:
            with open(args.output, "w") as handle:
                json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
