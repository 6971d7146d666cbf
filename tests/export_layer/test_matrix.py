"""Every kind of layer keras-models uses, exported to TFLite and ONNX and run in LiteRT and onnxruntime.

Each case is a small model with random (seeded) weights; `check_export` exports it twice, asserts
builtin-only TFLite ops, runs both files in their real runtimes and asserts outputs equal to Keras'
within 1e-5 absolute.
"""

import warnings

import keras
import numpy as np
import pytest

import export
from model_checks import check_export

_RECURRENT_FORBIDDEN = ("WHILE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")


def _rng():
    return np.random.default_rng(0)


def _float(*shape):
    return _rng().normal(size=shape).astype("float32")


# --------------------------------------------------------------------------------------------------
# Model factories: (model, sample inputs)


def dense_model():
    inputs = keras.Input((12,), name="features")
    x = keras.layers.Dense(16, activation="relu", name="dense_hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense_out")(x)
    return keras.Model(inputs, outputs, name="dense"), _float(5, 12)


def conv1d_model():
    inputs = keras.Input((20, 3), name="signal")
    x = keras.layers.Conv1D(8, 3, padding="same", activation="relu", name="conv1d_a")(inputs)
    x = keras.layers.Conv1D(4, 5, strides=2, dilation_rate=1, name="conv1d_b")(x)
    x = keras.layers.MaxPooling1D(2, name="pool1d")(x)
    outputs = keras.layers.GlobalAveragePooling1D(name="gap1d")(x)
    return keras.Model(inputs, outputs, name="conv1d"), _float(4, 20, 3)


def conv2d_model():
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d_a")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dwconv")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, name="conv2d_b")(x)
    x = keras.layers.AveragePooling2D(2, name="pool2d")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name="conv2d"), _float(3, 12, 12, 3)


def conv3d_model():
    inputs = keras.Input((6, 8, 8, 2), name="volume")
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="conv3d_a")(inputs)
    x = keras.layers.Conv3D(3, 3, strides=2, name="conv3d_b")(x)
    outputs = keras.layers.GlobalAveragePooling3D(name="gap3d")(x)
    return keras.Model(inputs, outputs, name="conv3d"), _float(2, 6, 8, 8, 2)


def conv2d_transpose_model():
    inputs = keras.Input((5, 5, 4), name="code")
    x = keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu", name="deconv_a")(inputs)
    outputs = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="valid", name="deconv_b")(x)
    return keras.Model(inputs, outputs, name="conv2d_transpose"), _float(3, 5, 5, 4)


def batch_norm_model():
    inputs = keras.Input((6, 6, 4), name="image")
    x = keras.layers.Conv2D(5, 3, name="bn_conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten(name="bn_flatten")(x)
    x = keras.layers.Dense(8, name="bn_dense")(x)
    outputs = keras.layers.BatchNormalization(name="bn_1d")(x)
    model = keras.Model(inputs, outputs, name="batch_norm")
    rng = _rng()
    # Non-trivial moving statistics, so inference differs from the identity a fresh layer computes.
    for layer in (model.get_layer("bn"), model.get_layer("bn_1d")):
        units = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 2.0, units).astype("float32"))
        layer.beta.assign(rng.normal(size=units).astype("float32"))
        layer.moving_mean.assign(rng.normal(size=units).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.2, 3.0, units).astype("float32"))
    return model, _float(4, 6, 6, 4)


def embedding_model():
    inputs = keras.Input((10,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(50, 8, name="embedding")(inputs)
    x = keras.layers.GlobalAveragePooling1D(name="embedding_pool")(x)
    outputs = keras.layers.Dense(2, name="embedding_logits")(x)
    tokens = _rng().integers(0, 50, size=(6, 10)).astype("int32")
    return keras.Model(inputs, outputs, name="embedding"), tokens


def _recurrent(kind, return_sequences, stacked):
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}[kind]
    name = f"{kind}_{'seq' if return_sequences else 'last'}{'_stacked' if stacked else ''}"
    inputs = keras.Input((4, 3), name="sequence")
    x = inputs
    if stacked:
        x = layer(6, return_sequences=True, name=name + "_rnn0")(x)
    outputs = layer(4, return_sequences=return_sequences, name=name + "_rnn1")(x)
    return keras.Model(inputs, outputs, name=name), _float(3, 4, 3)


def bidirectional_lstm_model():
    inputs = keras.Input((4, 3), name="sequence")
    x = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True), name="bilstm_a")(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(3), merge_mode="sum", name="bilstm_b")(x)
    outputs = keras.layers.Dense(2, name="bilstm_logits")(x)
    return keras.Model(inputs, outputs, name="bidirectional_lstm"), _float(3, 4, 3)


def causal_attention_model():
    inputs = keras.Input((8, 16), name="sequence")
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="mha")
    x = attention(inputs, inputs, use_causal_mask=True)
    x = keras.layers.LayerNormalization(name="mha_norm")(x + inputs)
    outputs = keras.layers.Dense(4, name="mha_out")(x)
    return keras.Model(inputs, outputs, name="causal_attention"), _float(2, 8, 16)


def two_in_two_out_model():
    image = keras.Input((8, 8, 1), name="image")
    table = keras.Input((5,), name="table")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="mimo_conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="mimo_gap")(x)
    x = keras.layers.Concatenate(name="mimo_concat")([x, table])
    label = keras.layers.Dense(3, activation="softmax", name="label")(x)
    value = keras.layers.Dense(1, name="value")(x)
    model = keras.Model({"image": image, "table": table}, {"label": label, "value": value}, name="two_in_two_out")
    return model, [_float(4, 8, 8, 1), _float(4, 5)]


def activations_model():
    # GELU (exact, through erfc) and CELU (through expm1) need ONNX handlers tf2onnx lacks.
    inputs = keras.Input((6,), name="features")
    x = keras.layers.Dense(8, name="act_dense")(inputs)
    names = ("gelu", "celu", "elu", "selu", "swish", "mish", "hard_silu", "softplus", "log_softmax")
    branches = [keras.layers.Activation(a, name=f"act_{a}")(x) for a in names]
    exact_gelu = keras.layers.Lambda(lambda t: keras.activations.gelu(t, approximate=False), name="act_gelu_exact")
    outputs = keras.layers.Concatenate(name="act_concat")([*branches, exact_gelu(x)])
    return keras.Model(inputs, outputs, name="activations"), 3 * _float(16, 6)


@keras.saving.register_keras_serializable(package="keras_models_tests")
class GatedResidual(keras.Model):
    """A subclassed model: residual gated MLP with a mean-centering step in `call`."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.project = keras.layers.Dense(units, name="project")
        self.gate = keras.layers.Dense(units, activation="sigmoid", name="gate")
        self.out = keras.layers.Dense(2, name="out")

    def call(self, inputs):
        h = self.project(inputs)  # (batch, units)
        h = h - keras.ops.mean(h, axis=-1, keepdims=True)
        return self.out(h * self.gate(inputs) + h)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def subclassed_model():
    model = GatedResidual(name="subclassed")
    x = _float(5, 6)
    model(x)
    return model, x


CASES = {
    "dense": dense_model,
    "activations": activations_model,
    "conv1d": conv1d_model,
    "conv2d": conv2d_model,
    "conv3d": conv3d_model,
    "conv2d_transpose": conv2d_transpose_model,
    "batch_norm": batch_norm_model,
    "embedding_int32": embedding_model,
    "bidirectional_lstm": bidirectional_lstm_model,
    "causal_attention": causal_attention_model,
    "two_in_two_out": two_in_two_out_model,
    "subclassed": subclassed_model,
}
RECURRENT = [
    (kind, return_sequences, stacked)
    for kind in ("lstm", "gru", "simple_rnn")
    for return_sequences in (True, False)
    for stacked in (False, True)
]


def _loop_ops(tmp_path, model):
    """Operators in the exported files that mean a while loop or resource variables survived."""
    tflite = export.inspect(tmp_path / f"{model.name}.tflite").operators
    onnx = export.inspect(tmp_path / f"{model.name}.onnx").operators
    return [op for op in tflite if op in _RECURRENT_FORBIDDEN or "TensorList" in op] + [
        op for op in onnx if op in ("Loop", "Scan")
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_exports_equal_keras(case, tmp_path):
    model, x = CASES[case]()
    results = check_export(model, x, tmp_path)
    assert set(results) == {"tflite", "onnx"}
    for result in results.values():
        assert result.max_abs <= 1e-5
    assert not _loop_ops(tmp_path, model)


@pytest.mark.parametrize("kind,return_sequences,stacked", RECURRENT, ids=lambda v: str(v))
def test_recurrent_exports_are_unrolled_builtin_ops(kind, return_sequences, stacked, tmp_path):
    model, x = _recurrent(kind, return_sequences, stacked)
    check_export(model, x, tmp_path)
    assert not _loop_ops(tmp_path, model)
    expected = (3, 4, 4) if return_sequences else (3, 4)
    assert tuple(keras.ops.shape(model(x))) == expected


def test_causal_mask_survives_export(tmp_path):
    # Changing the last time step must leave every earlier output unchanged in both runtimes.
    model, x = causal_attention_model()
    changed = x.copy()
    changed[:, -1] += 5.0
    for report in (export.to_tflite(model, tmp_path / "causal.tflite"), export.to_onnx(model, tmp_path / "causal.onnx")):
        before, after = export.run_artifact(report.path, x)[0], export.run_artifact(report.path, changed)[0]
        np.testing.assert_allclose(before[:, :-1], after[:, :-1], atol=1e-5)
        assert np.abs(before[:, -1] - after[:, -1]).max() > 1e-2


def test_dict_inputs_follow_keras_order_whatever_the_key_order(tmp_path):
    # Keys deliberately out of alphabetical order and of different widths: a mix-up cannot run.
    zeta, alpha, mid = keras.Input((3,), name="zeta"), keras.Input((5,), name="alpha"), keras.Input((2,), name="mid")
    x = keras.layers.Concatenate(name="cat")(
        [keras.layers.Dense(4, name="dz")(zeta), keras.layers.Dense(4, name="da")(alpha), mid]
    )
    outputs = {"out_b": keras.layers.Dense(2, name="out_b")(x), "out_a": keras.layers.Dense(1, name="out_a")(x)}
    model = keras.Model({"zeta": zeta, "alpha": alpha, "mid": mid}, outputs, name="dict_io")
    rng = _rng()
    inputs = {k: rng.normal(size=(4, n)).astype("float32") for k, n in (("zeta", 3), ("alpha", 5), ("mid", 2))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reports = [export.to_tflite(model, tmp_path / "d.tflite"), export.to_onnx(model, tmp_path / "d.onnx")]
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)]
    for report in reports:
        assert [t.shape[1] for t in report.inputs] == [5, 2, 3]  # alpha, mid, zeta: Keras' flat order
        assert [t.shape[1] for t in report.outputs] == [1, 2]  # out_a, out_b
        assert export.verify(model, report.path, inputs).max_abs <= 1e-5
        positional = [inputs["alpha"], inputs["mid"], inputs["zeta"]]
        assert export.verify(model, report.path, positional).max_abs <= 1e-5


def test_two_in_two_out_report_lists_both_inputs_and_outputs(tmp_path):
    model, x = two_in_two_out_model()
    tflite = export.to_tflite(model, tmp_path / "mimo.tflite")
    onnx = export.to_onnx(model, tmp_path / "mimo.onnx")
    for report in (tflite, onnx):
        assert len(report.inputs) == 2 and len(report.outputs) == 2
    assert sorted(t.dtype for t in tflite.inputs) == ["float32", "float32"]
    # Dict inputs by name give the same answer as the positional list.
    by_name = {"image": x[0], "table": x[1]}
    assert export.verify(model, tmp_path / "mimo.tflite", by_name).max_abs <= 1e-5


def test_dynamic_batch_runs_at_batch_1_and_7(tmp_path):
    model, _ = conv2d_model()
    tflite = export.to_tflite(model, tmp_path / "dynamic.tflite")
    onnx = export.to_onnx(model, tmp_path / "dynamic.onnx")
    assert tflite.inputs[0].shape[0] == -1 and onnx.inputs[0].shape[0] == -1
    for batch in (1, 7):
        x = _rng().normal(size=(batch, 12, 12, 3)).astype("float32")
        for path in (tflite.path, onnx.path):
            result = export.verify(model, path, x)
            assert result.max_abs <= 1e-5, (path.suffix, batch, result)
            assert export.run_artifact(path, x)[0].shape == (batch, 4)


def test_fixed_batch_size_is_in_the_file(tmp_path):
    model, x = dense_model()
    report = export.to_tflite(model, tmp_path / "fixed.tflite", batch_size=5)
    assert report.inputs[0].shape == (5, 12)
    assert export.verify(model, report.path, x).max_abs <= 1e-5


def test_int32_token_input_keeps_its_dtype(tmp_path):
    model, tokens = embedding_model()
    tflite = export.to_tflite(model, tmp_path / "tokens.tflite")
    onnx = export.to_onnx(model, tmp_path / "tokens.onnx")
    assert tflite.inputs[0].dtype == "int32"
    assert onnx.inputs[0].dtype == "int32"
    # The embedding is a lookup: the exported output must be bit-for-bit close, not just near.
    assert export.verify(model, tflite.path, tokens).max_abs <= 1e-6
