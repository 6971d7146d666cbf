"""Bad input to the export layer gets a clear error, and a failed export leaves nothing behind."""

import logging
import os
import stat
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import export
from export import _common


def _dense(name="small"):
    inputs = keras.Input((4,), name="features")
    return keras.Model(inputs, keras.layers.Dense(2, name=name + "_dense")(inputs), name=name)


def _x(n=3, features=4):
    return np.random.default_rng(0).normal(size=(n, features)).astype("float32")


class _Determinant(keras.layers.Layer):
    """Calls tf.linalg.det: TensorFlow's MatrixDeterminant has a Flex kernel and no builtin TFLite op."""

    def call(self, inputs):
        return tf.linalg.det(inputs)[:, None]  # (batch, 1)


def _needs_flex():
    inputs = keras.Input((3, 3), name="matrices")
    x = keras.layers.Dense(3, name="mix")(inputs)
    x = _Determinant(name="determinant")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x), name="needs_flex")


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir())


EXPORTERS = {"tflite": export.to_tflite, "onnx": export.to_onnx}


# --------------------------------------------------------------------------------------------------
# Destinations


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_path_in_missing_folder(fmt, tmp_path):
    target = tmp_path / "no_such_folder" / f"model.{fmt}"
    with pytest.raises(export.ExportError, match="no_such_folder.*does not exist"):
        EXPORTERS[fmt](_dense(), target)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_path_that_is_a_directory(fmt, tmp_path):
    folder = tmp_path / f"model.{fmt}"
    folder.mkdir()
    with pytest.raises(export.ExportError, match="is a directory"):
        EXPORTERS[fmt](_dense(), folder)
    assert folder.is_dir() and _leftovers(folder) == []


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_exported_files_respect_the_umask(fmt, tmp_path, umask_027):
    target = tmp_path / f"model.{fmt}"
    EXPORTERS[fmt](_dense(), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask_027 == 0o640
    # Overwriting an existing file gives the same mode a new file gets, as model.save does.
    target.chmod(0o644)
    EXPORTERS[fmt](_dense(), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    os.umask(0o022)
    EXPORTERS[fmt](_dense(), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_read_only_folder(fmt, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(export.ExportError, match=rf"Cannot write '{folder}/model.{fmt}'.*not writable"):
            EXPORTERS[fmt](_dense(), folder / f"model.{fmt}")
    finally:
        folder.chmod(0o755)
    assert _leftovers(folder) == []


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_unwritable_folder_fails_before_converting_and_names_the_path(fmt, tmp_path, monkeypatch):
    """The same refusal wherever permission bits do not tell (root, read-only mounts): creating a file
    there fails. The conversion must not start, and the message names the path the caller gave."""
    from export import _common, onnx, tflite

    real_open = os.open

    def refuse_in_tmp_path(name, flags, *args):
        if Path(name).parent == tmp_path and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args)

    def no_conversion(*args, **kwargs):
        raise AssertionError("the conversion started")

    monkeypatch.setattr(_common.os, "open", refuse_in_tmp_path)
    monkeypatch.setattr(tflite, "trace", no_conversion)
    monkeypatch.setattr(onnx, "serving_function", no_conversion)
    target = tmp_path / f"model.{fmt}"
    with pytest.raises(export.ExportError) as caught:
        EXPORTERS[fmt](_dense(), target)
    message = str(caught.value)
    assert f"Cannot write {str(target)!r}" in message and "Permission denied" in message
    assert ".partial" not in message  # not the hidden temporary file
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# Models and arguments


class _Unbuilt(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_unbuilt_model(fmt, tmp_path):
    for model in (_Unbuilt(name="never_called"), keras.Sequential([keras.layers.Dense(2)], name="never_called")):
        with pytest.raises(export.ExportError, match="'never_called' is not built"):
            EXPORTERS[fmt](model, tmp_path / f"model.{fmt}")
    assert _leftovers(tmp_path) == []


def test_not_a_model(tmp_path):
    with pytest.raises(export.ExportError, match="Expected a keras.Model; got Dense"):
        export.to_tflite(keras.layers.Dense(2), tmp_path / "layer.tflite")


def test_int8_without_representative_data(tmp_path):
    with pytest.raises(export.ExportError, match="int8.*needs representative_data"):
        export.to_tflite(_dense(), tmp_path / "q.tflite", quantization="int8")
    with pytest.raises(export.ExportError, match='int8_io=True needs quantization="int8"'):
        export.to_tflite(_dense(), tmp_path / "q.tflite", quantization="dynamic", int8_io=True)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["int4", "INT8", "fp16", ""])
def test_bad_quantization_name(name, tmp_path):
    with pytest.raises(export.ExportError, match=f"quantization must be one of .*got quantization='{name}'"):
        export.to_tflite(_dense(), tmp_path / "q.tflite", quantization=name)


@pytest.mark.parametrize("opset", [8, 99, "17", 17.0])
def test_unsupported_opset(opset, tmp_path):
    with pytest.raises(export.ExportError, match=rf"opset={opset!r} is not supported.*opsets 9 to \d+"):
        export.to_onnx(_dense(), tmp_path / "m.onnx", opset=opset)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("end", ["oldest", "newest"])
def test_both_ends_of_the_advertised_opset_range_export(end, tmp_path):
    from export.onnx import _supported_opsets

    opsets = _supported_opsets()
    opset = opsets.start if end == "oldest" else opsets.stop - 1
    model = _dense()
    report = export.to_onnx(model, tmp_path / "m.onnx", opset=opset)
    assert f"opset {opset}" in report.notes
    assert export.verify(model, report.path, _x()).max_abs <= 1e-5


def test_nan_in_representative_data(tmp_path):
    data = _x(50)
    data[17, 2] = np.nan
    with pytest.raises(export.ExportError, match="representative_data for input 'features' contains NaN"):
        export.to_tflite(_dense(), tmp_path / "q.tflite", quantization="int8", representative_data=data)
    assert _leftovers(tmp_path) == []


def test_representative_data_of_the_wrong_shape(tmp_path):
    with pytest.raises(export.ExportError, match=r"has shape \(50, 5\); the model takes \?x4"):
        export.to_tflite(_dense(), tmp_path / "q.tflite", quantization="int8", representative_data=_x(50, 5))
    with pytest.raises(export.ExportError, match="one array per model input \\(1\\); got 2"):
        export.to_tflite(_dense(), tmp_path / "q.tflite", quantization="int8", representative_data=[_x(50), _x(50)])


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
@pytest.mark.parametrize("signature, message", [
    ([((None, 4, 1), "float32")], r"input_signature\[0\] has shape \(None, 4, 1\); input 0 of 'small' takes \(None, 4\)"),
    ([((None,), "float32")], r"input_signature\[0\] has shape \(None,\); input 0 of 'small' takes \(None, 4\)"),
    ([((None, 5), "float32")], r"input_signature\[0\] has shape \(None, 5\); input 0 of 'small' takes \(None, 4\)"),
    ([((None, 4), "float32")] * 2, r"input_signature has 2 input\(s\); model 'small' takes 1: \(None, 4\)"),
])
def test_input_signature_that_does_not_fit_the_model(fmt, signature, message, tmp_path):
    with pytest.raises(export.ExportError, match=message) as caught:
        EXPORTERS[fmt](_dense(), tmp_path / f"m.{fmt}", input_signature=signature)
    assert "\x1b[" not in str(caught.value)  # no terminal colour codes
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_wrong_signature_of_a_subclassed_model_is_an_export_error(fmt, tmp_path):
    model = _Unbuilt(name="subclassed")
    model(_x())
    with pytest.raises(export.ExportError, match="'subclassed'.*expected axis -1 of input shape to have value 4") as caught:
        EXPORTERS[fmt](model, tmp_path / f"m.{fmt}", input_signature=[((None, 4, 3), "float32")])
    assert "\x1b[" not in str(caught.value) and "Arguments received" not in str(caught.value)


def test_bad_batch_size(tmp_path):
    with pytest.raises(export.ExportError, match="batch_size must be a positive integer"):
        export.to_tflite(_dense(), tmp_path / "m.tflite", batch_size=0)


# --------------------------------------------------------------------------------------------------
# Flex ops


def test_flex_op_is_named_with_its_layer(tmp_path, capfd):
    model = _needs_flex()
    target = tmp_path / "flex.tflite"
    capfd.readouterr()
    with pytest.raises(export.FlexOpsError) as caught:
        export.to_tflite(model, target)
    assert caught.value.ops == {"FlexMatrixDeterminant": ["determinant"]}
    assert "FlexMatrixDeterminant (from determinant)" in str(caught.value)
    assert "allow_select_tf_ops=True" in str(caught.value)
    assert _leftovers(tmp_path) == []
    # The converter's own diagnostics, printed from C++ to file descriptor 2, stay out of the output:
    # the error above says it all.
    printed = capfd.readouterr()
    for chatter in ("loc(fused", "error:", "MatrixDeterminant", "Flex ops"):
        assert chatter not in printed.err and chatter not in printed.out


def test_export_prints_no_converter_chatter(tmp_path, capfd, caplog):
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        report = export.to_tflite(_dense(), tmp_path / "m.tflite")
        export.verify(_dense(), report.path, _x())
    # absl's "Please consider providing the trackable_obj argument" went out on every export
    assert not [r for r in caplog.records if "trackable_obj" in r.getMessage()]
    printed = capfd.readouterr()
    for chatter in ("trackable_obj", "Ignored output_format", "XNNPACK delegate"):
        assert chatter not in printed.err and chatter not in printed.out


def test_allow_select_tf_ops_is_an_explicit_opt_in(tmp_path):
    model = _needs_flex()
    report = export.to_tflite(model, tmp_path / "flex.tflite", allow_select_tf_ops=True)
    assert report.operators.get("FlexMatrixDeterminant") == 1
    assert {"FULLY_CONNECTED"} <= set(report.operators)
    assert any("needs the Flex delegate" in note for note in report.notes)
    # The plain LiteRT interpreter has no Flex delegate: verify says so instead of crashing.
    matrices = np.random.default_rng(0).normal(size=(2, 3, 3)).astype("float32")
    with pytest.raises(export.ExportError, match="needs TensorFlow \\(Flex\\) ops FlexMatrixDeterminant.*plain LiteRT"):
        export.verify(model, report.path, matrices)
    # ONNX has a Det operator, so the same model exports there and agrees with Keras.
    onnx = export.to_onnx(model, tmp_path / "flex.onnx")
    assert onnx.operators.get("Det") == 1
    assert export.verify(model, onnx.path, matrices).max_abs <= 1e-4


# --------------------------------------------------------------------------------------------------
# Atomic writes


def test_failed_conversion_keeps_the_previous_file(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"previous export")
    with pytest.raises(export.FlexOpsError):
        export.to_tflite(_needs_flex(), target)
    assert target.read_bytes() == b"previous export"
    assert _leftovers(tmp_path) == ["model.tflite"]


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_interrupted_write_leaves_no_partial_file(fmt, tmp_path, monkeypatch):
    original = Path.write_bytes

    def write_half_then_fail(self, data):
        original(self, data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        EXPORTERS[fmt](_dense(), tmp_path / f"model.{fmt}")
    monkeypatch.undo()
    assert _leftovers(tmp_path) == []


def test_successful_export_leaves_only_the_file(tmp_path):
    export.to_tflite(_dense(), tmp_path / "m.tflite")
    export.to_onnx(_dense(), tmp_path / "m.onnx")
    assert _leftovers(tmp_path) == ["m.onnx", "m.tflite"]


# --------------------------------------------------------------------------------------------------
# Recurrent limits (documented in export._common.unrolled_recurrent_layers)


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_rnn_with_undefined_time_axis(fmt, tmp_path):
    # TFLite unrolls recurrent layers; ONNX does too when asked (its default writes native RNN nodes).
    inputs = keras.Input((None, 3), name="sequence")
    model = keras.Model(inputs, keras.layers.GRU(4, name="encoder_gru")(inputs), name="variable_length")
    kwargs = {"recurrent": "unrolled"} if fmt == "onnx" else {}
    with pytest.raises(export.ExportError, match=r"\['encoder_gru'\] need a fixed sequence length"):
        EXPORTERS[fmt](model, tmp_path / f"model.{fmt}", **kwargs)
    assert _leftovers(tmp_path) == []
    # The layer is left as it was: unrolling is temporary, also after a failure.
    assert model.get_layer("encoder_gru").unroll is False


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_rnn_with_undefined_time_axis_exports_with_a_fixed_signature(fmt, tmp_path):
    inputs = keras.Input((None, 3), name="sequence")
    model = keras.Model(inputs, keras.layers.LSTM(4, name="encoder_lstm")(inputs), name="variable_length")
    report = EXPORTERS[fmt](model, tmp_path / f"model.{fmt}", input_signature=[((None, 6, 3), "float32")])
    assert report.inputs[0].shape[1:] == (6, 3)
    x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype("float32")
    assert export.verify(model, report.path, x).max_abs <= 1e-5


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_stateful_rnn_is_refused(fmt, tmp_path):
    inputs = keras.Input((5, 3), batch_size=2, name="sequence")
    model = keras.Model(inputs, keras.layers.GRU(4, stateful=True, name="streaming_gru")(inputs))
    with pytest.raises(export.ExportError, match=r"Stateful recurrent layers \['streaming_gru'\]"):
        EXPORTERS[fmt](model, tmp_path / f"model.{fmt}")
    assert _leftovers(tmp_path) == []


def test_recurrent_limits_are_documented():
    doc = _common.unrolled_recurrent_layers.__doc__
    for topic in ("fixed", "linearly", "stateful=True", "WHILE", "TensorList"):
        assert topic in doc


# --------------------------------------------------------------------------------------------------
# Corrupt artifacts and bad verify calls


def _write_corrupt(tmp_path, fmt, kind):
    model = _dense()
    good = EXPORTERS[fmt](model, tmp_path / f"good.{fmt}").path.read_bytes()
    content = {"garbage": b"not a model at all " * 8, "empty": b"", "truncated": good[: len(good) // 3]}[kind]
    path = tmp_path / f"{kind}.{fmt}"
    path.write_bytes(content)
    return model, path


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated"])
@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_corrupt_artifact(fmt, kind, tmp_path):
    model, path = _write_corrupt(tmp_path, fmt, kind)
    kind_name = "TFLite" if fmt == "tflite" else "ONNX"
    runtime = "the LiteRT interpreter" if fmt == "tflite" else "onnxruntime"
    with pytest.raises(export.ExportError, match=rf"{path.name}.*(not a valid {kind_name} file|does not load)"):
        export.inspect(path)
    with pytest.raises(export.ExportError, match=rf"{path.name} does not load in {runtime}"):
        export.verify(model, path, _x())


def test_missing_and_unknown_artifacts(tmp_path):
    with pytest.raises(export.ExportError, match="No artifact at"):
        export.inspect(tmp_path / "missing.tflite")
    with pytest.raises(export.ExportError, match="No artifact at"):
        export.verify(_dense(), tmp_path / "missing.onnx", _x())
    other = tmp_path / "model.pb"
    other.write_bytes(b"x")
    with pytest.raises(export.ExportError, match=r"Unknown artifact type '.pb'.*expected .tflite or .onnx"):
        export.inspect(other)


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_verify_with_wrong_inputs(fmt, tmp_path):
    model = _dense()
    path = EXPORTERS[fmt](model, tmp_path / f"m.{fmt}").path
    with pytest.raises(export.ExportError, match=r"takes 1 input\(s\); got 2"):
        export.verify(model, path, [_x(), _x()])
    with pytest.raises(export.ExportError, match=r"takes shape \?x4; got an array of shape \(3, 5\)"):
        export.verify(model, path, _x(3, 5))
    with pytest.raises(export.ExportError, match=r"takes shape \?x4; got an array of shape \(4,\)"):
        export.verify(model, path, _x()[0])
    with pytest.raises(export.ExportError, match="missing \\['features'\\]"):
        export.verify(model, path, {"wrong_name": _x()})
    bad = _x()
    bad[1, 1] = np.inf
    with pytest.raises(export.ExportError, match=r"inputs\[0\] contains NaN or infinity"):
        export.verify(model, path, bad)


def test_verify_on_a_file_that_needs_flex_explains_why(tmp_path):
    """A Flex op fed straight by the input fails when the interpreter allocates its tensors, before any
    invoke: the runtime's RuntimeError must not come through."""
    inputs = keras.Input((3, 3), name="matrices")
    model = keras.Model(inputs, _Determinant(name="determinant")(inputs), name="flex_first")
    report = export.to_tflite(model, tmp_path / "flex.tflite", allow_select_tf_ops=True)
    for batch in (1, 2):
        matrices = np.random.default_rng(batch).normal(size=(batch, 3, 3)).astype("float32")
        with pytest.raises(export.ExportError, match=r"needs TensorFlow \(Flex\) ops FlexMatrixDeterminant"):
            export.verify(model, report.path, matrices)


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_verify_on_an_empty_batch_is_an_error(fmt, tmp_path):
    model = _dense()
    path = EXPORTERS[fmt](model, tmp_path / f"m.{fmt}").path
    with pytest.raises(export.ExportError, match=r"inputs\[0\] holds no samples \(shape \(0, 4\)\)"):
        export.verify(model, path, _x(0))
    with pytest.raises(export.ExportError, match="holds no samples"):
        export.verify(model, path, {"features": _x(0)})
