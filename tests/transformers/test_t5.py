"""The T5 backbone and text-to-text task: shapes, parameter counts, tied and untied embeddings, cached
generation against the full model, source padding, learning a small task, the .keras round trip, the
model checks, generation export, other backends and bad input."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_model

import export
import keras_models
from keras_models.recurrent import language_model_loss, teacher_forcing_pairs
from keras_models.transformers import T5Backbone, T5Seq2SeqLM, t5_config, t5_parameter_count, t5_seq2seq_lm
from keras_models.transformers.t5 import CONFIGS

TINY = {"vocabulary_size": 20, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32,
        "relative_attention_num_buckets": 8, "relative_attention_max_distance": 12}


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _sources(shape, seed=0, vocabulary_size=20):
    """Ids 3 and up (0 is padding, 1 and 2 start and end), the rows padded after a seeded length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocabulary_size, shape).astype("int32")
    for row, length in enumerate(rng.integers(2, shape[1] + 1, shape[0])):
        ids[row, length:] = 0
    return ids


def _wide_margins(model, end_bias=0.0):
    """Sharper logits (greedy has no near-ties between Keras and an exported file) and, with `end_bias`,
    rows that stop early: the untied output layer scaled, the end id favoured."""
    kernel = model.head.kernel
    scaled = 6.0 * _numpy(kernel)
    scaled[:, model.end_id] += end_bias
    kernel.assign(scaled)
    return model


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    return t5_seq2seq_lm(**TINY, compile=False)


# -- shapes and sizes ----------------------------------------------------------------------------------------

def test_backbone_and_task_shapes(tiny_model):
    source, decoder = _sources((3, 7)), _sources((3, 5), seed=1)
    assert _numpy(tiny_model([source, decoder])).shape == (3, 5, 20)
    assert _numpy(tiny_model.backbone([source, decoder])).shape == (3, 5, 16)
    backbone = keras_models.build("t5", **TINY, compile=False)
    assert isinstance(backbone, T5Backbone) and _numpy(backbone([source, decoder])).shape == (3, 5, 16)


def test_tied_embeddings_read_scaled_states_through_the_token_table(tiny_model):
    tables = [w for w in tiny_model.weights if tuple(w.shape) == (20, 16)]
    assert len(tables) == 1  # one table embeds source and target and gives the logits
    source, decoder = _sources((2, 6)), _sources((2, 4), seed=2)
    hidden = _numpy(tiny_model.backbone([source, decoder]))
    expected = hidden / np.sqrt(16.0) @ _numpy(tables[0]).T
    np.testing.assert_allclose(_numpy(tiny_model([source, decoder])), expected, atol=1e-5)


def test_untied_gated_model_has_an_output_layer_and_geglu_blocks():
    model = t5_seq2seq_lm(**TINY, activation="gelu", use_gated_activation=True, tie_embedding_weights=False,
                          key_value_dim=6, compile=False)
    assert len([w for w in model.weights if tuple(w.shape) == (20, 16)]) == 1  # the token table
    assert len([w for w in model.weights if tuple(w.shape) == (16, 20)]) == 1  # the output layer
    assert model.backbone.decoder_blocks[0].feed_forward.activation == "geglu"
    assert model.backbone.decoder_blocks[0].cross_attention.head_dim == 6
    assert model.count_params() == t5_parameter_count(**t5_config(**TINY, activation="gelu", use_gated_activation=True,
                                                                  tie_embedding_weights=False, key_value_dim=6))


def test_parameter_count_follows_the_formula(tiny_model):
    assert tiny_model.count_params() == t5_parameter_count(**t5_config(**TINY))


def test_presets_have_the_released_parameter_counts():
    # Counted on the released checkpoints (tied embeddings for T5, untied for v1.1, vocabulary 32,128):
    # T5-small is the paper's "60 million", T5-base its "220 million" (Raffel et al., 2020).
    expected = {"t5_small": 60_506_624, "t5_base": 222_903_552, "t5_v1_1_small": 76_961_152}
    assert {name: t5_parameter_count(**t5_config(name)) for name in CONFIGS} == expected
    assert abs(expected["t5_small"] / 60e6 - 1) < 0.01 and abs(expected["t5_base"] / 220e6 - 1) < 0.015


@pytest.mark.slow
def test_t5_small_preset_builds_60m_weights():
    model = keras_models.build("t5_seq2seq_lm", preset="t5_small", compile=False)
    count = model.count_params()
    assert count == 60_506_624 and abs(count / 60e6 - 1) < 0.01
    backbone = model.backbone
    assert (backbone.vocabulary_size, backbone.num_layers, backbone.num_heads, backbone.hidden_dim,
            backbone.intermediate_dim, backbone.relative_attention_num_buckets) == (32128, 6, 8, 512, 2048, 32)
    assert len(backbone.encoder_blocks) == len(backbone.decoder_blocks) == 6


# -- generation ------------------------------------------------------------------------------------------------

def test_step_logits_equal_the_full_model_at_every_position(tiny_model):
    source, decoder = _sources((3, 7), seed=3), _sources((3, 6), seed=4)
    decoder[:, 0] = tiny_model.start_id
    full = _numpy(tiny_model([source, decoder]))
    state = tiny_model.generation_start(3, 9, source)
    shapes = [tuple(s.shape) for s in state]
    assert shapes == [(3, 7)] + [(3, 2, 7, 2, 8)] * 2 + [(3, 2, 9, 2, 8)] * 2 + [(3,)]
    stepped = []
    for position in range(6):
        logits, state = tiny_model.generation_step(decoder[:, position], state)
        stepped.append(_numpy(logits))
    assert [tuple(s.shape) for s in state] == shapes
    stepped = np.stack(stepped, axis=1)
    assert np.isneginf(stepped[..., [0, tiny_model.start_id]]).all()  # padding and start are never generated
    np.testing.assert_allclose(stepped[..., 2:], full[..., 2:], atol=1e-5)
    np.testing.assert_array_equal(_numpy(state[-1]), 6)


def _full_greedy(model, source, max_length):
    """Greedy decoding by the whole network on the growing target, no cache; stopped rows padded."""
    sequence = np.full((len(source), 1), model.start_id, np.int32)
    while sequence.shape[1] < max_length:
        logits = _numpy(model([source, sequence]))[:, -1]
        logits[:, [0, model.start_id]] = -np.inf
        following = np.argmax(logits, axis=-1).astype("int32")
        stopped = (sequence[:, 1:] == model.end_id).any(axis=1) | (sequence[:, 1:] == 0).any(axis=1)
        sequence = np.concatenate([sequence, np.where(stopped, 0, following)[:, None]], axis=1)
    return sequence


def test_cached_greedy_generation_equals_full_recomputation():
    keras.utils.set_random_seed(2)
    model = _wide_margins(t5_seq2seq_lm(**TINY, tie_embedding_weights=False, compile=False), end_bias=0.6)
    source = _sources((6, 7), seed=5)
    generated = model.generate(source, 12)
    np.testing.assert_array_equal(generated, _full_greedy(model, source, 12))
    assert (generated == model.end_id).any() and (generated[:, -1] == 0).any()  # some rows stop early
    assert len(set(map(tuple, generated))) > 1


def test_source_padding_changes_nothing(tiny_model):
    source = _sources((4, 6), seed=6)
    decoder = _sources((4, 5), seed=7)
    padded = np.concatenate([source, np.zeros((4, 3), np.int32)], axis=1)  # three more padded steps
    np.testing.assert_allclose(_numpy(tiny_model([padded, decoder])), _numpy(tiny_model([source, decoder])), atol=1e-5)
    np.testing.assert_array_equal(tiny_model.generate(padded, 9), tiny_model.generate(source, 9))
    for row in (0, 3):  # a row alone, cut to its own length
        alone = source[row:row + 1, :int((source[row] != 0).sum())]
        np.testing.assert_allclose(_numpy(tiny_model([alone, decoder[row:row + 1]]))[0],
                                   _numpy(tiny_model([source, decoder]))[row], atol=1e-5)
        np.testing.assert_array_equal(tiny_model.generate(alone, 9)[0], tiny_model.generate(source, 9)[row])


def test_samplers_are_seeded_and_valid(tiny_model):
    source = _sources((3, 6), seed=8)
    greedy = tiny_model.generate(source, 10)
    np.testing.assert_array_equal(tiny_model.generate(source, 10, sampler="top_k", top_k=1, seed=4), greedy)
    for kwargs in ({"sampler": "top_k", "top_k": 5}, {"sampler": "top_p", "top_p": 0.9, "temperature": 1.5}):
        first = tiny_model.generate(source, 10, seed=11, **kwargs)
        assert first.shape == (3, 10) and first.dtype == np.int32 and (first[:, 0] == 1).all()
        assert not np.isin(first[:, 1:], [1]).any()  # the start id is never drawn
        np.testing.assert_array_equal(tiny_model.generate(source, 10, seed=11, **kwargs), first)
    beam = tiny_model.generate(source, 10, sampler="beam", beam_width=3)
    assert beam.shape == (3, 10) and (beam[:, 0] == 1).all() and not np.isin(beam[:, 1:], [1]).any()


# -- training ----------------------------------------------------------------------------------------------


def _sorting(count, seed):
    """Strings of 2-5 distinct digits (ids 3-12) in random order and the same digits sorted, padded with 0
    to 5 steps. Every step of the answer follows from the source and the previous digit: the smallest
    source digit above it."""
    rng = np.random.default_rng(seed)
    source, target = np.zeros((count, 5), np.int32), np.zeros((count, 5), np.int32)
    for row, length in enumerate(rng.integers(2, 6, count)):
        digits = rng.permutation(10)[:length] + 3
        source[row, :length], target[row, :length] = digits, np.sort(digits)
    return source, target


def _exact_matches(generated, targets, end_id):
    """The share of rows generated exactly: start id, the target's ids, the end id."""
    hits = []
    for row, target in zip(generated, targets):
        length = int((target != 0).sum())
        hits.append(list(row[1:length + 1]) == list(target[:length]) and row[length + 1] == end_id)
    return float(np.mean(hits))


def test_learns_to_sort_digit_strings():
    keras.utils.set_random_seed(0)
    model = t5_seq2seq_lm(vocabulary_size=13, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)
    model.optimizer.learning_rate = 3e-3
    train_source, train_target = _sorting(2000, seed=0)
    x, y = teacher_forcing_pairs(train_source, train_target)
    first = float(language_model_loss()(y, model(x)))
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    held_out, targets = _sorting(300, seed=1)
    unseen = ~np.isin([row.tobytes() for row in held_out], [row.tobytes() for row in train_source])
    assert unseen.sum() > 100  # most held-out strings never appeared in training
    generated = model.generate(held_out, 7)
    assert first > 2.0  # about log(13) before training
    assert _exact_matches(generated[unseen], targets[unseen], model.end_id) >= 0.95


# -- the model checks, the .keras file, export ---------------------------------------------------------------

@pytest.mark.slow  # an XLA training step, the .keras round trip and two exports of an encoder-decoder
def test_passes_the_model_checks(tmp_path):
    # Output shape, an XLA-compiled training step (proven by its HLO), the .keras round trip, TFLite
    # (builtin operators only) and ONNX equal to Keras.
    model = t5_seq2seq_lm(**TINY, dropout=0.1, compile=False)
    x, y = teacher_forcing_pairs(_sources((8, 6), seed=9), _sources((8, 4), seed=10))
    results = check_model(model, x, y, tmp_path, expected_shape=(8, 5, 20), loss=language_model_loss())
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


def test_keras_file_keeps_class_config_weights_and_generation(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "t5.keras")
    loaded = keras.saving.load_model(tmp_path / "t5.keras", safe_mode=True)
    assert isinstance(loaded, T5Seq2SeqLM) and loaded.get_config() == tiny_model.get_config()
    source, decoder = _sources((2, 6), seed=11), _sources((2, 4), seed=12)
    np.testing.assert_allclose(_numpy(loaded([source, decoder])), _numpy(tiny_model([source, decoder])), atol=1e-6)
    np.testing.assert_array_equal(loaded.generate(source, 8), tiny_model.generate(source, 8))
    assert len([w for w in loaded.weights if tuple(w.shape) == (20, 16)]) == 1  # still tied


@pytest.mark.slow  # two generation exports of an encoder-decoder (encode and decode parts each)
@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_exported_generation_equals_keras_token_for_token(kind, tmp_path):
    keras.utils.set_random_seed(3)
    model = _wide_margins(t5_seq2seq_lm(**TINY, tie_embedding_weights=False, source_length=7, compile=False),
                          end_bias=3.0)
    source = _sources((6, 7), seed=13)
    path = tmp_path / f"t5.{kind}"
    exporter = export.to_tflite if kind == "tflite" else export.to_onnx
    exporter(model, path, generation=True, max_length=12)
    expected = model.generate(source, 12)
    np.testing.assert_array_equal(export.generate(path, source=source, max_length=12), expected)
    assert (expected == model.end_id).any() and len(set(map(tuple, expected))) > 1  # stops; rows differ


# -- other backends: the same logits and tokens from a model saved under TensorFlow --------------------------

_BACKEND_WORKER = r"""
import sys
import numpy as np
import keras
import keras_models
from keras_models.recurrent import language_model_loss

model_path, data_path, out_path = sys.argv[1:4]
model = keras.saving.load_model(model_path, safe_mode=True)
data = np.load(data_path)
source, decoder, target = data["source"], data["decoder"], data["target"]
results = {"logits": keras.ops.convert_to_numpy(model([source, decoder]))}
results["greedy"] = model.generate(source, 9)
results["beam"] = model.generate(source, 9, sampler="beam", beam_width=3)
keras_models.compile_model(model, loss=language_model_loss(), family=None)
before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
history = model.fit([source, decoder], target, epochs=1, batch_size=4, verbose=0)
results["loss"] = np.array(history.history["loss"][-1])
results["moved"] = np.array(any(not np.array_equal(b, keras.ops.convert_to_numpy(w))
                                for b, w in zip(before, model.trainable_weights)))
results["backend"] = np.array(keras.backend.backend())
np.savez(out_path, **results)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_generation_and_training_on_jax_and_torch_match_tensorflow(tiny_model, backend, tmp_path):
    tiny_model.save(tmp_path / "t5.keras")
    (source, decoder), target = teacher_forcing_pairs(_sources((8, 6), seed=14), _sources((8, 4), seed=15))
    np.savez(tmp_path / "data.npz", source=source, decoder=decoder, target=target)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = [str(tmp_path / name) for name in ("t5.keras", "data.npz", "out.npz")]
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, *arguments], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["backend"]) == backend
    np.testing.assert_allclose(out["logits"], _numpy(tiny_model([source, decoder])), atol=1e-5)
    np.testing.assert_array_equal(out["greedy"], tiny_model.generate(source, 9))
    np.testing.assert_array_equal(out["beam"], tiny_model.generate(source, 9, sampler="beam", beam_width=3))
    assert np.isfinite(out["loss"]) and bool(out["moved"])


# -- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "t5_huge"}, "preset must be None or one of"),
    ({"hidden_dim": 30, "num_heads": 4}, "hidden_dim must be divisible by num_heads"),
    ({"num_layers": 0}, "num_layers"),
    ({"dropout": 1.5}, "dropout"),
    ({"vocabulary_size": 2}, "vocabulary_size must be at least 3"),
    ({"activation": "tanh"}, "activation must be one of"),
    ({"use_gated_activation": True}, "use_gated_activation=True gates with GELU"),
    ({"tie_embedding_weights": "yes"}, "tie_embedding_weights must be True or False"),
    ({"relative_attention_max_distance": 2}, "max_distance must exceed"),
    ({"source_length": 0}, "source_length"),
    ({"start_id": 20}, r"start_id must be a token id in \[1, 20\)"),
    ({"start_id": 2}, "start_id and end_id must differ"),
])
def test_bad_builder_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        t5_seq2seq_lm(**{**TINY, **kwargs}, compile=False)


def test_bad_token_ids_and_sources_raise(tiny_model):
    compiled = t5_seq2seq_lm(**TINY)
    (source, decoder), target = teacher_forcing_pairs(_sources((2, 5)), _sources((2, 4), seed=1))
    with pytest.raises(ValueError, match=r"x\[0\] \(source ids\) must lie in \[0, 20\)"):
        compiled.fit([source + 20, decoder], target, verbose=0)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 20\)"):
        compiled.fit([source, decoder], target - 1, verbose=0)
    with pytest.raises(ValueError, match="source_ids must lie in"):
        tiny_model.generate(np.array([[3, 20]]), 5)
    with pytest.raises(ValueError, match=r"rows \[1\] hold only padding"):
        tiny_model.generate(np.array([[3, 4], [0, 0]]), 5)
    with pytest.raises(ValueError, match="max_length"):
        tiny_model.generate(source, 0)
    with pytest.raises(ValueError, match="needs source="):
        tiny_model.generation_start(2, 5)
    with pytest.raises(ValueError, match="backbone must be a T5Backbone"):
        T5Seq2SeqLM(keras_models.build("gpt", compile=False))
    fixed = t5_seq2seq_lm(**TINY, source_length=7, compile=False)
    with pytest.raises(ValueError, match="source_length=7 steps"):
        fixed.generate(source, 5)


def test_registered_with_the_registry():
    assert {"t5", "t5_seq2seq_lm"} <= {info.name for info in keras_models.list_models("transformer")}
    assert keras_models.get_model_info("t5_seq2seq_lm").builder is t5_seq2seq_lm
