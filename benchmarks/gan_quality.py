"""How well the GAN variants learn scikit-learn's digits, judged by a classifier trained on real digits.

    python benchmarks/gan_quality.py                     # every measured variant
    python benchmarks/gan_quality.py --variants cgan srgan --json out.json

Measures, on the 8x8 digits (32x32 for super-resolution):
  * a CNN judge trained on the real training split (its held-out accuracy is reported);
  * cgan: how often the judge reads a sample as the label it was generated for;
  * dcgan, wgan_gp, cgan: the judge's class histogram of samples (coverage, largest class share);
  * every sampled variant: the Frechet distance between the judge's penultimate features of 1,000
    samples and of the real held-out digits, beside the same distance for real training digits (the
    floor) and for uniform noise images (the ceiling);
  * pix2pix (paired) and cyclegan (unpaired): digit -> edge map (morphological gradient), mean
    absolute error on held-out digits, beside copying the input and predicting the mean edge map;
  * srgan: 4x upsampling 8x8 -> 32x32, PSNR on held-out digits beside bicubic, bilinear and
    nearest-neighbour interpolation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import linalg  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras_models  # noqa: E402
from keras_models.data import load_digits  # noqa: E402

SAMPLED = ("gan", "dcgan", "cgan", "lsgan", "wgan_gp", "stylegan", "biggan", "infogan")
TRANSLATED = ("pix2pix", "cyclegan")
# epochs per variant, chosen so each trains in a few minutes on two CPU cores
EPOCHS = {
    "gan": 60, "dcgan": 60, "cgan": 60, "lsgan": 60, "wgan_gp": 40, "stylegan": 40, "biggan": 30,
    "infogan": 60, "pix2pix": 40, "cyclegan": 30, "srgan": 30,
}


def judge(image_size=8, epochs=40, seed=0):
    """A small CNN trained on the real training digits; `features` is its penultimate layer."""
    (x_train, y_train), (x_test, y_test) = load_digits(image_size)
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
    x = tf.constant(images)
    dilated = tf.nn.max_pool2d(x, 3, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-x, 3, 1, "SAME")
    return np.clip((dilated - eroded).numpy(), 0.0, 1.0).astype("float32")


def psnr(a, b):
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    return float(np.mean(10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def train(variant, *fit_args, epochs, batch_size=64, **build_kwargs):
    keras.utils.set_random_seed(0)
    gan = keras_models.build(variant, seed=0, **build_kwargs)
    start = time.perf_counter()
    gan.fit(*fit_args, epochs=epochs, batch_size=batch_size, verbose=0)
    return gan, time.perf_counter() - start


def run(variants, log=print):
    results = {"machine": "2 CPU cores, no GPU"}
    classifier, features, accuracy = judge(8)
    (x_train, y_train), (x_test, _) = load_digits(8)
    real_test_features = features.predict(x_test, verbose=0)
    results["judge"] = {"test_accuracy": accuracy}
    results["reference_fd"] = {
        "real_train_vs_real_test": frechet_distance(features.predict(x_train, verbose=0), real_test_features),
        "uniform_noise_vs_real_test": frechet_distance(
            features.predict(np.random.default_rng(0).uniform(0, 1, (1000, 8, 8, 1)).astype("float32"), verbose=0),
            real_test_features,
        ),
    }
    log(f"judge accuracy {accuracy:.3f}; reference FD {results['reference_fd']}")
    for variant in variants:
        if variant in SAMPLED:
            conditional = variant in ("cgan", "biggan")
            args = (x_train, y_train) if conditional else (x_train,)
            gan, seconds = train(variant, *args, epochs=EPOCHS[variant], image_shape=(8, 8, 1))
            labels = np.arange(1000) % 10
            samples = gan.generate(1000, labels=labels if conditional else None, seed=1)
            predicted = classifier.predict(samples, verbose=0).argmax(-1)
            shares = np.bincount(predicted, minlength=10) / len(predicted)
            entry = {
                "epochs": EPOCHS[variant],
                "train_seconds": seconds,
                "fd_vs_real_test": frechet_distance(features.predict(samples, verbose=0), real_test_features),
                "classes_covered": int((shares > 0).sum()),
                "largest_class_share": float(shares.max()),
                "class_shares": [round(float(s), 3) for s in shares],
            }
            if conditional:
                entry["label_accuracy"] = float(np.mean(predicted == labels))
            results[variant] = entry
        elif variant in TRANSLATED:
            (train_images, _), (test_images, _) = load_digits(8)
            train_edges, test_edges = edge_map(train_images), edge_map(test_images)
            if variant == "cyclegan":  # unpaired: the edge maps of other digits, in another order
                train_edges = train_edges[np.random.default_rng(1).permutation(len(train_edges))]
            gan, seconds = train(variant, train_images, train_edges, epochs=EPOCHS[variant], batch_size=32, image_shape=(8, 8, 1))
            predicted = gan.translate(test_images)
            results[variant] = {
                "epochs": EPOCHS[variant],
                "train_seconds": seconds,
                "mae": float(np.mean(np.abs(predicted - test_edges))),
                "mae_copy_input": float(np.mean(np.abs(test_images - test_edges))),
                "mae_mean_edge_map": float(np.mean(np.abs(train_edges.mean(0) - test_edges))),
            }
        elif variant == "srgan":
            (hr_train, _), (hr_test, _) = load_digits(32)
            low = lambda hr: hr.reshape(len(hr), 8, 4, 8, 4, 1).mean(axis=(2, 4))  # noqa: E731
            _, content_features, accuracy32 = judge(32, epochs=15)
            content = keras.Model(content_features.input, content_features.get_layer("judge_conv2").output, name="content")
            gan, seconds = train(
                "srgan", low(hr_train), hr_train, epochs=EPOCHS["srgan"], batch_size=32,
                image_shape=(32, 32, 1), width=16, num_blocks=2, content_model=content, content_weight=0.1,
            )
            upsampled = gan.translate(low(hr_test))
            resized = lambda method: np.clip(tf.image.resize(low(hr_test), (32, 32), method=method).numpy(), 0, 1)  # noqa: E731
            bicubic = resized("bicubic")
            results["srgan"] = {
                "epochs": EPOCHS["srgan"],
                "train_seconds": seconds,
                "content_judge_accuracy": accuracy32,
                "psnr_srgan": psnr(upsampled, hr_test),
                "psnr_bicubic": psnr(bicubic, hr_test),
                "psnr_bilinear": psnr(resized("bilinear"), hr_test),
                "psnr_nearest": psnr(resized("nearest"), hr_test),
            }
        else:
            raise SystemExit(f"Unknown variant {variant!r} for this benchmark.")
        log(f"{variant}: {json.dumps(results[variant])}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["cgan", "dcgan", "wgan_gp", "pix2pix", "cyclegan", "srgan"])
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    results = run(args.variants)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
