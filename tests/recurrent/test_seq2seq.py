"""The recurrent encoder-decoder: generation against the whole network, masking of padded steps, the
loss, what it learns, beam search, stopping at the end id, its files, other backends and bad input."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_model

import keras_models
from keras_models.recurrent import RNNSeq2Seq, language_model_loss, teacher_forcing_pairs

START, END = 1, 2


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _model(**config):
    config = {"source_vocab_size": 12, "target_vocab_size": 10, "embedding_dim": 6, "units": 7, "compile": False,
              **config}
    return keras_models.build("rnn_seq2seq", **config)


def _pairs(count=4, source_steps=6, target_steps=5, seed=0):
    """Sources (ids 3..11, padded at the end) and their teacher-forcing pairs (targets 3..9, padded)."""
    rng = np.random.default_rng(seed)
    source = rng.integers(3, 12, (count, source_steps)).astype("int32")
    target = rng.integers(3, 10, (count, target_steps)).astype("int32")
    for row in range(count):
        source[row, source_steps - row % 3:] = 0
        target[row, target_steps - (row + 1) % 3:] = 0
    return teacher_forcing_pairs(source, target)


def _allowed_log_softmax(logits):
    """What generation chooses from: padding (0) and the start id ruled out."""
    logits = np.array(logits, dtype=np.float64)
    logits[..., [0, START]] = -np.inf
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _step_through(model, source, decoder_inputs):
    state = model.generation_start(len(source), decoder_inputs.shape[1], source)
    logits = []
    for position in range(decoder_inputs.shape[1]):
        step_logits, state = model.generation_step(decoder_inputs[:, position], state)
        logits.append(_numpy(step_logits))
    return np.stack(logits, axis=1), state


def _log_probability(model, source, generated):
    """The total log-probability, under the whole network, of every row's generated tokens (up to and
    including its end id)."""
    logits = _numpy(model([source, generated[:, :-1]]))
    chosen = np.take_along_axis(_allowed_log_softmax(logits), generated[:, 1:, None], axis=-1)[..., 0]
    return np.where(generated[:, 1:] != 0, chosen, 0.0).sum(axis=1)


# -- teacher forcing --------------------------------------------------------------------------------

def test_teacher_forcing_pairs_add_start_and_end_ids():
    [source, decoder_inputs], targets = teacher_forcing_pairs(np.array([[4, 5, 0], [6, 0, 0]]),
                                                              np.array([[5, 6, 7], [8, 0, 0]]))
    np.testing.assert_array_equal(source, [[4, 5, 0], [6, 0, 0]])
    np.testing.assert_array_equal(decoder_inputs, [[1, 5, 6, 7], [1, 8, 0, 0]])
    np.testing.assert_array_equal(targets, [[5, 6, 7, 2], [8, 2, 0, 0]])
    assert decoder_inputs.dtype == targets.dtype == np.int32
    # sequences of different lengths are padded with 0 at the end first
    [ragged_source, ragged_inputs], ragged_targets = teacher_forcing_pairs([[4, 5], [6]], [np.array([5, 6, 7]), [8]])
    np.testing.assert_array_equal(ragged_source, [[4, 5], [6, 0]])
    np.testing.assert_array_equal(ragged_inputs, decoder_inputs)
    np.testing.assert_array_equal(ragged_targets, targets)


# -- generation: the step-by-step decoder is the whole network ---------------------------------------

@pytest.mark.parametrize("cell, attention, bidirectional, num_layers", [
    ("simple", "luong", False, 2),
    ("lstm", "bahdanau", True, 1),
    ("gru", "bahdanau", False, 2),
    ("gru", "luong", True, 1),
    ("lstm", None, True, 2),
])
def test_stepping_gives_the_logits_of_the_whole_network(cell, attention, bidirectional, num_layers):
    model = _model(cell=cell, attention=attention, bidirectional=bidirectional, num_layers=num_layers)
    (source, decoder_inputs), _ = _pairs()
    full = _numpy(model([source, decoder_inputs]))
    stepped, state = _step_through(model, source, decoder_inputs)
    real = decoder_inputs != 0
    allowed = np.arange(10) > START  # the step rules out padding and the start id
    np.testing.assert_allclose(stepped[real][:, allowed], full[real][:, allowed], atol=1e-5)
    assert np.isneginf(stepped[..., ~allowed]).all()
    assert np.abs(full[real]).max() > 1e-3  # a hundred times the tolerance: not trivially equal
    # The state: encoder outputs and the float source mask (with attention), then the decoder's states.
    width = 7 * (2 if bidirectional else 1)
    decoder_states = [(4, 7)] * num_layers * (2 if cell == "lstm" else 1)
    shapes = [tuple(value.shape) for value in state]
    if attention is None:
        assert shapes == decoder_states
    else:
        assert shapes == [(4, 6, width), (4, 6), *decoder_states]
        np.testing.assert_array_equal(_numpy(state[1]), (source != 0).astype("float32"))


def test_dropout_acts_in_training_only():
    model = _model(cell="gru", attention="luong", bidirectional=True, dropout=0.5, recurrent_dropout=0.3)
    (source, decoder_inputs), _ = _pairs()
    real = decoder_inputs != 0
    inference = _numpy(model([source, decoder_inputs]))
    training = _numpy(model([source, decoder_inputs], training=True))
    assert np.abs(training[real] - inference[real]).max() > 1e-3
    decoder = model.get_layer("rnn_seq2seq_decoder_gru1").cell
    decoder.dropout = decoder.recurrent_dropout = 0.0  # what is left in training is the encoder's dropout
    training = _numpy(model([source, decoder_inputs], training=True))
    assert np.abs(training[real] - inference[real]).max() > 1e-3
    stepped, _ = _step_through(model, source, decoder_inputs)
    np.testing.assert_allclose(stepped[real][:, 2:], inference[real][:, 2:], atol=1e-5)


def test_generation_start_and_step_trace_in_a_tf_function():
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("traces on the TensorFlow backend")
    model = _model(cell="lstm", attention="bahdanau", bidirectional=True)
    (source, decoder_inputs), _ = _pairs()
    start = tf.function(lambda s: model.generation_start(4, 6, s))
    step = tf.function(model.generation_step)
    state, eager_state = start(tf.constant(source)), model.generation_start(4, 6, source)
    for position in range(3):
        logits, state = step(tf.constant(decoder_inputs[:, position]), state)
        eager_logits, eager_state = model.generation_step(decoder_inputs[:, position], eager_state)
        np.testing.assert_allclose(logits.numpy(), _numpy(eager_logits), atol=1e-6)
    assert start.experimental_get_tracing_count() == 1 and step.experimental_get_tracing_count() == 1


def test_padded_source_steps_change_nothing():
    model = _model(cell="gru", attention="luong", bidirectional=True)
    (source, decoder_inputs), _ = _pairs()
    padded = np.concatenate([source, np.zeros((4, 3), "int32")], axis=1)
    expected = _numpy(model([source, decoder_inputs]))
    real = decoder_inputs != 0
    np.testing.assert_allclose(_numpy(model([padded, decoder_inputs]))[real], expected[real], atol=1e-6)
    np.testing.assert_array_equal(model.generate(padded, 7), model.generate(source, 7))
    # Real tokens in the same place do change them: the comparison above can fail.
    longer = np.concatenate([source, np.full((4, 3), 5, "int32")], axis=1)
    assert np.abs(_numpy(model([longer, decoder_inputs]))[real] - expected[real]).max() > 1e-4


def test_loss_leaves_padded_targets_out():
    model = _model(attention="bahdanau")
    keras_models.compile_model(model, loss=language_model_loss(), jit_compile=False, family="recurrent")
    model.get_layer("rnn_seq2seq_logits").bias.assign(np.array([3.0] + [0.0] * 9, "float32"))  # 0 is cheap
    x, targets = _pairs()
    assert (targets == 0).any()
    log_probabilities = np.log(_numpy(keras.ops.softmax(model(x))).astype(np.float64))
    step_losses = -np.take_along_axis(log_probabilities, targets[..., None], axis=-1)[..., 0]
    loss = model.evaluate(x, targets, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(step_losses[targets != 0].mean(), rel=1e-5)
    assert abs(step_losses.mean() - step_losses[targets != 0].mean()) > 0.3  # padding would count


# -- learning: reversing sequences -------------------------------------------------------------------

def _reverse_task(count, seed):
    """Sources of 4 to 6 tokens (3..9, padded to 6) and, as targets, the same tokens in reverse."""
    rng = np.random.default_rng(seed)
    source = np.zeros((count, 6), "int32")
    target = np.zeros((count, 6), "int32")
    for row, length in enumerate(rng.integers(4, 7, count)):
        source[row, :length] = rng.integers(3, 10, length)
        target[row, :length] = source[row, :length][::-1]
    return source, target


def _exact_matches(model, source, target):
    """The fraction of sources whose greedy generation is exactly [start, reversed tokens, end, 0...]."""
    expected = np.concatenate([np.full((len(source), 1), START, "int32"), teacher_forcing_pairs(source, target)[1]],
                              axis=1)
    return float((model.generate(source, expected.shape[1]) == expected).all(axis=1).mean())


@pytest.fixture(scope="module")
def reverser():
    """A model trained on the reverse task, its untrained score and held-out sources."""
    keras.utils.set_random_seed(0)
    model = keras_models.build("rnn_seq2seq", source_vocab_size=10, target_vocab_size=10, embedding_dim=16,
                               units=32, cell="gru", attention="luong", compile=False)
    keras_models.compile_model(model, optimizer=keras.optimizers.Adam(0.01), loss=language_model_loss(),
                               jit_compile=False)
    test_source, test_target = _reverse_task(200, seed=1)
    untrained = _exact_matches(model, test_source, test_target)
    model.fit(*teacher_forcing_pairs(*_reverse_task(1024, seed=0)), epochs=4, batch_size=32, verbose=0)
    return model, untrained, test_source, test_target


def test_reverses_unseen_sequences_after_a_few_epochs(reverser):
    model, untrained, test_source, test_target = reverser
    assert untrained <= 0.05, untrained
    accuracy = _exact_matches(model, test_source, test_target)
    assert accuracy >= 0.95, accuracy


def test_greedy_is_the_argmax_path_of_the_whole_network_and_stops_at_the_end_id(reverser):
    model, _, source, _ = reverser
    source = source[:12]
    generated = model.generate(source, 9)
    assert generated.shape == (12, 9) and generated.dtype == np.int32
    # Brute force: re-run the whole decoder on the prefix, take the best allowed token, stop at the end id.
    sequences, done = np.full((12, 1), START, "int32"), np.zeros(12, bool)
    for _ in range(8):
        logits = _allowed_log_softmax(_numpy(model([source, sequences]))[:, -1])
        chosen = np.where(done, 0, logits.argmax(axis=1)).astype("int32")
        done |= chosen == END
        sequences = np.concatenate([sequences, chosen[:, None]], axis=1)
    np.testing.assert_array_equal(generated, sequences)
    ends = np.argmax(generated == END, axis=1)
    assert (generated == END).sum(axis=1).tolist() == [1] * 12  # every row ended, once
    assert len(set(ends.tolist())) > 1 and ends.max() < 8  # at different places, before max_length
    after = np.arange(9) > ends[:, None]
    assert (generated[after] == 0).all() and (generated[~after] != 0).all()
    np.testing.assert_array_equal(model.generate(source, 1), np.full((12, 1), START))


def test_beam_of_width_one_is_greedy_and_wider_beams_score_at_least_as_well():
    model = _model(cell="lstm", attention="bahdanau")
    (source, _), _ = _pairs(count=8)
    greedy = model.generate(source, 8)
    np.testing.assert_array_equal(model.generate(source, 8, sampler="beam", beam_width=1), greedy)
    np.testing.assert_array_equal(model.generate(source, 8, sampler="top_k", top_k=1, seed=3), greedy)
    beam = model.generate(source, 8, sampler="beam", beam_width=4)
    beam_scores, greedy_scores = _log_probability(model, source, beam), _log_probability(model, source, greedy)
    assert np.all(beam_scores >= greedy_scores - 1e-5), (beam_scores, greedy_scores)
    assert np.any(beam_scores > greedy_scores + 1e-3)  # the search finds better sequences than greedy


# -- files and compilation ------------------------------------------------------------------------------

def test_keras_file_round_trip_keeps_logits_and_generation(reverser, tmp_path):
    model, _, source, target = reverser
    model.save(tmp_path / "reverser.keras")
    loaded = keras.saving.load_model(tmp_path / "reverser.keras", safe_mode=True)
    assert isinstance(loaded, RNNSeq2Seq) and loaded.get_config() == model.get_config()
    x, _ = teacher_forcing_pairs(source[:8], target[:8])
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), atol=1e-6)
    np.testing.assert_array_equal(loaded.generate(source[:8], 9, sampler="beam", beam_width=3),
                                  model.generate(source[:8], 9, sampler="beam", beam_width=3))


# The shared checks: output shape, an XLA-compiled training step (about 35 s of XLA compilation on a
# loaded 2-core machine, hence slow), the .keras round trip, TFLite and ONNX equal to Keras.
@pytest.mark.slow
@pytest.mark.parametrize("cell, attention, bidirectional", [("gru", "luong", False), ("lstm", "bahdanau", True)])
def test_seq2seq_passes_model_checks(cell, attention, bidirectional, tmp_path):
    model = _model(cell=cell, attention=attention, bidirectional=bidirectional, source_length=6, target_length=6)
    x, y = _pairs(count=8)  # padded sources and targets
    results = check_model(model, x, y, tmp_path, expected_shape=(8, 6, 10), loss=language_model_loss())
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


# -- other backends: the same logits and tokens from a model saved under TensorFlow -----------------------

_BACKEND_WORKER = r"""
import sys
import numpy as np
import keras
import keras_models
from keras_models.recurrent import language_model_loss

model_path, data_path, out_path = sys.argv[1:4]
model = keras.saving.load_model(model_path, safe_mode=True)
data = np.load(data_path)
x, y = [data["source"], data["decoder_inputs"]], data["targets"]
results = {"logits": keras.ops.convert_to_numpy(model(x)), "greedy": model.generate(data["source"], 8),
           "beam": model.generate(data["source"], 8, sampler="beam", beam_width=3)}
keras_models.compile_model(model, loss=language_model_loss(), family="recurrent")
before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
results["losses"] = np.array(history.history["loss"])
results["moved"] = np.array(any(not np.array_equal(b, keras.ops.convert_to_numpy(w))
                                for b, w in zip(before, model.trainable_weights)))
results["trained_greedy"] = model.generate(data["source"], 8)
results["backend"] = np.array(keras.backend.backend())
np.savez(out_path, **results)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_training_and_generation_on_jax_and_torch(backend, tmp_path):
    model = _model(cell="lstm", attention="bahdanau", bidirectional=True, num_layers=2)
    model.save(tmp_path / "seq2seq.keras")
    (source, decoder_inputs), targets = _pairs(count=8)
    np.savez(tmp_path / "data.npz", source=source, decoder_inputs=decoder_inputs, targets=targets)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_THREEFRY_PARTITIONABLE": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = [str(tmp_path / name) for name in ("seq2seq.keras", "data.npz", "out.npz")]
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, *arguments], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["backend"]) == backend
    real = decoder_inputs != 0
    np.testing.assert_allclose(out["logits"][real], _numpy(model([source, decoder_inputs]))[real], atol=1e-5)
    np.testing.assert_array_equal(out["greedy"], model.generate(source, 8))
    np.testing.assert_array_equal(out["beam"], model.generate(source, 8, sampler="beam", beam_width=3))
    assert np.isfinite(out["losses"]).all() and out["losses"][-1] < out["losses"][0] and bool(out["moved"])
    assert out["trained_greedy"].shape == (8, 8) and (out["trained_greedy"][:, 0] == START).all()


# -- arguments ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"attention": "dot"}, r"attention must be one of \('luong', 'bahdanau', None\); got attention='dot'"),
    ({"cell": "rnn"}, r"cell must be one of \('simple', 'lstm', 'gru'\); got cell='rnn'"),
    ({"bidirectional": "yes"}, "bidirectional must be True or False; got bidirectional='yes'"),
    ({"source_vocab_size": 0}, "source_vocab_size must be a positive integer; got source_vocab_size=0"),
    ({"target_vocab_size": 2}, r"end_id must be a token id in \[1, 2\).*got end_id=2"),
    ({"start_id": 0}, r"start_id must be a token id in \[1, 10\) \(0 is padding"),
    ({"start_id": 2}, "start_id and end_id must differ; got start_id=end_id=2"),
    ({"source_length": 0}, "source_length must be a positive integer; got source_length=0"),
    ({"target_length": 2.5}, "target_length must be a positive integer; got target_length=2.5"),
    ({"embedding_dim": -1}, "embedding_dim must be a positive integer; got embedding_dim=-1"),
    ({"units": 0}, "units must be a positive integer; got units=0"),
])
def test_bad_builder_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model(**kwargs)


@pytest.fixture(scope="module")
def small_model():
    return _model(units=4, embedding_dim=3)


@pytest.mark.parametrize("args, kwargs, message", [
    (([3, 4], 5), {}, r"source_ids must be a non-empty 2-D array \(batch, steps\) of token ids; got shape \(2,\)"),
    (([[3.5, 4.0]], 5), {}, "source_ids must hold integer token ids; got dtype float64"),
    (([[3, 12]], 5), {}, r"source_ids must lie in \[0, 12\) \(vocab_size=12\); got ids from 3 to 12"),
    (([[3, 4], [0, 0]], 5), {}, r"source_ids rows \[1\] hold only padding"),
    (([[3, 4]], 0), {}, "max_length must be a positive integer; got max_length=0"),
    (([[3, 4]], 5), {"sampler": "nucleus"}, "sampler must be one of"),
    (([[3, 4]], 5), {"sampler": "beam", "beam_width": 0}, "beam_width must be a positive integer; got beam_width=0"),
    (([[3, 4]], 5), {"temperature": 0}, "temperature must be a finite number above 0; got temperature=0"),
])
def test_bad_generate_arguments_raise(small_model, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_model.generate(*args, **kwargs)


@pytest.mark.parametrize("source, target, message", [
    ([[3, 4]], [[5, 2]], r"target_ids must not hold the start id 1 or the end id 2.*rows \[0\]"),
    ([[3, 4]], [[5, 0, 6]], r"target_ids must be padded with 0 at the end only; rows \[0\]"),
    ([[3, 4]], [[5], [6]], "one row per pair; got 1 and 2 rows"),
    ([3, 4], [[5]], r"source_ids must be 2-D \(batch, steps\)"),
    ([[3, 4]], [[5.0]], "target_ids must hold non-negative integer token ids; got dtype float64"),
])
def test_bad_teacher_forcing_pairs_raise(source, target, message):
    with pytest.raises(ValueError, match=message):
        teacher_forcing_pairs(np.array(source), np.array(target))


def test_fit_refuses_ids_outside_the_vocabularies(small_model):
    (source, decoder_inputs), targets = _pairs()
    with pytest.raises(ValueError, match=r"y must lie in \[0, 10\) \(vocab_size=10\); got ids from 0 to 11"):
        small_model.fit([source, decoder_inputs], np.where(targets == 3, 11, targets), verbose=0)
    with pytest.raises(ValueError, match=r"x\[0\] \(source ids\) must lie in \[0, 12\)"):
        small_model.fit([source + 12, decoder_inputs], targets, verbose=0)
    with pytest.raises(ValueError, match=r"x\[1\] \(decoder input ids\) must lie in \[0, 10\)"):
        small_model.fit([source, decoder_inputs + 10], targets, verbose=0)


def test_generation_contract_attributes():
    model = _model(end_id=9, start_id=4)
    assert model.generation_source == "token_ids" and model.stop_token_ids == (9,)
    with pytest.raises(ValueError, match="generation_start needs source="):
        model.generation_start(2, 5)
