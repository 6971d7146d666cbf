"""Generative families compared on scikit-learn's 8x8 digits: VAE and PixelCNN measured here, beside the
GAN and diffusion figures of their own sections in BENCHMARKS.md (same data, same judge).

    python benchmarks/generative_comparison.py --json comparison.json
    python benchmarks/generative_comparison.py --vae-epochs 2 --pixelcnn-epochs 1 --samples 100   # a smoke run

Both models are unconditional and trained on the 1,347 training digits at batch 64, with 256-level
likelihoods over the pixel range, the scale of the diffusion section's bound: the convolutional `vae`
with a discretized logistic mixture (latent 16) and `pixelcnn` with a 256-way categorical per pixel.
Measured per model: the test negative log-likelihood in bits per dimension on the 449 held-out digits
(the VAE's importance-weighted bound with `--ks` samples, PixelCNN's exact value), samples per second,
and the judge of `benchmarks/gan_quality.py` on `--samples` samples (imported, not copied): Frechet
distance in its features against the held-out digits, classes covered and the largest class share.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import keras  # noqa: E402
import numpy as np  # noqa: E402
from gan_quality import digits_judge, score  # noqa: E402

import keras_models  # noqa: E402
from keras_models.data import load_digits  # noqa: E402
from keras_models.likelihood.vae import bits_per_dimension  # noqa: E402

IMAGE_SHAPE = (8, 8, 1)


def train(model, x_train, epochs, log):
    start = time.perf_counter()
    history = model.fit(x_train, epochs=epochs, batch_size=64, verbose=0)
    seconds = time.perf_counter() - start
    losses = history.history["loss"]
    log(f"{model.name}: {epochs} epochs in {seconds:.0f} s, loss {losses[0]:.2f} -> {losses[-1]:.2f}")
    return {"epochs": epochs, "train_seconds": seconds, "first_loss": float(losses[0]), "final_loss": float(losses[-1]),
            "parameters": int(model.count_params())}


def sampled(generate, count):
    start = time.perf_counter()
    images = np.asarray(generate(count), np.float32)
    return images, count / (time.perf_counter() - start)


def run(vae_epochs=200, pixelcnn_epochs=60, samples=1000, ks=(1, 100), seed=0, log=print):
    (x_train, _), (x_test, _) = load_digits(8)
    classifier, features, real_test_features, judge_facts, reference = digits_judge(log)
    results = {"judge": judge_facts, "reference": reference, "models": {}}

    keras.utils.set_random_seed(seed)
    vae = keras_models.build("vae", image_shape=IMAGE_SHAPE, likelihood="logistic_mixture", architecture="conv",
                             latent_dim=16, seed=seed)
    entry = train(vae, x_train, vae_epochs, log)
    for k in ks:
        nats = -vae.log_likelihood(x_test, num_samples=k, seed=seed)
        entry[f"bits_per_dim_k{k}"] = float(bits_per_dimension(nats, IMAGE_SHAPE).mean())
    entry["bits_per_dim"] = entry[f"bits_per_dim_k{max(ks)}"]
    images, rate = sampled(lambda n: vae.generate(n, seed=seed, pixels="mean"), samples)
    entry.update(samples_per_second=rate, **score(images, None, False, classifier, features, real_test_features))
    results["models"]["vae"] = entry
    log(f"vae: {json.dumps(entry)}")

    keras.utils.set_random_seed(seed)
    pixelcnn = keras_models.build("pixelcnn", image_shape=IMAGE_SHAPE, likelihood="categorical", seed=seed)
    entry = train(pixelcnn, x_train, pixelcnn_epochs, log)
    entry["bits_per_dim"] = float(pixelcnn.bits_per_dimension(x_test).mean())
    images, rate = sampled(lambda n: pixelcnn.generate(n, seed=seed), samples)
    entry.update(samples_per_second=rate, **score(images, None, False, classifier, features, real_test_features))
    results["models"]["pixelcnn"] = entry
    log(f"pixelcnn: {json.dumps(entry)}")
    return results


def markdown_table(results):
    lines = ["| model | test NLL (bits/dim, 256 levels) | FD vs real test | classes covered | largest class share "
             "| samples/s | parameters | latent space |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    latent = {"vae": "yes: 16-D Gaussian, encoder and decoder", "pixelcnn": "none"}
    for name, r in results["models"].items():
        lines.append(f"| `{name}` | {r['bits_per_dim']:.3f} | {r['fd_vs_real_test']:.2f} | {r['classes_covered']} / 10 "
                     f"| {r['largest_class_share']:.3f} | {r['samples_per_second']:,.0f} | {r['parameters']:,} "
                     f"| {latent[name]} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae-epochs", type=int, default=200)
    parser.add_argument("--pixelcnn-epochs", type=int, default=60)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 100], help="importance samples of the VAE's bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    results = run(args.vae_epochs, args.pixelcnn_epochs, args.samples, tuple(args.ks), args.seed)
    results.update(date=started, load_start=load, load_end=os.getloadavg()[0], keras=keras.__version__,
                   backend=keras.backend.backend(), arguments=vars(args))
    print(f"\nDate: {started}; load {load:.2f} at start, {results['load_end']:.2f} at end; "
          f"Keras {keras.__version__} on {keras.backend.backend()}. Reference FD: real training digits "
          f"{results['reference']['real_train_vs_real_test']:.2f}, uniform noise "
          f"{results['reference']['uniform_noise_vs_real_test']:.1f}.\n")
    print(markdown_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
