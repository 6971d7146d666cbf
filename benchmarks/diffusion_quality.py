"""How well `ddpm` learns scikit-learn's 8x8 digits, judged as the GAN family's samples are.

    python benchmarks/diffusion_quality.py                         # the full run (--epochs 60)
    nice -n 15 python benchmarks/diffusion_quality.py --epochs 2 --samples 100 --timesteps 100   # a smoke run

One class-conditional model with classifier-free guidance (label dropout 0.1) is trained on the 1,347
training digits; its null label is the unconditional model. Measured, with the judge, the Frechet
distance and the reference distances of `benchmarks/gan_quality.py` (imported, not copied):
  * conditional samples at guidance 0, 1 and 3 (DDIM, 50 steps): how often the judge reads the
    requested label (goal: at least 90%);
  * unconditional samples (null label): classes covered and the largest class share (goal: every
    class, none above 20%);
  * Frechet distance in the judge's features against the held-out digits for DDIM at 20 and 50 steps
    and DDPM's full chain, and the seconds each sampler takes;
  * the variational bound on the held-out digits in bits per dimension (all T timesteps);
  * the exported denoiser: per-step latency in LiteRT and onnxruntime (batch 1 and 16) and the
    largest difference of `export.diffusion.sample` to `generate` for the same seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import keras  # noqa: E402
import numpy as np  # noqa: E402
from gan_quality import digits_judge, score  # noqa: E402  (score: the judge and the Frechet distance)

import keras_models  # noqa: E402
from keras_models.data import load_digits  # noqa: E402
from keras_models.likelihood import diffusion_sampling  # noqa: E402


def train(epochs, width, timesteps, seed=0, log=print):
    (x_train, y_train), _ = load_digits(8)
    keras.utils.set_random_seed(seed)
    model = keras_models.build("ddpm", image_shape=(8, 8, 1), num_classes=10, width=width, timesteps=timesteps,
                               seed=seed, learning_rate=1e-3)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    seconds = time.perf_counter() - start
    log(f"trained {epochs} epochs in {seconds:.0f} s; loss {history.history['loss'][0]:.3f} -> "
        f"{history.history['loss'][-1]:.3f}")
    return model, {"epochs": epochs, "train_seconds": seconds, "final_loss": float(history.history["loss"][-1]),
                   "parameters": int(model.denoiser.count_params())}


def unconditional_samples(model, count, steps, seed):
    """DDIM samples of the null label: the unconditional model that guidance subtracts."""
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((count, *model.image_shape)).astype(np.float32)
    nulls = np.full((count,), model.null_label, np.int32)
    x = diffusion_sampling.run_sampler(model.denoise, model.schedule, latents, nulls, sampler="ddim", steps=steps,
                                       prediction=model.prediction, null_label=model.null_label, rng=rng)
    return model.from_unit(x)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def step_latency(denoise, batch, repeats=50):
    """Median seconds of one denoiser call on `batch` images."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 8, 8, 1)).astype(np.float32)
    times, labels = np.full((batch,), 500.0, np.float32), np.arange(batch, dtype=np.int32) % 10
    denoise(x, times, labels)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        denoise(x, times, labels)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def exported(model, steps, log=print):
    import export.diffusion

    results = {}
    directory = tempfile.mkdtemp()
    reference = model.generate(16, labels=np.arange(16) % 10, steps=steps, guidance=1.0, seed=3)
    for suffix, runtime in ((".tflite", "litert"), (".onnx", "onnxruntime")):
        path = os.path.join(directory, "ddpm" + suffix)
        report = export.diffusion.save_denoiser(model, path)
        denoise = export.diffusion.load_denoiser(path)
        samples = export.diffusion.sample(path, 16, labels=np.arange(16) % 10, steps=steps, guidance=1.0, seed=3)
        results[runtime] = {
            "file_kb": round(os.path.getsize(path) / 1024, 1),
            "step_ms_batch1": 1e3 * step_latency(denoise, 1),
            "step_ms_batch16": 1e3 * step_latency(denoise, 16),
            "max_abs_vs_keras_sampler": float(np.abs(samples - reference).max()),
        }
        log(f"{runtime}: {json.dumps(results[runtime])} ({len(report.operators)} operator kinds)")
    results["keras_step_ms_batch16"] = 1e3 * step_latency(model.denoise, 16)
    return results


def run(epochs=60, width=32, timesteps=1000, samples=1000, seed=0, log=print):
    results = {"machine": "2 CPU cores, no GPU", "timesteps": timesteps, "width": width}
    classifier, features, real_test_features, results["judge"], results["reference_fd"] = digits_judge(log)
    _, (x_test, y_test) = load_digits(8)
    model, results["training"] = train(epochs, width, timesteps, seed, log)
    labels = np.arange(samples) % 10

    results["conditional"] = {}
    for guidance in (0.0, 1.0, 3.0):
        images, seconds = timed(model.generate, samples, labels=labels, steps=min(50, timesteps), guidance=guidance,
                                seed=1)
        entry = score(images, labels, True, classifier, features, real_test_features)
        results["conditional"][f"guidance_{guidance:g}"] = {"sample_seconds": seconds, **entry}
        log(f"conditional, guidance {guidance:g}: {json.dumps(results['conditional'][f'guidance_{guidance:g}'])}")

    results["unconditional"] = {}
    for name, sampler, steps in (("ddim_20", "ddim", 20), ("ddim_50", "ddim", 50), ("ddpm_full", "ddpm", timesteps)):
        if sampler == "ddim":
            images, seconds = timed(unconditional_samples, model, samples, min(steps, timesteps), seed=1)
        else:
            nulls = np.full((samples,), model.null_label, np.int32)
            rng = np.random.default_rng(1)
            latents = rng.standard_normal((samples, 8, 8, 1)).astype(np.float32)
            x, seconds = timed(diffusion_sampling.run_sampler, model.denoise, model.schedule, latents, nulls,
                               sampler="ddpm", prediction=model.prediction, null_label=model.null_label, rng=rng)
            images = model.from_unit(x)
        entry = score(images, None, False, classifier, features, real_test_features)
        results["unconditional"][name] = {"steps": min(steps, timesteps), "sample_seconds": seconds, **entry}
        log(f"unconditional, {name}: {json.dumps(results['unconditional'][name])}")

    bits, seconds = timed(model.bits_per_dimension, x_test, y_test, seed=0)
    unconditional_bits = model.bits_per_dimension(x_test, seed=0)
    results["bits_per_dimension"] = {"conditional": float(bits.mean()), "unconditional": float(unconditional_bits.mean()),
                                     "seconds": seconds, "test_images": len(x_test)}
    log(f"bits/dim: {json.dumps(results['bits_per_dimension'])}")
    results["export"] = exported(model, min(50, timesteps), log)
    return results


def markdown_table(results):
    lines = ["| samples | steps | guidance | FD vs real test | classes covered | largest class share "
             "| judge reads requested label | sampling s |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in results["conditional"].items():
        lines.append(f"| conditional DDIM | {min(50, results['timesteps'])} | {name.split('_')[1]} "
                     f"| {entry['fd_vs_real_test']:.2f} | {entry['classes_covered']} / 10 "
                     f"| {entry['largest_class_share']:.3f} | {entry['label_accuracy']:.3f} | {entry['sample_seconds']:.1f} |")
    for name, entry in results["unconditional"].items():
        lines.append(f"| unconditional {name.split('_')[0].upper()} | {entry['steps']} | n/a "
                     f"| {entry['fd_vs_real_test']:.2f} | {entry['classes_covered']} / 10 "
                     f"| {entry['largest_class_share']:.3f} | n/a | {entry['sample_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--width", type=int, default=32, help="U-Net width (default 32)")
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000, help="samples per measurement (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    results = run(args.epochs, args.width, args.timesteps, args.samples, args.seed)
    print(markdown_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
