"""How much a trained GPT's validation loss moves when its TFLite file is quantized.

    python benchmarks/gpt_int8.py                       # character and BPE models on the help topics
    python benchmarks/gpt_int8.py --text source         # on the standard library's source code
    python benchmarks/gpt_int8.py --quick               # a tiny run that checks the script (about a minute)

The data, tokenizers, model size, optimizer and batches are `gpt_quality.py`'s (its functions are
imported): nanoGPT's CPU recipe (4 layers, 4 heads, width 128, context 64, batch 12, AdamW) trained with
`fit` on Keras' TensorFlow backend for `--steps` steps. The trained model is then exported with
`export.to_tflite` three times: float32, `quantization="float16"` (float16 weights) and
`quantization="dynamic"` (int8 weights, float activations), and every file's validation cross-entropy
is computed in the LiteRT interpreter over the same validation windows as the Keras model's
(`model.evaluate`), from the logits with a float64 log-softmax. Reported: the file size, nats per token
and the change against the Keras model, in percent. The issue's bar for int8: at most 2%.

Quality figures only (no timing), so the load does not matter.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import numpy as np  # noqa: E402

from gpt_quality import TEXTS, batches, keras_optimizer, prepare  # noqa: E402

FORMATS = {"float32": None, "float16": "float16", "int8 (dynamic range)": "dynamic"}


def train(facts, args):
    import keras

    import keras_models
    from keras_models.transformers import causal_lm_loss

    data = np.load(facts["data"])
    keras.utils.set_random_seed(0)
    model = keras_models.build(
        "gpt_causal_lm", vocabulary_size=facts["vocabulary_size"], num_layers=args.layers, num_heads=args.heads,
        hidden_dim=args.width, intermediate_dim=4 * args.width, max_sequence_length=args.context, dropout=0.0,
        compile=False)
    config = {"decay_steps": max(1, args.steps - args.warmup), "warmup_steps": args.warmup,
              "weight_decay": 0.1, "betas": (0.9, 0.99)}
    keras_models.compile_model(model, optimizer=keras_optimizer(config, args.learning_rate), loss=causal_lm_loss(),
                               jit_compile=False, family="transformer")
    x, y = batches(data, 0, args.steps, args.context)
    model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
    return model, data["valid_windows"]


def cross_entropy(logits, targets):
    """Mean nats per target token, float64."""
    logits = logits.astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
    picked = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return float(np.mean(log_norm - picked))


def litert_loss(path, windows, batch):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=2)
    [source] = interpreter.get_input_details()
    [target] = interpreter.get_output_details()
    interpreter.resize_tensor_input(source["index"], (batch, windows.shape[1] - 1))
    interpreter.allocate_tensors()
    total, count = 0.0, 0
    for first in range(0, len(windows) - batch + 1, batch):
        chunk = windows[first:first + batch]
        interpreter.set_tensor(source["index"], chunk[:, :-1].astype(source["dtype"]))
        interpreter.invoke()
        total += cross_entropy(interpreter.get_tensor(target["index"]), chunk[:, 1:]) * len(chunk)
        count += len(chunk)
    return total / count


def measure(level, args, folder):
    import export

    facts, _ = prepare(level, args, folder)
    model, windows = train(facts, args)
    windows = windows[:len(windows) - len(windows) % args.eval_batch]  # whole batches for the fixed-size files
    reference = cross_entropy(np.asarray(model.predict(windows[:, :-1], batch_size=64, verbose=0)), windows[:, 1:])
    rows = [("Keras (TensorFlow)", None, reference)]
    for name, quantization in FORMATS.items():
        path = os.path.join(folder, f"{level}_{quantization or 'float32'}.tflite")
        export.to_tflite(model, path, quantization=quantization)
        rows.append((f"TFLite {name}", os.path.getsize(path), litert_loss(path, windows, args.eval_batch)))
    return facts, model.count_params(), len(windows), rows


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", choices=("char", "bpe"), default=["char", "bpe"])
    parser.add_argument("--text", choices=tuple(TEXTS), default="help")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--bpe-vocabulary", type=int, default=1024)
    parser.add_argument("--valid-windows", type=int, default=0, help="0 for the whole validation text")
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.layers, args.width, args.valid_windows, args.bpe_vocabulary = 20, 1, 32, 64, 300
    # What gpt_quality.prepare reads besides these.
    args.timing, args.repeats = False, 1
    return args


def main(argv=None):
    args = parse(argv)
    import keras
    import tensorflow as tf

    print(f"Command: `python benchmarks/gpt_int8.py {' '.join(argv if argv is not None else sys.argv[1:])}`")
    print(f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
          f"{os.cpu_count()} CPUs; TensorFlow {tf.__version__}, Keras {keras.__version__}; "
          f"load {os.getloadavg()[0]:.2f}\n")
    with tempfile.TemporaryDirectory() as folder:
        for level in args.corpora:
            facts, parameters, count, rows = measure(level, args, folder)
            print(f"#### {args.text} text, {'characters' if level == 'char' else 'byte-level BPE'}: vocabulary "
                  f"{facts['vocabulary_size']}, {parameters:,} parameters, {args.steps} steps, "
                  f"{count} validation windows of {args.context} targets\n")
            print("| model | file bytes | nats/token | change |")
            print("|---|---:|---:|---:|")
            reference = rows[0][2]
            for name, size, loss in rows:
                change = 100.0 * (loss - reference) / reference
                size_text = "" if size is None else f"{size:,}"
                print(f"| {name} | {size_text} | {loss:.4f} | {change:+.3f}% |")
            per_character = facts["target_tokens"] / facts["target_characters"]  # tokens per character
            print(f"\n(Keras: {reference * per_character / math.log(2):.3f} bits/char over these windows; "
                  f"load {os.getloadavg()[0]:.2f})\n", flush=True)


if __name__ == "__main__":
    main()
