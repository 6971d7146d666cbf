"""One small, checkable case for every registered model, shared by the backend checks.

A case says how to build the model small, which seeded batch of inputs (and targets) it trains on,
which Keras model is shipped (the model itself, an estimator's `to_keras()`, a GAN's generator) and the
shape that model's output must have. `tests/backend_worker.py` runs the cases under JAX and PyTorch;
`tests/backend_checks.py` reloads and exports what it saved, under TensorFlow.

Three kinds of case:
  - `KERAS`: a compiled `keras.Model`; one `fit` epoch on `(x, y)`.
  - `ESTIMATOR`: a statistical or scikit-learn estimator; `fit(x, y)` by its own engine, then
    `to_keras()`, whose outputs must agree with the estimator's predictions.
  - `GAN`: a GAN variant (tiny configurations from `gan/gan_cases.py`); one `fit` epoch, then the
    generator is what ships.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable

import numpy as np

_GAN_TESTS = str(Path(__file__).parent / "gan")
if _GAN_TESTS not in sys.path:
    sys.path.insert(0, _GAN_TESTS)

import gan_cases  # noqa: E402

import keras_models  # noqa: E402

KERAS, ESTIMATOR, GAN = "keras", "estimator", "gan"
BACKENDS = ("jax", "torch")
NUM_CLASSES = 3
COUNT = 16  # samples in a Keras model's batch: two fit steps of 8

# (backend, name) -> why that model cannot pass the check on that backend. The README lists the same
# models with the same reasons; each entry is a known defect, not a way to skip a model quietly.
EXCLUDED: dict[tuple[str, str], str] = {}


# -- seeded data -----------------------------------------------------------------------------------

def _rng(seed):
    return np.random.default_rng(seed)


def _uniform(shape, count=COUNT, seed=0):
    return _rng(seed).uniform(0.0, 1.0, (count, *shape)).astype("float32")


def _tokens(shape, count=COUNT, seed=0, vocab=50):
    return _rng(seed).integers(0, vocab, (count, *shape)).astype("int32")


def _labels(count=COUNT):
    return (np.arange(count) % NUM_CLASSES).astype("int32")


def _linear_data(count=48, seed=0):
    """Three normal features and `y = x @ [1, -2, 0.5] + 0.3 + noise`."""
    rng = _rng(seed)
    x = rng.standard_normal((count, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(count)
    return x, y


def _logit_data(count=64, seed=0, classes=2):
    """Three normal features and labels drawn from a softmax of a linear score (never separable)."""
    rng = _rng(seed)
    x = rng.standard_normal((count, 3))
    weights = rng.standard_normal((3, classes))
    scores = x @ weights
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(classes, p=p) for p in probabilities])
    return x, y


def _tabular_classes(count=48, seed=0):
    """Six uniform features; the label is the bin of their sum, so trees and SVMs have work to do."""
    x = _uniform((6,), count, seed).astype("float64")
    total = x.sum(axis=1)
    y = np.digitize(total, np.quantile(total, [1 / 3, 2 / 3])).astype("int64")
    return x, y


# -- what an estimator's Keras model must reproduce ------------------------------------------------

def _same_probabilities(estimator, x, outputs):
    np.testing.assert_allclose(outputs, estimator.predict_proba(x), atol=1e-5, rtol=0)


def _same_predictions(estimator, x, outputs):
    expected = np.asarray(estimator.predict(x)).reshape(len(x), -1)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def _same_classes(estimator, x, outputs):
    index = np.searchsorted(estimator.classes_, estimator.predict(x))
    np.testing.assert_array_equal(outputs.argmax(axis=1), index)


# -- the case --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelCase:
    """How to check one registered model in a small configuration.

    Attributes:
        name: the registered name.
        kind: `KERAS`, `ESTIMATOR` or `GAN`.
        config: keyword arguments of `keras_models.build(name, ...)`.
        data: `() -> (x, y)`, seeded; `y` is None where `fit` takes no targets. For a GAN, the
            arguments of `gan.fit` as a tuple (`gan_cases.training_data`).
        output_shape: the shape of the shipped model's output on its inputs.
        agrees: for estimators, `(estimator, x, keras_outputs)` asserting the Keras model reproduces
            the estimator's predictions.
    """

    name: str
    kind: str
    config: dict
    data: Callable
    output_shape: tuple
    agrees: Callable | None = None

    def build(self):
        """The model (KERAS, GAN) or the unfitted estimator (ESTIMATOR)."""
        if self.kind == GAN:
            return gan_cases.build_tiny(self.name, **self.config)
        return keras_models.build(self.name, **self.config)

    def shipped(self, built):
        """The Keras model that is saved, reloaded and exported."""
        if self.kind == GAN:
            return built.generator
        if self.kind == ESTIMATOR:
            return built.to_keras()
        return built

    def shipped_inputs(self, built):
        """The inputs the shipped model is compared on (a float32/int32 array or a list of them)."""
        if self.kind == GAN:
            return gan_cases.generator_inputs(built)
        x, _ = self.data()
        return np.asarray(x, dtype="float32") if self.kind == ESTIMATOR else x


def _keras(name, sample_shape, inputs=_uniform, **config):
    data = lambda: (inputs(sample_shape), _labels())  # noqa: E731
    config = {"input_shape": sample_shape, "num_classes": NUM_CLASSES, **config}
    return ModelCase(name, KERAS, config, data, (COUNT, NUM_CLASSES))


def _estimator(name, data, outputs, agrees, **config):
    return ModelCase(name, ESTIMATOR, config, data, (len(data()[0]), outputs), agrees)


def _gan(name):
    data = lambda: gan_cases.training_data(name)  # noqa: E731
    return ModelCase(name, GAN, {}, data, (3, *gan_cases.image_shape(name)))


_STEPS = 6


def _tagged_features(count=COUNT, seed=0):
    """Two features per step, a label per step; sequences end in 0 to 2 padded (all-zero) steps."""
    x = _uniform((_STEPS, 2), count, seed)
    for row in range(count):
        x[row, _STEPS - row % 3:] = 0.0
    y = _rng(seed + 1).integers(0, NUM_CLASSES, (count, _STEPS)).astype("int32")
    return x, y


def _conditioned_tokens(count=COUNT, seed=0, vocab=20):
    """Token ids (0 is padding, but never first), a condition vector per sequence, next-token targets.

    Keras' backends disagree on the output at a padded first step when the initial state is not zero
    (JAX outputs the initial state, TensorFlow zeros); the loss masks that step out either way.
    """
    tokens = _tokens((_STEPS,), count, seed, vocab)
    tokens[:, 0] = tokens[:, 0] % (vocab - 1) + 1
    x = [tokens, _uniform((4,), count, seed + 1)]
    return x, _tokens((_STEPS,), count, seed + 2, vocab)


def _translation_pairs(count=COUNT, seed=0, source_vocab=20, target_vocab=12):
    """Sources padded at the end (never first) and teacher-forcing pairs of targets padded at the end:
    the decoder reads the start id first, so no decoder step starts from padding."""
    rng = _rng(seed)
    source = rng.integers(3, source_vocab, (count, _STEPS)).astype("int32")
    target = rng.integers(3, target_vocab, (count, _STEPS - 1)).astype("int32")
    for row in range(count):
        source[row, _STEPS - row % 3:] = 0
        target[row, _STEPS - 1 - row % 4:] = 0
    return keras_models.recurrent.teacher_forcing_pairs(source, target)


def _recurrent():
    """One case per cell: token ids (LSTM classifier), masked features (SimpleRNN tagger), a language
    model conditioned through its initial states (GRU), and a bidirectional LSTM encoder-decoder with
    additive attention."""
    tagger = {"input_shape": (_STEPS, 2), "num_classes": NUM_CLASSES, "cell": "simple", "units": 8, "mask_value": 0.0}
    language_model = {"vocab_size": 20, "embedding_dim": 8, "cell": "gru", "units": 8, "condition_dim": 4,
                      "sequence_length": _STEPS}
    seq2seq = {"source_vocab_size": 20, "target_vocab_size": 12, "embedding_dim": 8, "cell": "lstm", "units": 8,
               "bidirectional": True, "attention": "bahdanau", "source_length": _STEPS, "target_length": _STEPS}
    return [
        _keras("rnn_classifier", (_STEPS,), inputs=_tokens, vocab_size=50, embedding_dim=8, units=8, cell="lstm"),
        ModelCase("rnn_tagger", KERAS, tagger, _tagged_features, (COUNT, _STEPS, NUM_CLASSES)),
        ModelCase("rnn_language_model", KERAS, language_model, _conditioned_tokens, (COUNT, _STEPS, 20)),
        ModelCase("rnn_seq2seq", KERAS, seq2seq, _translation_pairs, (COUNT, _STEPS, 12)),
    ]


def _likelihood():
    """The VAEs as Keras models: `fit` on images (a conditional model's labels ride with them as its
    second input), and the model's own output, the reconstruction through encoder and decoder, is what
    ships; `tests/likelihood` checks the encoder and decoder exported separately."""
    shape = (8, 8, 1)
    small = {"image_shape": shape, "latent_dim": 4, "width": 8}
    images = lambda: (_uniform(shape), None)  # noqa: E731
    labelled = lambda: ([_uniform(shape), _labels()], None)  # noqa: E731
    return [
        ModelCase("vae", KERAS, small, images, (COUNT, *shape)),
        ModelCase("conditional_vae", KERAS, {**small, "num_classes": NUM_CLASSES, "likelihood": "gaussian"},
                  labelled, (COUNT, *shape)),
        ModelCase("beta_vae", KERAS, {**small, "architecture": "conv", "likelihood": "logistic_mixture",
                                      "num_mixtures": 2}, images, (COUNT, *shape)),
        # v prediction: the one-step estimate the model returns is not clipped to the pixel range
        ModelCase("ddpm", KERAS, {"image_shape": shape, "num_classes": NUM_CLASSES, "width": 8,
                                  "channel_multipliers": (1,), "groups": 4, "timesteps": 20, "prediction": "v"},
                  lambda: (_uniform(shape), _labels()), (COUNT, *shape)),
        # the shipped network: images scaled to [-1, 1] and labels in, 256 logits per pixel out
        ModelCase("pixelcnn", KERAS, {"image_shape": shape, "num_classes": NUM_CLASSES, "likelihood": "categorical",
                                      "filters": 8, "num_layers": 2, "first_kernel_size": 3, "hidden_units": 8},
                  labelled, (COUNT, *shape, 256)),
    ]


def _bert_inputs(count=COUNT, seed=0):
    """[token_ids, segment_ids, padding_mask]: [CLS] (id 3) first, two segments, rows ending in 0-2 padded steps."""
    token_ids = _tokens((_STEPS,), count, seed, vocab=20)
    token_ids[:, 0] = 3
    padding_mask = np.ones_like(token_ids)
    for row in range(count):
        padding_mask[row, _STEPS - row % 3:] = 0
    segment_ids = np.broadcast_to((np.arange(_STEPS) >= _STEPS // 2).astype("int32"), token_ids.shape) * padding_mask
    return [token_ids * padding_mask, segment_ids.astype("int32"), padding_mask]


def _bert():
    """The BERT backbone (its two outputs regressed on seeded targets), classifier and masked LM."""
    from keras_models.text import mask_tokens

    config = {"vocabulary_size": 20, "num_layers": 2, "num_heads": 2, "hidden_dim": 8, "intermediate_dim": 16,
              "max_sequence_length": _STEPS}
    targets = lambda: (_bert_inputs(), {"pooled_output": _uniform((8,), seed=1),  # noqa: E731
                                        "sequence_output": _uniform((_STEPS, 8), seed=2)})
    return [
        ModelCase("bert", KERAS, config, targets, (COUNT, 8)),  # outputs flattened by name: pooled first
        ModelCase("bert_classifier", KERAS, {**config, "num_classes": NUM_CLASSES},
                  lambda: (_bert_inputs(), _labels()), (COUNT, NUM_CLASSES)),
        # round(0.15 * 6 tokens) = 1 masked position per row
        ModelCase("bert_masked_lm", KERAS, config, lambda: mask_tokens(_bert_inputs(), 20, seed=0)[:2], (COUNT, 1, 20)),
    ]


def _transformer():
    """The GPT task on next-token pairs, and its backbone (compiled without a loss: the worker regresses
    its hidden states on seeded targets)."""
    config = {"vocabulary_size": 20, "num_layers": 2, "num_heads": 2, "hidden_dim": 8, "intermediate_dim": 16,
              "max_sequence_length": _STEPS}
    pairs = lambda: keras_models.recurrent.next_token_pairs(_tokens((_STEPS + 1,), vocab=20))  # noqa: E731
    hidden = lambda: (_tokens((_STEPS,), vocab=20), _uniform((_STEPS, 8), seed=1))  # noqa: E731
    t5 = {"vocabulary_size": 20, "num_layers": 2, "num_heads": 2, "hidden_dim": 8, "intermediate_dim": 16,
          "relative_attention_num_buckets": 8, "relative_attention_max_distance": 12}
    t5_hidden = lambda: (_translation_pairs(target_vocab=20)[0], _uniform((_STEPS, 8), seed=1))  # noqa: E731
    whisper_config = {"vocabulary_size": 20, "num_layers": 1, "num_heads": 2, "hidden_dim": 8, "intermediate_dim": 16,
                      "num_mels": 16, "max_encoder_sequence_length": 20, "max_decoder_sequence_length": _STEPS + 1}
    speech = lambda: keras_models.transformers.speech_to_text_pairs(  # noqa: E731
        0.1 * _rng(2).standard_normal((COUNT, 160 * 20)).astype("float32"), 3 + _tokens((_STEPS,), vocab=17, seed=3))
    features = lambda: ([_uniform((20, 16)), _tokens((_STEPS,), vocab=20)], _uniform((_STEPS, 8), seed=1))  # noqa: E731
    return [
        ModelCase("gpt", KERAS, config, hidden, (COUNT, _STEPS, 8)),
        ModelCase("gpt_causal_lm", KERAS, config, pairs, (COUNT, _STEPS, 20)),
        ModelCase("t5", KERAS, t5, t5_hidden, (COUNT, _STEPS, 8)),
        ModelCase("t5_seq2seq_lm", KERAS, t5, lambda: _translation_pairs(target_vocab=20), (COUNT, _STEPS, 20)),
        ModelCase("whisper", KERAS, whisper_config, features, (COUNT, _STEPS, 8)),
        ModelCase("whisper_speech_to_text", KERAS, whisper_config, speech, (COUNT, _STEPS + 1, 20)),
    ]


def _vit():
    """The ViT classifier, and its backbone (compiled without a loss: the worker regresses its 5 tokens)."""
    config = {"input_shape": (8, 8, 1), "patch_size": 4, "num_layers": 1, "num_heads": 2, "hidden_dim": 8,
              "intermediate_dim": 16}
    tokens = lambda: (_uniform((8, 8, 1)), _uniform((5, 8), seed=1))  # noqa: E731
    return [ModelCase("vit", KERAS, config, tokens, (COUNT, 5, 8)), _keras("vit_classifier", (8, 8, 1), **config)]


_IMAGE = (32, 32, 3)  # the smallest input the ResNets and VGGs accept
_CASES = [
    # dense
    _keras("mlp", (8,), hidden_units=(16,)),
    # cnn: widths cut as in tests/cnn/test_builders.py
    _keras("simple_cnn", (16, 16, 1), filters=(4, 8), dense_units=16),
    _keras("lenet5", (32, 32, 1)),
    _keras("alexnet", (67, 67, 3), width_multiplier=0.0625, dense_units=16),
    _keras("vgg16", _IMAGE, width_multiplier=0.0625, dense_units=16),
    _keras("vgg19", _IMAGE, width_multiplier=0.0625, dense_units=16),
    _keras("resnet18", _IMAGE, width_multiplier=0.125),
    _keras("resnet34", _IMAGE, width_multiplier=0.125),
    _keras("resnet50", _IMAGE, width_multiplier=0.125),
    _keras("resnet101", _IMAGE, width_multiplier=0.0625),
    _keras("resnet152", _IMAGE, width_multiplier=0.0625),
    _keras("resnet50v2", _IMAGE, width_multiplier=0.125),
    _keras("resnet101v2", _IMAGE, width_multiplier=0.0625),
    _keras("resnet152v2", _IMAGE, width_multiplier=0.0625),
    _keras("googlenet", _IMAGE, width_multiplier=0.125),
    _keras("inception_v3", (75, 75, 3), width_multiplier=0.125),
    _keras("text_cnn", (12,), inputs=_tokens, vocab_size=50, embedding_dim=8, filters=4, ngram_sizes=(2, 3)),
    _keras("video_cnn", (4, 8, 8, 1), blocks=((4,), (8,)), dense_units=16),
    # classical: trained in Keras
    _keras("linear_svm", (6,)),
    _keras("rff_svm", (6,), num_features=32),
    # classical: trained by scikit-learn, compiled to Keras
    _estimator("decision_tree", _tabular_classes, NUM_CLASSES, _same_probabilities, max_depth=3, random_state=0),
    _estimator("random_forest", _tabular_classes, NUM_CLASSES, _same_probabilities,
               n_estimators=3, max_depth=3, random_state=0),
    _estimator("svm", _tabular_classes, NUM_CLASSES, _same_classes, random_state=0),
    # statistical: fitted by their float64 engines, shipped through to_keras()
    _estimator("linear_regression", _linear_data, 1, _same_predictions),
    _estimator("logistic_regression", _logit_data, 2, _same_probabilities),
    _estimator("multinomial_logistic_regression", lambda: _logit_data(96, classes=3), 3, _same_probabilities),
    # gan
    *[_gan(name) for name in gan_cases.VARIANTS],
    # recurrent
    *_recurrent(),
    # likelihood
    *_likelihood(),
    # transformer
    *_transformer(),
    *_vit(),
    *_bert(),
]
CASES: dict[str, ModelCase] = {case.name: case for case in _CASES}

# The default suite: one small model of every family (and both kinds of classical model).
DEFAULT = ("mlp", "simple_cnn", "dcgan", "linear_svm", "decision_tree", "logistic_regression", "rnn_classifier",
           "vae", "gpt_causal_lm")
