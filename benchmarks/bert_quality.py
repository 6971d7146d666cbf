"""BERT pretrained by masked language modelling on Python's help text, then fine-tuned to tell which
standard-library module a docstring comes from: accuracy with pretraining and from scratch.

    python benchmarks/bert_quality.py                 # pretraining, then fine-tuning with and without it
    python benchmarks/bert_quality.py --quick         # a tiny run that checks the script (about a minute)

Pretraining text: the English help topics that ship with Python (`pydoc_data.topics`, the language
reference's prose), joined as `gpt_quality.py` reads them; the first 90% of the characters trains, the
last 10% measures the masked-LM loss. A `WordPieceTokenizer` (`--vocabulary` tokens) is trained on the
pretraining text alone and serves every model. The text is cut into windows of `--sequence-length - 2`
tokens, each read as `[CLS] window [SEP]`, and masked afresh every pass (`mask_tokens`: 15% of the tokens,
80% `[MASK]`, 10% a random token, 10% kept).

Labelled task (it ships with Python, so nothing is downloaded): the docstrings of the public classes,
functions and methods of ten standard-library modules (`MODULES`: GUI, graphics, asynchronous I/O,
decimal arithmetic, logging, introspection, testing, IMAP, paths, threads), at most `--per-module` of
each, labelled by module. Text unrelated to the pretraining text (the help topics describe the
language, not its library), and a task a model cannot solve by one keyword: every module has methods
named `get`, `close` or `run`. The split is by document: a class's methods (or a function alone) are
one group, and whole groups go to the test set until it holds a quarter of each module's docstrings,
so no test docstring comes from a class seen in training.

Fine-tuning: `bert_classifier` on the pretrained backbone, and the same classifier from a fresh
backbone, with the same optimizer (AdamW, warm-up then cosine decay, as `gpt_quality.py`), batches and
number of steps, over `--seeds` seeds (the order of the batches and the classifier's initial weights;
the pretrained weights are the same). Reported: test accuracy, mean and spread over the seeds, beside a
TF-IDF logistic regression (scikit-learn) on the same split as a reference point.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import shlex
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import gpt_quality  # noqa: E402  (the help text and the optimizer, shared with the GPT benchmark)

COMMAND = "python benchmarks/bert_quality.py"
MODULES = ("tkinter", "turtle", "asyncio", "decimal", "logging", "inspect", "unittest", "imaplib", "pathlib",
           "threading")


# ------------------------------------------------------------------------------------------------
# Data


def docstrings(per_module):
    """`(texts, labels, groups, modules)`: docstrings of at least 8 words of each module's public classes,
    functions and methods (first seen wins a duplicate), at most `per_module` per module (a seeded
    sample), labelled by module index; `groups` names the class or function each is from."""
    import numpy as np

    texts, labels, groups, modules, seen = [], [], [], [], set()
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a Python built without it (tkinter needs Tk)
        found = []
        for name in sorted(vars(module)):
            owner = vars(module)[name]
            if name.startswith("_") or not str(getattr(owner, "__module__", "")).startswith(module_name):
                continue
            members = [owner]
            if inspect.isclass(owner):
                members += [value for key, value in sorted(vars(owner).items()) if not key.startswith("_")]
            for member in members:
                if not (inspect.isclass(member) or inspect.isroutine(member)):
                    continue
                text = inspect.getdoc(member)
                if text and len(text.split()) >= 8 and text not in seen:
                    seen.add(text)
                    found.append((" ".join(text.split()), f"{module_name}.{name}"))
        keep = np.sort(np.random.default_rng(len(modules)).permutation(len(found))[:per_module])
        texts += [found[i][0] for i in keep]
        groups += [found[i][1] for i in keep]
        labels += [len(modules)] * len(keep)
        modules.append(module_name)
    return texts, labels, groups, modules


def split_by_group(labels, groups, test_fraction, seed):
    """Train and test indices: per label, whole groups in a seeded order go to the test set until it
    holds `test_fraction` of the label's examples (a group that would take it past 1.5 times that
    is passed over)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels, groups = np.asarray(labels), np.asarray(groups)
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        names = sorted(set(groups[members]))
        held = 0
        for index in rng.permutation(len(names)):
            chosen = members[groups[members] == names[index]]
            if held + len(chosen) > 1.5 * test_fraction * len(members):
                continue  # a class too large to hold out whole this late
            test.extend(chosen.tolist())
            held += len(chosen)
            if held >= test_fraction * len(members):
                break
    test = np.array(sorted(test))
    return np.setdiff1d(np.arange(len(labels)), test), test


def pretraining_windows(tokenizer, text, sequence_length):
    """`[token_ids, segment_ids, padding_mask]` of consecutive windows of `text`'s tokens, each
    `[CLS] tokens [SEP]` (the last one padded)."""
    import numpy as np

    from keras_models.text.tokenizer import pad

    stream = tokenizer.encode(text)
    width = sequence_length - 2
    rows = [[tokenizer.classification_id, *stream[start:start + width], tokenizer.separator_id]
            for start in range(0, len(stream), width)]
    token_ids = pad(rows, sequence_length)
    return [token_ids, np.zeros_like(token_ids), (token_ids != 0).astype(np.int32)]


# ------------------------------------------------------------------------------------------------
# Training


def optimizer(args, learning_rate, steps):
    config = {"learning_rate": learning_rate, "warmup_steps": max(1, steps // 10), "decay_steps": max(1, steps - steps // 10),
              "weight_decay": 0.01, "betas": (0.9, 0.999)}
    return gpt_quality.keras_optimizer(config, learning_rate)


def model_config(args, vocabulary_size):
    return {"vocabulary_size": vocabulary_size, "num_layers": args.layers, "num_heads": args.heads,
            "hidden_dim": args.width, "intermediate_dim": 4 * args.width, "max_sequence_length": args.sequence_length,
            "dropout": args.dropout}


def pretrain(args, tokenizer, train_windows, valid_windows, log):
    import keras
    import numpy as np

    import keras_models
    from keras_models.text import mask_tokens
    from keras_models.transformers import masked_lm_loss

    keras.utils.set_random_seed(0)
    model = keras_models.build("bert_masked_lm", **model_config(args, tokenizer.vocabulary_size), compile=False)
    steps = args.pretrain_steps
    keras_models.compile_model(model, optimizer=optimizer(args, args.pretrain_learning_rate, steps),
                               loss=masked_lm_loss(), weighted_metrics=["sparse_categorical_accuracy"],
                               jit_compile=args.jit_compile, family="transformer")
    valid = mask_tokens(valid_windows, tokenizer.vocabulary_size, seed=10_000)
    checkpoints = sorted({max(1, steps * i // args.evals) for i in range(1, args.evals + 1)})
    curve, done, seconds = [], 0, 0.0
    for checkpoint in checkpoints:
        # Windows drawn at random, masked afresh for every draw (the same draws for any run: seeded).
        rows = np.random.default_rng(checkpoint).integers(0, len(train_windows[0]), (checkpoint - done) * args.batch)
        x, y, weights = mask_tokens([part[rows] for part in train_windows], tokenizer.vocabulary_size, seed=checkpoint)
        begin = time.perf_counter()
        model.fit(x, y, sample_weight=weights, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
        seconds += time.perf_counter() - begin
        done = checkpoint
        loss, accuracy = model.evaluate(*valid[:2], sample_weight=valid[2], batch_size=64, verbose=0)
        curve.append({"steps": done, "loss": loss, "accuracy": accuracy, "seconds": seconds})
        log(f"  pretraining step {done}: validation masked-LM loss {loss:.3f} nats, accuracy {accuracy:.3f} "
            f"({seconds:.0f} s of training)")
    return model, curve


def fine_tune(args, tokenizer, backbone_weights, data, seed):
    """Test accuracy of a `bert_classifier` fine-tuned from `backbone_weights` (`None`: from scratch)."""
    import keras
    import numpy as np

    import keras_models

    (x_train, y_train), (x_test, y_test), num_classes = data
    keras.utils.set_random_seed(100 + seed)
    config = model_config(args, tokenizer.vocabulary_size)
    backbone = keras_models.build("bert", **config, name="bert_classifier_backbone", compile=False)
    if backbone_weights is not None:
        backbone.set_weights(backbone_weights)
    model = keras_models.build("bert_classifier", num_classes=num_classes, backbone=backbone, compile=False)
    steps = args.finetune_epochs * -(-len(y_train) // args.batch)
    keras_models.compile_model(model, optimizer=optimizer(args, args.finetune_learning_rate, steps),
                               loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                               jit_compile=args.jit_compile, family="transformer")
    begin = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch, epochs=args.finetune_epochs, verbose=0,
              shuffle=True)
    seconds = time.perf_counter() - begin
    predictions = model.predict(x_test, batch_size=64, verbose=0).argmax(axis=1)
    return float(np.mean(predictions == y_test)), seconds


def tfidf_accuracy(texts, labels, train, test):
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(sublinear_tf=True)
    features = vectorizer.fit_transform([texts[i] for i in train])
    classifier = LogisticRegression(max_iter=2000, C=10.0).fit(features, np.asarray(labels)[train])
    predictions = classifier.predict(vectorizer.transform([texts[i] for i in test]))
    return float(np.mean(predictions == np.asarray(labels)[test]))


# ------------------------------------------------------------------------------------------------
# Driver


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary", type=int, default=4000, help="WordPiece tokens")
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--pretrain-learning-rate", type=float, default=1e-3)
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--finetune-learning-rate", type=float, default=5e-4)
    parser.add_argument("--per-module", type=int, default=100, help="docstrings per module at most")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per condition")
    parser.add_argument("--evals", type=int, default=4, help="validation points over pretraining")
    parser.add_argument("--keras-backend", choices=("tensorflow", "jax", "torch"), default="tensorflow",
                        help="TensorFlow: 5x faster than PyTorch per step for this small model on 2 CPU cores")
    parser.add_argument("--jit-compile", type=lambda s: {"none": None, "true": True, "false": False}[s.lower()],
                        default=None, help="none (the family's default), true or false")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.vocabulary, args.sequence_length, args.layers, args.width, args.batch = 600, 32, 1, 32, 16
        args.pretrain_steps, args.finetune_epochs, args.per_module, args.seeds, args.evals = 30, 2, 30, 1, 1
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    os.environ.setdefault("KERAS_BACKEND", args.keras_backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from keras_models.text import BertPreprocessor, WordPieceTokenizer

    def log(line):
        print(line, flush=True)

    start = time.perf_counter()
    log(f"Command: `{COMMAND} {shlex.join(argv)}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores. "
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Keras {keras.__version__} on "
        f"{keras.backend.backend()}, Python {platform.python_version()}. Load average (1 min) at the start: "
        f"{os.getloadavg()[0]:.2f}.")
    text, split, topic_count = gpt_quality.help_text()
    tokenizer = WordPieceTokenizer.train(text[:split].split("\n"), vocabulary_size=args.vocabulary)
    train_windows = pretraining_windows(tokenizer, text[:split], args.sequence_length)
    valid_windows = pretraining_windows(tokenizer, text[split:], args.sequence_length)
    texts, labels, groups, modules = docstrings(args.per_module)
    train, test = split_by_group(labels, groups, 0.25, seed=0)
    preprocessor = BertPreprocessor(tokenizer, args.sequence_length)
    labels_array = np.asarray(labels, dtype=np.int32)
    encoded = preprocessor(texts)
    data = (([part[train] for part in encoded], labels_array[train]),
            ([part[test] for part in encoded], labels_array[test]), len(modules))
    unknown = float(np.mean(encoded[0][encoded[2] == 1] == tokenizer.unknown_id))
    facts = {"topics": topic_count, "vocabulary_size": tokenizer.vocabulary_size,
             "pretraining_windows": len(train_windows[0]), "validation_windows": len(valid_windows[0]),
             "modules": modules, "docstrings": len(texts), "train": len(train), "test": len(test),
             "test_groups": len(set(np.asarray(groups)[test])), "unknown_token_fraction": unknown,
             "majority_class": float(np.bincount(labels_array[test]).max() / len(test))}
    log(f"Data: {json.dumps(facts)}")

    pretrained, curve = pretrain(args, tokenizer, train_windows, valid_windows, log)
    weights = pretrained.backbone.get_weights()
    results = {"pretrained": [], "scratch": []}
    for seed in range(args.seeds):
        for condition, initial in (("pretrained", weights), ("scratch", None)):
            accuracy, seconds = fine_tune(args, tokenizer, initial, data, seed)
            results[condition].append({"accuracy": accuracy, "seconds": seconds})
            log(f"  fine-tuning seed {seed}, {condition}: test accuracy {accuracy:.3f} ({seconds:.0f} s)")
    reference = tfidf_accuracy(texts, labels, train, test)

    log(f"\n| model | test accuracy (mean over {args.seeds} seeds) | min-max |\n|---|---|---|")
    for condition, name in (("pretrained", "BERT, masked-LM pretraining then fine-tuning"),
                            ("scratch", "BERT from scratch, same fine-tuning")):
        values = [r["accuracy"] for r in results[condition]]
        log(f"| {name} | {statistics.mean(values):.3f} | {min(values):.3f}-{max(values):.3f} |")
    log(f"| TF-IDF + logistic regression (reference) | {reference:.3f} | |")
    log(f"| majority class | {facts['majority_class']:.3f} | |")
    parameters = pretrained.backbone.count_params()
    log(f"\nBackbone {parameters:,} weights ({args.layers} layers, width {args.width}, {args.heads} heads, "
        f"{args.sequence_length} positions). Pretraining: {curve[-1]['steps']} steps of {args.batch} windows, final "
        f"validation masked-LM loss {curve[-1]['loss']:.3f} nats (accuracy {curve[-1]['accuracy']:.3f}), "
        f"{curve[-1]['seconds']:.0f} s. Fine-tuning: {args.finetune_epochs} epochs of {len(train)} docstrings.")
    log(f"\n{time.perf_counter() - start:.0f} s in all; load average (1 min) at the end: {os.getloadavg()[0]:.2f}.")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"argv": argv, "facts": facts, "pretraining": curve, "fine_tuning": results,
                       "tfidf": reference}, handle, indent=1)


if __name__ == "__main__":
    main()
