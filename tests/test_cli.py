import os
import subprocess
import sys

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


def test_export_refuses_an_empty_or_truncated_keras_file_by_name(saved_mlp, tmp_path):
    _, path = saved_mlp
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for bad in (empty, truncated):
        with pytest.raises(SystemExit, match=f"{bad.name}.* is not a valid .keras archive") as caught:
            cli.main(["export", str(bad), "--tflite", str(tmp_path / "x.tflite")])
        assert "not found" not in str(caught.value).lower()
    assert not (tmp_path / "x.tflite").exists()


def test_export_loads_a_model_trained_under_jax(tmp_path):
    """A .keras file is backend-independent: trained and saved on JAX, exported here on TensorFlow, the
    files give JAX's outputs."""
    import export

    script = (
        "import numpy as np, keras, keras_models\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(64, 6)).astype('float32'); y = (x[:, 0] > 0).astype('int32')\n"
        "model = keras_models.build('mlp', input_shape=(6,), num_classes=2, hidden_units=(8,))\n"
        "model.fit(x, y, epochs=2, verbose=0)\n"
        f"model.save({str(tmp_path / 'mlp.keras')!r})\n"
        f"np.savez({str(tmp_path / 'jax.npz')!r}, x=x[:8], y=keras.ops.convert_to_numpy(model(x[:8])),\n"
        "         backend=keras.backend.backend())\n"
    )
    subprocess.run([sys.executable, "-c", script], env=dict(os.environ, KERAS_BACKEND="jax"), check=True,
                   timeout=600)
    saved = np.load(tmp_path / "jax.npz")
    assert str(saved["backend"]) == "jax"
    tflite, onnx = tmp_path / "m.tflite", tmp_path / "m.onnx"
    assert cli.main(["export", str(tmp_path / "mlp.keras"), "--tflite", str(tflite), "--onnx", str(onnx)]) == 0
    for artifact in (tflite, onnx):
        (outputs,) = export.run_artifact(artifact, saved["x"])
        np.testing.assert_allclose(outputs, saved["y"], rtol=0, atol=1e-5)


def test_help_and_argument_errors_import_no_heavy_module():
    """`--help`, a subcommand's help and an unknown tour family answer without TensorFlow or Keras."""
    script = (
        "import sys\n"
        "from export import cli\n"
        "for argv in (['--help'], ['tour', '--help'], ['export', '--help'], ['tour', '--families', 'nosuch']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('tensorflow', 'keras', 'keras_models', 'jax', 'torch', 'onnx', 'tf2onnx', 'export.tflite')\n"
        "print('loaded:', sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert "usage: keras-models" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "loaded: []"


def test_tour_unknown_family_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:
        cli.main(["tour", "--families", "dense", "nosuch"])
    message = str(caught.value)
    assert message.startswith("error: ") and "'nosuch'" in message and "dense" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="nosuch"):
        run_tour(output_dir=tmp_path / "out", families=["nosuch"], verbose=False)
    assert not (tmp_path / "out").exists()


def test_tour_trains_exports_and_verifies(tmp_path, capsys):
    rows = run_tour(output_dir=tmp_path, families=["dense"], verbose=False)
    (row,) = rows
    assert row.error is None and row.skipped is None
    assert row.xla is True  # the tour trains with XLA unless told otherwise
    assert row.metric > 0.9  # breast cancer MLP held-out accuracy
    assert row.tflite_diff < 1e-5 and row.onnx_diff < 1e-5
    assert row.tflite_bytes == (tmp_path / "dense_mlp.tflite").stat().st_size
    table = capsys.readouterr().out
    assert "TFLite max diff" in table and "Trained on TensorFlow. XLA:" in table
    assert not (tmp_path / "dense_mlp.keras").exists()  # on TensorFlow export runs in this process


def test_tour_passes_jit_compile_to_the_builders(tmp_path):
    (off,) = run_tour(output_dir=tmp_path, families=["dense"], verbose=False, xla=False, epochs=1)
    assert off.error is None and off.xla is False
    (default,) = run_tour(output_dir=tmp_path, families=["dense"], verbose=False, xla=None, epochs=1)
    assert default.error is None and default.xla is keras_models.default_jit_compile("dense")


def test_tour_epochs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="epochs=0"):
        run_tour(output_dir=tmp_path, families=["dense"], verbose=False, epochs=0)


def test_export_streaming_writes_a_step_model_with_named_states(tmp_path, capsys):
    import keras
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((None, 3), name="features")
    outputs = keras.layers.Dense(2)(keras.layers.GRU(4)(inputs))
    path = tmp_path / "gru.keras"
    keras.Model(inputs, outputs).save(path)
    assert cli.main(["export", str(path), "--tflite", str(tmp_path / "gru.tflite"), "--streaming"]) == 0
    runner = Interpreter(model_path=str(tmp_path / "gru.tflite")).get_signature_runner("serving_default")
    details = runner.get_input_details()
    assert set(details) == {"features", "state_0"}
    assert tuple(details["features"]["shape"])[1:] == (3,)  # one step: no time axis
    assert "state_0_out" in runner.get_output_details()


def test_export_generation_writes_parts_that_generate_like_the_saved_model(tmp_path, capsys):
    import numpy as np

    import export
    import keras_models

    model = keras_models.build("rnn_language_model", vocab_size=9, embedding_dim=4, units=6, cell="gru")
    path = tmp_path / "lm.keras"
    model.save(path)
    assert cli.main(["export", str(path), "--tflite", str(tmp_path / "lm.tflite"), "--generation",
                     "--max-length", "12"]) == 0  # ONNX: the same arguments (tests/export_layer/test_generation.py)
    assert "decode(" in capsys.readouterr().out
    prompts = np.array([[3, 1], [8, 8]], np.int32)
    np.testing.assert_array_equal(export.generate(tmp_path / "lm.tflite", prompts), model.generate(prompts, 12))
    with pytest.raises(SystemExit, match="--max-length applies only with --generation"):
        cli.main(["export", str(path), "--tflite", str(tmp_path / "x.tflite"), "--max-length", "5"])


def test_tour_seeds_each_case_so_its_training_repeats_exactly():
    from export.tour import TourRow, _train
    from export.tour_cases import tour_cases

    (case,) = tour_cases(["dense"])

    def trained(seed):
        return _train(case, TourRow("dense", "mlp"), False, False, 1, seed).model.get_weights()

    first, again, other = trained(3), trained(3), trained(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.allclose(first[0], other[0])  # the seed, not a fixed initializer, decides the weights
    with pytest.raises(ValueError, match="seed=-1"):
        run_tour(families=["dense"], verbose=False, seed=-1)


def test_launch_is_the_distributed_launcher(capsys):
    """`keras-models launch` hands everything after it to `keras_models.distributed.launcher.main`."""
    with pytest.raises(SystemExit):
        cli.main(["launch", "--processes", "0", "train.py"])
    assert "processes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        cli.main(["launch", "--help"])
    assert caught.value.code == 0 and "--devices-per-process" in capsys.readouterr().out
