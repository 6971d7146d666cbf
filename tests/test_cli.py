import numpy as np
import pytest

import keras_models
from export import cli
from export.tour import run_tour


@pytest.fixture
def saved_mlp(tmp_path):
    model = keras_models.build("mlp", input_shape=(6,), num_classes=3, hidden_units=(8,))
    path = tmp_path / "mlp.keras"
    model.save(path)
    return model, path


def test_list_prints_every_registered_model(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for info in keras_models.list_models():
        assert info.name in out and info.description in out


def test_list_unknown_family_exits_with_message():
    with pytest.raises(SystemExit, match="Unknown family 'nope'"):
        cli.main(["list", "--family", "nope"])


def test_export_then_inspect(saved_mlp, tmp_path, capsys):
    _, path = saved_mlp
    calibration = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    np.save(tmp_path / "calib.npy", calibration)
    assert cli.main([
        "export", str(path), "--tflite", str(tmp_path / "m.tflite"), "--onnx", str(tmp_path / "m.onnx"),
        "--quantize", "int8", "--calibration", str(tmp_path / "calib.npy"),
    ]) == 0
    out = capsys.readouterr().out
    assert "int8 quantization" in out and "onnxruntime: max abs diff" in out
    assert (tmp_path / "m.tflite").stat().st_size > 0
    assert cli.main(["inspect", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "onnx artifact" in out and ("Gemm" in out or "MatMul" in out)


def test_export_errors_are_messages_not_tracebacks(saved_mlp, tmp_path):
    _, path = saved_mlp
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["export", str(tmp_path / "missing.keras"), "--tflite", str(tmp_path / "x.tflite")])
    with pytest.raises(SystemExit, match="--tflite"):
        cli.main(["export", str(path)])
    with pytest.raises(SystemExit, match="needs representative_data"):
        cli.main(["export", str(path), "--tflite", str(tmp_path / "x.tflite"), "--quantize", "int8"])
    assert not (tmp_path / "x.tflite").exists()
    corrupt = tmp_path / "bad.tflite"
    corrupt.write_bytes(b"not a flatbuffer")
    with pytest.raises(SystemExit, match="not a valid TFLite file"):
        cli.main(["inspect", str(corrupt)])


def test_tour_trains_exports_and_verifies(tmp_path, capsys):
    rows = run_tour(output_dir=tmp_path, families=["dense"], verbose=False)
    (row,) = rows
    assert row.error is None
    assert row.xla is True  # the tour trains with XLA unless told otherwise
    assert row.metric > 0.9  # breast cancer MLP held-out accuracy
    assert row.tflite_diff < 1e-5 and row.onnx_diff < 1e-5
    assert row.tflite_bytes == (tmp_path / "dense_mlp.tflite").stat().st_size
    table = capsys.readouterr().out
    assert "TFLite max diff" in table and "dense" in table


def test_tour_with_measured_defaults_reports_them(tmp_path, monkeypatch):
    from keras_models import training

    monkeypatch.setitem(training.CPU_XLA_DEFAULTS, "dense", False)
    monkeypatch.setattr(training, "has_accelerator", lambda: False)
    (row,) = run_tour(output_dir=tmp_path, families=["dense"], verbose=False, xla=None)
    assert row.error is None and row.xla is False
