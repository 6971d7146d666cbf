"""How well the GAN variants learn scikit-learn's digits, judged by a classifier trained on real digits.

    python benchmarks/gan_quality.py                     # every measured variant
    python benchmarks/gan_quality.py --variants cgan srgan --json out.json
    python benchmarks/gan_quality.py --variants stylegan --epochs 40 --option style_mixing=0.9   # a side run

Across Keras backends, every backend's samples are judged by one judge: train and sample on each
backend, then judge every saved sample file in one TensorFlow process.

    KERAS_BACKEND=jax python benchmarks/gan_quality.py --variants cgan dcgan wgan_gp --save-samples s/jax
    KERAS_BACKEND=tensorflow python benchmarks/gan_quality.py --judge s/tf s/jax --json out.json

Measures, on the 8x8 digits (32x32 for super-resolution):
  * a CNN judge trained on the real training split (its held-out accuracy is reported);
  * cgan: how often the judge reads a sample as the label it was generated for;
  * dcgan, wgan_gp, cgan: the judge's class histogram of samples (coverage, largest class share);
  * every sampled variant: the Frechet distance between the judge's penultimate features of 1,000
    samples and of the real held-out digits, beside the same distance for real training digits (the
    floor) and for uniform noise images (the ceiling);
  * pix2pix (paired) and cyclegan (unpaired): digit -> edge map (morphological gradient), mean
    absolute error on held-out digits, beside copying the input and predicting the mean edge map;
    and how often a second judge, trained on the edge maps of the training digits, reads the
    translation of a held-out digit as that digit's class, beside the same judge on the real edge
    maps (its ceiling) and on the untranslated digits;
  * srgan: 4x upsampling 8x8 -> 32x32, PSNR on held-out digits after the content-only stage
    (SRResNet) and after the adversarial stage that follows, beside bicubic, bilinear and
    nearest-neighbour interpolation.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy import linalg  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras_models  # noqa: E402
from keras_models.data import load_digits  # noqa: E402

SAMPLED = ("gan", "dcgan", "cgan", "lsgan", "wgan", "wgan_gp", "stylegan", "biggan", "infogan")
TRANSLATED = ("pix2pix", "cyclegan", "cyclegan_whole_image")
# cyclegan with the generator larger images get (7x7 stem, one downsampling, three blocks): on 8x8
# images it sees the whole image, the comparison for the 8x8 default's local generator
BUILT_AS = {"cyclegan_whole_image": ("cyclegan", {"kernel_size": 7, "downsamples": 1, "num_blocks": 3})}
# epochs per variant, chosen so each trains in a few minutes on two CPU cores
EPOCHS = {
    "gan": 60, "dcgan": 60, "cgan": 60, "lsgan": 60, "wgan": 40, "wgan_gp": 40, "stylegan": 100, "biggan": 80,
    "infogan": 60, "pix2pix": 40, "cyclegan": 60, "cyclegan_whole_image": 60, "srgan": 10,
}
# SRGAN's content-only first stage (SRResNet on the pixel MSE); EPOCHS["srgan"] is its adversarial stage
SRGAN_PRETRAIN_EPOCHS = 20
SRGAN_PRETRAIN_RATE = 1e-3
SRGAN_BATCH = 32
CONDITIONAL = ("cgan", "biggan")
NUM_SAMPLES = 1000
SAMPLE_SEED = 1


def judge(image_size=8, epochs=40, seed=0, transform=None):
    """A small CNN trained on the real training digits (or on `transform` of them); `features` is its
    penultimate layer."""
    (x_train, y_train), (x_test, y_test) = load_digits(image_size)
    if transform is not None:
        x_train, x_test = transform(x_train), transform(x_test)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="judge_conv1")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="judge_conv2")(x)
    x = keras.layers.Flatten()(x)
    features = keras.layers.Dense(64, activation="relu", name="judge_features")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Dropout(0.3)(features))
    model = keras.Model(inputs, outputs, name=f"judge{image_size}")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    return model, keras.Model(inputs, features, name=f"judge{image_size}_features"), accuracy


def frechet_distance(a, b):
    """Frechet distance between Gaussians fitted to feature sets `a` and `b` (FID's formula)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    root = root.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def edge_map(images):
    """Morphological gradient (3x3 max minus min), the translation target."""
    import tensorflow as tf

    x = tf.constant(images)
    dilated = tf.nn.max_pool2d(x, 3, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-x, 3, 1, "SAME")
    return np.clip((dilated - eroded).numpy(), 0.0, 1.0).astype("float32")


def resize(images, size, method):
    """TensorFlow's resize (its bicubic kernel is the published baseline), clipped to [0, 1]."""
    import tensorflow as tf

    return np.clip(tf.image.resize(images, (size, size), method=method).numpy(), 0, 1)


def psnr(a, b):
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    return float(np.mean(10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def train(variant, *fit_args, epochs, batch_size=64, seed=0, jit_compile=None, **build_kwargs):
    keras.utils.set_random_seed(seed)
    gan = keras_models.build(variant, seed=seed, jit_compile=jit_compile, **build_kwargs)
    start = time.perf_counter()
    gan.fit(*fit_args, epochs=epochs, batch_size=batch_size, verbose=0)
    return gan, time.perf_counter() - start


def sample_variant(variant, x_train, y_train, seed=0, jit_compile=None, epochs=None, options=None):
    """Trains a sampled variant on the active backend; its samples, their requested labels, and facts.

    `epochs` replaces the variant's entry in EPOCHS; `options` go to the builder (side runs)."""
    conditional = variant in CONDITIONAL
    args = (x_train, y_train) if conditional else (x_train,)
    load_before = os.getloadavg()[0]
    epochs = epochs or EPOCHS[variant]
    gan, seconds = train(
        variant, *args, epochs=epochs, seed=seed, jit_compile=jit_compile, image_shape=(8, 8, 1), **(options or {})
    )
    load_after = os.getloadavg()[0]
    labels = np.arange(NUM_SAMPLES) % 10
    samples = gan.generate(NUM_SAMPLES, labels=labels if conditional else None, seed=SAMPLE_SEED)
    facts = {
        "variant": variant,
        "backend": keras.backend.backend(),
        "seed": seed,
        "epochs": epochs,
        "options": dict(options or {}),
        "train_seconds": seconds,
        "jit_compile": bool(gan.jit_compile),
        "load_average": [load_before, load_after],
    }
    return np.asarray(keras.ops.convert_to_numpy(samples), np.float32), labels, conditional, facts


def score(samples, labels, conditional, classifier, features, real_test_features):
    """FD, class coverage and largest class share of `samples` as the judge reads them."""
    predicted = classifier.predict(samples, verbose=0).argmax(-1)
    shares = np.bincount(predicted, minlength=10) / len(predicted)
    entry = {
        "fd_vs_real_test": frechet_distance(features.predict(samples, verbose=0), real_test_features),
        "classes_covered": int((shares > 0).sum()),
        "largest_class_share": float(shares.max()),
        "class_shares": [round(float(s), 3) for s in shares],
    }
    if conditional:
        entry["label_accuracy"] = float(np.mean(predicted == labels))
    return entry


def digits_judge(log=print):
    """The 8x8 judge, the held-out features and the reference distances, as every mode reports them."""
    classifier, features, accuracy = judge(8)
    (x_train, _), (x_test, _) = load_digits(8)
    real_test_features = features.predict(x_test, verbose=0)
    reference = {
        "real_train_vs_real_test": frechet_distance(features.predict(x_train, verbose=0), real_test_features),
        "uniform_noise_vs_real_test": frechet_distance(
            features.predict(np.random.default_rng(0).uniform(0, 1, (1000, 8, 8, 1)).astype("float32"), verbose=0),
            real_test_features,
        ),
    }
    log(f"judge accuracy {accuracy:.3f}; reference FD {reference}")
    return classifier, features, real_test_features, {"test_accuracy": accuracy}, reference


def save_samples(variants, directory, seed=0, jit_compile=None, log=print, epochs=None, options=None):
    """Trains `variants` on the active backend and writes `<variant>.npz` (samples, labels, facts) per variant."""
    unknown = [v for v in variants if v not in SAMPLED]
    if unknown:
        raise SystemExit(f"--save-samples takes sampled variants {SAMPLED}; got {unknown}.")
    os.makedirs(directory, exist_ok=True)
    (x_train, y_train), _ = load_digits(8)
    for variant in variants:
        samples, labels, conditional, facts = sample_variant(variant, x_train, y_train, seed, jit_compile,
                                                             epochs=epochs, options=options)
        path = os.path.join(directory, f"{variant}.npz")
        np.savez(path, samples=samples, labels=labels, conditional=conditional, facts=json.dumps(facts))
        log(f"{path}: {json.dumps(facts)}")


def judge_saved(directories, log=print):
    """Judges every `<variant>.npz` of `directories` with one judge trained on TensorFlow."""
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"--judge runs under KERAS_BACKEND=tensorflow; this is {keras.backend.backend()!r}.")
    classifier, features, real_test_features, judge_facts, reference = digits_judge(log)
    results = {"machine": "2 CPU cores, no GPU", "judge": judge_facts, "reference_fd": reference, "runs": []}
    for directory in directories:
        names = sorted(name for name in os.listdir(directory) if name.endswith(".npz"))
        if not names:
            raise SystemExit(f"No .npz sample files in {directory!r}.")
        for name in names:
            with np.load(os.path.join(directory, name)) as saved:
                facts = json.loads(str(saved["facts"]))
                entry = score(saved["samples"], saved["labels"], bool(saved["conditional"]), classifier, features,
                              real_test_features)
            results["runs"].append({"directory": directory, **facts, **entry})
            log(f"{directory}/{name}: {json.dumps(results['runs'][-1])}")
    return results


def markdown_table(results):
    """One row per judged sample file, variants grouped, in the order the directories were given."""
    lines = [
        "| variant | backend | seed | jit_compile | epochs (batch 64) | train s | load avg before / after "
        "| FD vs real | classes covered | largest class share | judge reads requested label |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(dict.fromkeys(run["variant"] for run in results["runs"]))
    for run in sorted(results["runs"], key=lambda r: order.index(r["variant"])):
        label = f"{run['label_accuracy']:.3f}" if "label_accuracy" in run else "n/a"
        lines.append(
            f"| {run['variant']} | {run['backend']} | {run['seed']} | {run['jit_compile']} | {run['epochs']} "
            f"| {run['train_seconds']:.1f} | {run['load_average'][0]:.1f} / {run['load_average'][1]:.1f} "
            f"| {run['fd_vs_real_test']:.2f} | {run['classes_covered']} / 10 | {run['largest_class_share']:.3f} "
            f"| {label} |"
        )
    return "\n".join(lines)


def super_resolution(seed=0, jit_compile=None):
    """SRGAN's two stages on 4x super-resolution of the digits: the content-only stage (SRResNet, pixel
    MSE), then the adversarial stage from its weights; PSNR after each beside three interpolations."""
    (hr_train, _), (hr_test, _) = load_digits(32)
    low = lambda hr: hr.reshape(len(hr), 8, 4, 8, 4, 1).mean(axis=(2, 4))  # noqa: E731
    _, content_features, accuracy32 = judge(32, epochs=15)
    content = keras.Model(content_features.input, content_features.get_layer("judge_conv2").output, name="content")
    keras.utils.set_random_seed(seed)
    gan = keras_models.build(
        "srgan", seed=seed, jit_compile=jit_compile, image_shape=(32, 32, 1), width=16, num_blocks=2,
        content_model=content, content_weight=0.1,
    )
    steps_per_epoch = -(-len(hr_train) // SRGAN_BATCH)
    entry = {"batch_size": SRGAN_BATCH, "content_judge_accuracy": accuracy32}
    start = time.perf_counter()
    gan.pretrain(low(hr_train), hr_train, learning_rate=SRGAN_PRETRAIN_RATE, epochs=SRGAN_PRETRAIN_EPOCHS,
                 batch_size=SRGAN_BATCH, verbose=0)
    entry["content_stage"] = {
        "epochs": SRGAN_PRETRAIN_EPOCHS, "steps": SRGAN_PRETRAIN_EPOCHS * steps_per_epoch,
        "learning_rate": SRGAN_PRETRAIN_RATE, "train_seconds": time.perf_counter() - start,
        "psnr": psnr(gan.translate(low(hr_test)), hr_test),
    }
    start = time.perf_counter()
    gan.fit(low(hr_train), hr_train, epochs=EPOCHS["srgan"], batch_size=SRGAN_BATCH, verbose=0)
    entry["adversarial_stage"] = {
        "epochs": EPOCHS["srgan"], "steps": EPOCHS["srgan"] * steps_per_epoch,
        "learning_rate": float(keras.ops.convert_to_numpy(gan.g_optimizer.learning_rate)),
        "adversarial_weight": gan.adversarial_weight, "train_seconds": time.perf_counter() - start,
        "psnr": psnr(gan.translate(low(hr_test)), hr_test),
    }
    for method in ("bicubic", "bilinear", "nearest"):
        entry[f"psnr_{method}"] = psnr(resize(low(hr_test), 32, method), hr_test)
    return entry


def translation_reference(x_train, x_test, y_test, log=print):
    """What every translator is measured against, computed once: the edge maps of the digits, the
    edge-map judge (`right_class(images)`: how often it reads each translated held-out digit as its
    class), and the reference figures (copying the input, predicting the mean edge map, the judge on the
    real edge maps and on the untranslated digits)."""
    train_edges, test_edges = edge_map(x_train), edge_map(x_test)
    edges_judge, _, accuracy = judge(8, transform=edge_map)
    log(f"edge-map judge accuracy {accuracy:.3f}")

    def right_class(images):
        return float(np.mean(edges_judge.predict(images, verbose=0).argmax(-1) == y_test))

    return {
        "train": train_edges, "test": test_edges, "right_class": right_class,
        "mae_references": {"mae_copy_input": float(np.mean(np.abs(x_test - test_edges))),
                           "mae_mean_edge_map": float(np.mean(np.abs(train_edges.mean(0) - test_edges)))},
        "judged_references": {"judged_right_class_real_edge_maps": right_class(test_edges),
                              "judged_right_class_copy_input": right_class(x_test)},
    }


def run(variants, seed=0, jit_compile=None, log=print, epochs=None, options=None):
    results = {"machine": "2 CPU cores, no GPU"}
    classifier, features, real_test_features, results["judge"], results["reference_fd"] = digits_judge(log)
    (x_train, y_train), (x_test, y_test) = load_digits(8)
    edges = None  # the translators' data, judge and reference figures, made once when first needed
    for variant in variants:
        if variant in SAMPLED:
            samples, labels, conditional, facts = sample_variant(
                variant, x_train, y_train, seed, jit_compile, epochs=epochs, options=options)
            entry = {"epochs": facts["epochs"], "train_seconds": facts["train_seconds"]}
            if facts["options"]:
                entry["options"] = facts["options"]
            entry.update(score(samples, labels, conditional, classifier, features, real_test_features))
            results[variant] = entry
        elif variant in TRANSLATED:
            if edges is None:
                edges = translation_reference(x_train, x_test, y_test, log)
            train_edges, test_edges = edges["train"], edges["test"]
            built, options = BUILT_AS.get(variant, (variant, {}))
            if built == "cyclegan":  # unpaired: the edge maps of other digits, in another order
                train_edges = train_edges[np.random.default_rng(1).permutation(len(train_edges))]
            gan, seconds = train(
                built, x_train, train_edges, epochs=EPOCHS[variant], batch_size=32, seed=seed,
                jit_compile=jit_compile, image_shape=(8, 8, 1), **options,
            )
            predicted = gan.translate(x_test)
            results[variant] = {
                "epochs": EPOCHS[variant],
                "train_seconds": seconds,
                "mae": float(np.mean(np.abs(predicted - test_edges))),
                **edges["mae_references"],
                "judged_right_class": edges["right_class"](predicted),
                **edges["judged_references"],
            }
        elif variant == "srgan":
            results["srgan"] = super_resolution(seed, jit_compile)
        else:
            raise SystemExit(f"Unknown variant {variant!r} for this benchmark.")
        log(f"{variant}: {json.dumps(results[variant])}")
    return results


def builder_option(text):
    """`NAME=VALUE` with VALUE a Python literal (a number, a string in quotes, a tuple, True/False)."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"the value of {name} is not a Python literal: {value!r}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", help="default: cgan dcgan wgan_gp pix2pix cyclegan srgan "
                        "(cgan dcgan wgan_gp with --save-samples)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and of training (default 0)")
    parser.add_argument("--jit-compile", choices=("default", "on", "off"), default="default",
                        help="compile the training step: the library's default for this backend, or forced on/off")
    parser.add_argument("--epochs", type=int, help="side runs: epochs of every sampled variant instead of its own")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", type=builder_option,
                        help="side runs: a builder option of the sampled variants, e.g. style_mixing=0.5 (repeatable)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--save-samples", metavar="DIR",
                      help="train the sampled variants on the active Keras backend and save their samples to DIR")
    mode.add_argument("--judge", nargs="+", metavar="DIR",
                      help="judge the samples saved in each DIR with one judge (TensorFlow backend)")
    args = parser.parse_args(argv)
    jit_compile = {"default": None, "on": True, "off": False}[args.jit_compile]
    if args.save_samples:
        variants = args.variants or ["cgan", "dcgan", "wgan_gp"]
        save_samples(variants, args.save_samples, seed=args.seed, jit_compile=jit_compile, epochs=args.epochs,
                     options=dict(args.option))
        return
    if args.judge and (args.epochs or args.option):
        parser.error("--epochs and --option set how variants train; --judge only judges saved samples")
    if args.judge:
        results = judge_saved(args.judge)
        print(markdown_table(results))
    else:
        variants = args.variants or ["cgan", "dcgan", "wgan_gp", "pix2pix", "cyclegan", "srgan"]
        if (args.epochs or args.option) and not set(variants) <= set(SAMPLED):
            parser.error("--epochs and --option apply to the sampled variants only: " + " ".join(SAMPLED))
        results = run(variants, seed=args.seed, jit_compile=jit_compile, epochs=args.epochs,
                      options=dict(args.option))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
