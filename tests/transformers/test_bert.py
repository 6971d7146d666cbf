"""BERT: the backbone, the classifier and the masked language model: shapes, parameter counts, padding,
tied embeddings, masking, learning on real text, the .keras round trip, the model checks (XLA step,
TFLite and ONNX), other backends, and bad input."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_model

import export
import keras_models
from keras_models.text import BertPreprocessor, WordPieceTokenizer, attach_preprocessor, mask_tokens
from keras_models.transformers import (
    BertBackbone,
    BertClassifier,
    BertMaskedLM,
    bert_config,
    bert_parameter_count,
    masked_lm_loss,
)
from keras_models.transformers.bert import CONFIGS

TINY = {"vocabulary_size": 40, "num_layers": 2, "num_heads": 4, "hidden_dim": 32, "intermediate_dim": 64,
        "max_sequence_length": 16}


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _inputs(batch=4, steps=10, lengths=None, seed=0):
    """`[token_ids, segment_ids, padding_mask]`: `[CLS]` (3) first, two segments, rows padded after
    `lengths[row]` tokens."""
    rng = np.random.default_rng(seed)
    lengths = [steps] * batch if lengths is None else lengths
    token_ids = rng.integers(6, 40, (batch, steps)).astype("int32")
    token_ids[:, 0] = 3
    segment_ids = np.zeros_like(token_ids)
    padding_mask = np.zeros_like(token_ids)
    for row, length in enumerate(lengths):
        segment_ids[row, length // 2:length] = 1
        padding_mask[row, :length] = 1
        token_ids[row, length:] = 0
    return [token_ids, segment_ids, padding_mask]


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(1)
    return keras_models.build("bert", **TINY, compile=False)


# -- shapes and sizes ----------------------------------------------------------------------------------------

def test_backbone_classifier_and_masked_lm_shapes(backbone):
    x = _inputs(3, 9)
    outputs = backbone(x)
    assert _numpy(outputs["sequence_output"]).shape == (3, 9, 32)
    assert _numpy(outputs["pooled_output"]).shape == (3, 32)
    classifier = keras_models.build("bert_classifier", num_classes=5, **TINY, compile=False)
    probabilities = _numpy(classifier(x))
    assert isinstance(classifier, BertClassifier) and probabilities.shape == (3, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    masked_lm = keras_models.build("bert_masked_lm", **TINY, compile=False)
    positions = np.array([[1, 4], [2, 3], [8, 1]], dtype="int32")
    assert isinstance(masked_lm, BertMaskedLM) and _numpy(masked_lm([*x, positions])).shape == (3, 2, 40)


def test_parameter_count_follows_the_formula(backbone):
    assert backbone.count_params() == bert_parameter_count(**bert_config(**TINY))


def test_bert_base_formula_is_110m():
    # Convention: the encoder with its pooler, heads not counted, 30,522 WordPiece tokens, 512 positions,
    # 2 segments (BERT-base's "110M"; the released uncased encoder has 109,482,240 weights).
    count = bert_parameter_count(**CONFIGS["bert_base"])
    assert count == 109_482_240
    assert abs(count - 110e6) / 110e6 < 0.01


@pytest.mark.slow
def test_bert_base_preset_builds_110m_weights():
    model = keras_models.build("bert", preset="bert_base", compile=False)
    assert model.count_params() == 109_482_240
    assert abs(model.count_params() - 110e6) / 110e6 < 0.01
    assert (model.vocabulary_size, model.max_sequence_length, model.num_segments) == (30522, 512, 2)


def test_masked_lm_logits_read_the_token_table(backbone):
    masked_lm = BertMaskedLM(backbone)
    tables = [w for w in masked_lm.weights if tuple(w.shape) == (40, 32)]
    assert len(tables) == 1  # one table reads tokens in and logits out
    x, positions = _inputs(2, 8), np.array([[1, 5], [6, 2]], dtype="int32")
    sequence = _numpy(backbone(x)["sequence_output"])
    gathered = np.take_along_axis(sequence, positions[..., None], axis=1)
    head = masked_lm.get_layer(masked_lm.name + "_head")
    transformed = _numpy(head.norm(head.dense(gathered)))
    bias = _numpy(masked_lm.get_layer(masked_lm.name + "_output_bias").bias)
    np.testing.assert_allclose(_numpy(masked_lm([*x, positions])), transformed @ _numpy(tables[0]).T + bias,
                               atol=1e-5)


# -- padding and segments ------------------------------------------------------------------------------------

def test_padding_does_not_change_the_outputs_of_tokens(backbone):
    short = _inputs(3, 7, seed=4)
    padded = [np.pad(part, ((0, 0), (0, 6))) for part in short]  # six padded steps after every row
    padded[0][:, 7:] = np.random.default_rng(5).integers(6, 40, (3, 6))  # whatever sits under the mask
    a, b = backbone(short), backbone(padded)
    np.testing.assert_allclose(_numpy(b["sequence_output"])[:, :7], _numpy(a["sequence_output"]), atol=1e-5)
    np.testing.assert_allclose(_numpy(b["pooled_output"]), _numpy(a["pooled_output"]), atol=1e-5)
    # Without the mask, the tokens would see the padded steps.
    unmasked = [padded[0], padded[1], np.ones_like(padded[2])]
    assert np.abs(_numpy(backbone(unmasked)["pooled_output"]) - _numpy(a["pooled_output"])).max() > 1e-3


def test_segment_ids_change_the_outputs(backbone):
    x = _inputs(2, 8)
    other = [x[0], 1 - x[1], x[2]]
    assert np.abs(_numpy(backbone(other)["pooled_output"]) - _numpy(backbone(x)["pooled_output"])).max() > 1e-3


def test_token_ids_alone_mean_one_segment_and_a_mask_from_padding(backbone):
    x = _inputs(3, 8, lengths=[8, 5, 3])
    x[1] = np.zeros_like(x[1])
    predicted = backbone.predict(x[0], verbose=0)
    np.testing.assert_allclose(predicted["pooled_output"], _numpy(backbone(x)["pooled_output"]), atol=1e-5)
    named = backbone.predict(dict(zip(("token_ids", "segment_ids", "padding_mask"), x)), verbose=0)
    np.testing.assert_allclose(named["sequence_output"], predicted["sequence_output"], atol=1e-6)


# -- masking -------------------------------------------------------------------------------------------------

def test_mask_tokens_masks_15_percent_with_80_10_10():
    rng = np.random.default_rng(0)
    token_ids = rng.integers(6, 1000, (400, 64)).astype("int32")
    token_ids[:, 0], token_ids[:, 40] = 3, 4  # [CLS] and [SEP] are never chosen
    token_ids[:, 41:] = 0
    padding_mask = (token_ids != 0).astype("int32")
    x, y, weights = mask_tokens([token_ids, np.zeros_like(token_ids), padding_mask], 1000, seed=1)
    masked, _, _, positions = x
    assert positions.shape == y.shape == weights.shape == (400, 10)  # round(0.15 * 64) slots
    np.testing.assert_array_equal(weights.sum(axis=1), 6)  # round(0.15 * 41) of the 41 tokens
    chosen = positions[weights > 0]
    rows = np.nonzero(weights > 0)[0]
    assert chosen.min() >= 1 and chosen.max() <= 39  # neither [CLS], [SEP] nor padding
    np.testing.assert_array_equal(y[weights > 0], token_ids[rows, chosen])
    after = masked[rows, chosen]
    fractions = [np.mean(after == 5), np.mean((after != 5) & (after != y[weights > 0]))]
    assert abs(fractions[0] - 0.8) < 0.02 and abs(fractions[1] - 0.1 * 993 / 994) < 0.015
    untouched = np.ones_like(token_ids, dtype=bool)
    untouched[rows, chosen] = False
    np.testing.assert_array_equal(masked[untouched], token_ids[untouched])
    again = mask_tokens([token_ids, np.zeros_like(token_ids), padding_mask], 1000, seed=1)
    np.testing.assert_array_equal(again[0][0], masked)


# -- learning on real text -----------------------------------------------------------------------------------

def _debugger_lines(count):
    from pydoc_data.topics import topics

    return [line.strip() for line in topics["debugger"].splitlines() if len(line.split()) >= 6][:count]


def test_masked_lm_learns_a_real_corpus_below_its_unigram_entropy():
    # 48 lines of Python's pdb help. A model that cannot read the context of a masked token (a broken
    # mask, gather or attention) does no better than the tokens' unigram entropy, about 5 nats here.
    lines = _debugger_lines(48)
    tokenizer = WordPieceTokenizer.train(lines, vocabulary_size=300)
    encoded = BertPreprocessor(tokenizer, 24)(lines)
    tokens = encoded[0][(encoded[2] == 1) & (encoded[0] > 5)]
    frequencies = np.bincount(tokens)[np.bincount(tokens) > 0] / len(tokens)
    unigram_entropy = float(-(frequencies * np.log(frequencies)).sum())
    examples = [mask_tokens(encoded, tokenizer.vocabulary_size, rate=0.25, seed=seed) for seed in range(80)]
    x = [np.concatenate([example[0][part] for example in examples]) for part in range(4)]
    y, weights = np.concatenate([e[1] for e in examples]), np.concatenate([e[2] for e in examples])
    keras.utils.set_random_seed(0)
    model = keras_models.build("bert_masked_lm", vocabulary_size=tokenizer.vocabulary_size, num_layers=2, num_heads=2,
                               hidden_dim=64, intermediate_dim=128, max_sequence_length=24, learning_rate=5e-3)
    model.fit(x, y, sample_weight=weights, batch_size=32, epochs=1, verbose=0)
    x, y, weights = mask_tokens(encoded, tokenizer.vocabulary_size, rate=0.25, seed=999)  # masks never seen
    loss, accuracy = model.evaluate(x, y, sample_weight=weights, verbose=0)
    assert unigram_entropy > 4.5
    assert loss < 0.75 * unigram_entropy and accuracy > 0.15


@pytest.fixture(scope="module")
def help_topics():
    """A BERT classifier trained on paragraphs of two of Python's help topics (pdb and str methods), and
    its 40 held-out paragraphs, preprocessed. Chance is 60%."""
    from pydoc_data.topics import topics

    def paragraphs(topic):
        return [" ".join(p.split()) for p in re.split(r"\n\s*\n", topics[topic]) if len(p.split()) > 15]

    debugger, methods = paragraphs("debugger"), paragraphs("string-methods")
    texts, labels = debugger + methods, np.array([0] * len(debugger) + [1] * len(methods))
    order = np.random.default_rng(0).permutation(len(texts))
    test, train = order[:40], order[40:]
    tokenizer = WordPieceTokenizer.train([texts[i] for i in train], vocabulary_size=500)
    preprocessor = BertPreprocessor(tokenizer, 48)
    keras.utils.set_random_seed(0)
    model = keras_models.build("bert_classifier", num_classes=2, vocabulary_size=tokenizer.vocabulary_size,
                               num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=48)
    model.fit(preprocessor([texts[i] for i in train]), labels[train], epochs=8, batch_size=16, verbose=0)
    return model, preprocessor([texts[i] for i in test]), labels[test]


def test_classifier_learns_which_help_topic_a_paragraph_comes_from(help_topics):
    model, x_test, y_test = help_topics
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.85


@pytest.mark.slow
def test_dynamic_range_int8_keeps_the_classifier_within_one_point(help_topics, tmp_path):
    model, x_test, y_test = help_topics
    accuracies, sizes = {}, {}
    for quantization in (None, "dynamic"):
        report = export.to_tflite(model, tmp_path / f"bert_{quantization}.tflite", quantization=quantization)
        (probabilities,) = export.run_artifact(report.path, x_test)
        accuracies[quantization] = float(np.mean(np.argmax(probabilities, axis=-1) == y_test))
        sizes[quantization] = report.size_bytes
    keras_accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=-1) == y_test))
    assert accuracies[None] == keras_accuracy
    assert abs(accuracies["dynamic"] - accuracies[None]) <= 0.01  # on 40 paragraphs: no prediction changes
    # The token table (the largest weight) is stored as int8; tensors under 1,024 values stay float32.
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(model_path=str(tmp_path / "bert_dynamic.tflite")).get_tensor_details()
    table = (model.backbone.vocabulary_size, model.backbone.hidden_dim)
    assert [t["dtype"] for t in tensors if tuple(t["shape"]) == table] == [np.int8]
    assert sizes["dynamic"] < 0.6 * sizes[None]


# -- configuration, saving and export -----------------------------------------------------------------------

def test_config_round_trip_rebuilds_the_same_models(backbone):
    rebuilt = BertBackbone.from_config(backbone.get_config())
    assert rebuilt.get_config() == backbone.get_config() and rebuilt.count_params() == backbone.count_params()
    classifier = BertClassifier(backbone, num_classes=3, head="sigmoid", dropout=0.2)
    config = classifier.get_config()
    assert BertClassifier.from_config(config).get_config() == config


def test_keras_file_keeps_classes_weights_and_preprocessor(tmp_path):
    tokenizer = WordPieceTokenizer.train(_debugger_lines(30), vocabulary_size=120)
    preprocessor = BertPreprocessor(tokenizer, 16)
    model = keras_models.build("bert_classifier", num_classes=3, **{**TINY, "vocabulary_size": 120}, compile=False)
    attach_preprocessor(model, preprocessor)
    model.save(tmp_path / "bert.keras")
    loaded = keras.saving.load_model(tmp_path / "bert.keras", safe_mode=True)
    assert isinstance(loaded, BertClassifier) and isinstance(loaded.backbone, BertBackbone)
    assert loaded.preprocessor.tokenizer == tokenizer and loaded.preprocessor.sequence_length == 16
    x = preprocessor(["restart the debugger", "print the value of the expression"], ["list", "step"])
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), atol=1e-6)


@pytest.mark.slow  # the family trains without XLA on a CPU (its default on accelerators); exports take a while
def test_classifier_passes_the_model_checks(tmp_path):
    # Output shape, an XLA-compiled training step (proven by its HLO), the .keras round trip, TFLite
    # (builtin operators only) and ONNX equal to Keras, on padded rows of two segments.
    model = keras_models.build("bert_classifier", num_classes=3, **TINY, dropout=0.1, compile=False)
    x = _inputs(8, 10, lengths=[10, 7, 4, 10, 9, 2, 10, 6])
    results = check_model(model, x, np.arange(8) % 3, tmp_path, expected_shape=(8, 3),
                          loss="sparse_categorical_crossentropy")
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


@pytest.mark.slow
def test_backbone_and_masked_lm_pass_the_model_checks(tmp_path):
    x = _inputs(8, 10, lengths=[10, 7, 4, 10, 9, 2, 10, 6])
    backbone = keras_models.build("bert", **TINY, compile=False)
    results = check_model(backbone, x, None, tmp_path, train=False, expected_shape=[(8, 32), (8, 10, 32)])
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5
    masked_lm = keras_models.build("bert_masked_lm", **TINY, dropout=0.1, compile=False)
    x, y, _ = mask_tokens(x, 40, seed=0)
    results = check_model(masked_lm, x, y, tmp_path, expected_shape=(8, 2, 40), loss=masked_lm_loss())
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


# -- bad input -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "bert_huge"}, "preset must be None or one of"),
    ({"hidden_dim": 30, "num_heads": 4}, "hidden_dim must be divisible by num_heads"),
    ({"num_layers": 0}, "num_layers"),
    ({"num_segments": 0}, "num_segments"),
    ({"dropout": 1.5}, "dropout"),
    ({"vocabulary_size": 2.5}, "vocabulary_size"),
    ({"num_classes": 0}, "num_classes"),
    ({"head": "tanh"}, "head must be one of"),
])
def test_bad_builder_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_models.build("bert_classifier", **{**TINY, **kwargs}, compile=False)


def test_a_given_backbone_refuses_configuration_arguments(backbone):
    with pytest.raises(ValueError, match=r"leave these None: \['num_layers'\]"):
        keras_models.build("bert_classifier", backbone=backbone, num_layers=3)


def test_bad_inputs_raise_naming_the_input():
    model = keras_models.build("bert_classifier", num_classes=3, **TINY)
    x, labels = _inputs(4, 8), np.arange(4) % 3
    cases = [
        ([x[0] + 40, x[1], x[2]], r"x token_ids must lie in \[0, 40\)"),
        ([x[0], x[1] + 1, x[2]], r"x segment_ids must lie in \[0, 2\) \(num_segments=2\)"),
        ([x[0], x[1], x[2] * 2], "x padding_mask must hold 1 at tokens and 0 at padding; got the value 2"),
        ([x[0], x[1][:, :5], x[2]], r"segment_ids must have the shape of the token ids \(4, 8\)"),
        ([x[0].astype("float32") + 0.5, x[1], x[2]], "x token_ids must hold integer token ids; got dtype float32"),
        ([np.zeros((4, 20), "int32")] * 3, "x token_ids has 20 steps, more than max_sequence_length=16"),
        (x[:2], r"x must be the 3 arrays \['token_ids', 'segment_ids', 'padding_mask'\]; got 2"),
        ({"token_ids": x[0], "segment": x[1]}, r"missing \['segment_ids', 'padding_mask'\], unknown \['segment'\]"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            model.fit(bad, labels, verbose=0)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        model.fit(x, labels + 1, verbose=0)
    masked_lm = keras_models.build("bert_masked_lm", **TINY)
    with pytest.raises(ValueError, match=r"mask_positions must lie in \[0, 8\)"):
        masked_lm.predict([*x, np.full((4, 2), 8, "int32")], verbose=0)
    with pytest.raises(ValueError, match="x must be the 4 arrays"):
        masked_lm.predict(x[0], verbose=0)
    with pytest.raises(ValueError, match=r"token_ids must lie in \[0, 40\)"):
        mask_tokens([x[0] + 40, x[1], x[2]], 40)


def test_registered_with_the_registry():
    names = {info.name: info for info in keras_models.list_models()}
    assert {"bert", "bert_classifier", "bert_masked_lm"} <= set(names)
    assert {names[name].family for name in ("bert", "bert_classifier", "bert_masked_lm")} == {"transformer"}


# -- other backends: the same outputs, and a training step, from a model saved under TensorFlow ---------------

_BACKEND_WORKER = r"""
import sys
import numpy as np
import keras
import keras_models

model_path, data_path, out_path = sys.argv[1:4]
model = keras.saving.load_model(model_path, safe_mode=True)
data = np.load(data_path)
x = [data["token_ids"], data["segment_ids"], data["padding_mask"]]
results = {"probabilities": keras.ops.convert_to_numpy(model(x))}
keras_models.compile_model(model, loss="sparse_categorical_crossentropy", family=None)
before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
history = model.fit(x, data["labels"], epochs=1, batch_size=4, verbose=0)
results["loss"] = np.array(history.history["loss"][-1])
results["moved"] = np.array(any(not np.array_equal(b, keras.ops.convert_to_numpy(w))
                                for b, w in zip(before, model.trainable_weights)))
results["backend"] = np.array(keras.backend.backend())
np.savez(out_path, **results)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_classifier_on_jax_and_torch_matches_tensorflow(backend, tmp_path):
    model = keras_models.build("bert_classifier", num_classes=3, **TINY, compile=False)
    model.save(tmp_path / "bert.keras")
    x = _inputs(8, 10, lengths=[10, 7, 4, 10, 9, 2, 10, 6])
    np.savez(tmp_path / "data.npz", token_ids=x[0], segment_ids=x[1], padding_mask=x[2], labels=np.arange(8) % 3)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = [str(tmp_path / name) for name in ("bert.keras", "data.npz", "out.npz")]
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, *arguments], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["backend"]) == backend
    np.testing.assert_allclose(out["probabilities"], _numpy(model(x)), atol=1e-5)
    assert np.isfinite(out["loss"]) and bool(out["moved"])
