"""T5 on grapheme-to-phoneme (CMUdict), beside the recurrent encoder-decoder on the same split (issue 13).

    python benchmarks/t5_quality.py                 # t5_seq2seq_lm and rnn_seq2seq (LSTM), 250/750/1500 steps
    python benchmarks/t5_quality.py --quick         # a tiny run that checks the script (about a minute)
    python benchmarks/t5_quality.py --models t5     # T5 alone
    python benchmarks/t5_quality.py --litert        # also the exported files, float32 and int8 weights, in LiteRT

Data, split and scoring are those of `recurrent_quality.py g2p`, read from its functions: CMUdict's words
of letters and apostrophes, the first pronunciation of each with the stress digits stripped, a seeded
90/5/5 split by word (seed 0), phoneme error rate (summed edit distances over summed reference lengths)
and word error rate (the share of words not exactly right) on the test words, greedy and beam search.

T5 reads letters and writes phonemes in one vocabulary: padding 0, start 1, end 2, the phonemes from 3
(the recurrent model's target ids, so both decode through the same table) and the letters after them.
Both models train on the same batches (words of similar length, 128 a batch, padded to the longest) for
the same number of optimizer steps, Adam with gradient norm clipped at 1 (T5: a linear warm-up over the
first `--t5-warmup` steps to `--t5-lr`), scored at the same checkpoints. The recurrent model is
`recurrent_quality.py g2p`'s LSTM (bidirectional encoder, Luong attention, 128 units); the default T5
(2 + 2 blocks, width 128, 4 heads, feed-forward 512) is about twice its parameters.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras_models  # noqa: E402
from keras_models.recurrent import language_model_loss, teacher_forcing_pairs  # noqa: E402
from keras_models.recurrent.seq2seq import END_ID  # noqa: E402
from recurrent_quality import (  # noqa: E402
    error_rates,
    g2p_split,
    logged_run,
    generate,
    length_batches,
    markdown_table,
    optimizer,
    package_version,
    pad,
    pronunciations,
    seq2seq_arguments,
    strip,
    trimmed,
)

COMMAND = "python benchmarks/t5_quality.py"
MODELS = ("t5", "lstm")
QUICK = dict(steps=[4], test_words=32, t5_model="num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32",
             lstm_model="units=16, embedding_dim=8, bidirectional=True", t5_warmup=2)


def t5_arguments(description, vocabulary_size):
    arguments = seq2seq_arguments(description, 0, 0)
    del arguments["source_vocab_size"], arguments["target_vocab_size"]
    return {"vocabulary_size": vocabulary_size, **arguments}


class _Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up to `learning_rate` over `warmup` steps, then constant."""

    def __init__(self, learning_rate, warmup):
        self.learning_rate, self.warmup = float(learning_rate), float(warmup)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32") + 1.0
        return self.learning_rate * keras.ops.minimum(1.0, step / self.warmup)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup": self.warmup}


def build(kind, args, letters, phonemes, source_length=None):
    """The model of `kind`, compiled, and how its inputs read the letters' ids (an offset); with
    `source_length`, the same model over sources of that fixed length (what the exporters need)."""
    keras.utils.set_random_seed(args.seed)
    if kind == "t5":
        model = keras_models.build("t5_seq2seq_lm", compile=False, source_length=source_length,
                                   **t5_arguments(args.t5_model, 3 + len(phonemes) + len(letters)))
        learning_rate = _Warmup(args.t5_lr, args.t5_warmup)
        offset = 2 + len(phonemes)  # letters after the phonemes in T5's one vocabulary
    else:
        model = keras_models.build("rnn_seq2seq", cell="lstm", compile=False, source_length=source_length,
                                   **seq2seq_arguments(args.lstm_model, len(letters) + 1, len(phonemes) + 3))
        learning_rate, offset = args.lstm_lr, 0
    keras_models.compile_model(model, optimizer=optimizer(learning_rate), loss=language_model_loss(),
                               jit_compile=False, family=None)
    return model, offset


def run(args, log):
    words, phones = pronunciations()
    letters = sorted({char for word in words for char in word})
    phonemes = sorted({phone for pronunciation in phones for phone in pronunciation})
    letter_index = {char: i + 1 for i, char in enumerate(letters)}  # recurrent_quality's source ids
    target_index = {phone: i + 3 for i, phone in enumerate(phonemes)}  # 0 padding, 1 start, 2 end
    inverse = {i: phone for phone, i in target_index.items()}
    train, valid, test = g2p_split(len(words))
    source_length = max(len(word) for word in words)
    target_length = max(len(p) for p in phones)

    def source_ids(indices):
        return pad([[letter_index[c] for c in words[i]] for i in indices], source_length)

    test = test[:args.test_words] if args.test_words else test
    test_source, references = source_ids(test), [phones[i] for i in test]
    (train_source, train_input), train_target = teacher_forcing_pairs(
        source_ids(train), pad([[target_index[p] for p in phones[i]] for i in train], target_length))

    log(f"Data: `cmudict.dict()` (cmudict {package_version('cmudict')}): {len(words):,} words, {len(phonemes)} "
        f"phonemes, {len(letters)} letters; split as `recurrent_quality.py g2p` (seed 0): {len(train):,} train, "
        f"{len(valid):,} validation (unused), scored on {len(test):,} test words. Batch {args.batch}; scored "
        f"after {', '.join(map(str, args.steps))} steps. T5: `keras_models.build(\"t5_seq2seq_lm\", ...)` with "
        f"{args.t5_model}, Adam {args.t5_lr:g} (warm-up {args.t5_warmup} steps). LSTM: "
        f"`keras_models.build(\"rnn_seq2seq\", cell=\"lstm\", ...)` with {args.lstm_model}, Adam "
        f"{args.lstm_lr:g}. Both: gradient norm clipped at 1, Keras {keras.__version__} on "
        f"{keras.backend.backend()} without XLA, {os.cpu_count()} CPU cores, load average (1 min) at the start "
        f"{os.getloadavg()[0]:.1f}.\n")
    batches = length_batches((train_source != 0).sum(axis=1), args.batch, args.steps[-1], np.random.default_rng(0))
    rows, litert_rows = [], []
    for kind in args.models:
        model, offset = build(kind, args, letters, phonemes)
        shift = np.where(train_source != 0, train_source + offset, 0)
        test_ids = np.where(test_source != 0, test_source + offset, 0)
        done, seconds = 0, 0.0
        for checkpoint in args.steps:
            start = time.perf_counter()
            for picks in batches[done:checkpoint]:
                source, decoder_input, target = trimmed(shift[picks], train_input[picks], train_target[picks])
                model.train_on_batch([source, decoder_input], target)
            seconds += time.perf_counter() - start
            done = checkpoint
            results = []
            for sampler in ("greedy", "beam"):
                start = time.perf_counter()
                predicted = generate(model, test_ids, target_length + 2, sampler, args.beam)
                if sampler == "greedy":
                    greedy = predicted  # the last checkpoint's, for --litert
                decode_seconds = time.perf_counter() - start
                per, wer = error_rates([strip(row, inverse, END_ID) for row in predicted], references)
                results += [f"{100 * per:.1f}%", f"{100 * wer:.1f}%"]
                log(f"  {kind} step {checkpoint} {sampler}: PER {100 * per:.2f}%, WER {100 * wer:.2f}% "
                    f"({decode_seconds:.0f} s to decode)")
            rows.append(["T5" if kind == "t5" else "LSTM seq2seq", f"{model.count_params():,}", checkpoint,
                         f"{checkpoint * args.batch / len(train):.1f}", *results, f"{seconds:.0f}"])
        if args.litert:
            fixed, _ = build(kind, args, letters, phonemes, source_length=test_ids.shape[1])
            fixed.set_weights(model.get_weights())
            litert_rows += litert(kind, fixed, test_ids, greedy, references, target_length + 2, inverse, log)
    log("")
    log(markdown_table(["model", "params:", "steps:", "epochs:", "greedy PER:", "greedy WER:",
                        f"beam {args.beam} PER:", f"beam {args.beam} WER:", "training s:"], rows))
    if litert_rows:
        log("\nLiteRT, greedy decoding of every test word through `export.generate` on the generation files "
            f"of the {args.steps[-1]}-step models:\n")
        log(markdown_table(["model", "file", "bytes:", "PER:", "WER:", "words decoded otherwise than by Keras:"],
                           litert_rows))
    return rows


def litert(kind, model, test_ids, keras_greedy, references, max_length, inverse, log):
    """The trained model (rebuilt over the test words' fixed padded length) exported for generation,
    float32 and with int8 weights (dynamic range), its test words decoded greedily in LiteRT: error
    rates, and the words each file decodes otherwise than the trained Keras model's greedy `generate`."""
    import export

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for label, quantization in (("float32", None), ("int8 weights", "dynamic")):
            path = os.path.join(directory, f"{kind}_{quantization or 'float'}.tflite")
            export.to_tflite(model, path, generation=True, max_length=max_length, quantization=quantization)
            loaded = export.load_parts(path)
            predicted = np.concatenate([export.generate(loaded, source=test_ids[i:i + 256])
                                        for i in range(0, len(test_ids), 256)])
            words = [strip(row, inverse, END_ID) for row in predicted]
            per, wer = error_rates(words, references)
            # Each word's phonemes up to its end token, against Keras' greedy decoding of the same word.
            differing = sum(ours != strip(theirs, inverse, END_ID) for ours, theirs in zip(words, keras_greedy))
            rows.append(["T5" if kind == "t5" else "LSTM seq2seq", label, f"{os.path.getsize(path):,}",
                         f"{100 * per:.2f}%", f"{100 * wer:.2f}%", f"{differing:,}"])
            log(f"  {kind} LiteRT {label}: PER {100 * per:.2f}%, WER {100 * wer:.2f}%, "
                f"{differing} of {len(words)} words decoded otherwise than by Keras")
    return rows


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny budget: checks that the script runs")
    parser.add_argument("--output", help="also write what is printed to this file")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seed", type=int, default=0, help="the seed of every model's initial weights")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 750, 1500],
                        help="the step counts at which the runs are scored")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--test-words", type=int, default=0, help="score the first N test words only")
    parser.add_argument("--litert", action="store_true",
                        help="also export the last checkpoint for generation (float32, int8 weights) and score it in LiteRT")
    parser.add_argument("--t5-model", default="num_layers=2, num_heads=4, hidden_dim=128, intermediate_dim=512",
                        help="t5_seq2seq_lm arguments, 'key=value, ...'")
    parser.add_argument("--t5-lr", type=float, default=2e-3)
    parser.add_argument("--t5-warmup", type=int, default=100)
    parser.add_argument("--lstm-model", default="units=128, embedding_dim=64, bidirectional=True",
                        help="rnn_seq2seq arguments, 'key=value, ...' (recurrent_quality.py g2p's)")
    parser.add_argument("--lstm-lr", type=float, default=3e-3)
    if parser.parse_args(argv).quick:  # tiny defaults; what the command line gives still wins
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)

    def body(log):
        log(f"### T5 on grapheme-to-phoneme\n\nCommand: `{COMMAND} {shlex.join(argv)}`. "
            f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
        run(args, log)

    logged_run(body, args.output, "t5_quality")


if __name__ == "__main__":
    main()
