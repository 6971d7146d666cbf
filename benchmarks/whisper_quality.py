"""Whisper on synthesized speech: word error rate on spoken digit strings and command words never heard in training.

    python benchmarks/whisper_quality.py                  # the default run (see below for its size)
    python benchmarks/whisper_quality.py --quick          # a tiny run that checks the script (a few minutes)
    python benchmarks/whisper_quality.py --litert         # also LiteRT: float32, float16, int8 files: WER, latency

Data (`benchmarks/speech_data.py`; needs `pip install espeakng-loader`, espeak-ng and its voices in a
wheel): digit strings of 3 to 5 digit names ("three one four") and sequences of 2 or 3 command words
("left stop go"), spoken by espeak-ng in eight English voices (dialect and variant) at 130 to 225
words per minute, with random pitch, loudness, leading silence and faint noise, resampled to 16 kHz.
The test strings are drawn first and kept out of training, so every test utterance is a string the
model never heard; they are spoken once in a training voice ("seen voices") and once in one of two
voices never used in training ("unseen voices").

Model: `keras_models.build("whisper_speech_to_text", ...)` on Keras' TensorFlow backend, 3 s of audio
(300 log-mel frames computed in the graph, 150 encoder positions), a word-level vocabulary of 23 ids
(padding, start, end, ten digit names, ten command words), trained with `fit` on
`speech_to_text_pairs` (teacher forcing) with AdamW, a linear warm-up and a cosine decay
(`gpt_quality.keras_optimizer`, the GPT benchmark's schedule). Transcripts come from greedy
`generate`; the word error rate is word-level edit distance over reference words (substitutions,
deletions, insertions), per kind of string and voice set. The issue's goal: at most 10% on digit
strings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

COMMAND = "python benchmarks/whisper_quality.py"
SECONDS = 3.0  # every utterance is padded to this length (300 frames of 10 ms)
KINDS = ("digits", "commands")


def make_data(args, log):
    import numpy as np

    import speech_data

    num_samples = int(SECONDS * speech_data.SAMPLE_RATE)
    counts = {"digits": (args.train_digits, args.test_digits), "commands": (args.train_commands, args.test_commands)}
    train_sets, tests = [], {}
    start = time.perf_counter()
    for index, kind in enumerate(KINDS):
        train, test = speech_data.split_strings(kind, *counts[kind], seed=index)  # disjoint
        train_sets.append(speech_data.synthesize_set(train, speech_data.TRAIN_VOICES, num_samples,
                                                     repeats=args.repeats, seed=10 + index))
        tests[(kind, "seen voices")] = speech_data.synthesize_set(test, speech_data.TRAIN_VOICES, num_samples,
                                                                  seed=20 + index)
        tests[(kind, "unseen voices")] = speech_data.synthesize_set(test, speech_data.UNSEEN_VOICES, num_samples,
                                                                    seed=30 + index)
    waveforms = np.concatenate([s.waveforms for s in train_sets])
    targets = np.concatenate([s.target_ids(5) for s in train_sets])
    log(f"Synthesized {len(waveforms):,} training and {sum(len(s.texts) for s in tests.values()):,} test utterances "
        f"in {time.perf_counter() - start:.0f} s.")
    return waveforms, targets, tests


def build_model(args, steps):
    import keras

    import keras_models
    import speech_data
    from gpt_quality import keras_optimizer
    from keras_models.recurrent.language_model import language_model_loss

    keras.utils.set_random_seed(args.seed)
    model = keras_models.build("whisper_speech_to_text", vocabulary_size=len(speech_data.VOCABULARY),
                               num_layers=args.layers, num_heads=args.heads, hidden_dim=args.width,
                               intermediate_dim=4 * args.width, num_mels=80,
                               max_encoder_sequence_length=int(SECONDS * 100), max_decoder_sequence_length=8,
                               dropout=args.dropout, compile=False)
    config = {"learning_rate": args.learning_rate, "warmup_steps": max(steps // 20, 1),
              "decay_steps": max(steps - steps // 20, 1), "weight_decay": args.weight_decay, "betas": (0.9, 0.98)}
    keras_models.compile_model(model, optimizer=keras_optimizer(config, args.learning_rate),
                               loss=language_model_loss(), family="transformer")
    return model


def transcribe(model, waveforms, batch=64):
    import numpy as np

    import speech_data

    ids = np.concatenate([model.generate(waveforms[i:i + batch], 7) for i in range(0, len(waveforms), batch)])
    return [speech_data.ids_to_text(row) for row in ids], ids


def evaluate(model, tests):
    """Word error rates per test set, and Keras' greedy ids per test set (for `litert` to compare with)."""
    import speech_data

    results, keras_ids = {}, {}
    for (kind, voices), data in tests.items():
        start = time.perf_counter()
        hypotheses, keras_ids[kind, voices] = transcribe(model, data.waveforms)
        seconds = time.perf_counter() - start
        results[f"{kind}, {voices}"] = {
            "utterances": len(data.texts),
            "wer": speech_data.word_error_rate(data.texts, hypotheses),
            "sentence_accuracy": sum(r == h for r, h in zip(data.texts, hypotheses)) / len(data.texts),
            "ms_per_utterance": 1000 * seconds / len(data.texts),
            "examples": [[r, h] for r, h in list(zip(data.texts, hypotheses))[:3]],
        }
    return results, keras_ids


def litert(model, tests, keras_ids, count, log):
    """Exports the generation parts to TFLite, float32, with float16 weights and with int8 weights (dynamic
    range: its hybrid kernels also quantize their inputs to 8 bits on the fly), and replays greedy decoding
    in LiteRT: the float file's tokens against Keras' on every test utterance, the word error rate of
    every file on every test set, and the time per utterance at batch 1 with the file loaded once
    (encode, then up to 6 decode steps)."""
    import numpy as np

    import export
    import speech_data

    report = {}
    with tempfile.TemporaryDirectory() as directory:
        for label, quantization in (("float32", None), ("float16 weights", "float16"), ("int8 weights", "dynamic")):
            path = os.path.join(directory, f"whisper_{quantization or 'float'}.tflite")
            export.to_tflite(model, path, generation=True, max_length=7, quantization=quantization)
            loaded = export.load_parts(path)
            row = {"bytes": os.path.getsize(path), "wer": {}}
            equal = True
            for (kind, voices), data in tests.items():
                ids = np.concatenate([export.generate(loaded, source=data.waveforms[i:i + 32])
                                      for i in range(0, len(data.waveforms), 32)])
                if quantization is None:
                    equal &= bool(np.array_equal(ids, keras_ids[kind, voices]))
                hypotheses = [speech_data.ids_to_text(r) for r in ids]
                row["wer"][f"{kind}, {voices}"] = speech_data.word_error_rate(data.texts, hypotheses)
            if quantization is None:
                row["tokens_equal_to_keras"] = equal
            waveforms = tests[("digits", "seen voices")].waveforms[:count]
            export.generate(loaded, source=waveforms[:1])  # first call out of the timing
            times = []
            for index in range(len(waveforms)):
                begin = time.perf_counter()
                export.generate(loaded, source=waveforms[index:index + 1])
                times.append(time.perf_counter() - begin)
            row["median_ms"] = 1000 * statistics.median(times)
            row["utterances_timed"] = len(waveforms)
            report[label] = row
    log("\nLiteRT (generation files, `export.generate` on the loaded file; word error rate per test set, and "
        f"the median time per utterance at batch 1 over {count} digit utterances):")
    names = list(report["float32"]["wer"])
    log("\n| file | bytes | " + " | ".join(names) + " | ms / utterance |")
    log("|---|---:|" + "---:|" * len(names) + "---:|")
    for label, row in report.items():
        log(f"| {label} | {row['bytes']:,} | " + " | ".join(f"{100 * row['wer'][n]:.1f}%" for n in names)
            + f" | {row['median_ms']:.1f} |")
    log(f"Float32 file's tokens equal to Keras' on every test utterance: {report['float32']['tokens_equal_to_keras']}.")
    return report


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-digits", type=int, default=1500, help="distinct digit strings in training")
    parser.add_argument("--train-commands", type=int, default=400, help="distinct command strings in training")
    parser.add_argument("--test-digits", type=int, default=100, help="held-out digit strings")
    parser.add_argument("--test-commands", type=int, default=30, help="held-out command strings")
    parser.add_argument("--repeats", type=int, default=3, help="times each training string is spoken")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--litert", action="store_true", help="export, compare with Keras and time in LiteRT")
    parser.add_argument("--litert-utterances", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_digits, args.train_commands, args.test_digits, args.test_commands = 120, 40, 20, 10
        args.repeats, args.epochs, args.width, args.layers, args.litert_utterances = 1, 2, 32, 1, 3
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    def log(line):
        print(line, flush=True)

    start = time.perf_counter()
    log(f"Command: `{COMMAND} {shlex.join(argv)}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores. "
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Keras {keras.__version__} "
        f"({keras.backend.backend()}), Python {platform.python_version()}. Load average (1 min) at the start: "
        f"{os.getloadavg()[0]:.2f}.")
    waveforms, targets, tests = make_data(args, log)
    import keras_models.transformers as transformers

    x, y = transformers.speech_to_text_pairs(waveforms, targets)
    steps = args.epochs * -(-len(waveforms) // args.batch)
    model = build_model(args, steps)
    log(f"Model: {model.count_params():,} weights ({args.layers} + {args.layers} layers, width {args.width}, "
        f"{args.heads} heads), {steps:,} steps of batch {args.batch}.")
    train_start = time.perf_counter()
    history = model.fit(x, y, batch_size=args.batch, epochs=args.epochs, shuffle=True, verbose=0)
    training_seconds = time.perf_counter() - train_start
    losses = [round(float(v), 4) for v in history.history["loss"]]
    log(f"Trained in {training_seconds:.0f} s; loss per epoch {losses}.")
    results, keras_ids = evaluate(model, tests)
    log("\n| test set | utterances | WER | sentences right | ms / utterance (Keras, batch 64) |")
    log("|---|---|---|---|---|")
    for name, r in results.items():
        log(f"| {name} | {r['utterances']} | {100 * r['wer']:.1f}% | {100 * r['sentence_accuracy']:.1f}% | "
            f"{r['ms_per_utterance']:.1f} |")
    log("\nExamples (reference -> transcript):")
    for name, r in results.items():
        log(f"{name}: " + "; ".join(f"{ref!r} -> {hyp!r}" for ref, hyp in r["examples"]))
    run = {"argv": argv, "weights": model.count_params(), "training_seconds": training_seconds, "losses": losses,
           "results": results}
    if args.litert:
        run["litert"] = litert(model, tests, keras_ids, args.litert_utterances, log)
    log(f"\n{time.perf_counter() - start:.0f} s in all; load average (1 min) at the end: {os.getloadavg()[0]:.2f}.")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(run, handle, indent=1)


if __name__ == "__main__":
    main()
