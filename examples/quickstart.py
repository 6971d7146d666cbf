"""Train an MLP on the bundled breast cancer data, export it to TFLite (float and int8) and ONNX, and
check every file against Keras in its real runtime.

    python examples/quickstart.py [--output DIR]
"""

import argparse
from pathlib import Path

import export
import keras_models
from keras_models.data import load_breast_cancer


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="quickstart_output")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(exist_ok=True)

    (x_train, y_train), (x_test, y_test) = load_breast_cancer()
    model = keras_models.build("mlp", input_shape=(30,), num_classes=1, head="sigmoid", hidden_units=(32, 16))
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=2)
    print("held-out accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])

    for path, options in [
        (out / "mlp.tflite", {}),
        (out / "mlp_int8.tflite", {"quantization": "int8", "representative_data": x_train[:200]}),
    ]:
        print(export.to_tflite(model, path, **options))
        print(export.verify(model, path, x_test))
    print(export.to_onnx(model, out / "mlp.onnx"))
    print(export.verify(model, out / "mlp.onnx", x_test))


if __name__ == "__main__":
    main()
