"""Generation export: `to_tflite` / `to_onnx` with `generation=True` and `export.generate`.

The exported parts (`encode`, `decode`) replayed by `export.generate` in LiteRT and onnxruntime must give
the Keras model's greedy tokens exactly, for prompts of several lengths and a batch of rows; the
decode part's logits must equal the Keras step's. Bad arguments and files get clear errors and leave
nothing behind.
"""

import json

import keras
import numpy as np
import pytest

import export
import keras_models
from export.generation import METADATA_KEY, load_parts
from model_checks import _BUILTIN_OPERATORS

MAX_LENGTH = 24


def _language_model(cell="lstm", condition_dim=None, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras_models.build("rnn_language_model", vocab_size=13, embedding_dim=6, units=10, num_layers=2,
                               cell=cell, condition_dim=condition_dim, compile=False)
    logits = model.get_layer(model.name + "_logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([4.0 * kernel, bias])  # wide margins between the logits: greedy has no near-ties
    return model


def _prompts(batch=3, length=5, seed=1):
    return np.random.default_rng(seed).integers(1, 13, (batch, length)).astype(np.int32)


def _export(model, kind, tmp_path, **kwargs):
    path = tmp_path / f"lm.{kind}"
    exporter = export.to_tflite if kind == "tflite" else export.to_onnx
    return path, exporter(model, path, generation=True, max_length=MAX_LENGTH, **kwargs)


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
@pytest.mark.parametrize("cell, condition_dim", [("lstm", None), ("gru", 4)])
def test_exported_greedy_generation_equals_keras_token_for_token(kind, cell, condition_dim, tmp_path):
    model = _language_model(cell, condition_dim)
    path, report = _export(model, kind, tmp_path)
    condition = None if condition_dim is None else np.random.default_rng(2).normal(size=(3, condition_dim))
    condition = None if condition is None else condition.astype(np.float32)
    for length in (1, 5):
        prompts = _prompts(length=length)
        expected = model.generate(prompts, MAX_LENGTH, condition=condition)
        np.testing.assert_array_equal(export.generate(path, prompts, source=condition), expected)
    assert len(set(map(tuple, expected[:, 5:]))) > 1  # the rows differ: the batch is really carried per row
    shorter = export.generate(path, _prompts(), max_length=9, source=condition)
    np.testing.assert_array_equal(shorter, model.generate(_prompts(), 9, condition=condition))
    parts = ["encode", "decode"] if condition_dim else ["decode"]
    if kind == "onnx":
        assert [p.name for p in report.files] == [f"lm.{part}.onnx" for part in parts]
        assert not path.exists()  # one file per part, beside the path
    else:
        assert set(load_parts(path).runners) == set(parts)
        assert set(report.operators) <= _BUILTIN_OPERATORS
    assert [t.name for t in report.inputs][:1] in (["token_ids"], ["state_0"])
    assert {t.name for t in report.outputs} == {"logits", *(f"state_{i}_out" for i in range(4 if cell == "lstm" else 2))}


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_a_loaded_model_generates_like_its_path_without_reading_the_file_again(kind, tmp_path):
    model = _language_model("gru", condition_dim=4)
    path, _ = _export(model, kind, tmp_path)
    condition = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    loaded = export.load_parts(path)
    expected = model.generate(_prompts(), MAX_LENGTH, condition=condition)
    files = [path] if kind == "tflite" else sorted(tmp_path.glob("lm.*.onnx"))
    for file in files:
        file.rename(file.with_name(file.name + ".moved"))  # the loaded model no longer needs them
    for _ in range(2):
        np.testing.assert_array_equal(export.generate(loaded, _prompts(), source=condition), expected)
    with pytest.raises(export.ExportError, match="does not exist"):
        export.generate(path, _prompts(), source=condition)
    with pytest.raises(TypeError, match="path must be the path of an exported generation model"):
        export.generate(object(), _prompts(), source=condition)


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_decode_part_logits_and_states_equal_the_keras_step(kind, tmp_path):
    model = _language_model("lstm")
    path, _ = _export(model, kind, tmp_path)
    parts = load_parts(path)
    rng = np.random.default_rng(3)
    states = [rng.normal(size=(4, 10)).astype(np.float32) * 0.5 for _ in range(4)]
    tokens = np.array([1, 5, 12, 7], np.int32)
    outputs = parts.run("decode", {"token_ids": tokens, **{f"state_{i}": s for i, s in enumerate(states)}})
    logits, new_states = model.generation_step(tokens, [keras.ops.convert_to_tensor(s) for s in states])
    logits = keras.ops.convert_to_numpy(logits)
    np.testing.assert_allclose(outputs["logits"][:, 1:], logits[:, 1:], atol=1e-5)
    assert np.all(outputs["logits"][:, 0] < -1e30)  # padding (id 0) ruled out in the file too
    for index, state in enumerate(new_states):
        np.testing.assert_allclose(outputs[f"state_{index}_out"], keras.ops.convert_to_numpy(state), atol=1e-5)


def test_dynamic_range_decode_part_stays_within_1e_2_of_float(tmp_path):
    model = _language_model("gru")
    path, report = _export(model, "tflite", tmp_path, quantization="dynamic")
    assert report.quantization == "dynamic"
    parts = load_parts(path)
    states = [np.zeros((2, 10), np.float32), np.zeros((2, 10), np.float32)]
    tokens = np.array([3, 9], np.int32)
    for _ in range(10):
        outputs = parts.run("decode", {"token_ids": tokens, "state_0": states[0], "state_1": states[1]})
        logits, expected = model.generation_step(tokens, [keras.ops.convert_to_tensor(s) for s in states])
        np.testing.assert_allclose(outputs["logits"][:, 1:], keras.ops.convert_to_numpy(logits)[:, 1:], atol=1e-2)
        states = [keras.ops.convert_to_numpy(s) for s in expected]
        tokens = np.argmax(keras.ops.convert_to_numpy(logits), axis=1).astype(np.int32)


def test_metadata_travels_in_the_files(tmp_path):
    model = _language_model("gru", condition_dim=4)
    tflite, _ = _export(model, "tflite", tmp_path)
    onnx_path, _ = _export(model, "onnx", tmp_path)
    for path in (tflite, onnx_path):
        meta = load_parts(path).meta
        assert meta["parts"] == ["encode", "decode"] and meta["max_length"] == MAX_LENGTH
        assert meta["source"] == "features" and meta["pad_id"] == 0 and meta["stop_token_ids"] == []
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "lm.encode.onnx")).metadata_props}
    assert json.loads(props[METADATA_KEY])["model"] == model.name


@pytest.mark.parametrize("exporter", ["to_tflite", "to_onnx"])
def test_bad_generation_exports_are_refused_and_write_nothing(exporter, tmp_path):
    model = _language_model()
    write = getattr(export, exporter)
    path = tmp_path / ("lm.tflite" if exporter == "to_tflite" else "lm.onnx")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    cases = [
        (plain, {"generation": True, "max_length": 8}, "generation=True exports models that generate tokens"),
        (model, {"generation": True}, "needs max_length, a positive integer; got max_length=None"),
        (model, {"generation": True, "max_length": 0}, "max_length=0"),
        (model, {"generation": "yes", "max_length": 8}, "generation must be True or False"),
        (model, {"max_length": 8}, "max_length=8 applies only with generation=True"),
        (model, {"generation": True, "max_length": 8, "streaming": True}, "generation=True and streaming=True"),
    ]
    if exporter == "to_tflite":
        cases.append((model, {"generation": True, "max_length": 8, "quantization": "int8",
                              "representative_data": np.zeros((4, 3))}, "generation=True takes quantization None"))
    for subject, kwargs, message in cases:
        with pytest.raises(export.ExportError, match=message):
            write(subject, path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_generate_calls_name_the_problem(tmp_path):
    model = _language_model("gru", condition_dim=4)
    path, _ = _export(model, "tflite", tmp_path)
    source = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="generates from a source"):
        export.generate(path, _prompts())
    with pytest.raises(ValueError, match=f"max_length must be an integer from 1 to {MAX_LENGTH}"):
        export.generate(path, _prompts(), max_length=MAX_LENGTH + 1, source=source)
    with pytest.raises(ValueError, match="source has 2 rows and token_ids 3"):
        export.generate(path, _prompts(), source=source[:2])
    with pytest.raises(ValueError, match="source contains NaN"):
        export.generate(path, _prompts(), source=np.full((3, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="token_ids must be a 2-D integer array"):
        export.generate(path, _prompts().astype(float), source=source)
    with pytest.raises(ValueError, match="token_ids is required"):
        export.generate(path, None, source=source)
    plain_path = tmp_path / "plain.tflite"
    export.to_tflite(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), plain_path)
    with pytest.raises(export.ExportError, match="holds no generation metadata"):
        export.generate(plain_path, _prompts())
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(export.ExportError, match="is not a TFLite file"):
        export.generate(corrupt, _prompts())
    with pytest.raises(export.ExportError, match="missing.decode.onnx does not exist"):
        export.generate(tmp_path / "missing.onnx", _prompts())
    with pytest.raises(export.ExportError, match="path must end in .tflite or .onnx"):
        export.generate(tmp_path / "lm.bin", _prompts())


def test_the_tokenizer_travels_beside_the_exported_parts(tmp_path):
    import tokenizers

    from keras_models.text import CausalLMPreprocessor, CharacterTokenizer, attach_preprocessor

    texts = ["a cat sat on a mat", "the dog ate the hat", "a bat met a rat"]
    tokenizer = CharacterTokenizer.train(texts)
    keras.utils.set_random_seed(0)
    model = keras_models.build("rnn_language_model", vocab_size=tokenizer.vocabulary_size, embedding_dim=6,
                               units=10, cell="gru", compile=False)
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=8)
    attach_preprocessor(model, preprocessor)
    for kind in ("tflite", "onnx"):
        path, report = _export(model, kind, tmp_path)
        beside = tmp_path / "lm.tokenizer.json"
        assert beside in report.files and beside.exists()
        loaded = tokenizers.Tokenizer.from_file(str(beside))
        assert loaded.encode("a rat sat").ids == tokenizer.encode("a rat sat")
        beside.unlink()
    prompts = preprocessor.generate_preprocess(["a ca", "the d"])
    np.testing.assert_array_equal(export.generate(tmp_path / "lm.tflite", prompts), model.generate(prompts, MAX_LENGTH))


@pytest.mark.parametrize("kind, cell, attention, bidirectional",
                         [("tflite", "lstm", "bahdanau", False), ("onnx", "gru", "luong", True)])
def test_exported_encoder_decoder_generates_like_keras_from_its_start_token(kind, cell, attention, bidirectional,
                                                                             tmp_path):
    keras.utils.set_random_seed(4)
    model = keras_models.build("rnn_seq2seq", source_vocab_size=11, target_vocab_size=9, embedding_dim=6, units=8,
                               cell=cell, attention=attention, bidirectional=bidirectional, source_length=7,
                               compile=False)
    logits = model.get_layer(model.name + "_logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([4.0 * kernel, bias + 1.5 * (np.arange(len(bias)) == model.end_id)])  # some rows stop early
    sources = np.random.default_rng(5).integers(1, 11, (6, 7)).astype(np.int32)
    sources[:3, 4:] = 0  # padded sources
    path, report = _export(model, kind, tmp_path)
    expected = model.generate(sources, MAX_LENGTH)
    np.testing.assert_array_equal(export.generate(path, source=sources), expected)
    assert (expected[:, 0] == model.start_id).all()
    assert (expected == model.end_id).any() and (expected[:, -1] == 0).any()  # stopping is exercised
    meta = load_parts(path).meta
    assert meta["parts"] == ["encode", "decode"] and meta["stop_token_ids"] == [model.end_id]
    assert meta["start_token_ids"] == [model.start_id] and meta["source"] == "token_ids"
    with pytest.raises(ValueError, match="source must hold integer token ids"):
        export.generate(path, source=sources.astype(np.float32))
    with pytest.raises(ValueError, match=r"source must have shape \('batch', 7\) \(pad shorter sources with 0\); got \(6, 5\)"):
        export.generate(path, source=sources[:, :5])


@pytest.mark.parametrize("kind", ["tflite", pytest.param("onnx", marks=pytest.mark.slow)])
def test_exported_gpt_generates_like_keras_with_its_kv_cache_as_inputs_and_outputs(kind, tmp_path):
    keras.utils.set_random_seed(6)
    model = keras_models.build("gpt_causal_lm", vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16,
                               intermediate_dim=32, max_sequence_length=32, compile=False)
    prompts = np.random.default_rng(7).integers(0, 40, (3, 4)).astype(np.int32)
    path, report = _export(model, kind, tmp_path)
    np.testing.assert_array_equal(export.generate(path, prompts), model.generate(prompts, MAX_LENGTH))
    np.testing.assert_array_equal(export.generate(path, prompts[:, :1], max_length=10),
                                  model.generate(prompts[:, :1], 10))
    # The cache is explicit: fixed-size state inputs sized by max_length, and no variables or loops.
    shapes = [t.shape for t in report.inputs if t.name.startswith("state_")]
    assert any(MAX_LENGTH in shape for shape in shapes)
    loops = {"WHILE", "VAR_HANDLE", "READ_VARIABLE", "Loop", "Scan"}
    assert not loops & set(report.operators)
    if kind == "tflite":
        assert set(report.operators) <= _BUILTIN_OPERATORS and "DYNAMIC_UPDATE_SLICE" in report.operators
    else:
        assert "ScatterND" in report.operators  # the cache write (XlaDynamicUpdateSlice) in ONNX


def _cache_sized_inputs(kind, path, operators, cache_size):
    """(operator, input shape) of every `operators` node that reads a tensor of `cache_size` elements or
    more in an exported decode graph (batch 1)."""
    found = []
    if kind == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        shapes = {t["index"]: tuple(t["shape"]) for t in interpreter.get_tensor_details()}
        for op in interpreter._get_ops_details():
            if op["op_name"] in operators:
                found += [(op["op_name"], shapes[i]) for i in op["inputs"] if i >= 0 and np.prod(shapes[i]) >= cache_size]
        return found
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
    for node in model.graph.node:
        if node.op_type in operators:
            found += [(node.op_type, shapes[i]) for i in node.input if i in shapes and np.prod(shapes[i]) >= cache_size]
    return found


@pytest.mark.parametrize("kind", ["tflite", pytest.param("onnx", marks=pytest.mark.slow)])
def test_a_gpt_decode_step_neither_transposes_nor_slices_its_cache(kind, tmp_path):
    # A matmul over the keys transposed the whole cache every step, and indexing the keys out of the cache
    # ran in TFLite's per-element strided-slice kernel: 3.6 ms per step of a 4-layer model, 0.8 ms
    # without them (BENCHMARKS.md, GPT latency). The step reads the cache only where it must.
    keras.utils.set_random_seed(6)
    model = keras_models.build("gpt_causal_lm", vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16,
                               intermediate_dim=32, max_sequence_length=32, compile=False)
    path, report = _export(model, kind, tmp_path)
    per_layer = MAX_LENGTH * 2 * 8  # the keys (or values) of one layer: positions x heads x head_dim
    decode = path if kind == "tflite" else path.with_name(f"{path.stem}.decode.onnx")
    moves = {"TRANSPOSE", "STRIDED_SLICE", "Transpose", "Slice"}
    assert _cache_sized_inputs(kind, decode, moves, per_layer) == []
    # the check sees the cache: the cache write reads it
    writes = {"DYNAMIC_UPDATE_SLICE", "ScatterND"}
    assert len(_cache_sized_inputs(kind, decode, writes, per_layer)) >= 2
