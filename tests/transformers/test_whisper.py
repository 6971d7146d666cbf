"""The Whisper backbone and speech-to-text task: shapes, parameter counts, tied embeddings, generation
against the full model, learning to transcribe tone sequences never heard in training, the .keras round
trip, export (the network, and the encode/decode parts for generation), other backends and bad input."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from model_checks import check_model

import export
import keras_models
from export.generation import load_parts
from keras_models.recurrent.language_model import language_model_loss
from keras_models.transformers import (
    WhisperBackbone,
    WhisperSpeechToText,
    pad_waveforms,
    speech_to_text_pairs,
    whisper_config,
    whisper_parameter_count,
    whisper_speech_to_text,
)
from keras_models.transformers.whisper import CONFIGS

TINY = {"vocabulary_size": 20, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32,
        "num_mels": 16, "max_encoder_sequence_length": 40, "max_decoder_sequence_length": 12}
SAMPLES = 160 * 40  # 0.4 s at 16 kHz


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _waveforms(batch, seed=0):
    return (0.1 * np.random.default_rng(seed).normal(size=(batch, SAMPLES))).astype("float32")


def _ids(shape, seed=0):
    return np.random.default_rng(seed).integers(3, 20, shape).astype("int32")


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    return whisper_speech_to_text(**TINY, compile=False)


# -- tone sequences: a transcription task small enough to learn in seconds -----------------------------------

TONES = (400.0, 800.0, 1600.0, 3200.0)  # Hz; tone k is token 3 + k (0 padding, 1 start, 2 end)


def tone_utterances(sequences, repeats, seed):
    """Each sequence of three tone indices as 0.1 s tones in a row, starting at a random time within the
    first 0.05 s, with random amplitudes and phases and a little noise: `(waveforms, target_ids)`."""
    rng = np.random.default_rng(seed)
    waveforms, targets = [], []
    t = np.arange(1600) / 16000
    for sequence in sequences:
        for _ in range(repeats):
            waveform = rng.normal(0.0, 0.01, SAMPLES)
            start = int(rng.integers(0, 800))
            for position, tone in enumerate(sequence):
                tone_wave = rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * TONES[tone] * t + rng.uniform(0, 2 * np.pi))
                waveform[start + 1600 * position:start + 1600 * (position + 1)] += tone_wave
            waveforms.append(waveform)
            targets.append([3 + tone for tone in sequence])
    return np.stack(waveforms).astype("float32"), np.array(targets, "int32")


def _split_sequences():
    sequences = [(a, b, c) for a in range(4) for b in range(4) for c in range(4)]
    order = np.random.default_rng(0).permutation(len(sequences))
    return [sequences[i] for i in order[:48]], [sequences[i] for i in order[48:]]


@pytest.fixture(scope="module")
def trained():
    """A one-layer model trained on 48 of the 64 three-tone sequences; the other 16 are held out."""
    train, held_out = _split_sequences()
    waveforms, targets = tone_utterances(train, 3, seed=1)
    keras.utils.set_random_seed(0)
    model = whisper_speech_to_text(vocabulary_size=7, num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64,
                                   num_mels=16, max_encoder_sequence_length=40, max_decoder_sequence_length=8)
    model.optimizer.learning_rate = 3e-3
    x, y = speech_to_text_pairs(waveforms, targets)
    first = float(language_model_loss()(y, model(x)))
    history = model.fit(x, y, batch_size=16, epochs=12, verbose=0)
    return {"model": model, "first_loss": first, "history": history.history, "held_out": held_out}


# -- shapes and sizes ----------------------------------------------------------------------------------------

def test_task_and_backbone_shapes(tiny_model):
    waveforms, ids = _waveforms(3), _ids((3, 7))
    assert _numpy(tiny_model([waveforms, ids])).shape == (3, 7, 20)
    assert tiny_model.num_samples == SAMPLES and tiny_model.generation_source_shape == (SAMPLES,)
    features = _numpy(tiny_model.log_mel(waveforms))
    assert features.shape == (3, 40, 16)
    assert _numpy(tiny_model.backbone([features, ids])).shape == (3, 7, 16)
    assert _numpy(tiny_model.backbone.encode(features)).shape == (3, 20, 16)  # stride 2: half the frames
    odd = keras_models.build("whisper", **{**TINY, "max_encoder_sequence_length": 41}, compile=False)
    assert isinstance(odd, WhisperBackbone) and odd.encoder_length == 21
    assert _numpy(odd.encode(np.zeros((1, 41, 16)))).shape == (1, 21, 16)  # ceil(41 / 2) positions


def test_embeddings_are_tied(tiny_model):
    tables = [w for w in tiny_model.weights if tuple(w.shape) == (20, 16)]
    assert len(tables) == 1  # one table reads tokens in and logits out
    waveforms, ids = _waveforms(2), _ids((2, 5))
    hidden = _numpy(tiny_model.backbone([_numpy(tiny_model.log_mel(waveforms)), ids]))
    np.testing.assert_allclose(_numpy(tiny_model([waveforms, ids])), hidden @ _numpy(tables[0]).T, atol=1e-5)


def test_decoder_is_causal_and_reads_the_audio(tiny_model):
    waveforms, ids = _waveforms(2), _ids((2, 6))
    logits = _numpy(tiny_model([waveforms, ids]))
    changed = ids.copy()
    changed[:, 4:] = _ids((2, 2), seed=9)
    np.testing.assert_allclose(_numpy(tiny_model([waveforms, changed]))[:, :4], logits[:, :4], atol=1e-6)
    other_audio = _numpy(tiny_model([_waveforms(2, seed=5), ids]))
    assert np.abs(other_audio - logits).max() > 1e-3


def test_parameter_count_follows_the_formula(tiny_model):
    assert tiny_model.count_params() == whisper_parameter_count(**whisper_config(**TINY))
    assert tiny_model.count_params() == tiny_model.backbone.count_params()  # log-mel and tied head: no weights


def test_presets_have_whisper_parameter_counts():
    # The released checkpoints' counts (OpenAI's, without the fixed encoder position table) plus the key
    # biases this model has and Whisper lacks: 3 * num_layers attention layers of hidden_dim biases each.
    released = {"whisper_tiny": 37_184_640, "whisper_base": 71_825_920, "whisper_small": 240_582_912}
    for name, config in CONFIGS.items():
        key_biases = 3 * config["num_layers"] * config["hidden_dim"]
        assert whisper_parameter_count(**config) == released[name] + key_biases


@pytest.mark.slow
def test_whisper_tiny_preset_builds_37m_weights():
    model = keras_models.build("whisper_speech_to_text", preset="whisper_tiny", compile=False)
    assert model.count_params() == whisper_parameter_count(**CONFIGS["whisper_tiny"]) == 37_189_248
    assert abs(model.count_params() / 37_184_640 - 1) < 0.01  # the released Whisper-tiny, within 1%
    assert model.num_samples == 480_000 and model.backbone.encoder_length == 1500
    assert model.backbone.vocabulary_size == 51865 and model.backbone.max_decoder_sequence_length == 448


# -- generation ----------------------------------------------------------------------------------------------

def test_step_logits_equal_the_full_model_at_every_position(tiny_model):
    waveforms, ids = _waveforms(3), _ids((3, 8))
    ids[:, 0] = tiny_model.start_id
    full = _numpy(tiny_model([waveforms, ids]))
    state = tiny_model.generation_start(3, 10, waveforms)
    shapes = [tuple(s.shape) for s in state]
    assert shapes == [(3, 2, 20, 2, 8)] * 2 + [(3, 2, 10, 2, 8)] * 2 + [(3,)]
    stepped = []
    for position in range(8):
        logits, state = tiny_model.generation_step(ids[:, position], state)
        stepped.append(_numpy(logits))
    stepped = np.stack(stepped, axis=1)
    assert [tuple(s.shape) for s in state] == shapes
    assert np.isneginf(stepped[..., [0, tiny_model.start_id]]).all()  # padding and start never generated
    np.testing.assert_allclose(stepped[..., 2:], full[..., 2:], atol=1e-5)
    np.testing.assert_array_equal(_numpy(state[-1]), 8)


def test_cached_greedy_generation_equals_full_recomputation(trained):
    model = trained["model"]
    waveforms, _ = tone_utterances(trained["held_out"][:4], 1, seed=5)
    generated = model.generate(waveforms, 8, stop_token_ids=())  # past the end id too
    sequence = np.full((4, 1), model.start_id, "int32")
    while sequence.shape[1] < 8:  # the full model on the growing sequence, no cache
        logits = _numpy(model([waveforms, sequence]))[:, -1]
        logits[:, [0, model.start_id]] = -np.inf
        sequence = np.concatenate([sequence, np.argmax(logits, axis=-1).astype("int32")[:, None]], axis=1)
    np.testing.assert_array_equal(generated, sequence)
    assert len(np.unique(generated[:, 1:])) >= 4  # the tones and the end id, not one token over and over


def test_samplers_are_seeded_and_short_waveforms_are_padded(tiny_model):
    waveforms = _waveforms(2, seed=4)
    first = tiny_model.generate(waveforms, 9, sampler="top_k", top_k=5, seed=3)
    assert first.shape == (2, 9) and first.dtype == np.int32 and (first[:, 0] == 1).all()
    np.testing.assert_array_equal(tiny_model.generate(waveforms, 9, sampler="top_k", top_k=5, seed=3), first)
    assert tiny_model.generate(waveforms, 9, sampler="beam", beam_width=3).shape == (2, 9)
    short = [waveforms[0, :3000], waveforms[1, :5000]]
    padded = pad_waveforms(short, SAMPLES)
    assert padded.shape == (2, SAMPLES) and (padded[0, 3000:] == 0).all()
    np.testing.assert_array_equal(tiny_model.generate(short, 9), tiny_model.generate(padded, 9))


# -- training ------------------------------------------------------------------------------------------------

def test_teacher_forcing_pairs_put_start_and_end_ids_around_the_transcript():
    (waveforms, decoder_inputs), targets = speech_to_text_pairs(_waveforms(2), np.array([[5, 6, 7], [8, 0, 0]]))
    assert waveforms.shape == (2, SAMPLES) and waveforms.dtype == np.float32
    np.testing.assert_array_equal(decoder_inputs, [[1, 5, 6, 7], [1, 8, 0, 0]])
    np.testing.assert_array_equal(targets, [[5, 6, 7, 2], [8, 2, 0, 0]])


def test_learns_to_transcribe_tone_sequences_it_never_heard(trained):
    model = trained["model"]
    assert trained["first_loss"] > 1.5  # about log(7) before training
    assert trained["history"]["loss"][-1] < 0.2
    # 16 sequences held out of training: the model must hear each tone and its place, not recall strings.
    waveforms, targets = tone_utterances(trained["held_out"], 2, seed=2)
    generated = model.generate(waveforms, 5)
    assert (generated[:, 1:4] == targets).all(axis=1).mean() >= 0.9
    assert (generated[:, 4] == model.end_id).mean() >= 0.9  # and stop after three tones


@pytest.mark.slow  # XLA compile of the training step and two exports of the whole network
def test_passes_the_model_checks(tmp_path):
    # Output shape, an XLA-compiled training step (proven by its HLO), the .keras round trip, TFLite
    # (builtin operators only) and ONNX equal to Keras.
    model = whisper_speech_to_text(**TINY, dropout=0.1, compile=False)
    x, y = speech_to_text_pairs(_waveforms(8), _ids((8, 6)))
    results = check_model(model, x, y, tmp_path, expected_shape=(8, 7, 20), loss=language_model_loss())
    assert results["train"]["hlo_instructions"] > 0
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


def test_keras_file_keeps_class_config_weights_and_generation(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "whisper.keras")
    loaded = keras.saving.load_model(tmp_path / "whisper.keras", safe_mode=True)
    assert isinstance(loaded, WhisperSpeechToText) and loaded.get_config() == tiny_model.get_config()
    waveforms, ids = _waveforms(2), _ids((2, 6))
    np.testing.assert_allclose(_numpy(loaded([waveforms, ids])), _numpy(tiny_model([waveforms, ids])), atol=1e-6)
    np.testing.assert_array_equal(loaded.generate(waveforms, 9), tiny_model.generate(waveforms, 9))
    rebuilt = WhisperBackbone.from_config(tiny_model.backbone.get_config())
    assert rebuilt.get_config() == tiny_model.backbone.get_config()


# -- export --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["tflite", pytest.param("onnx", marks=pytest.mark.slow)])
def test_exported_generation_transcribes_like_keras_from_waveforms(trained, kind, tmp_path):
    model = trained["model"]
    waveforms, _ = tone_utterances(trained["held_out"][:4], 1, seed=3)
    path = tmp_path / f"whisper.{kind}"
    report = getattr(export, f"to_{kind}")(model, path, generation=True, max_length=6)
    expected = model.generate(waveforms, 6)
    np.testing.assert_array_equal(export.generate(path, source=waveforms), expected)
    assert (expected[:, 4] == model.end_id).all() and (expected[:, 5] == 0).all()  # stopping is exercised
    meta = load_parts(path).meta
    assert meta["source"] == "features" and meta["start_token_ids"] == [1] and meta["stop_token_ids"] == [2]
    if kind == "tflite":  # the log-mel features and the encoder run in the encode part, from waveforms
        assert {"CONV_2D", "MIRROR_PAD", "LOG", "DYNAMIC_UPDATE_SLICE"} <= set(report.operators)
        assert "FFT" not in " ".join(report.operators) and "CUSTOM" not in report.operators


# -- other backends: the same logits and tokens from a model saved under TensorFlow --------------------------

_BACKEND_WORKER = r"""
import sys
import numpy as np
import keras
import keras_models
from keras_models.recurrent.language_model import language_model_loss

model_path, data_path, out_path = sys.argv[1:4]
model = keras.saving.load_model(model_path, safe_mode=True)
data = np.load(data_path)
x, y = [data["waveforms"], data["decoder_inputs"]], data["targets"]
results = {"logits": keras.ops.convert_to_numpy(model(x))}
results["greedy"] = model.generate(data["waveforms"], 6)
keras_models.compile_model(model, loss=language_model_loss(), family=None)
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
def test_transcription_and_training_on_jax_and_torch_match_tensorflow(trained, backend, tmp_path):
    model = trained["model"]
    model.save(tmp_path / "whisper.keras")
    waveforms, targets = tone_utterances(trained["held_out"][:8], 1, seed=4)
    (waveforms, decoder_inputs), targets = speech_to_text_pairs(waveforms, targets)
    np.savez(tmp_path / "data.npz", waveforms=waveforms, decoder_inputs=decoder_inputs, targets=targets)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    arguments = [str(tmp_path / name) for name in ("whisper.keras", "data.npz", "out.npz")]
    run = subprocess.run([sys.executable, "-c", _BACKEND_WORKER, *arguments], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["backend"]) == backend
    np.testing.assert_allclose(out["logits"], _numpy(model([waveforms, decoder_inputs])), atol=1e-4)
    np.testing.assert_array_equal(out["greedy"], model.generate(waveforms, 6))
    assert np.isfinite(out["loss"]) and bool(out["moved"])


# -- bad input -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "whisper_huge"}, "preset must be None or one of"),
    ({"hidden_dim": 15}, "hidden_dim must be divisible by num_heads"),
    ({"num_layers": 0}, "num_layers"),
    ({"dropout": 1.0}, "dropout"),
    ({"vocabulary_size": 2}, "vocabulary_size must be at least 3"),
    ({"max_encoder_sequence_length": 1}, "max_encoder_sequence_length"),
    ({"end_id": 20}, "end_id"),
    ({"start_id": 2}, "start_id and end_id must differ"),
])
def test_bad_builder_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        whisper_speech_to_text(**{**TINY, **kwargs}, compile=False)


def test_bad_waveforms_ids_and_lengths_raise(tiny_model):
    # The checks come before Keras' own, so the uncompiled model raises them too.
    x, y = speech_to_text_pairs(_waveforms(2), _ids((2, 5)))
    with pytest.raises(ValueError, match=r"x\[0\] \(waveforms\) must have shape \(batch, 6400\)"):
        tiny_model.fit([x[0][:, :6000], x[1]], y, verbose=0)
    with pytest.raises(ValueError, match=r"x\[1\] \(decoder input ids\) must lie in \[0, 20\)"):
        tiny_model.fit([x[0], x[1] + 20], y, verbose=0)
    with pytest.raises(ValueError, match="y has 13 steps, more than max_decoder_sequence_length=12"):
        tiny_model.fit([x[0], _ids((2, 13))], _ids((2, 13)), verbose=0)
    with pytest.raises(ValueError, match="waveforms contains NaN"):
        speech_to_text_pairs(np.full((1, SAMPLES), np.nan, "float32"), _ids((1, 3)))
    with pytest.raises(ValueError, match=r"waveforms\[1\] has 7000 samples, more than the model's num_samples=6400"):
        tiny_model.generate([np.zeros(100), np.zeros(7000)], 5)
    with pytest.raises(ValueError, match="max_length must be an integer from 1 to max_decoder_sequence_length=12"):
        tiny_model.generate(_waveforms(1), 13)
    with pytest.raises(ValueError, match="needs source="):
        tiny_model.generation_start(1, 5)


def test_registered_with_the_registry():
    assert {"whisper", "whisper_speech_to_text"} <= {info.name for info in keras_models.list_models()}
    assert keras_models.get_model_info("whisper_speech_to_text").builder is whisper_speech_to_text
