"""Train a DCGAN on scikit-learn's 8x8 digits, save a sample grid per epoch, export the generator.

    python examples/dcgan_digits.py --epochs 40 --out dcgan_digits

Writes `samples_epoch_NNN.png`, `dcgan.keras` (resumable: both optimizers' state included),
`generator.tflite` and `generator.onnx` under `--out`.
"""

import argparse
from pathlib import Path

import keras

import export
import keras_models
from keras_models.data import load_digits
from keras_models.gan import SampleGrid, TrainingGuard


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="dcgan_digits")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/dcgan.keras")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "dcgan.keras"

    (images, _), (test_images, _) = load_digits(8)
    if args.resume and checkpoint.exists():
        gan = keras.saving.load_model(checkpoint)
        print(f"resumed at generator step {int(gan.g_optimizer.iterations)}")
    else:
        gan = keras_models.build("dcgan", image_shape=(8, 8, 1), latent_dim=32, seed=0)
    gan.fit(
        images,
        epochs=args.epochs,
        batch_size=64,
        callbacks=[
            SampleGrid(out, num_samples=64, columns=8),
            TrainingGuard(patience=5),
            keras.callbacks.ModelCheckpoint(checkpoint),
        ],
    )
    latents = gan.sample_latents(4, seed=0)
    print(export.to_tflite(gan.generator, out / "generator.tflite"))
    print(export.verify(gan.generator, out / "generator.tflite", latents))
    print(export.to_onnx(gan.generator, out / "generator.onnx"))
    print(export.verify(gan.generator, out / "generator.onnx", latents))


if __name__ == "__main__":
    main()
