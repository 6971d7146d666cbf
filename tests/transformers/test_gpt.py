"""The GPT backbone and causal language model: shapes, parameter counts, training, the .keras round trip,
the XLA training step, generation against the full model, other backends, and bad input."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_model

import keras_models
from keras_models.transformers import (
    CONFIGS,
    GPTBackbone,
    GPTCausalLM,
    causal_lm_loss,
    gpt_causal_lm,
    gpt_config,
    gpt_parameter_count,
    next_token_pairs,
)

TINY = {"vocabulary_size": 40, "num_layers": 2, "num_heads": 4, "hidden_dim": 32, "intermediate_dim": 64,
        "max_sequence_length": 24}


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _tokens(shape, vocabulary_size=40, seed=0):
    return np.random.default_rng(seed).integers(0, vocabulary_size, shape).astype("int32")


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    return gpt_causal_lm(**TINY, compile=False)


# -- shapes and sizes ----------------------------------------------------------------------------------------

def test_backbone_and_task_shapes(tiny_model):
    x = _tokens((3, 7))
    assert _numpy(tiny_model(x)).shape == (3, 7, 40)
    assert _numpy(tiny_model.backbone(x)).shape == (3, 7, 32)
    backbone = keras_models.build("gpt", **TINY, compile=False)
    assert isinstance(backbone, GPTBackbone) and _numpy(backbone(x)).shape == (3, 7, 32)


def test_embeddings_are_tied(tiny_model):
    tables = [w for w in tiny_model.weights if tuple(w.shape) == (40, 32)]
    assert len(tables) == 1  # one table reads tokens in and logits out
    x = _tokens((2, 5))
    hidden = _numpy(tiny_model.backbone(x))
    np.testing.assert_allclose(_numpy(tiny_model(x)), hidden @ _numpy(tables[0]).T, atol=1e-5)


def test_parameter_count_follows_the_formula(tiny_model):
    assert tiny_model.count_params() == gpt_parameter_count(**gpt_config(**TINY))


def test_gpt2_presets_have_gpt2_parameter_counts():
    # GPT-2's published sizes with tied embeddings (Radford et al., 2019; counted on the released weights).
    expected = {"gpt2_small": 124_439_808, "gpt2_medium": 354_823_168, "gpt2_large": 774_030_080,
                "gpt2_xl": 1_557_611_200}
    assert {name: gpt_parameter_count(**config) for name, config in CONFIGS.items()} == expected


@pytest.mark.slow
def test_gpt2_small_preset_builds_124m_weights():
    model = keras_models.build("gpt_causal_lm", preset="gpt2_small", compile=False)
    assert model.count_params() == 124_439_808
    assert model.backbone.vocabulary_size == 50257 and model.backbone.max_sequence_length == 1024


# -- training ----------------------------------------------------------------------------------------------

def test_learns_a_repeated_corpus_and_greedy_generation_continues_it():
    pattern = np.array([5, 9, 2, 7, 3, 8, 1, 6], dtype="int32")
    corpus = np.tile(pattern, 12)
    x, y = next_token_pairs(np.stack([corpus[start:start + 13] for start in range(64)]))
    keras.utils.set_random_seed(3)
    model = gpt_causal_lm(**TINY)
    model.optimizer.learning_rate = 1e-2
    first = float(causal_lm_loss()(y, model(x)))
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert first > 3.0  # about log(40) before training
    assert history.history["loss"][-1] < 0.5  # every token follows from the one before
    generated = model.generate(pattern[None, :3], 19)
    np.testing.assert_array_equal(generated[0], np.tile(pattern, 3)[:19])


@pytest.mark.slow  # the family trains without XLA on a CPU (its default on accelerators); exports take a while
def test_passes_the_model_checks(tmp_path):
    # Output shape, an XLA-compiled training step (proven by its HLO), the .keras round trip, TFLite
    # (builtin operators only) and ONNX equal to Keras.
    model = gpt_causal_lm(**TINY, dropout=0.1, compile=False)
    x, y = next_token_pairs(_tokens((8, 9)))
    results = check_model(model, x, y, tmp_path, expected_shape=(8, 8, 40), loss=causal_lm_loss())
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


def test_keras_file_keeps_class_config_weights_and_generation(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "gpt.keras")
    loaded = keras.saving.load_model(tmp_path / "gpt.keras", safe_mode=True)
    assert isinstance(loaded, GPTCausalLM) and loaded.get_config() == tiny_model.get_config()
    x = _tokens((2, 6))
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(tiny_model(x)), atol=1e-6)
    np.testing.assert_array_equal(loaded.generate(x[:, :3], 10), tiny_model.generate(x[:, :3], 10))
    assert len([w for w in loaded.weights if tuple(w.shape) == (40, 32)]) == 1  # still tied


# -- generation --------------------------------------------------------------------------------------------

def test_step_logits_equal_the_full_model_at_every_position(tiny_model):
    x = _tokens((3, 9))
    full = _numpy(tiny_model(x))
    state = tiny_model.generation_start(3, 12)
    shapes = [tuple(s.shape) for s in state]
    assert shapes == [(3, 2, 12, 4, 8)] * 2 + [(3,)]
    stepped = []
    for position in range(9):
        logits, state = tiny_model.generation_step(x[:, position], state)
        stepped.append(_numpy(logits))
    assert [tuple(s.shape) for s in state] == shapes
    np.testing.assert_allclose(np.stack(stepped, axis=1), full, atol=1e-5)
    np.testing.assert_array_equal(_numpy(state[-1]), 9)
    logits, prefilled = tiny_model.generation_prefill(x, tiny_model.generation_start(3, 12))
    np.testing.assert_allclose(_numpy(logits), full[:, -1], atol=1e-5)
    for a, b in zip(prefilled, state):
        np.testing.assert_allclose(_numpy(a), _numpy(b), atol=1e-5)


def test_cached_greedy_generation_equals_full_recomputation(tiny_model):
    prompts = _tokens((3, 4), seed=5)
    generated = tiny_model.generate(prompts, 20)
    sequence = prompts
    while sequence.shape[1] < 20:  # the full model on the growing sequence, no cache
        following = np.argmax(_numpy(tiny_model(sequence))[:, -1], axis=-1).astype("int32")
        sequence = np.concatenate([sequence, following[:, None]], axis=1)
    np.testing.assert_array_equal(generated, sequence)


def test_prompts_of_different_lengths_generate_what_each_generates_alone(tiny_model):
    prompts = [_tokens((1, length), seed=20 + length)[0] for length in (2, 6, 4)]
    together = tiny_model.generate(prompts, 14)
    for row, prompt in zip(together, prompts):
        np.testing.assert_array_equal(row[:len(prompt)], prompt)
        np.testing.assert_array_equal(row, tiny_model.generate(prompt[None], 14)[0])
    stop = int(together[0, 4])  # a token the shortest row generates
    stopped = tiny_model.generate(prompts, 14, stop_token_ids=[stop])
    for row, alone_prompt in zip(stopped, prompts):
        np.testing.assert_array_equal(row, tiny_model.generate(alone_prompt[None], 14, stop_token_ids=[stop])[0])
    sampled = tiny_model.generate(prompts, 10, sampler="top_p", top_p=0.9, seed=3)
    np.testing.assert_array_equal(sampled[1, :6], prompts[1])
    with pytest.raises(ValueError, match="beam.*one length"):
        tiny_model.generate(prompts, 10, sampler="beam")
    with pytest.raises(ValueError, match=r"rows \[1\] are empty"):
        tiny_model.generate([prompts[0], np.zeros(0, "int32")], 10)


def test_samplers_are_seeded_and_stop_tokens_end_rows(tiny_model):
    prompts = _tokens((2, 3), seed=6)
    for kwargs in ({"sampler": "top_k", "top_k": 5}, {"sampler": "top_p", "top_p": 0.9, "temperature": 1.5}):
        first = tiny_model.generate(prompts, 15, seed=11, **kwargs)
        assert first.shape == (2, 15) and first.dtype == np.int32
        np.testing.assert_array_equal(first[:, :3], prompts)
        np.testing.assert_array_equal(tiny_model.generate(prompts, 15, seed=11, **kwargs), first)
    beam = tiny_model.generate(prompts, 12, sampler="beam", beam_width=3)
    assert beam.shape == (2, 12)
    greedy = tiny_model.generate(prompts, 15)
    stop = int(greedy[0, 5])
    stopped = tiny_model.generate(prompts, 15, stop_token_ids=[stop])
    end = 3 + int(np.argmax(greedy[0, 3:] == stop))
    np.testing.assert_array_equal(stopped[0, :end + 1], greedy[0, :end + 1])
    np.testing.assert_array_equal(stopped[0, end + 1:], 0)  # the rest of a stopped row is 0


# -- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "gpt5"}, "preset must be None or one of"),
    ({"hidden_dim": 30, "num_heads": 4}, "hidden_dim must be divisible by num_heads"),
    ({"num_layers": 0}, "num_layers"),
    ({"dropout": 1.5}, "dropout"),
    ({"vocabulary_size": 2.5}, "vocabulary_size"),
    ({"stop_token_ids": [99]}, "stop_token_ids"),
])
def test_bad_builder_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gpt_causal_lm(**{**TINY, **kwargs}, compile=False)


def test_bad_token_ids_and_lengths_raise(tiny_model):
    compiled = gpt_causal_lm(**TINY)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 40\)"):
        compiled.fit(_tokens((2, 5)) + 40, _tokens((2, 5)), verbose=0)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 40\)"):
        compiled.fit(_tokens((2, 5)), _tokens((2, 5)) - 1, verbose=0)
    with pytest.raises(ValueError, match="x has 25 steps, more than max_sequence_length=24"):
        compiled.fit(_tokens((2, 25)), _tokens((2, 25)), verbose=0)
    with pytest.raises(ValueError, match="token_ids must lie in"):
        tiny_model.generate(np.array([[3, 40]]), 5)
    with pytest.raises(ValueError, match="max_length"):
        tiny_model.generate(_tokens((1, 3)), 25)
    with pytest.raises(ValueError, match="max_length"):
        tiny_model.generate(_tokens((1, 3)), 2)
    with pytest.raises(ValueError, match="sequence_length=24"):
        tiny_model(_tokens((1, 30)))


def test_registered_with_the_registry():
    assert {"gpt", "gpt_causal_lm"} <= {info.name for info in keras_models.list_models()}
    assert keras_models.get_model_info("gpt_causal_lm").builder is gpt_causal_lm


# -- other backends: the same logits and tokens from a model saved under TensorFlow --------------------------

_BACKEND_WORKER = r"""
import sys
import numpy as np
import keras
import keras_models
from keras_models.transformers import causal_lm_loss

model_path, data_path, out_path = sys.argv[1:4]
model = keras.saving.load_model(model_path, safe_mode=True)
data = np.load(data_path)
x, y, prompts = data["x"], data["y"], data["prompts"]
results = {"logits": keras.ops.convert_to_numpy(model(x))}
state = model.generation_start(len(x), x.shape[1])
stepped = []
for position in range(x.shape[1]):
    logits, state = model.generation_step(x[:, position], state)
    stepped.append(keras.ops.convert_to_numpy(logits))
results["stepped"] = np.stack(stepped, axis=1)
results["greedy"] = model.generate(prompts, 14)
results["top_k"] = model.generate(prompts, 14, sampler="top_k", top_k=4, seed=7)
keras_models.compile_model(model, loss=causal_lm_loss(), family=None)
before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
history = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
results["loss"] = np.array(history.history["loss"][-1])
results["moved"] = np.array(any(not np.array_equal(b, keras.ops.convert_to_numpy(w))
                                for b, w in zip(before, model.trainable_weights)))
results["backend"] = np.array(keras.backend.backend())
np.savez(out_path, **results)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_generation_and_training_on_jax_and_torch_match_tensorflow(tiny_model, backend, tmp_path):
    tiny_model.save(tmp_path / "gpt.keras")
    x, y = next_token_pairs(_tokens((8, 9), seed=2))
    data = {"x": x, "y": y, "prompts": _tokens((2, 4), seed=3)}
    np.savez(tmp_path / "data.npz", **data)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = [str(tmp_path / name) for name in ("gpt.keras", "data.npz", "out.npz")]
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, *arguments], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["backend"]) == backend
    full = _numpy(tiny_model(x))
    np.testing.assert_allclose(out["logits"], full, atol=1e-5)
    np.testing.assert_allclose(out["stepped"], full, atol=1e-5)
    np.testing.assert_array_equal(out["greedy"], tiny_model.generate(data["prompts"], 14))
    np.testing.assert_array_equal(out["top_k"], tiny_model.generate(data["prompts"], 14, sampler="top_k", top_k=4,
                                                                    seed=7))
    assert np.isfinite(out["loss"]) and bool(out["moved"])
