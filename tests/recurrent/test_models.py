"""The recurrent builders: the shared model checks, masking, generation against the full model, what
they learn, and their argument checks."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_export, check_model

import keras_models
from keras_models.recurrent import RNNLanguageModel, language_model_loss, next_token_pairs

RNG = np.random.default_rng(0)
CELLS = ("simple", "lstm", "gru")


def _tokens(shape, vocab=30, low=1, seed=0):
    return np.random.default_rng(seed).integers(low, vocab, shape).astype("int32")


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


# -- the shared checks: output shape, XLA training step, .keras round trip, TFLite and ONNX -----------

def test_language_model_passes_model_checks(tmp_path):
    model = keras_models.build("rnn_language_model", vocab_size=20, embedding_dim=8, units=8, num_layers=2,
                               cell="lstm", sequence_length=6, compile=False)
    x = _tokens((8, 6), vocab=20, low=0)  # some ids are 0: padding anywhere is masked
    results = check_model(model, x, _tokens((8, 6), vocab=20, low=0, seed=1), tmp_path, expected_shape=(8, 6, 20),
                          loss=language_model_loss())
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


@pytest.mark.slow
def test_classifier_from_token_ids_passes_model_checks(tmp_path):
    model = keras_models.build("rnn_classifier", input_shape=(7,), vocab_size=30, embedding_dim=8, units=8,
                               cell="lstm", num_classes=3, compile=False)
    x = _tokens((8, 7), low=0)  # some ids are 0: padding in the middle of sequences is masked too
    results = check_model(model, x, np.arange(8) % 3, tmp_path, expected_shape=(8, 3),
                          loss="sparse_categorical_crossentropy")
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


@pytest.mark.slow
def test_tagger_on_masked_features_passes_model_checks(tmp_path):
    model = keras_models.build("rnn_tagger", input_shape=(6, 3), num_classes=4, cell="gru", units=6, mask_value=0.0,
                               compile=False)
    x = RNG.uniform(0.5, 1.0, (8, 6, 3)).astype("float32")
    x[::2, 4:] = 0.0  # half the sequences end in two padded steps
    y = RNG.integers(0, 4, (8, 6))
    check_model(model, x, y, tmp_path, expected_shape=(8, 6, 4), loss="sparse_categorical_crossentropy")


@pytest.mark.slow
def test_conditioned_language_model_passes_model_checks(tmp_path):
    model = keras_models.build("rnn_language_model", vocab_size=20, embedding_dim=8, units=8, num_layers=2,
                               cell="simple", condition_dim=5, sequence_length=6, compile=False)
    x = [_tokens((8, 6), vocab=20, low=0), RNG.normal(size=(8, 5)).astype("float32")]
    y = _tokens((8, 6), vocab=20, low=0, seed=1)
    # Two inputs: the XLA proof (keras_models.assert_xla_compiled) takes the list as fit() does.
    check_model(model, x, y, tmp_path, expected_shape=(8, 6, 20), loss=language_model_loss())
    # The round trip keeps the class, its configuration and what it generates.
    model.save(tmp_path / "lm.keras")
    loaded = keras.saving.load_model(tmp_path / "lm.keras", safe_mode=True)
    assert isinstance(loaded, RNNLanguageModel) and loaded.get_config() == model.get_config()
    prompts, condition = x[0][:3, :2] % 19 + 1, x[1][:3]
    np.testing.assert_array_equal(loaded.generate(prompts, 9, condition=condition),
                                  model.generate(prompts, 9, condition=condition))


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_passes_model_checks_in_every_builder(cell, tmp_path):
    x = _tokens((8, 5))  # no padding: see the bidirectional defect below
    classifier = keras_models.build("rnn_classifier", input_shape=(5,), vocab_size=30, embedding_dim=4, units=4,
                                    num_layers=2, cell=cell, bidirectional=True, num_classes=1, head="sigmoid",
                                    compile=False)
    check_model(classifier, x, (np.arange(8) % 2).astype("float32"), tmp_path, expected_shape=(8, 1),
                loss="binary_crossentropy")
    tagger = keras_models.build("rnn_tagger", input_shape=(5,), vocab_size=30, embedding_dim=4, units=4,
                                cell=cell, num_classes=2, head="linear", name="tagger", compile=False)
    check_model(tagger, x, RNG.normal(size=(8, 5, 2)).astype("float32"), tmp_path, expected_shape=(8, 5, 2),
                loss="mse")
    language_model = keras_models.build("rnn_language_model", vocab_size=30, embedding_dim=4, units=4,
                                        cell=cell, sequence_length=5, compile=False)
    check_model(language_model, x, _tokens((8, 5), low=0, seed=2), tmp_path, expected_shape=(8, 5, 30),
                loss=language_model_loss())



# Keras' unrolled TensorFlow loop, which the exporter traces, zeroes the padded steps of a backward
# (go_backwards) layer with the mask in forward order; Bidirectional turns that zeroing on when it returns
# sequences. The exporter zeroes with the reversed mask instead (export/_common.py).
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_tagger_on_padded_inputs_exports_equal_to_keras(merge_mode, tmp_path):
    model = keras_models.build("rnn_tagger", input_shape=(6, 3), num_classes=4, cell="gru", units=6,
                               bidirectional=True, mask_value=0.0, compile=False)
    if merge_mode != "concat":  # the same network, summing the two directions
        inputs = keras.Input((6, 3))
        x = keras.layers.Masking(0.0)(inputs)
        x = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True), merge_mode=merge_mode)(x)
        model = keras.Model(inputs, keras.layers.Dense(4)(x))
    x = RNG.uniform(0.5, 1.0, (8, 6, 3)).astype("float32")
    x[::2, 4:] = 0.0  # padded at the end
    x[1::4, :2] = 0.0  # padded at the start
    check_export(model, x, tmp_path)

# -- masking: a padded sequence gives the outputs of the unpadded one ---------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_padded_token_sequences_classify_like_unpadded_ones(cell):
    model = keras_models.build("rnn_classifier", vocab_size=30, embedding_dim=6, units=5, num_layers=2, cell=cell,
                               bidirectional=True, num_classes=4, compile=False)
    x = _tokens((3, 5))
    padded = np.concatenate([x, np.zeros((3, 4), "int32")], axis=1)  # any length: input_shape (None,)
    middle = np.insert(x, 2, 0, axis=1)  # a padding id inside the sequence is skipped too
    expected = _numpy(model(x))
    np.testing.assert_allclose(_numpy(model(padded)), expected, atol=1e-6)
    np.testing.assert_allclose(_numpy(model(middle)), expected, atol=1e-6)
    assert np.abs(_numpy(model(np.concatenate([x, x[:, :2]], axis=1))) - expected).max() > 1e-4


def test_padded_feature_steps_are_skipped_by_classifier_and_tagger():
    x = RNG.normal(size=(3, 5, 2)).astype("float32")
    padded = np.concatenate([x, np.full((3, 3, 2), -1.0, "float32")], axis=1)
    classifier = keras_models.build("rnn_classifier", input_shape=(None, 2), mask_value=-1.0, units=5, cell="gru",
                                    num_classes=3, compile=False)
    np.testing.assert_allclose(_numpy(classifier(padded)), _numpy(classifier(x)), atol=1e-6)
    tagger = keras_models.build("rnn_tagger", input_shape=(None, 2), mask_value=-1.0, units=5, cell="lstm",
                                bidirectional=True, num_classes=3, compile=False)
    np.testing.assert_allclose(_numpy(tagger(padded))[:, :5], _numpy(tagger(x)), atol=1e-6)
    unmasked = keras_models.build("rnn_classifier", input_shape=(None, 2), units=5, num_classes=3, compile=False)
    assert np.abs(_numpy(unmasked(padded)) - _numpy(unmasked(x))).max() > 1e-4  # mask_value=None masks nothing


def test_tagger_loss_leaves_padded_steps_out():
    model = keras_models.build("rnn_tagger", vocab_size=20, embedding_dim=4, units=4, num_classes=3, jit_compile=False)
    head = model.get_layer("rnn_tagger_predictions")
    head.bias.assign(np.array([4.0, 0.0, 0.0], "float32"))  # class 0 favoured: a label 2 costs about 4
    x = _tokens((4, 6), vocab=20)
    x[:, 4:] = 0
    y = np.zeros((4, 6), "int32")
    y[:, 4:] = 2  # costly labels only where the inputs are padding
    probabilities = np.clip(_numpy(model(x)), 1e-7, 1 - 1e-7)  # as Keras' cross-entropy clips them
    step_losses = -np.log(np.take_along_axis(probabilities, y[..., None], axis=-1)[..., 0])
    loss = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(step_losses[:, :4].mean(), rel=1e-5)  # the mean over the unpadded steps
    assert abs(step_losses.mean() - step_losses[:, :4].mean()) > 1.0  # not the mean over all


# -- generation: the step-by-step network is the full network ---------------------------------------

def _step_through(model, tokens, condition=None):
    state = model.initial_state(len(tokens), condition)
    logits = []
    for position in range(tokens.shape[1]):
        step_logits, state = model.decode_step(tokens[:, position], state)
        logits.append(_numpy(step_logits))
    return np.stack(logits, axis=1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("conditioned", [False, True])
def test_stepping_gives_the_logits_of_the_whole_sequence(cell, conditioned):
    model = keras_models.build("rnn_language_model", vocab_size=25, embedding_dim=6, units=7, num_layers=2,
                               cell=cell, condition_dim=3 if conditioned else None, compile=False)
    tokens = _tokens((4, 9), vocab=25)
    tokens[1, :3] = 0  # a left-padded prompt: padding leaves the states as they were
    condition = RNG.normal(size=(4, 3)).astype("float32") if conditioned else None
    full = _numpy(model([tokens, condition] if conditioned else tokens))
    stepped = _step_through(model, tokens, condition)
    real = tokens != 0
    np.testing.assert_allclose(stepped[real], full[real], atol=1e-5)
    assert np.abs(full).max() > 1e-2  # not trivially equal


def test_greedy_generate_is_the_argmax_path_of_the_full_model():
    model = keras_models.build("rnn_language_model", vocab_size=12, embedding_dim=8, units=16, cell="lstm",
                               condition_dim=4, compile=False)
    prompts = _tokens((3, 2), vocab=12)
    condition = RNG.normal(size=(3, 4)).astype("float32")
    generated = model.generate(prompts, 8, condition=condition)
    assert generated.shape == (3, 8) and generated.dtype == np.int32
    sequences = prompts.copy()
    for _ in range(6):  # brute force: re-run the whole prefix, take the best non-padding token
        logits = _numpy(model([sequences, condition]))[:, -1, 1:]
        sequences = np.concatenate([sequences, logits.argmax(axis=1)[:, None].astype("int32") + 1], axis=1)
    np.testing.assert_array_equal(generated, sequences)


def test_left_padded_prompts_generate_what_unpadded_ones_do():
    model = keras_models.build("rnn_language_model", vocab_size=15, embedding_dim=4, units=8, cell="gru",
                               compile=False)
    prompt = _tokens((1, 3), vocab=15)
    padded = np.concatenate([np.zeros((1, 2), "int32"), prompt], axis=1)
    short = model.generate(prompt, 9, sampler="top_k", top_k=5, seed=1)
    long = model.generate(padded, 11, sampler="top_k", top_k=5, seed=1)
    np.testing.assert_array_equal(long[:, 2:], short)


# -- learning: real tasks with real numbers -----------------------------------------------------------

def _order_task(count, seed):
    """Token 1 and token 2 once each among fillers 3..9; the label says whether 1 comes first. Every
    sequence holds the same multiset of markers, so word counts say nothing about the label."""
    rng = np.random.default_rng(seed)
    x = rng.integers(3, 10, (count, 8)).astype("int32")
    for row in range(count):
        first, second = rng.choice(8, size=2, replace=False)
        x[row, first], x[row, second] = 1, 2
    y = (np.argmax(x == 1, axis=1) < np.argmax(x == 2, axis=1)).astype("int32")
    return x, y


def test_classifier_learns_word_order_that_counts_cannot_see():
    x, y = _order_task(256, seed=0)
    x_test, y_test = _order_task(300, seed=1)
    # The counts of the markers 1 and 2 are the same in both classes: a bag of words sees no label.
    assert (x == 1).sum(axis=1).tolist() == [1] * 256 and (x == 2).sum(axis=1).tolist() == [1] * 256
    model = keras_models.build("rnn_classifier", vocab_size=10, embedding_dim=8, units=16, cell="gru",
                               num_classes=2, compile=False)
    keras_models.compile_model(model, optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                               metrics=["accuracy"], jit_compile=False)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    accuracy = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy >= 0.95, accuracy


@pytest.mark.slow
def test_tagger_learns_a_per_step_rule_that_needs_memory():
    # The label of each step is the token of the step before (0 at the first): a per-step classifier of
    # the current token alone is at chance (1/4).
    rng = np.random.default_rng(0)
    x = rng.integers(1, 5, (600, 10)).astype("int32")
    y = np.concatenate([np.zeros((600, 1), "int32"), x[:, :-1] - 1], axis=1)
    model = keras_models.build("rnn_tagger", vocab_size=5, embedding_dim=8, units=16, cell="lstm", num_classes=4,
                               compile=False)
    keras_models.compile_model(model, optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy",
                               jit_compile=False)
    model.fit(x[:256], y[:256], epochs=8, batch_size=32, verbose=0)
    predicted = _numpy(model(x[500:])).argmax(axis=-1)
    accuracy = (predicted[:, 1:] == y[500:, 1:]).mean()
    assert accuracy >= 0.95, accuracy


def test_language_model_learns_sequences_and_greedy_generate_reproduces_them():
    # Four sequences over 11 tokens that share tokens, so the next token depends on more than the last
    # one; each starts with its own two-token prompt.
    sequences = np.array([
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        [2, 1, 4, 3, 6, 5, 8, 7, 10, 9],
        [3, 5, 7, 9, 2, 4, 6, 8, 10, 1],
        [4, 4, 5, 5, 6, 6, 7, 7, 8, 8],
    ], dtype="int32")
    model = keras_models.build("rnn_language_model", vocab_size=11, embedding_dim=8, units=32, cell="lstm",
                               compile=False)
    keras_models.compile_model(model, optimizer=keras.optimizers.Adam(0.03), loss=language_model_loss(),
                               jit_compile=False)
    x, y = next_token_pairs(sequences)
    model.fit(np.tile(x, (8, 1)), np.tile(y, (8, 1)), epochs=20, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.generate(sequences[:, :2], 10), sequences)
    np.testing.assert_array_equal(model.generate(sequences[:, :2], 10, sampler="beam", beam_width=3), sequences)
    # Cold sampling concentrates on the learned path too.
    np.testing.assert_array_equal(model.generate(sequences[:, :2], 10, sampler="top_p", top_p=0.9,
                                                 temperature=0.1, seed=0), sequences)


@pytest.mark.slow
def test_captioning_conditions_generation_on_a_vector():
    # Two condition vectors, two captions after the same start token: only the initial states differ.
    captions = np.array([[1, 3, 5, 7, 9], [1, 4, 6, 8, 2]], "int32")
    conditions = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]], "float32")
    model = keras_models.build("rnn_language_model", vocab_size=10, embedding_dim=8, units=16, cell="gru",
                               condition_dim=3, compile=False)
    keras_models.compile_model(model, optimizer=keras.optimizers.Adam(0.03), loss=language_model_loss(),
                               jit_compile=False)
    x, y = next_token_pairs(captions)
    model.fit([np.tile(x, (16, 1)), np.tile(conditions, (16, 1))], np.tile(y, (16, 1)), epochs=30, batch_size=32,
              verbose=0)
    np.testing.assert_array_equal(model.generate(captions[:, :1], 5, condition=conditions), captions)


# -- arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, message", [
    ("rnn_classifier", {"cell": "transformer"}, r"cell must be one of \('simple', 'lstm', 'gru'\); got cell='transf"),
    ("rnn_classifier", {"units": 0}, "units must be a positive integer; got units=0"),
    ("rnn_tagger", {"num_layers": 1.5}, "num_layers must be a positive integer; got num_layers=1.5"),
    ("rnn_classifier", {"dropout": 1.0}, r"dropout must be a number in \[0, 1\); got dropout=1.0"),
    ("rnn_tagger", {"recurrent_dropout": -0.1}, r"recurrent_dropout must be a number in \[0, 1\); got recurrent_dro"),
    ("rnn_classifier", {"bidirectional": "yes"}, "bidirectional must be True or False; got bidirectional='yes'"),
    ("rnn_classifier", {"input_shape": (5,)}, r"\(steps, features\) for float features.*got input_shape=\(5,\)"),
    ("rnn_classifier", {"input_shape": (5, 2), "vocab_size": 10}, r"input_shape must be \(steps,\) for token ids"),
    ("rnn_tagger", {"input_shape": (0, 2)}, "got input_shape=\\(0, 2\\)"),
    ("rnn_classifier", {"vocab_size": 0}, "vocab_size must be a positive integer; got vocab_size=0"),
    ("rnn_classifier", {"vocab_size": 10, "mask_value": 0.0}, "mask_value applies to float features"),
    ("rnn_classifier", {"mask_value": "pad"}, "mask_value must be a finite number or None; got mask_value='pad'"),
    ("rnn_classifier", {"head": "relu"}, "head must be one of"),
    ("rnn_tagger", {"num_classes": 0}, "num_classes must be a positive integer; got num_classes=0"),
    ("rnn_classifier", {"num_classes": 1}, "use head='sigmoid'"),
    ("rnn_classifier", {"name": ""}, "name must be a non-empty string"),
    ("rnn_language_model", {"bidirectional": True}, "A language model reads left to right.*bidirectional=True"),
    ("rnn_language_model", {"vocab_size": -3}, "vocab_size must be a positive integer; got vocab_size=-3"),
    ("rnn_language_model", {"condition_dim": 0}, "condition_dim must be a positive integer; got condition_dim=0"),
    ("rnn_language_model", {"sequence_length": 0}, "sequence_length must be a positive integer"),
    ("rnn_language_model", {"cell": "LSTM"}, "got cell='LSTM'"),
])
def test_bad_builder_arguments_raise(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_models.build(name, compile=False, **kwargs)


@pytest.fixture(scope="module")
def small_language_models():
    plain = keras_models.build("rnn_language_model", vocab_size=9, embedding_dim=4, units=4, compile=False)
    conditioned = keras_models.build("rnn_language_model", vocab_size=9, embedding_dim=4, units=4, condition_dim=2,
                                     name="conditioned", compile=False)
    return plain, conditioned


@pytest.mark.parametrize("conditioned, args, kwargs, message", [
    (False, ([[1, 2], [3, 0]], 5), {}, r"rows \[1\] end with the padding id 0; pad shorter prompts on the left"),
    (False, ([[1, 9]], 5), {}, r"token_ids must lie in \[0, 9\) \(vocab_size=9\); got ids from 1 to 9"),
    (False, ([1, 2], 5), {}, r"token_ids must be a non-empty 2-D array"),
    (False, ([[1.5, 2]], 5), {}, "token_ids must hold integer token ids"),
    (False, ([[1, 2]], 1), {}, "at least the prompt length 2; got max_length=1"),
    (False, ([[1, 2]], 5), {"sampler": "nucleus"}, "sampler must be one of"),
    (False, ([[1, 2]], 5), {"sampler": "top_p", "top_p": 2}, "top_p must be a number in"),
    (False, ([[1, 2]], 5), {"condition": [[0.0, 1.0]]}, "was built without condition_dim; got a condition"),
    (True, ([[1, 2]], 5), {}, r"is conditioned \(condition_dim=2\): pass condition="),
    (True, ([[1, 2]], 5), {"condition": [[0.0, 1.0, 2.0]]}, r"condition must have shape \(1, 2\).*got \(1, 3\)"),
    (True, ([[1, 2]], 5), {"condition": [[0.0, np.nan]]}, "condition contains NaN"),
])
def test_bad_generate_arguments_raise(small_language_models, conditioned, args, kwargs, message):
    model = small_language_models[conditioned]
    with pytest.raises(ValueError, match=message):
        model.generate(*args, **kwargs)


def test_fit_refuses_token_ids_outside_the_vocabulary():
    model = keras_models.build("rnn_language_model", vocab_size=9, embedding_dim=4, units=4)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 9\) \(vocab_size=9\); got ids from 0 to 12"):
        model.fit(np.ones((2, 3), "int32"), np.array([[0, 1, 12], [1, 2, 3]]), verbose=0)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 9\)"):
        model.fit(np.full((2, 3), -1), np.ones((2, 3), "int32"), verbose=0)
    with pytest.raises(ValueError, match="at least 2 steps"):
        next_token_pairs(np.ones((2, 1), "int32"))


def test_every_registered_recurrent_model_is_checked():
    names = {info.name for info in keras_models.list_models(family="recurrent")}
    assert names == {"rnn_classifier", "rnn_tagger", "rnn_language_model", "rnn_seq2seq"}  # seq2seq: test_seq2seq.py


# -- other backends: the same tokens from a model saved under TensorFlow ------------------------------

_BACKEND_WORKER = r"""
import json
import sys
import numpy as np
import keras
import keras_models
from keras_models.recurrent import language_model_loss

model_path, data_path, out_path, samplers = sys.argv[1:5]
model = keras.saving.load_model(model_path, safe_mode=True)
data = np.load(data_path)
prompts, condition, x, y = data["prompts"], data["condition"], data["x"], data["y"]
results = {"logits": keras.ops.convert_to_numpy(model([x, data["x_condition"]]))}
state = model.initial_state(len(x), data["x_condition"])
stepped = []
for position in range(x.shape[1]):
    logits, state = model.decode_step(x[:, position], state)
    stepped.append(keras.ops.convert_to_numpy(logits))
results["stepped"] = np.stack(stepped, axis=1)
for sampler, kwargs in json.loads(samplers).items():
    results[sampler] = model.generate(prompts, 12, condition=condition, **kwargs)
keras_models.compile_model(model, loss=language_model_loss(), family="recurrent")
before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
history = model.fit([x, data["x_condition"]], y, epochs=1, batch_size=4, verbose=0)
results["loss"] = np.array(history.history["loss"][-1])
results["moved"] = np.array(any(not np.array_equal(b, keras.ops.convert_to_numpy(w))
                                for b, w in zip(before, model.trainable_weights)))
results["backend"] = np.array(keras.backend.backend())
np.savez(out_path, **results)
"""
_SAMPLERS = {"greedy": {}, "top_k": {"sampler": "top_k", "top_k": 4, "seed": 7},
             "top_p": {"sampler": "top_p", "top_p": 0.9, "temperature": 1.5, "seed": 8},
             "beam": {"sampler": "beam", "beam_width": 3}}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_generation_and_training_on_jax_and_torch_match_tensorflow(backend, tmp_path):
    model = keras_models.build("rnn_language_model", vocab_size=16, embedding_dim=6, units=8, num_layers=2,
                               cell="lstm", condition_dim=3, compile=False)
    model.save(tmp_path / "lm.keras")
    data = {"prompts": _tokens((3, 2), vocab=16), "condition": RNG.normal(size=(3, 3)).astype("float32"),
            "x": _tokens((8, 5), vocab=16), "x_condition": RNG.normal(size=(8, 3)).astype("float32"),
            "y": _tokens((8, 5), vocab=16, seed=3)}
    np.savez(tmp_path / "data.npz", **data)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_THREEFRY_PARTITIONABLE": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = [str(tmp_path / name) for name in ("lm.keras", "data.npz", "out.npz")] + [json.dumps(_SAMPLERS)]
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, *arguments], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["backend"]) == backend
    full = _numpy(model([data["x"], data["x_condition"]]))
    np.testing.assert_allclose(out["logits"], full, atol=1e-5)
    np.testing.assert_allclose(out["stepped"], full, atol=1e-5)
    for sampler, kwargs in _SAMPLERS.items():  # the same seed gives the same tokens on every backend
        np.testing.assert_array_equal(out[sampler], model.generate(data["prompts"], 12, condition=data["condition"],
                                                                   **kwargs))
    assert np.isfinite(out["loss"]) and bool(out["moved"])
