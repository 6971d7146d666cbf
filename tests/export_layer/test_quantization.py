"""TFLite quantization: dynamic-range, float16 and full-integer int8 (float or int8 inputs and outputs).

The issue's number is checked on a real task: a small CNN trained on scikit-learn's digits, exported
float32 and int8, both run in the LiteRT interpreter on the held-out images. The int8 file must keep
test accuracy within 1 point of the float file and weigh at most 30% of it.
"""

import keras
import numpy as np
import pytest

import export
import keras_models
from keras_models.data import load_digits


def _digits_cnn(name="digits_cnn"):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=name + "_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name=name + "_pool1")(x)  # (batch, 4, 4, 16)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=name + "_conv2")(x)
    x = keras.layers.Flatten(name=name + "_flatten")(x)  # (batch, 512)
    x = keras.layers.Dense(64, activation="relu", name=name + "_dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name=name + "_predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The digits CNN trained for a few epochs, its float32 TFLite file and the test split."""
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits()
    model = _digits_cnn()
    keras_models.compile_model(
        model, loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False
    )
    model.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("quantization")
    float_report = export.to_tflite(model, folder / "float.tflite")
    return {"model": model, "folder": folder, "float": float_report, "x_train": x_train,
            "x_test": x_test, "y_test": y_test}


def _accuracy(path, x, y):
    (probabilities,) = export.run_artifact(path, x)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def _weight_dtypes(path):
    """dtype name -> number of weight tensors (kernels of conv and dense layers) in a TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    inputs = {d["index"] for d in interpreter.get_input_details()}
    counts = {}
    for detail in interpreter.get_tensor_details():
        is_layer = any(part in detail["name"] for part in ("conv", "dense", "predictions"))
        if detail["index"] in inputs or len(detail["shape"]) < 2 or not is_layer:
            continue
        dtype = np.dtype(detail["dtype"]).name
        counts[dtype] = counts.get(dtype, 0) + 1
    return counts


def test_float_file_matches_keras(trained):
    result = export.verify(trained["model"], trained["float"].path, trained["x_test"][:64])
    assert result.max_abs <= 1e-5
    assert trained["float"].quantization is None


def test_int8_keeps_accuracy_within_one_point_at_under_30_percent_size(trained):
    model, folder = trained["model"], trained["folder"]
    x_test, y_test = trained["x_test"], trained["y_test"]
    report = export.to_tflite(
        model, folder / "int8.tflite", quantization="int8", representative_data=trained["x_train"][:300]
    )
    float_accuracy = _accuracy(trained["float"].path, x_test, y_test)
    int8_accuracy = _accuracy(report.path, x_test, y_test)
    assert float_accuracy >= 0.9, f"the float model itself is weak ({float_accuracy:.3f})"
    assert abs(float_accuracy - int8_accuracy) <= 0.01, (float_accuracy, int8_accuracy)
    assert report.size_bytes <= 0.30 * trained["float"].size_bytes, (report.size_bytes, trained["float"].size_bytes)
    # Float interface, integer inside: QUANTIZE in, DEQUANTIZE out, and the convolutions run on int8.
    assert report.inputs[0].dtype == "float32" and report.outputs[0].dtype == "float32"
    assert {"QUANTIZE", "DEQUANTIZE", "CONV_2D", "FULLY_CONNECTED"} <= set(report.operators)
    assert "float32" not in _weight_dtypes(report.path)


def test_int8_io_file_takes_and_gives_int8(trained):
    model, folder = trained["model"], trained["folder"]
    x_test, y_test = trained["x_test"], trained["y_test"]
    report = export.to_tflite(
        model, folder / "int8_io.tflite", quantization="int8", representative_data=trained["x_train"][:300],
        int8_io=True,
    )
    (tensor_in,), (tensor_out,) = report.inputs, report.outputs
    assert tensor_in.dtype == "int8" and tensor_out.dtype == "int8"
    scale, zero_point = tensor_in.quantization
    # Calibrated on images in [0, 1]: 0 maps to -128, 1 to about 127.
    assert zero_point == -128 and abs(scale - 1 / 255) < 1e-3
    assert "QUANTIZE" not in report.operators and "DEQUANTIZE" not in report.operators
    # `run_artifact` quantizes float inputs and dequantizes outputs with the file's own parameters.
    float_accuracy = _accuracy(trained["float"].path, x_test, y_test)
    assert abs(float_accuracy - _accuracy(report.path, x_test, y_test)) <= 0.01
    # Raw int8 in, raw int8 out, dequantized by hand, agrees with the helper.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(report.path))
    interpreter.allocate_tensors()
    detail_in, detail_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    sample = x_test[:1]
    raw = np.clip(np.round(sample / scale + zero_point), -128, 127).astype(np.int8)
    interpreter.set_tensor(detail_in["index"], raw)
    interpreter.invoke()
    out_scale, out_zero = detail_out["quantization"]
    by_hand = (interpreter.get_tensor(detail_out["index"]).astype(np.float32) - out_zero) * out_scale
    np.testing.assert_allclose(by_hand, export.run_artifact(report.path, sample)[0], atol=1e-7)


@pytest.mark.parametrize("quantization,max_share,weights", [("dynamic", 0.35, "int8"), ("float16", 0.6, "float16")])
def test_weight_only_quantization(trained, quantization, max_share, weights):
    model, folder = trained["model"], trained["folder"]
    x_test = trained["x_test"]
    report = export.to_tflite(model, folder / f"{quantization}.tflite", quantization=quantization)
    assert report.quantization == quantization
    assert report.size_bytes <= max_share * trained["float"].size_bytes
    assert weights in _weight_dtypes(report.path)
    # Float activations: outputs stay close to Keras and the predicted classes agree.
    result = export.verify(model, report.path, x_test)
    assert result.max_abs <= (0.05 if quantization == "dynamic" else 5e-3), result
    keras_classes = np.argmax(model.predict(x_test, verbose=0), axis=-1)
    file_classes = np.argmax(export.run_artifact(report.path, x_test)[0], axis=-1)
    assert np.mean(keras_classes == file_classes) >= 0.99
    assert report.inputs[0].dtype == "float32"


def test_int8_with_two_inputs_and_callable_calibration(tmp_path):
    image = keras.Input((6, 6, 1), name="image")
    table = keras.Input((4,), name="table")
    x = keras.layers.Flatten(name="flat")(keras.layers.Conv2D(4, 3, name="conv")(image))
    x = keras.layers.Concatenate(name="cat")([x, table])
    model = keras.Model([image, table], keras.layers.Dense(3, name="out")(x), name="two_inputs")
    rng = np.random.default_rng(0)
    images, tables = rng.uniform(size=(64, 6, 6, 1)).astype("float32"), rng.normal(size=(64, 4)).astype("float32")

    def calibration():
        for i in range(64):
            yield [images[i : i + 1], tables[i : i + 1]]

    from_arrays = export.to_tflite(model, tmp_path / "arrays.tflite", quantization="int8",
                                   representative_data=[images, tables])
    from_callable = export.to_tflite(model, tmp_path / "callable.tflite", quantization="int8",
                                     representative_data=calibration)
    for report in (from_arrays, from_callable):
        result = export.verify(model, report.path, [images, tables])
        scale = np.abs(model.predict([images, tables], verbose=0)).max()
        assert result.max_abs <= 0.05 * scale, result
