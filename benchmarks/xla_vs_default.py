"""Training throughput with XLA (`jit_compile=True`) vs without, per model family, on this machine.

The `tensorflow_cpu` compile default of each family in `keras_models.families` decides whether the
family trains with XLA on a CPU-only machine. This script measures it: one small representative model per family kind, each trained with
`model.fit` twice from the same initial weights, once XLA-compiled (proved by
`keras_models.assert_xla_compiled`) and once with TensorFlow's default graph executor (oneDNN
kernels). Rounds of the two alternate, so both see the same machine load; the median samples per
second of each is compared.

    python benchmarks/xla_vs_default.py [--rounds 4] [--date YYYY-MM-DD] [--output benchmarks/sections/xla.md]

Prints a Markdown section with the ratios and the defaults they imply, and writes it to `--output`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_models  # noqa: E402
from keras_models import training  # noqa: E402

COMMAND = "python benchmarks/xla_vs_default.py"
# XLA becomes a family's CPU default only when it is clearly faster: its first step compiles for
# several times longer, and ratios within 10% are inside the run-to-run noise of a shared machine.
XLA_WIN = 1.10


# --------------------------------------------------------------------------------------------------
# One representative model per family kind: (model, x, y, loss, batch size, description)


def _rng():
    return np.random.default_rng(0)


def dense(dropout=0.1):
    # Dropout 0.1 as in `keras_models.dense.mlp`'s default.
    inputs = keras.Input((64,), name="features")
    x = keras.layers.Dense(256, activation="relu", name="mlp_dense1")(inputs)
    if dropout:
        x = keras.layers.Dropout(dropout, name="mlp_dropout1")(x)
    x = keras.layers.Dense(128, activation="relu", name="mlp_dense2")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="mlp_predictions")(x)
    x_data = _rng().normal(size=(4096, 64)).astype("float32")
    y_data = _rng().integers(0, 10, 4096).astype("int32")
    return keras.Model(inputs, outputs), x_data, y_data, "sparse_categorical_crossentropy", 128, \
        "MLP 64-256-128-10" + (f", dropout {dropout}" if dropout else ", no dropout")


def dense_without_dropout():
    return dense(dropout=0.0)


def statistical():
    # A generalized linear model: multinomial logistic regression with an L2 penalty.
    inputs = keras.Input((30,), name="features")
    outputs = keras.layers.Dense(3, activation="softmax", kernel_regularizer=keras.regularizers.L2(1e-3),
                                 name="glm_logits")(inputs)
    x_data = _rng().normal(size=(16384, 30)).astype("float32")
    y_data = _rng().integers(0, 3, 16384).astype("int32")
    return keras.Model(inputs, outputs), x_data, y_data, "sparse_categorical_crossentropy", 256, \
        "multinomial logistic regression, 30 features"


def classical():
    # A kernel SVM through 512 random Fourier features (fixed projection, cosine), hinge loss.
    inputs = keras.Input((30,), name="features")
    projection = keras.layers.Dense(512, trainable=False, name="rff_projection",
                                    kernel_initializer=keras.initializers.RandomNormal(stddev=0.5),
                                    bias_initializer=keras.initializers.RandomUniform(0, 2 * np.pi))
    features = keras.layers.Lambda(lambda t: keras.ops.cos(t) * np.sqrt(2 / 512), name="rff_cos")(projection(inputs))
    outputs = keras.layers.Dense(1, name="svm_margin")(features)
    x_data = _rng().normal(size=(16384, 30)).astype("float32")
    y_data = np.where(_rng().normal(size=(16384, 1)) > 0, 1.0, -1.0).astype("float32")
    return keras.Model(inputs, outputs), x_data, y_data, "hinge", 256, "RBF SVM, 512 random Fourier features"


def recurrent():
    inputs = keras.Input((32, 16), name="sequence")
    x = keras.layers.LSTM(64, name="lstm")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", name="lstm_predictions")(x)
    x_data = _rng().normal(size=(2048, 32, 16)).astype("float32")
    y_data = _rng().integers(0, 10, 2048).astype("int32")
    return keras.Model(inputs, outputs), x_data, y_data, "sparse_categorical_crossentropy", 64, \
        "LSTM(64), 32 steps of 16"


def transformer(width=64, heads=4, dropout=0.1):
    inputs = keras.Input((32, width), name="tokens")
    attention = keras.layers.MultiHeadAttention(heads, width // heads, dropout=dropout, name="encoder_attention")(
        inputs, inputs
    )
    x = keras.layers.LayerNormalization(name="encoder_norm1")(inputs + attention)
    hidden = keras.layers.Dense(2 * width, activation="gelu", name="encoder_ffn1")(x)
    hidden = keras.layers.Dropout(dropout, name="encoder_dropout")(keras.layers.Dense(width, name="encoder_ffn2")(hidden))
    x = keras.layers.LayerNormalization(name="encoder_norm2")(x + hidden)
    x = keras.layers.GlobalAveragePooling1D(name="encoder_pool")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="encoder_predictions")(x)
    x_data = _rng().normal(size=(2048, 32, width)).astype("float32")
    y_data = _rng().integers(0, 10, 2048).astype("int32")
    return keras.Model(inputs, outputs), x_data, y_data, "sparse_categorical_crossentropy", 64, \
        "encoder block, 32 tokens x 64, 4 heads, dropout 0.1"


def cnn():
    inputs = keras.Input((32, 32, 3), name="image")
    x = inputs
    for index, filters in enumerate((32, 64, 128)):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"cnn_conv{index + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"cnn_bn{index + 1}")(x)
        x = keras.layers.ReLU(name=f"cnn_relu{index + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"cnn_pool{index + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="cnn_gap")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="cnn_predictions")(x)
    x_data = _rng().uniform(size=(1024, 32, 32, 3)).astype("float32")
    y_data = _rng().integers(0, 10, 1024).astype("int32")
    return keras.Model(inputs, outputs), x_data, y_data, "sparse_categorical_crossentropy", 64, \
        "3 conv-BN-ReLU-pool blocks, 32x32x3"


def gan():
    # A DCGAN generator (noise -> 16x16x1 image) feeding its discriminator, trained as one model.
    noise = keras.Input((32,), name="noise")
    x = keras.layers.Dense(4 * 4 * 64, name="gen_project")(noise)
    x = keras.layers.Reshape((4, 4, 64), name="gen_reshape")(x)
    x = keras.layers.BatchNormalization(name="gen_bn0")(x)
    x = keras.layers.ReLU(name="gen_relu0")(x)
    x = keras.layers.Conv2DTranspose(32, 4, strides=2, padding="same", name="gen_deconv1")(x)  # 8x8
    x = keras.layers.BatchNormalization(name="gen_bn1")(x)
    x = keras.layers.ReLU(name="gen_relu1")(x)
    image = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh", name="gen_image")(x)
    x = keras.layers.Conv2D(32, 4, strides=2, padding="same", name="disc_conv1")(image)  # 8x8
    x = keras.layers.LeakyReLU(0.2, name="disc_lrelu1")(x)
    x = keras.layers.Conv2D(64, 4, strides=2, padding="same", name="disc_conv2")(x)  # 4x4
    x = keras.layers.LeakyReLU(0.2, name="disc_lrelu2")(x)
    x = keras.layers.Flatten(name="disc_flatten")(x)
    logit = keras.layers.Dense(1, name="disc_logit")(x)
    x_data = _rng().normal(size=(2048, 32)).astype("float32")
    y_data = np.ones((2048, 1), "float32")
    return keras.Model(noise, logit), x_data, y_data, keras.losses.BinaryCrossentropy(from_logits=True), 64, \
        "DCGAN generator + discriminator, 16x16"


class _Sampling(keras.layers.Layer):
    """Reparameterized Gaussian sample; adds the KL divergence to the model's losses."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed = keras.random.SeedGenerator(0)

    def call(self, inputs):
        mean, log_var = inputs
        kl = -0.5 * keras.ops.mean(keras.ops.sum(1 + log_var - mean**2 - keras.ops.exp(log_var), axis=-1))
        self.add_loss(kl)
        return mean + keras.ops.exp(0.5 * log_var) * keras.random.normal(keras.ops.shape(mean), seed=self.seed)


def vae():
    inputs = keras.Input((64,), name="pixels")
    x = keras.layers.Dense(128, activation="relu", name="enc_dense")(inputs)
    mean = keras.layers.Dense(8, name="enc_mean")(x)
    log_var = keras.layers.Dense(8, name="enc_log_var")(x)
    z = _Sampling(name="sampling")([mean, log_var])
    x = keras.layers.Dense(128, activation="relu", name="dec_dense")(z)
    outputs = keras.layers.Dense(64, activation="sigmoid", name="dec_pixels")(x)
    x_data = _rng().uniform(size=(8192, 64)).astype("float32")
    return keras.Model(inputs, outputs), x_data, x_data, "binary_crossentropy", 128, "dense VAE 64-128-8"


FAMILIES = {
    "dense": dense,
    "statistical": statistical,
    "classical": classical,
    "recurrent": recurrent,
    "transformer": transformer,
    "cnn": cnn,
    "gan": gan,
    "vae": vae,
}
# Not a family: the dense model again without its dropout, to show what Keras' random ops cost in XLA.
PROBES = {"dense (no dropout)": dense_without_dropout}


def rng_probe(repeats=20):
    """ms per call of a (128, 256) stateless uniform draw, XLA vs not, per TensorFlow RNG algorithm.

    Keras' Dropout, GaussianNoise and `keras.random.*` draw with TensorFlow's default algorithm
    ("auto_select").
    """
    import tensorflow as tf

    seed = tf.constant([1, 2], tf.int32)
    result = {}
    for alg in ("auto_select", "philox", "threefry"):
        for jit in (True, False):
            if alg == "threefry" and not jit:
                result[(alg, jit)] = None  # TensorFlow has a ThreeFry kernel only inside XLA
                continue
            draw = tf.function(lambda: tf.random.stateless_uniform((128, 256), seed, alg=alg), jit_compile=jit)
            draw()
            start = time.perf_counter()
            for _ in range(repeats):
                draw()
            result[(alg, jit)] = 1000 * (time.perf_counter() - start) / repeats
    return result


# --------------------------------------------------------------------------------------------------
# Measurement


def _compiled_pair(factory):
    keras.utils.set_random_seed(0)
    model, x, y, loss, batch, description = factory()
    keras.utils.set_random_seed(0)
    twin = factory()[0]  # the same seed gives the same initial weights
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    keras_models.compile_model(model, optimizer="adam", loss=loss, jit_compile=True)
    keras_models.compile_model(twin, optimizer="adam", loss=loss, jit_compile=False)
    return {True: model, False: twin}, x, y, batch, description


class _StepTimer(keras.callbacks.Callback):
    """Wall time of every training step: their median shrugs off the moments other processes run."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def measure(family, factory, rounds):
    models, x, y, batch, description = _compiled_pair(factory)
    compile_seconds = {}
    for jit, model in models.items():
        start = time.perf_counter()
        model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)  # trace + compile
        compile_seconds[jit] = time.perf_counter() - start
    report = keras_models.assert_xla_compiled(models[True], (x[:batch], y[:batch]))
    assert not keras_models.xla_step_report(models[False], (x[:batch], y[:batch]))["step_jit_compile"]
    steps = {True: [], False: []}
    round_ratios = []
    for index in range(rounds):
        medians = {}
        for jit in ((True, False) if index % 2 == 0 else (False, True)):  # alternate who goes first
            timer = _StepTimer()
            models[jit].fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
            steps[jit] += timer.seconds
            medians[jit] = statistics.median(timer.seconds)
        round_ratios.append(medians[False] / medians[True])
    xla, default = (batch / statistics.median(steps[jit]) for jit in (True, False))
    result = {
        "family": family,
        "description": description,
        "params": models[True].count_params(),
        "batch": batch,
        "steps": len(steps[True]),
        "xla": xla,
        "default": default,
        "ratio": xla / default,
        "low": min(round_ratios),
        "high": max(round_ratios),
        "compile_xla": compile_seconds[True],
        "compile_default": compile_seconds[False],
        "hlo": report["hlo_instructions"],
    }
    print(f"  {family:12s} XLA {xla:10.0f}/s  default {default:10.0f}/s  ratio {xla / default:.2f} "
          f"(rounds {min(round_ratios):.2f}-{max(round_ratios):.2f})", file=sys.stderr)
    return result


def render(results, rounds, load, date, rng):
    lines = [
        "## XLA or not: training throughput on CPU",
        "",
        f"Command: `{COMMAND} --rounds {rounds} --date {date}`. Machine: 2 CPU cores, no GPU. Date: {date}. "
        f"TensorFlow {__import__('tensorflow').__version__}, Keras {keras.__version__}. "
        f"Load average at start and end of the run: {load[0]:.1f} and {load[1]:.1f}.",
        "",
        "Each model is trained with `fit` from the same initial weights twice: XLA-compiled "
        "(`jit_compile=True`, the step proved compiled by `keras_models.assert_xla_compiled`) and with "
        "TensorFlow's default graph executor (`jit_compile=False`, oneDNN kernels). One epoch of each "
        f"alternates for {rounds} rounds (who goes first alternates too) and every training step is "
        "timed; samples/s is the batch size over the median step time, the ratio's range is the "
        "lowest and highest per-round ratio of median step times. Medians of per-step times keep "
        "the comparison fair on a machine shared with other jobs (see the load average). The first "
        "(compiling) epoch is timed apart and excluded.",
        "",
        "| family | representative model | params | batch | XLA samples/s | default samples/s "
        "| XLA / default (round range) | first step XLA s | first step default s | CPU default |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['family']} | {r['description']} | {r['params']:,} | {r['batch']} | {r['xla']:,.0f} | "
            f"{r['default']:,.0f} | {r['ratio']:.2f} ({r['low']:.2f}-{r['high']:.2f}) | {r['compile_xla']:.1f} | {r['compile_default']:.1f} | "
            f"{('XLA' if r['ratio'] >= XLA_WIN else 'no XLA') if r['family'] in FAMILIES else '(probe)'} |"
        )
    lines += [
        "",
        "Why dropout matters: Keras' random ops (Dropout, GaussianNoise, `keras.random.normal` in a VAE's "
        "sampling) use TensorFlow's stateless RNG with its default algorithm, which XLA on CPU compiles "
        "into a slow generator. A (128, 256) uniform draw, ms per call:",
        "",
        "| RNG algorithm | XLA | default executor |",
        "|---|---:|---:|",
        *(
            f"| `{alg}` | {rng[(alg, True)]:.2f} | "
            + ("no kernel" if rng[(alg, False)] is None else f"{rng[(alg, False)]:.2f}") + " |"
            for alg in ("auto_select", "philox", "threefry")
        ),
        "",
        "The TensorFlow-on-CPU defaults in `keras_models/families.py` follow the last column: XLA where it trained "
        f"at least {XLA_WIN:.2f} times as fast as the default executor (a clear win; the compile of the "
        "first step costs several times longer with XLA, and smaller differences are within run-to-run "
        "noise). On a GPU every family defaults to XLA; `jit_compile=True/False` always overrides.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--output", default=str(Path(__file__).parent / "sections" / "xla.md"))
    parser.add_argument("--date", default=datetime.date.today().isoformat(),
                        help="the date written in the section (the day of the measurement)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    if training.has_accelerator():
        print("warning: an accelerator is visible; this benchmark is about CPU defaults", file=sys.stderr)
    start_load = os.getloadavg()[0]
    results = [measure(family, FAMILIES[family], args.rounds) for family in args.families]
    results += [measure(name, factory, args.rounds) for name, factory in PROBES.items()]
    rng = rng_probe()
    section = render(results, args.rounds, (start_load, os.getloadavg()[0]), args.date, rng)
    print(section)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(section)
        print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
