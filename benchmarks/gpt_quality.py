"""GPT language models on real text: the library's `gpt_causal_lm` beside the same GPT written in PyTorch.

    python benchmarks/gpt_quality.py                     # character and BPE models, quality and time
    python benchmarks/gpt_quality.py --corpora char      # the character model only
    python benchmarks/gpt_quality.py --quick             # a tiny run that checks the script (1-2 minutes)
    python benchmarks/gpt_quality.py --timing --steps 20 --repeats 5    # seconds per step only
    python benchmarks/gpt_quality.py --text source       # on the standard library's source code

Text (`--text`): `help`, the English help topics that ship with Python (`pydoc_data.topics`), the topic
texts joined by newlines in the order of their names (as `recurrent_quality.py charlm` reads them); or
`source`, the standard library's top-level modules (`<stdlib>/*.py`) joined in file-name order. The
first 90% of the characters is the training text, the last 10% the validation text. Two tokenizations, both trained
on the training text alone with `keras_models.text`: `CharacterTokenizer` (one token per character) and
`BytePairTokenizer` (byte-level BPE, `--bpe-vocabulary` tokens).

Models, all trained on the same batches (windows of `--context + 1` tokens at offsets drawn once with
seed 0) for the same number of steps. The default size is nanoGPT's CPU recipe (4 layers, 4 heads,
width 128, context 64, batch 12, AdamW 1e-3 with betas 0.9 and 0.99, weight decay 0.1, cosine decay to
a tenth), trained for 150 steps (its recipe takes 2,000: `--steps 2000`):

- `keras`: `keras_models.build("gpt_causal_lm", ...)` (its loss, `causal_lm_loss()`), with the library's
  `keras_models.optimizers.AdamW`, trained with `fit` on Keras' `--keras-backend` (PyTorch by default,
  the backend README recommends for training on a CPU).
- `torch`: the same network written here in PyTorch: pre-norm blocks, learned positions, tied
  embeddings, GELU (tanh form), separate query/key/value projections with biases, LayerNorm epsilon
  1e-5, `scaled_dot_product_attention`, trained with PyTorch's fused AdamW and a multi-tensor gradient
  norm (its fastest optimizer on a CPU). It starts from the Keras model's initial weights (copied), so
  the two runs differ only in the frameworks' arithmetic; `--torch-init own` draws its own N(0, 0.02)
  weights instead.
- For timing (`--timing`), the other ways each framework trains the same model: `keras_adamw` (the
  library's model with Keras' own AdamW), `keras_layer_calls` (Keras' own functional call, training
  step and AdamW: Keras as it ships, but for the library's loss), `torch_default` (PyTorch's default AdamW, a loop over
  the parameters on a CPU) and `torch_compile` (the PyTorch model compiled by `torch.compile`, fused
  AdamW; compiled before timing).

Optimizer: AdamW (betas, epsilon 1e-8, weight decay on every weight, as both frameworks' AdamW do by
default), a linear warm-up then a cosine decay to 10% (Keras' `CosineDecay`; the same formula in
PyTorch), gradient norm clipped at 1. Reported: validation cross-entropy in nats per token and bits per
character over consecutive validation windows (every validation token a target once, each window read
from its start), at `--evals` points; the training seconds of each model, timed in alternation (each
model trains a chunk of steps while the others wait, chunk after chunk), with the 1-minute load
average; greedy and top-p samples decoded to text.

Every model runs in its own worker process (backends are chosen at start-up), started and warmed up
one at a time: a throw-away copy of the model trains two steps first, so imports and first-call costs
stay out of the timed steps. `--timing` only times: after the warm-up every worker trains `--steps`
steps per round, in turn, `--repeats` rounds, and the median seconds per step is reported, as
`cnn_training.py` does. A run above a load of about 1.5 on two cores is not one to publish as a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COMMAND = "python benchmarks/gpt_quality.py"
PROMPT = "The "
WORKERS = {"keras": "Keras gpt_causal_lm", "torch": "PyTorch GPT (written here), fused AdamW",
           "lstm": "Keras rnn_language_model (LSTM)",
           # comparison rows: the library's model with Keras' own AdamW; the same with every layer through
           # `Layer.__call__` as well (Keras' own functional call)
           "keras_adamw": "Keras gpt_causal_lm, Keras' AdamW",
           "keras_layer_calls": "Keras gpt_causal_lm, Keras' own functional call, step and AdamW (the library's loss)",
           # PyTorch's other ways: its default AdamW (a loop over the parameters on a CPU), and the model
           # compiled by `torch.compile` with the fused AdamW
           "torch_default": "PyTorch GPT, default AdamW", "torch_compile": "PyTorch GPT, torch.compile, fused AdamW"}
KERAS_KINDS = ("keras", "keras_adamw", "keras_layer_calls")


# ------------------------------------------------------------------------------------------------
# Data: help topics, tokenized once by the driver and handed to the workers as arrays.


def help_text():
    """The help topics of this Python joined by newlines in name order, and the 90% split point."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[name] for name in sorted(topics))
    return text, int(len(text) * 0.9), len(topics)


def source_text():
    """The standard library's top-level modules (`<stdlib>/*.py`) of this Python joined by newlines in
    file-name order, and the 90% split point (the validation text is the last modules, never trained on)."""
    import glob
    import sysconfig

    paths = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            texts.append(handle.read())
    text = "\n".join(texts)
    return text, int(len(text) * 0.9), len(paths)


TEXTS = {"help": help_text, "source": source_text}


def train_tokenizer(level, train_text, bpe_vocabulary):
    from keras_models.text import BytePairTokenizer, CharacterTokenizer

    if level == "char":
        return CharacterTokenizer.train(train_text)
    return BytePairTokenizer.train(train_text.split("\n"), vocabulary_size=bpe_vocabulary)


def prepare(level, args, directory):
    """Tokenizes the text, draws the batches and writes what the workers read; returns facts and the tokenizer."""
    import numpy as np

    text, split, topic_count = TEXTS[args.text]()
    tokenizer = train_tokenizer(level, text[:split], args.bpe_vocabulary)
    train = np.asarray(tokenizer.encode(text[:split]), dtype=np.int32)
    valid = np.asarray(tokenizer.encode(text[split:]), dtype=np.int32)
    context = args.context
    starts = np.arange(0, len(valid) - context - 1, context)[:args.valid_windows or None]
    valid_windows = np.stack([valid[s:s + context + 1] for s in starts])
    # The targets of consecutive windows overlapping by one id are one stretch of the validation stream.
    target_characters = len(tokenizer.decode(valid[1:len(starts) * context + 1].tolist()))
    total_steps = args.steps * args.repeats if args.timing else args.steps
    rng = np.random.default_rng(0)
    batch_starts = rng.integers(0, len(train) - context - 1, size=(total_steps + 2, args.batch))
    path = os.path.join(directory, f"{level}.npz")
    np.savez(path, train=train, valid_windows=valid_windows, batch_starts=batch_starts,
             prompt=np.asarray([tokenizer.encode(PROMPT)], dtype=np.int32))
    facts = {"level": level, "prompt_length": len(tokenizer.encode(PROMPT)), "characters": len(text),
             "text": args.text, "documents": topic_count, "split": split,
             "vocabulary_size": tokenizer.vocabulary_size, "train_tokens": len(train), "valid_tokens": len(valid),
             "valid_windows": len(starts), "target_tokens": len(starts) * context,
             "target_characters": target_characters, "data": path}
    return facts, tokenizer


def batches(data, first, count, context):
    """`(x, y)` of steps `first ... first + count - 1`: `(count * batch, context)` each."""
    import numpy as np

    starts = data["batch_starts"][first:first + count].reshape(-1)
    windows = data["train"][starts[:, None] + np.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


# ------------------------------------------------------------------------------------------------
# The learning rate, the same in both frameworks.


def learning_rate_at(step, config):
    """Keras' `CosineDecay(0.0, decay_steps, alpha=0.1, warmup_target=lr, warmup_steps)` at `step`
    (counted from 0: the rate of the first update)."""
    lr, warmup, decay = config["learning_rate"], config["warmup_steps"], config["decay_steps"]
    step = min(step, warmup + decay)
    if step < warmup:
        return lr * step / warmup
    fraction = (step - warmup) / decay
    return lr * ((1 - 0.1) * 0.5 * (1 + math.cos(math.pi * fraction)) + 0.1)


def keras_optimizer(config, learning_rate, library=True):
    """AdamW with the schedule and clipping: the library's (`keras_models.optimizers.AdamW`, fused on
    PyTorch) or Keras' own; the same update."""
    import keras

    import keras_models.optimizers

    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, config["decay_steps"], alpha=0.1, warmup_target=learning_rate, warmup_steps=config["warmup_steps"])
    optimizer = keras_models.optimizers.AdamW if library else keras.optimizers.AdamW
    return optimizer(schedule, weight_decay=config["weight_decay"], beta_1=config["betas"][0],
                     beta_2=config["betas"][1], epsilon=1e-8, global_clipnorm=1.0)


# ------------------------------------------------------------------------------------------------
# Workers. Each answers `train N` (seconds), `eval` (mean nats per target token) and `sample`.


class KerasWorker:
    def __init__(self, kind, config, data):
        import keras
        import numpy as np

        self.keras, self.np, self.kind, self.config, self.data = keras, np, kind, config, data
        self.step = 0
        warmup = self.build(seed=config["seed"] + 1)  # throw-away: first calls and imports out of the timing
        x, y = batches(data, len(data["batch_starts"]) - 2, 2, config["context"])
        warmup.fit(x, y, batch_size=config["batch"], epochs=1, shuffle=False, verbose=0)
        self.model = self.build(seed=config["seed"])
        self.facts = {"backend": keras.backend.backend(), "jit_compile": bool(self.model.jit_compile),
                      "keras": keras.__version__, "parameters": int(self.model.count_params())}

    def build(self, seed):
        import keras_models
        from keras_models.recurrent import language_model_loss
        from keras_models.transformers import causal_lm_loss

        config = self.config
        self.keras.utils.set_random_seed(seed)
        if self.kind in KERAS_KINDS:
            model = keras_models.build(
                "gpt_causal_lm", vocabulary_size=config["vocabulary_size"], num_layers=config["layers"],
                num_heads=config["heads"], hidden_dim=config["width"], intermediate_dim=4 * config["width"],
                max_sequence_length=config["context"], dropout=0.0, compile=False)
            loss, family, lr = causal_lm_loss(), "transformer", config["learning_rate"]
        else:
            model = keras_models.build(
                "rnn_language_model", vocab_size=config["vocabulary_size"], embedding_dim=config["lstm_embedding"],
                cell="lstm", units=config["lstm_units"], compile=False)
            loss, family, lr = language_model_loss(), "recurrent", config["lstm_learning_rate"]
        optimizer = keras_optimizer(config, lr, library=self.kind in ("keras", "lstm"))
        keras_models.compile_model(model, optimizer=optimizer, loss=loss,
                                   jit_compile=config["jit_compile"], family=family)
        return model

    def initial_weights(self):
        """The GPT's weights by role, for the PyTorch model to start from."""
        backbone, to_numpy = self.model.backbone, self.keras.ops.convert_to_numpy
        weights = {"token": backbone.token_embedding.embeddings,
                   "position": backbone.position_embedding.position_embeddings,
                   "final_norm.gamma": backbone.final_norm.gamma, "final_norm.beta": backbone.final_norm.beta}
        for index, block in enumerate(backbone.transformer_layers):
            parts = {"norm1": block.attention_norm, "norm2": block.feed_forward_norm}
            for role, layer in parts.items():
                weights[f"{index}.{role}.gamma"], weights[f"{index}.{role}.beta"] = layer.gamma, layer.beta
            dense = {"query": block.attention.query_dense, "key": block.attention.key_dense,
                     "value": block.attention.value_dense, "output": block.attention.output_dense,
                     "up": block.feed_forward.up, "down": block.feed_forward.down}
            for role, layer in dense.items():
                weights[f"{index}.{role}.kernel"], weights[f"{index}.{role}.bias"] = layer.kernel, layer.bias
        return {name: to_numpy(variable) for name, variable in weights.items()}

    def train(self, count):
        x, y = batches(self.data, self.step, count, self.config["context"])
        begin = time.perf_counter()
        self.model.fit(x, y, batch_size=self.config["batch"], epochs=1, shuffle=False, verbose=0)
        self.step += count
        return time.perf_counter() - begin

    def evaluate(self):
        windows = self.data["valid_windows"]
        return float(self.model.evaluate(windows[:, :-1], windows[:, 1:], batch_size=64, verbose=0))

    def sample(self):
        prompt, length = self.data["prompt"], self.config["sample_length"]
        rows = [self.model.generate(prompt, length, sampler="greedy")]
        rows += [self.model.generate(prompt, length, sampler="top_p", top_p=0.9, seed=seed) for seed in (0, 1)]
        return [row[0].tolist() for row in rows]


def torch_model(config):
    import torch
    from torch import nn
    from torch.nn import functional

    width, heads = config["width"], config["heads"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-5), nn.LayerNorm(width, eps=1e-5)
            self.query, self.key, self.value, self.output = (nn.Linear(width, width) for _ in range(4))
            self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            batch, steps, _ = x.shape
            h = self.norm1(x)
            q, k, v = (layer(h).view(batch, steps, heads, width // heads).transpose(1, 2)
                       for layer in (self.query, self.key, self.value))  # (batch, heads, steps, head_dim)
            attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.output(attended.transpose(1, 2).reshape(batch, steps, width))
            return x + self.down(functional.gelu(self.up(self.norm2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Embedding(config["vocabulary_size"], width)
            self.position = nn.Parameter(torch.zeros(config["context"], width))
            self.blocks = nn.ModuleList(Block() for _ in range(config["layers"]))
            self.final_norm = nn.LayerNorm(width, eps=1e-5)
            for name, parameter in self.named_parameters():  # GPT-2's N(0, 0.02), as the Keras backbone
                if "norm" not in name:
                    nn.init.zeros_(parameter) if name.endswith("bias") else nn.init.normal_(parameter, 0.0, 0.02)

        def forward(self, ids):  # (batch, steps) -> (batch, steps, vocabulary)
            x = self.token(ids) + self.position[:ids.shape[1]]
            for block in self.blocks:
                x = block(x)
            return functional.linear(self.final_norm(x), self.token.weight)  # tied embeddings

        def load_keras(self, weights):
            with torch.no_grad():
                self.token.weight.copy_(torch.from_numpy(weights["token"]))
                self.position.copy_(torch.from_numpy(weights["position"]))
                self.final_norm.weight.copy_(torch.from_numpy(weights["final_norm.gamma"]))
                self.final_norm.bias.copy_(torch.from_numpy(weights["final_norm.beta"]))
                for index, block in enumerate(self.blocks):
                    for role in ("norm1", "norm2"):
                        getattr(block, role).weight.copy_(torch.from_numpy(weights[f"{index}.{role}.gamma"]))
                        getattr(block, role).bias.copy_(torch.from_numpy(weights[f"{index}.{role}.beta"]))
                    for role in ("query", "key", "value", "output", "up", "down"):
                        layer = getattr(block, role)  # Keras kernels are (in, out), PyTorch's (out, in)
                        layer.weight.copy_(torch.from_numpy(weights[f"{index}.{role}.kernel"]).T)
                        layer.bias.copy_(torch.from_numpy(weights[f"{index}.{role}.bias"]))

    return GPT()


class TorchWorker:
    def __init__(self, kind, config, data, initial_weights=None):
        import numpy as np
        import torch

        torch.set_num_threads(os.cpu_count())
        self.torch, self.np, self.kind, self.config, self.data = torch, np, kind, config, data
        self.step = 0
        torch.manual_seed(config["seed"] + 1)
        warmup = self.build(None)
        self._run(warmup, len(data["batch_starts"]) - 2, 2)
        torch.manual_seed(config["seed"])
        self.model, self.optimizer = self.build(initial_weights)
        if kind == "torch_compile":  # compiled for the training shapes: a forward and backward, no update
            x, y = batches(data, len(data["batch_starts"]) - 2, 1, config["context"])
            logits = self.model(torch.from_numpy(x.astype("int64")))
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                              torch.from_numpy(y.astype("int64")).reshape(-1)).backward()
            self.optimizer.zero_grad(set_to_none=True)
        self.facts = {"torch": torch.__version__, "threads": torch.get_num_threads(), "optimizer": self.optimizer_kind,
                      "parameters": int(sum(p.numel() for p in self.model.parameters())),
                      "initial_weights": "copied from the Keras model" if initial_weights else "own N(0, 0.02)"}

    def build(self, initial_weights):
        torch, config = self.torch, self.config
        model = torch_model(config)
        if initial_weights is not None:
            model.load_keras(initial_weights)
        # The fused kernel is PyTorch's fastest AdamW on a CPU (1.0 ms a step with clipping on this model,
        # against 3.0-3.3 ms for the default, a loop over the parameters there).
        fused = self.kind != "torch_default"
        self.optimizer_kind = "fused" if fused else "default"
        optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"], betas=tuple(config["betas"]),
                                      eps=1e-8, weight_decay=config["weight_decay"], fused=fused or None)
        model.train()
        return (torch.compile(model) if self.kind == "torch_compile" else model), optimizer

    def _run(self, pair, first, count):
        torch, (model, optimizer) = self.torch, pair
        x, y = batches(self.data, first, count, self.config["context"])
        x, y = torch.from_numpy(x.astype("int64")), torch.from_numpy(y.astype("int64"))
        batch, vocabulary = self.config["batch"], self.config["vocabulary_size"]
        for index in range(count):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(first + index, self.config)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x[index * batch:(index + 1) * batch])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocabulary),
                                                     y[index * batch:(index + 1) * batch].reshape(-1))
            loss.backward()
            # one multi-tensor norm where the optimizer is fused, as its foreach default does on a GPU
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=self.optimizer_kind == "fused" or None)
            optimizer.step()

    def train(self, count):
        begin = time.perf_counter()
        self._run((self.model, self.optimizer), self.step, count)
        self.step += count
        return time.perf_counter() - begin

    def evaluate(self):
        torch = self.torch
        windows = torch.from_numpy(self.data["valid_windows"].astype("int64"))
        self.model.eval()
        total = 0.0
        with torch.no_grad():
            for chunk in windows.split(64):
                logits = self.model(chunk[:, :-1])
                total += float(torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"))
        self.model.train()
        return total / windows[:, 1:].numel()

    def sample(self):
        """Greedy and top-p (0.9) continuations of the prompt, the whole prefix re-read at every token."""
        torch = self.torch
        self.model.eval()
        rows = []
        for sampler, seed in (("greedy", None), ("top_p", 0), ("top_p", 1)):
            generator = torch.Generator().manual_seed(seed or 0)
            ids = torch.from_numpy(self.data["prompt"].astype("int64"))
            with torch.no_grad():
                while ids.shape[1] < self.config["sample_length"]:
                    logits = self.model(ids)[0, -1]
                    if sampler == "greedy":
                        token = int(logits.argmax())
                    else:
                        probabilities, order = torch.softmax(logits, -1).sort(descending=True)
                        keep = (probabilities.cumsum(0) - probabilities) < 0.9  # the nucleus, first token always
                        kept = probabilities * keep
                        token = int(order[torch.multinomial(kept / kept.sum(), 1, generator=generator)])
                    ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            rows.append(ids[0].tolist())
        self.model.train()
        return rows


def worker(kind, config_path):
    with open(config_path) as handle:
        config = json.load(handle)
    import numpy as np

    data = dict(np.load(config["data"]))
    if kind.startswith("torch"):
        initial = dict(np.load(config["initial_weights"])) if config.get("initial_weights") else None
        runner = TorchWorker(kind, config, data, initial)
    else:
        if kind == "keras_layer_calls":
            from keras_models import eager_step, graph_runner

            graph_runner.plan = lambda model: None
            eager_step.train_step = lambda model, data: eager_step.KERAS
        runner = KerasWorker(kind, config, data)
        if kind in KERAS_KINDS:  # the same seeded weights; the PyTorch model starts from them
            np.savez(config["initial_weights_out"], **runner.initial_weights())
    print(json.dumps({"ready": runner.facts}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "stop":
            break
        if command[0] == "train":
            answer = {"seconds": runner.train(int(command[1]))}
        elif command[0] == "eval":
            answer = {"nats": runner.evaluate()}
        else:
            answer = {"samples": runner.sample()}
        print(json.dumps(answer), flush=True)


# ------------------------------------------------------------------------------------------------
# Driver


class Worker:
    def __init__(self, kind, config, directory, keras_backend):
        path = os.path.join(directory, f"{config['level']}_{kind}.json")
        with open(path, "w") as handle:
            json.dump(config, handle)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env["KERAS_BACKEND"] = (keras_backend if kind in KERAS_KINDS else
                                {"lstm": "tensorflow"}.get(kind, "torch"))
        env.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
        self.kind = kind
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", kind, path], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.facts = self.ask(None)["ready"]

    def ask(self, command):
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            error = self.process.stderr.read().strip().splitlines()
            raise RuntimeError(f"worker {self.kind} stopped: {error[-1] if error else self.process.wait()}")
        return json.loads(line)

    def stop(self):
        self.process.stdin.write("stop\n")
        self.process.stdin.close()
        self.process.wait(timeout=120)


def model_config(args, facts, directory):
    return {"level": facts["level"], "data": facts["data"], "vocabulary_size": facts["vocabulary_size"],
            "layers": args.layers, "heads": args.heads, "width": args.width, "context": args.context,
            "batch": args.batch, "learning_rate": args.learning_rate, "betas": args.betas,
            "weight_decay": args.weight_decay, "warmup_steps": args.warmup,
            "decay_steps": max(1, args.steps - args.warmup),
            "seed": 0, "jit_compile": args.jit_compile, "sample_length": args.sample_length,
            "lstm_units": args.lstm_units, "lstm_embedding": args.lstm_embedding,
            "lstm_learning_rate": args.lstm_learning_rate,
            "initial_weights_out": os.path.join(directory, f"{facts['level']}_init.npz"),
            "initial_weights": (os.path.join(directory, f"{facts['level']}_init.npz")
                                if args.torch_init == "keras" else None)}


def start_workers(kinds, config, directory, args, log):
    workers = {}
    for kind in kinds:  # one at a time, so no warm-up overlaps another's
        workers[kind] = Worker(kind, config, directory, args.keras_backend)
        log(f"ready {kind}: {json.dumps(workers[kind].facts)}")
    return workers


def kinds_for(level, args):
    return [kind for kind in args.models if kind != "lstm" or level == "char"]


def run_quality(level, args, directory, log):
    facts, tokenizer = prepare(level, args, directory)
    config = model_config(args, facts, directory)
    log(f"{level}: {json.dumps({k: v for k, v in facts.items() if k != 'data'})}")
    kinds = kinds_for(level, args)
    workers = start_workers(kinds, config, directory, args, log)
    checkpoints = sorted({max(1, args.steps * i // args.evals) for i in range(1, args.evals + 1)})
    curves = {kind: [] for kind in kinds}
    seconds = {kind: [] for kind in kinds}
    loads, done = [os.getloadavg()[0]], 0
    for checkpoint in checkpoints:
        for kind in kinds:
            seconds[kind].append(workers[kind].ask(f"train {checkpoint - done}")["seconds"])
        for kind in kinds:
            curves[kind].append(workers[kind].ask("eval")["nats"])
        done = checkpoint
        loads.append(os.getloadavg()[0])
        log(f"  step {checkpoint}: " + ", ".join(
            f"{kind} {curves[kind][-1]:.4f} nats/token ({sum(seconds[kind]):.0f} s)" for kind in kinds)
            + f"; load {loads[-1]:.2f}")
    samples = {}
    for kind in kinds:
        rows = workers[kind].ask("sample")["samples"]
        samples[kind] = [tokenizer.decode(row[facts["prompt_length"]:]) for row in rows]
        workers[kind].stop()
    per_character = facts["target_tokens"] / facts["target_characters"]
    results = {kind: {"what": WORKERS[kind], **workers[kind].facts, "nats_per_token": curves[kind],
                      "bits_per_character": [n * per_character / math.log(2) for n in curves[kind]],
                      "chunk_seconds": seconds[kind], "training_seconds": sum(seconds[kind]),
                      "samples": samples[kind]} for kind in kinds}
    return {"facts": {k: v for k, v in facts.items() if k != "data"}, "checkpoints": checkpoints, "loads": loads,
            "results": results}


def run_timing(level, args, directory, log):
    facts, _ = prepare(level, args, directory)
    config = model_config(args, facts, directory)
    kinds = kinds_for(level, args)
    workers = start_workers(kinds, config, directory, args, log)
    seconds, loads = {kind: [] for kind in kinds}, []
    for round_index in range(args.repeats):
        loads.append(os.getloadavg()[0])
        shift = round_index % len(kinds)  # the order rotates: the first place in a round runs slower
        for kind in kinds[shift:] + kinds[:shift]:
            seconds[kind].append(workers[kind].ask(f"train {args.steps}")["seconds"] / args.steps)
        log(f"  round {round_index + 1}: " + ", ".join(f"{k} {seconds[k][-1]:.3f} s/step" for k in kinds))
    loads.append(os.getloadavg()[0])
    for kind in kinds:
        workers[kind].stop()
    return {"facts": {k: v for k, v in facts.items() if k != "data"}, "loads": loads,
            "results": {kind: {"what": WORKERS[kind], **workers[kind].facts, "seconds_per_step": seconds[kind],
                               "median": statistics.median(seconds[kind])} for kind in kinds}}


def report_quality(level, run, args, log):
    facts, results = run["facts"], run["results"]
    name = {"char": "characters", "bpe": f"byte-level BPE, {facts['vocabulary_size']} tokens"}[level]
    log(f"\n#### {name}\n")
    log(f"Vocabulary {facts['vocabulary_size']}; train {facts['train_tokens']:,} tokens, validation "
        f"{facts['valid_tokens']:,} ({facts['valid_windows']} windows, {facts['target_tokens']:,} target tokens = "
        f"{facts['target_characters']:,} characters). Load (1 min) {min(run['loads']):.2f}-{max(run['loads']):.2f}.\n")
    columns = ["model", "params", *(f"nats/token @ {c}" for c in run["checkpoints"]), "bits/char", "training s",
               "s/step"]
    log("| " + " | ".join(columns) + " |")
    log("|" + "---|" * len(columns))
    for kind, r in results.items():
        log(f"| {r['what']} | {r['parameters']:,} | " + " | ".join(f"{n:.4f}" for n in r["nats_per_token"])
            + f" | {r['bits_per_character'][-1]:.3f} | {r['training_seconds']:.0f} | "
            f"{r['training_seconds'] / run['checkpoints'][-1]:.3f} |")
    log(f"\nSamples, prompt {PROMPT!r} ({args.sample_length} tokens with the prompt): greedy, then top_p=0.9 "
        f"seeds 0 and 1\n")
    for kind, r in results.items():
        for sampler, text in zip(("greedy", "top_p 0.9, seed 0", "top_p 0.9, seed 1"), r["samples"]):
            log(f"{r['what']}, {sampler}: {json.dumps(PROMPT + text, ensure_ascii=False)}")


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", choices=("char", "bpe"), default=["char", "bpe"])
    parser.add_argument("--text", choices=tuple(TEXTS), default="help",
                        help="help: pydoc_data.topics (English prose); source: the standard library's modules")
    parser.add_argument("--models", nargs="+", choices=tuple(WORKERS), default=["keras", "torch", "lstm"])
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps (per round with --timing)")
    parser.add_argument("--evals", type=int, default=3, help="validation points over the steps")
    parser.add_argument("--timing", action="store_true", help="time rounds of --steps steps, no quality")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds with --timing")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--betas", type=float, nargs=2, default=[0.9, 0.99])
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=15, help="linear warm-up steps")
    parser.add_argument("--bpe-vocabulary", type=int, default=1024)
    parser.add_argument("--valid-windows", type=int, default=0, help="0 for the whole validation text")
    parser.add_argument("--sample-length", type=int, default=64, help="tokens per sample, prompt included")
    parser.add_argument("--keras-backend", choices=("torch", "jax", "tensorflow"), default="torch")
    parser.add_argument("--jit-compile", type=lambda s: {"none": None, "true": True, "false": False}[s.lower()],
                        default=None, help="none (the family's default), true or false")
    parser.add_argument("--torch-init", choices=("keras", "own"), default="keras")
    parser.add_argument("--lstm-units", type=int, default=384)
    parser.add_argument("--lstm-embedding", type=int, default=64)
    parser.add_argument("--lstm-learning-rate", type=float, default=3e-3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--output", help="also write the results to this JSON file")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.corpora, args.steps, args.evals, args.layers, args.width, args.context = ["char"], 8, 2, 1, 32, 32
        args.batch, args.warmup, args.valid_windows, args.sample_length = 4, 2, 8, 32
        args.lstm_units, args.lstm_embedding, args.repeats = 32, 16, 2
    args.argv = argv
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.worker:
        worker(*args.worker)
        return
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the driver only tokenizes: no TensorFlow needed
    import keras
    import torch

    def log(line):
        print(line, flush=True)

    start = time.perf_counter()
    log(f"Command: `{COMMAND} {shlex.join(argv)}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores. "
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Keras {keras.__version__} (GPT on the "
        f"{args.keras_backend} backend, LSTM on tensorflow), PyTorch {torch.__version__}, Python "
        f"{platform.python_version()}. Load average (1 min) at the start: {os.getloadavg()[0]:.2f}.")
    runs = {}
    with tempfile.TemporaryDirectory() as directory:
        for level in args.corpora:
            if args.timing:
                runs[level] = run_timing(level, args, directory, log)
                log(f"\n{level}: median s/step over {args.repeats} rounds of {args.steps} steps, load "
                    f"{min(runs[level]['loads']):.2f}-{max(runs[level]['loads']):.2f}\n")
                log("| model | s/step (median) | min-max |\n|---|---|---|")
                for kind, r in runs[level]["results"].items():
                    log(f"| {r['what']} | {r['median']:.3f} | "
                        f"{min(r['seconds_per_step']):.3f}-{max(r['seconds_per_step']):.3f} |")
            else:
                runs[level] = run_quality(level, args, directory, log)
                report_quality(level, runs[level], args, log)
    log(f"\n{time.perf_counter() - start:.0f} s in all; load average (1 min) at the end: {os.getloadavg()[0]:.2f}.")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"argv": argv, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs},
                      handle, indent=1)


if __name__ == "__main__":
    main()
