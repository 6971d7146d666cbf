"""What the networks learn: LeNet-5 on digits (float and int8), a text CNN on a planted trigram, a
video CNN on the direction a square moves."""

import numpy as np
import pytest

import export
import keras_models
from keras_models.data import load_digits


def trigger_sequences(n, *, length=24, vocab=40, trigger=(7, 8, 9), seed=0):
    """Token sequences labelled 1 when `trigger` occurs in order. Every sequence holds the trigger's
    tokens, negatives only shuffled (8 9 7, ...), so single tokens say nothing: only the n-gram does."""
    rng = np.random.default_rng(seed)
    x = rng.integers(10, vocab, size=(n, length)).astype("int32")  # trigger tokens never appear by chance
    y = rng.integers(0, 2, size=n).astype("int32")
    wrong_orders = [p for p in ((7, 9, 8), (8, 7, 9), (8, 9, 7), (9, 7, 8), (9, 8, 7))]
    for i in range(n):
        start = rng.integers(0, length - 3)
        x[i, start:start + 3] = trigger if y[i] else wrong_orders[rng.integers(len(wrong_orders))]
    return x, y


def moving_squares(n, *, frames=8, size=16, square=3, seed=0):
    """Clips of a bright square moving one pixel per frame right, left, down or up (labels 0-3) from a
    random start, on noise. A single frame shows a square somewhere: only the order of frames tells
    the direction."""
    rng = np.random.default_rng(seed)
    steps = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])
    x = rng.normal(0, 0.1, size=(n, frames, size, size, 1)).astype("float32")
    y = rng.integers(0, 4, size=n).astype("int32")
    for i in range(n):
        dr, dc = steps[y[i]]
        low, high = frames, size - frames - square
        r, c = rng.integers(low, high + 1, size=2) if high >= low else (size // 2, size // 2)
        r, c = r - dr * frames // 2, c - dc * frames // 2
        for t in range(frames):
            rr, cc = r + dr * t, c + dc * t
            x[i, t, rr:rr + square, cc:cc + square, 0] += 1.0
    return x, y


def test_text_cnn_learns_a_trigram():
    x, y = trigger_sequences(1200)
    model = keras_models.build("text_cnn", input_shape=(24,), num_classes=2, vocab_size=40, embedding_dim=16,
                               ngram_sizes=(2, 3), filters=16, dropout=0.2)
    model.fit(x[:1000], y[:1000], epochs=8, batch_size=32, verbose=0)
    accuracy = model.evaluate(x[1000:], y[1000:], verbose=0)[1]
    assert accuracy >= 0.95


def test_text_cnn_unigrams_alone_cannot_learn_it():
    # The control: the task is built so that width-1 filters see nothing; near chance is expected.
    x, y = trigger_sequences(1200)
    model = keras_models.build("text_cnn", input_shape=(24,), num_classes=2, vocab_size=40, embedding_dim=16,
                               ngram_sizes=(1,), filters=16, dropout=0.2)
    model.fit(x[:1000], y[:1000], epochs=8, batch_size=32, verbose=0)
    assert model.evaluate(x[1000:], y[1000:], verbose=0)[1] <= 0.65


def test_video_cnn_learns_direction_of_motion():
    x, y = moving_squares(560)
    model = keras_models.build("video_cnn", input_shape=(8, 16, 16, 1), num_classes=4,
                               blocks=((8,), (16,)), dense_units=32, dropout=0.0)
    model.fit(x[:440], y[:440], epochs=8, batch_size=32, verbose=0)
    x_test, y_test = x[440:], y[440:]
    assert model.evaluate(x_test, y_test, verbose=0)[1] >= 0.9
    # Played backwards, each clip shows the opposite motion; a model reading order flips its answer.
    reversed_predictions = model.predict(x_test[:, ::-1], verbose=0).argmax(axis=1)
    opposite = np.array([1, 0, 3, 2])[y_test]
    assert (reversed_predictions == opposite).mean() >= 0.9


@pytest.mark.slow
def test_lenet5_digits_accuracy_and_int8_export(tmp_path):
    (x_train, y_train), (x_test, y_test) = load_digits(32)
    model = keras_models.build("lenet5", input_shape=(32, 32, 1), num_classes=10)
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    assert float_accuracy >= 0.98

    report = export.to_tflite(model, tmp_path / "lenet5_int8.tflite", quantization="int8",
                              representative_data=x_train[:300])
    assert report.inputs[0].dtype == "float32"
    assert "CONV_2D" in report.operators and "DEQUANTIZE" in report.operators
    probabilities = export.run_artifact(report.path, x_test)[0]
    int8_accuracy = float((probabilities.argmax(axis=1) == y_test).mean())
    assert abs(int8_accuracy - float_accuracy) <= 0.01
    # The file really is quantized: about a quarter of the float file.
    float_report = export.to_tflite(model, tmp_path / "lenet5.tflite")
    assert report.size_bytes < 0.4 * float_report.size_bytes
