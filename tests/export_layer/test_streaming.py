"""Streaming export: one-step TFLite and ONNX models of recurrent Keras models.

A step model fed 1,000 steps one call at a time, its states carried from each call to the next, must
give at every step what Keras gives on the whole sequence (to 1e-5), in LiteRT and in onnxruntime. For a
model ending in `return_sequences=False`, step t must give the model's output on the sequence ending at
t: it is compared with a `return_sequences=True` twin sharing the weights, itself checked against the
model on a few prefixes.
"""

import keras
import numpy as np
import pytest

import export
import keras_models
from keras_models.data import load_digits
from model_checks import _BUILTIN_OPERATORS

STEPS = 1000
BATCH = 2


# --------------------------------------------------------------------------------------------------
# Running a step file over a sequence, one call per step, from zero states


def _stream_litert(path, sequences):
    """{output name: (batch, steps, ...)} from the file's `serving_default` signature in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    batch, steps = next(iter(sequences.values())).shape[:2]
    states = {
        name: np.zeros((batch, detail["shape"][-1]), detail["dtype"])
        for name, detail in runner.get_input_details().items()
        if name.startswith("state_")
    }
    collected = {}
    for t in range(steps):
        result = runner(**{name: sequence[:, t] for name, sequence in sequences.items()}, **states)
        states = {name: result[name + "_out"] for name in states}
        for name, value in result.items():
            collected.setdefault(name, []).append(value)
    return {name: np.stack(values, axis=1) for name, values in collected.items()}


def _stream_onnx(path, sequences):
    """{output name: (batch, steps, ...)} from onnxruntime, by the graph's input and output names."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch, steps = next(iter(sequences.values())).shape[:2]
    states = {
        i.name: np.zeros((batch, i.shape[-1]), np.float32) for i in session.get_inputs() if i.name.startswith("state_")
    }
    names = [o.name for o in session.get_outputs()]
    collected = {name: [] for name in names}
    for t in range(steps):
        values = session.run(None, {**{name: s[:, t] for name, s in sequences.items()}, **states})
        result = dict(zip(names, values))
        states = {name: result[name + "_out"] for name in states}
        for name, value in result.items():
            collected[name].append(value)
    return {name: np.stack(values, axis=1) for name, values in collected.items()}


def _assert_builtin(report):
    assert set(report.operators) <= _BUILTIN_OPERATORS, sorted(set(report.operators) - _BUILTIN_OPERATORS)
    assert not {"WHILE", "VAR_HANDLE", "READ_VARIABLE"} & set(report.operators), report.operators


# --------------------------------------------------------------------------------------------------
# Models: two stacked recurrent layers, the last with return_sequences true or false


def _features(seed=0, masked_share=0.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, STEPS, 3)).astype("float32")
    if masked_share:
        masked = rng.uniform(size=(BATCH, STEPS)) < masked_share
        masked[:, :5] = True  # a stream that starts masked: the outputs stay zero until the first step
        x[masked] = 0.0
    return {"features": x}


def _tokens(seed=0, padding_share=0.0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 20, size=(BATCH, STEPS)).astype("int32")
    if padding_share:
        tokens[rng.uniform(size=(BATCH, STEPS)) < padding_share] = 0
    return {"tokens": tokens}


def _simple_rnn(return_sequences):
    inputs = keras.Input((None, 3), name="features")
    x = keras.layers.SimpleRNN(6, return_sequences=True, name="rnn_1")(inputs)
    norm = keras.layers.BatchNormalization(name="norm")  # over the features of each step
    x = keras.layers.SimpleRNN(5, return_sequences=return_sequences, name="rnn_2")(norm(x))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="simple_rnn_stack")
    rng = np.random.default_rng(3)
    norm.set_weights([rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.2, 6), rng.normal(0, 0.2, 6), rng.uniform(0.5, 1.5, 6)])
    return model


def _lstm_embedding(return_sequences):
    inputs = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 4, name="embed")(inputs)
    x = keras.layers.LSTM(6, return_sequences=True, name="lstm_1")(x)
    x = keras.layers.LSTM(5, return_sequences=return_sequences, name="lstm_2")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x), name="lstm_stack")


def _gru_masking(return_sequences):
    inputs = keras.Input((None, 3), name="features")
    masked = keras.layers.Masking(0.0, name="mask")(inputs)
    x = keras.layers.Dense(4, activation="tanh", name="project")(masked)  # the mask passes through
    x = keras.layers.Concatenate(name="both")([x, masked])  # and through merging layers
    x = keras.layers.GRU(6, return_sequences=True, name="gru_1")(x)
    x = keras.layers.GRU(5, return_sequences=return_sequences, name="gru_2")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="gru_stack")


def _lstm_gru_padding(return_sequences):
    inputs = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 4, mask_zero=True, name="embed")(inputs)
    x = keras.layers.Dropout(0.5, name="drop")(x)  # identity at inference
    x = keras.layers.LSTM(6, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(5, return_sequences=return_sequences, name="gru")(x)
    x = keras.layers.LayerNormalization(name="norm")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="padded_stack")


CASES = {
    "simple_rnn": (_simple_rnn, _features),
    "lstm_embedding": (_lstm_embedding, _tokens),
    "gru_masking": (_gru_masking, lambda: _features(masked_share=0.3)),
    "lstm_gru_padding": (_lstm_gru_padding, lambda: _tokens(padding_share=0.3)),
}


def _keras_at_every_step(build, model, sequences, return_sequences):
    """What the model outputs for the sequence ending at each step: (batch, steps, outputs)."""
    (sequence,) = sequences.values()
    if return_sequences:
        return model.predict(sequence, verbose=0)
    twin = build(True)
    twin.set_weights(model.get_weights())
    every_step = twin.predict(sequence, verbose=0)
    for t in (0, 37, STEPS - 1):
        prefix = model.predict(sequence[:, : t + 1], verbose=0)
        np.testing.assert_allclose(every_step[:, t], prefix, atol=1e-6, rtol=0)
    return every_step


@pytest.mark.parametrize(
    "case,return_sequences",
    [
        ("simple_rnn", False),
        ("lstm_embedding", True),
        ("gru_masking", False),
        ("lstm_gru_padding", True),
        pytest.param("simple_rnn", True, marks=pytest.mark.slow),
        pytest.param("lstm_embedding", False, marks=pytest.mark.slow),
        pytest.param("gru_masking", True, marks=pytest.mark.slow),
        pytest.param("lstm_gru_padding", False, marks=pytest.mark.slow),
    ],
)
def test_step_model_equals_keras_at_every_one_of_1000_steps(case, return_sequences, tmp_path):
    build, make_inputs = CASES[case]
    model = build(return_sequences)
    sequences = make_inputs()
    expected = _keras_at_every_step(build, model, sequences, return_sequences)
    assert np.abs(expected).max() > 0.05  # not a trivially small output
    tflite = export.to_tflite(model, tmp_path / "step.tflite", streaming=True)
    onnx = export.to_onnx(model, tmp_path / "step.onnx", streaming=True)
    _assert_builtin(tflite)
    for report, stream in ((tflite, _stream_litert), (onnx, _stream_onnx)):
        outputs = stream(report.path, sequences)
        np.testing.assert_allclose(outputs["head"], expected, atol=1e-5, rtol=0, err_msg=report.format)


def test_masked_steps_keep_the_states_and_repeat_the_output(tmp_path):
    """Keras' semantics, checked on the file itself: a masked step changes nothing."""
    model = _gru_masking(True)
    sequences = _features(masked_share=0.3)
    report = export.to_tflite(model, tmp_path / "step.tflite", streaming=True)
    outputs = _stream_litert(report.path, sequences)
    masked = np.all(sequences["features"] == 0.0, axis=-1)  # (batch, steps)
    states = outputs["state_1_out"]  # the second GRU's h, its output before the head
    for b, t in zip(*np.nonzero(masked[:, 1:])):
        np.testing.assert_array_equal(states[b, t + 1], states[b, t])
        np.testing.assert_array_equal(outputs["head"][b, t + 1], outputs["head"][b, t])
    # Before the first unmasked step the recurrent layers output zeros; the head gives its bias.
    bias = model.get_layer("head").get_weights()[1]
    np.testing.assert_allclose(outputs["head"][:, :5], np.broadcast_to(bias, (BATCH, 5, 2)), atol=1e-7)
    assert not np.allclose(outputs["head"][:, 5:], bias)


# --------------------------------------------------------------------------------------------------
# Names: state_i in layer order (an LSTM's h before its c), state_i_out, in the signature and in ONNX


def _lstm_then_gru():
    inputs = keras.Input((None, 3), name="features")
    x = keras.layers.LSTM(4, return_sequences=True, name="first")(inputs)
    outputs = keras.layers.GRU(3, return_sequences=True, name="second")(x)
    return keras.Model(inputs, outputs, name="two_layers")


def test_state_names_follow_layer_order_with_h_before_c(tmp_path):
    model = _lstm_then_gru()
    tflite = export.to_tflite(model, tmp_path / "step.tflite", streaming=True, batch_size=BATCH)
    onnx = export.to_onnx(model, tmp_path / "step.onnx", streaming=True)
    input_names = ["features", "state_0", "state_1", "state_2"]
    output_names = ["second", "state_0_out", "state_1_out", "state_2_out"]
    for report in (tflite, onnx):
        assert [t.name for t in report.inputs] == input_names, report
        assert [t.name for t in report.outputs] == output_names, report
        assert [t.shape[-1] for t in report.inputs] == [3, 4, 4, 3]
    assert [t.shape[0] for t in tflite.inputs] == [BATCH] * 4  # batch_size is honoured
    assert any("first (state_0, state_1), second (state_2)" in note for note in tflite.notes), tflite.notes

    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(tflite.path)).get_signature_list()
    assert sorted(signatures["serving_default"]["inputs"]) == sorted(input_names)
    assert sorted(signatures["serving_default"]["outputs"]) == sorted(output_names)

    sequences = {"features": np.random.default_rng(1).normal(size=(BATCH, 50, 3)).astype("float32")}
    first = model.get_layer("first")
    h_series = keras.ops.convert_to_numpy(keras.Model(model.inputs, first.output)(sequences["features"]))
    probe = keras.layers.LSTM(4, return_state=True)
    probe(sequences["features"])
    probe.set_weights(first.get_weights())
    _, _, last_c = probe(sequences["features"])
    for stream in (_stream_litert, _stream_onnx):
        path = tflite.path if stream is _stream_litert else onnx.path
        outputs = stream(path, sequences)
        np.testing.assert_allclose(outputs["state_0_out"], h_series, atol=1e-5, rtol=0)
        np.testing.assert_allclose(outputs["state_1_out"][:, -1], keras.ops.convert_to_numpy(last_c), atol=1e-5, rtol=0)
        np.testing.assert_allclose(outputs["state_2_out"], outputs["second"], atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------
# Refusals: a layer that mixes time steps is named, and nothing is written


def _recurrent(x):
    return keras.layers.LSTM(4, return_sequences=True, name="lstm")(x)


# case -> (the layer named in the error, the reason it gives, the model's layers after the input)
REFUSED = {
    "bidirectional": ("both_ways", "backwards as well as forwards",
                      lambda x: keras.layers.Bidirectional(keras.layers.LSTM(4, name="inner"), name="both_ways")(x)),
    "go_backwards": ("backwards_lstm", "go_backwards=True",
                     lambda x: keras.layers.LSTM(4, go_backwards=True, name="backwards_lstm")(x)),
    "stateful": ("kept_gru", "is stateful", lambda x: keras.layers.GRU(4, stateful=True, name="kept_gru")(x)),
    "conv1d": ("conv", "convolves over neighbouring time steps",
               lambda x: keras.layers.LSTM(4, name="lstm")(keras.layers.Conv1D(4, 3, name="conv")(x))),
    "pooling": ("pool", "pools over neighbouring time steps",
                lambda x: keras.layers.MaxPooling1D(2, name="pool")(_recurrent(x))),
    "global_pooling": ("average", "pools over the whole sequence",
                       lambda x: keras.layers.GlobalAveragePooling1D(name="average")(_recurrent(x))),
    "flatten": ("flat", "flattens the time axis",
                lambda x: keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flat")(_recurrent(x)))),
    "attention": ("attend", "attends across time steps",
                  lambda x: keras.layers.Attention(name="attend")([_recurrent(x)] * 2)),
    "softmax_over_time": ("time_softmax", "acts along the time axis",
                          lambda x: keras.layers.Softmax(axis=1, name="time_softmax")(_recurrent(x))),
    "unknown_layer": ("doubled", "not known to act on each time step alone",
                      lambda x: keras.layers.Lambda(lambda t: 2.0 * t, name="doubled")(_recurrent(x))),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("exporter", [export.to_tflite, export.to_onnx], ids=["tflite", "onnx"])
def test_layers_that_mix_time_steps_are_named_and_nothing_is_written(case, exporter, tmp_path):
    layer, reason, layers = REFUSED[case]
    # A stateful layer needs a fixed batch; Flatten needs a fixed length.
    batch_shape = (2, None, 3) if case == "stateful" else (None, 10 if case == "flatten" else None, 3)
    inputs = keras.Input(batch_shape=batch_shape, name="features")
    model = keras.Model(inputs, layers(inputs), name="refused")
    with pytest.raises(export.ExportError, match=rf"Layer '{layer}' \(\w+\) .*{reason}"):
        exporter(model, tmp_path / "step.file", streaming=True)
    assert list(tmp_path.iterdir()) == []

def test_operations_on_sequences_are_refused_by_name(tmp_path):
    inputs = keras.Input((None, 3), name="features")
    h = keras.layers.GRU(3, return_sequences=True, name="gru")(inputs)
    model = keras.Model(inputs, keras.ops.mean(h, axis=1), name="mean_over_time")
    with pytest.raises(export.ExportError, match=r"Operation 'mean' \(Mean\) acts on a sequence"):
        export.to_onnx(model, tmp_path / "step.onnx", streaming=True)
    assert list(tmp_path.iterdir()) == []


def test_nested_and_sequential_models_and_layers_after_the_last_step(tmp_path):
    """A Sequential inside a functional model, TimeDistributed; after return_sequences=False any layer
    may follow (Reshape, Flatten), as it acts on one vector per sequence."""
    inner = keras.Sequential([keras.Input((None, 3)), keras.layers.SimpleRNN(4, return_sequences=True)], name="inner")
    inputs = keras.Input((None, 3), name="features")
    # Keras runs TimeDistributed one step after another: a short sequence keeps the reference quick.
    x = keras.layers.TimeDistributed(keras.layers.Dense(4, activation="relu"), name="per_step")(inner(inputs))
    x = keras.layers.LSTM(3, name="lstm")(x)
    x = keras.layers.Flatten(name="flat")(keras.layers.Reshape((3, 1), name="column")(x))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="nested")
    sequence = np.random.default_rng(4).normal(size=(BATCH, 60, 3)).astype("float32")
    report = export.to_tflite(model, tmp_path / "step.tflite", streaming=True)
    assert [t.name for t in report.inputs] == ["features", "state_0", "state_1", "state_2"]
    outputs = _stream_litert(report.path, {"features": sequence})
    for t in (0, 9, 59):  # the output for the sequence ending at t
        # Called eagerly: predict() retraced for a third length gets TimeDistributed wrong in Keras 3.15.
        expected = keras.ops.convert_to_numpy(model(sequence[:, : t + 1], training=False))
        np.testing.assert_allclose(outputs["head"][:, t], expected, atol=1e-5, rtol=0)


def test_bad_streaming_arguments(tmp_path):
    model = _lstm_then_gru()
    with pytest.raises(export.ExportError, match="streaming must be True or False; got streaming='yes'"):
        export.to_tflite(model, tmp_path / "a.tflite", streaming="yes")
    with pytest.raises(export.ExportError, match="streaming must be True or False"):
        export.to_onnx(model, tmp_path / "a.onnx", streaming=1)
    with pytest.raises(export.ExportError, match='streaming=True takes quantization None, "dynamic"'):
        export.to_tflite(model, tmp_path / "a.tflite", streaming=True, quantization="int8",
                         representative_data=np.zeros((4, 5, 3), "float32"))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.rnn = keras.layers.GRU(3)

        def call(self, inputs):
            return self.rnn(inputs)

    subclassed = Subclassed()
    subclassed(np.zeros((1, 4, 3), "float32"))
    with pytest.raises(export.ExportError, match="'subclassed' is a subclassed Subclassed"):
        export.to_tflite(subclassed, tmp_path / "a.tflite", streaming=True)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Dynamic-range int8


def _int8_weights(path):
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(path)).get_tensor_details()
    return sum(1 for d in details if d["dtype"] == np.int8 and len(d["shape"]) == 2)


def test_dynamic_range_step_model_stays_within_1e_2_of_float(tmp_path):
    inputs = keras.Input((None, 16), name="features")
    x = keras.layers.LSTM(32, return_sequences=True, name="lstm_1")(inputs)
    x = keras.layers.LSTM(32, name="lstm_2")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="quantized_stack")
    float_report = export.to_tflite(model, tmp_path / "float.tflite", streaming=True)
    int8_report = export.to_tflite(model, tmp_path / "dynamic.tflite", streaming=True, quantization="dynamic")
    _assert_builtin(int8_report)
    # The four recurrent kernels (16x128 and 32x128, at least 1,024 weights each) are stored as int8.
    assert _int8_weights(int8_report.path) >= 4 and _int8_weights(float_report.path) == 0
    assert int8_report.size_bytes < 0.5 * float_report.size_bytes
    sequences = {"features": np.random.default_rng(2).normal(size=(BATCH, STEPS, 16)).astype("float32")}
    float_outputs = _stream_litert(float_report.path, sequences)
    int8_outputs = _stream_litert(int8_report.path, sequences)
    difference = np.abs(int8_outputs["head"] - float_outputs["head"]).max()
    assert 0 < difference <= 1e-2, difference


@pytest.mark.slow
def test_dynamic_range_keeps_digit_accuracy_within_one_point(tmp_path):
    """A row-by-row LSTM classifier of the 8x8 digits: each image is 8 steps of 8 pixels."""
    (x_train, y_train), (x_test, y_test) = load_digits()
    x_train, x_test = x_train[..., 0], x_test[..., 0]  # (samples, 8 rows, 8 pixels)
    inputs = keras.Input((None, 8), name="rows")
    x = keras.layers.LSTM(32, name="lstm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="digit")(x), name="row_lstm")
    keras_models.compile_model(model, optimizer=keras.optimizers.Adam(5e-3), loss="sparse_categorical_crossentropy",
                               metrics=["accuracy"], jit_compile=False)
    model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)
    accuracies = {}
    for quantization in (None, "dynamic"):
        report = export.to_tflite(model, tmp_path / f"{quantization}.tflite", streaming=True, quantization=quantization)
        assert (_int8_weights(report.path) >= 2) == (quantization == "dynamic")  # both LSTM kernels
        probabilities = _stream_litert(report.path, {"rows": x_test})["digit"][:, -1]
        accuracies[quantization] = float(np.mean(np.argmax(probabilities, axis=-1) == y_test))
    assert accuracies[None] >= 0.9, accuracies
    assert abs(accuracies[None] - accuracies["dynamic"]) <= 0.01, accuracies
