"""Whole-sequence ONNX export with ONNX's LSTM, GRU and RNN operators (export.onnx_recurrent).

Every model gets random weights of trained-like size, biases included, so a gate taken in the wrong
order or a bias on the wrong side of a GRU's reset gate changes the outputs. One file per model is run
at two lengths (the time axis is dynamic) on batches with right padding, left padding, a hole and a
fully padded row, and compared with Keras at every position, padded ones included.
"""

import keras
import numpy as np
import pytest

import export
import keras_models
from export import onnx_recurrent
from export.onnx import _supported_opsets

CELLS = {
    "simple": lambda **kw: keras.layers.SimpleRNN(6, **kw),
    "lstm": lambda **kw: keras.layers.LSTM(6, **kw),
    "gru": lambda **kw: keras.layers.GRU(6, **kw),
    "gru_reset_before": lambda **kw: keras.layers.GRU(6, reset_after=False, **kw),
}
RECURRENT_OPS = {"simple": "RNN", "lstm": "LSTM", "gru": "GRU", "gru_reset_before": "GRU"}


def _trained_like(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(scale=scale, size=variable.shape).astype("float32"))
    return model


def _features(steps, seed, batch=4, width=3):
    """Float features padded with zeros: row 0 on the right, row 1 on the left, row 2 with a hole,
    row 3 entirely."""
    x = np.random.default_rng(seed).normal(size=(batch, steps, width)).astype("float32")
    x[0, steps - 2:] = 0.0
    x[1, :2] = 0.0
    x[2, steps // 2] = 0.0
    x[3] = 0.0
    return x


def _token_ids(steps, seed, vocab=20):
    ids = np.random.default_rng(seed).integers(1, vocab, size=(4, steps)).astype("int32")
    ids[0, steps - 3:] = 0
    ids[1, :2] = 0
    ids[2, steps // 2] = 0
    ids[3] = 0
    return ids


def _assert_native(report, ops):
    for op in ops:
        assert report.operators.get(op, 0) >= 1, report.operators
    assert not {"Loop", "Scan"} & set(report.operators), report.operators
    assert report.inputs[0].shape[1] == -1  # the time axis is dynamic
    assert any("ONNX recurrent operators" in note for note in report.notes)


def _assert_equal_at(model, report, inputs, atol=1e-5):
    result = export.verify(model, report.path, inputs)
    assert result.max_abs <= atol, result


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_each_cell_stacked_equals_keras_at_two_lengths(cell, tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    x = keras.layers.Masking(0.0, name="padding")(inputs)
    every_step = CELLS[cell](return_sequences=True, name="first")(x)  # (batch, steps, 6)
    last = CELLS[cell](return_sequences=False, name="second")(every_step)  # (batch, 6)
    model = _trained_like(keras.Model(inputs, [every_step, last], name=f"stacked_{cell}"))
    report = export.to_onnx(model, tmp_path / "stacked.onnx", recurrent="native")
    _assert_native(report, [RECURRENT_OPS[cell]])
    assert report.operators[RECURRENT_OPS[cell]] == 2
    for steps in (5, 11):
        _assert_equal_at(model, report, _features(steps, seed=steps))
    # Unpadded sequences too, one step and many.
    for steps in (1, 17):
        _assert_equal_at(model, report, np.random.default_rng(steps).normal(size=(2, steps, 3)).astype("float32"))


@pytest.mark.parametrize("cell", ["simple", "lstm", "gru"])
def test_go_backwards_gives_keras_order(cell, tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    x = keras.layers.Masking(0.0, name="padding")(inputs)
    backwards = CELLS[cell](return_sequences=True, go_backwards=True, name="backwards")(x)
    model = _trained_like(keras.Model(inputs, backwards, name=f"backwards_{cell}"), seed=1)
    report = export.to_onnx(model, tmp_path / "backwards.onnx", recurrent="native")
    _assert_native(report, [RECURRENT_OPS[cell]])
    for steps in (6, 9):
        _assert_equal_at(model, report, _features(steps, seed=steps))


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
def test_bidirectional_over_token_ids_is_one_node_per_layer(merge_mode, tmp_path):
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(20, 5, mask_zero=True, name="embedding")(ids)
    x = keras.layers.Bidirectional(keras.layers.GRU(6, return_sequences=True), merge_mode=merge_mode, name="bi1")(x)
    tags = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="softmax"), name="tags")(x)
    summary = keras.layers.Bidirectional(keras.layers.LSTM(4), merge_mode=merge_mode, name="bi2")(x)
    model = _trained_like(keras.Model(ids, [tags, summary], name=f"bidirectional_{merge_mode}"), seed=2)
    report = export.to_onnx(model, tmp_path / "bi.onnx", recurrent="native")
    _assert_native(report, ["GRU", "LSTM"])
    assert (report.operators["GRU"], report.operators["LSTM"]) == (1, 1)
    for steps in (4, 10):
        _assert_equal_at(model, report, _token_ids(steps, seed=steps))


def test_bidirectional_without_merge_gives_two_outputs(tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    forward, backward = keras.layers.Bidirectional(
        keras.layers.SimpleRNN(4, return_sequences=True), merge_mode=None, name="bi")(inputs)
    model = _trained_like(keras.Model(inputs, [forward, backward], name="unmerged"), seed=3)
    report = export.to_onnx(model, tmp_path / "unmerged.onnx", recurrent="native")
    assert len(report.outputs) == 2
    _assert_equal_at(model, report, np.random.default_rng(0).normal(size=(2, 7, 3)).astype("float32"))


@pytest.mark.parametrize("layer,kwargs", [
    (keras.layers.LSTM, {"recurrent_activation": "hard_sigmoid", "activation": "leaky_relu"}),
    (keras.layers.GRU, {"activation": "softsign", "recurrent_activation": "hard_sigmoid"}),
    (keras.layers.GRU, {"activation": "relu", "use_bias": False}),
    (keras.layers.SimpleRNN, {"activation": "elu"}),
    (keras.layers.SimpleRNN, {"activation": "linear"}),
    (keras.layers.LSTM, {"activation": "softplus", "unit_forget_bias": False, "unroll": True}),
], ids=lambda v: v.__name__ if isinstance(v, type) else "-".join(f"{k}={v}" for k, v in v.items()))
def test_cell_activations_and_options_map(layer, kwargs, tmp_path):
    # Activations that take a parameter (leaky_relu's 0.2, hard_sigmoid's 1/6 and 1/2) after ones that
    # take none: onnxruntime must read each parameter for its own function.
    inputs = keras.Input((None, 3), name="sequence")
    model = _trained_like(keras.Model(inputs, layer(5, return_sequences=True, **kwargs)(inputs), name="cell"),
                          seed=4, scale=0.3)
    report = export.to_onnx(model, tmp_path / "cell.onnx", recurrent="native")
    x = 2.0 * np.random.default_rng(1).normal(size=(3, 8, 3)).astype("float32")
    _assert_equal_at(model, report, x)


def test_dense_activations_on_sequences_and_vectors(tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    x = keras.layers.GRU(6, return_sequences=True, name="encoder")(inputs)
    names = ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "softplus", "softsign", "elu", "selu", "gelu",
             "silu", "exponential", "hard_sigmoid", "leaky_relu", "relu6", "linear"]
    outputs = [keras.layers.Dense(4, activation=name, name=f"dense_{name}")(x) for name in names]
    pooled = keras.layers.GRU(6, name="pooled")(x)
    merged = keras.layers.Concatenate(name="joined")([keras.layers.Dense(2, name="a")(pooled), pooled])
    outputs.append(keras.layers.Activation("tanh", name="squashed")(keras.layers.Add(name="sum")([merged, merged])))
    model = _trained_like(keras.Model(inputs, outputs, name="activations"), seed=5)
    report = export.to_onnx(model, tmp_path / "activations.onnx", recurrent="native")
    _assert_equal_at(model, report, np.random.default_rng(2).normal(size=(2, 6, 3)).astype("float32"))


def test_library_builders_export_natively_by_default(tmp_path):
    """rnn_classifier, rnn_tagger and rnn_language_model (conditioned: initial states from a Dense) export
    with the default recurrent="auto" as native operators, one file for every length."""
    cases = [
        (keras_models.build("rnn_classifier", vocab_size=20, num_classes=3, cell="gru", units=6, num_layers=2,
                            bidirectional=True, compile=False), lambda steps: _token_ids(steps, steps), "GRU"),
        (keras_models.build("rnn_tagger", input_shape=(None, 3), num_classes=4, mask_value=0.0, cell="lstm", units=6,
                            num_layers=2, compile=False), lambda steps: _features(steps, steps), "LSTM"),
        (keras_models.build("rnn_language_model", vocab_size=20, units=6, num_layers=2, cell="simple",
                            condition_dim=4, compile=False),
         lambda steps: [_token_ids(steps, steps), np.random.default_rng(steps).normal(size=(4, 4)).astype("float32")],
         "RNN"),
    ]
    for model, data, op in cases:
        _trained_like(model, seed=6)
        report = export.to_onnx(model, tmp_path / f"{model.name}.onnx")
        _assert_native(report, [op])
        for steps in (6, 13):
            _assert_equal_at(model, report, data(steps))


def test_a_fixed_input_signature_keeps_its_length(tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    model = _trained_like(keras.Model(inputs, keras.layers.LSTM(4, name="encoder")(inputs), name="fixed"))
    report = export.to_onnx(model, tmp_path / "fixed.onnx", input_signature=[((None, 6, 3), "float32")])
    assert report.inputs[0].shape[1:] == (6, 3)
    assert report.operators.get("LSTM") == 1


# --------------------------------------------------------------------------------------------------
# What does not map


def _with_convolution(steps):
    inputs = keras.Input((steps, 3), name="sequence")
    x = keras.layers.Conv1D(4, 3, padding="same", name="local_features")(inputs)
    return keras.Model(inputs, keras.layers.LSTM(4, name="encoder")(x), name="convolutional")


def test_native_refuses_a_layer_that_does_not_map_naming_it(tmp_path):
    with pytest.raises(export.ExportError, match=r"'local_features' \(Conv1D\) is not mapped"):
        export.to_onnx(_with_convolution(8), tmp_path / "m.onnx", recurrent="native")
    assert list(tmp_path.iterdir()) == []


def test_auto_falls_back_to_unrolled_and_says_why(tmp_path):
    model = _with_convolution(8)
    report = export.to_onnx(model, tmp_path / "m.onnx")
    assert "LSTM" not in report.operators and not {"Loop", "Scan"} & set(report.operators)
    assert any("recurrent layers unrolled" in note for note in report.notes)
    assert any("not used" in note and "local_features" in note for note in report.notes)
    x = np.random.default_rng(0).normal(size=(2, 8, 3)).astype("float32")
    _assert_equal_at(model, report, x)


def test_auto_without_a_fixed_length_names_the_layer_that_does_not_map(tmp_path):
    with pytest.raises(export.ExportError, match=r"'local_features'.*fixed sequence length"):
        export.to_onnx(_with_convolution(None), tmp_path / "m.onnx")


@pytest.mark.parametrize("build,reason", [
    (lambda x: keras.layers.LSTM(4, activation="swish", name="swish_lstm")(x), r"'swish_lstm'.*activation 'silu'"),
    (lambda x: keras.layers.GRU(4, return_state=True, name="with_states")(x)[0], r"'with_states'.*return_state"),
    (lambda x: keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(4)]), name="stacked_cells")(x),
     r"'stacked_cells'.*StackedRNNCells"),
])
def test_recurrent_maths_that_does_not_map_is_named(build, reason, tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    model = keras.Model(inputs, build(inputs))
    with pytest.raises(export.ExportError, match=reason):
        export.to_onnx(model, tmp_path / "m.onnx", recurrent="native")


def test_opsets_from_13_load_and_earlier_ones_are_refused_natively(tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    model = _trained_like(keras.Model(inputs, keras.layers.GRU(4, name="encoder")(inputs), name="opsets"))
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    for opset in (13, _supported_opsets().stop - 1):
        report = export.to_onnx(model, tmp_path / f"{opset}.onnx", opset=opset)
        assert f"opset {opset}" in report.notes and report.operators.get("GRU") == 1
        _assert_equal_at(model, report, x)
    with pytest.raises(export.ExportError, match="opset 12"):
        export.to_onnx(model, tmp_path / "12.onnx", opset=12, recurrent="native")


@pytest.mark.parametrize("recurrent", ["fast", None, True])
def test_bad_recurrent_argument(recurrent, tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    model = keras.Model(inputs, keras.layers.GRU(4)(inputs))
    with pytest.raises(export.ExportError, match=r"recurrent must be one of \('auto', 'native', 'unrolled'\)"):
        export.to_onnx(model, tmp_path / "m.onnx", recurrent=recurrent)


def test_native_does_not_apply_to_the_streaming_step(tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    model = keras.Model(inputs, keras.layers.GRU(4)(inputs))
    with pytest.raises(export.ExportError, match="streaming=True"):
        export.to_onnx(model, tmp_path / "m.onnx", streaming=True, recurrent="native")


def test_mask_handling_is_documented():
    doc = onnx_recurrent.__doc__
    for topic in ("sequence_lens", "left padding", "holes", "i, f, c, o", "i, o, f, c", "linear_before_reset=1"):
        assert topic in doc
