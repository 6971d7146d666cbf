"""Train LeNet-5 on scikit-learn's digits upsampled to 32x32, export it to TFLite (float and int8) and
ONNX, check every file in its runtime, and draw what the first layers learned.

    python examples/lenet5_digits.py [--output lenet5_output] [--epochs 15]
"""

import argparse
from pathlib import Path

import numpy as np

import export
import keras_models
from keras_models.cnn.visualize import plot_feature_maps, plot_filters
from keras_models.data import load_digits


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="lenet5_output")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(exist_ok=True)

    (x_train, y_train), (x_test, y_test) = load_digits(32)
    model = keras_models.build("lenet5", input_shape=(32, 32, 1), num_classes=10)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, validation_split=0.1, verbose=2)
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    print(f"held-out accuracy (Keras, float32): {float_accuracy:.4f}")

    for path, options in [
        (out / "lenet5.tflite", {}),
        (out / "lenet5_int8.tflite", {"quantization": "int8", "representative_data": x_train[:300]}),
    ]:
        report = export.to_tflite(model, path, **options)
        predictions = export.run_artifact(report.path, x_test)[0].argmax(axis=1)
        print(f"{path.name}: {report.size_bytes:,} bytes, accuracy {np.mean(predictions == y_test):.4f}, "
              f"{export.verify(model, report.path, x_test[:32])}")
    report = export.to_onnx(model, out / "lenet5.onnx")
    print(f"lenet5.onnx: {report.size_bytes:,} bytes, {export.verify(model, report.path, x_test[:32])}")

    plot_filters(model, "lenet5_c1", out / "c1_filters.png")
    plot_feature_maps(model, "lenet5_c1", x_test[0], out / "c1_maps.png")
    plot_feature_maps(model, "lenet5_c3", x_test[0], out / "c3_maps.png")
    print(f"pictures written to {out}/")


if __name__ == "__main__":
    main()
