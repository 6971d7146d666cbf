"""The families of keras-models, as data: one entry each, read by the registry, the compile policy and docs.

What `keras_models.build(name, **config)` returns depends on the family of `name`:

- a **model**: a `keras.Model` compiled with its loss, metrics and optimizer and the library's jit
  policy (`keras_models.compile_model`), ready for `fit`; `compile=False` returns it uncompiled.
- an **estimator**: an unfitted estimator with scikit-learn's conventions (keyword-only parameters,
  `fit(X, y)` returns the fitted estimator, learned values end in `_`, `sklearn.base.clone` works)
  whose `to_keras()` gives the fitted model as a `keras.Model` for export.

Each entry lists, per kind it builds, the arguments every builder of the family accepts with the same
meaning (a builder may take more). Every model builder of every family takes `name`, `compile` and
`jit_compile` (`None` for the default below, `True`/`False` to force it).

Compile defaults (`jit_compile=None`): whether `fit` compiles the training step, per backend and
device. TensorFlow: XLA on a GPU or TPU; on a CPU-only machine per family, from the measurements of
`benchmarks/xla_vs_default.py` (BENCHMARKS.md, "XLA or not": XLA only where it trained at least 1.10
times as fast as TensorFlow's default executor). JAX: always jitted; Keras' JAX trainer without jit
runs the step op by op, and `run_eagerly=True` is the way to debug. PyTorch: eager; there
`jit_compile=True` means `torch.compile`, which Keras documents as often slower than eager.

The same benchmark measured the transformer block with dropout (x0.14, the transformer family's
figure) and the dense VAE (x0.59, the likelihood family's). Every figure is from the quiet run of
2026-11-30.
"""

from __future__ import annotations

import dataclasses

MODEL = "model"
ESTIMATOR = "estimator"
BACKENDS = ("tensorflow", "jax", "torch")


@dataclasses.dataclass(frozen=True)
class JitDefaults:
    """Whether `fit` compiles the training step when `jit_compile=None`, per backend and device.

    Attributes:
        tensorflow_cpu: XLA on a machine without GPU or TPU (measured per family).
        tensorflow_accelerator: XLA on a GPU or TPU.
        jax: `jax.jit` the step.
        torch: `torch.compile` the step.
    """

    tensorflow_cpu: bool
    tensorflow_accelerator: bool = True
    jax: bool = True
    torch: bool = False

    def value(self, backend: str, accelerator: bool) -> bool:
        """The default on `backend` (a Keras backend name); `False` on backends without a compiled trainer."""
        if backend == "tensorflow":
            return self.tensorflow_accelerator if accelerator else self.tensorflow_cpu
        if backend == "jax":
            return self.jax
        if backend == "torch":
            return self.torch
        return False  # numpy and openvino run no compiled training step


@dataclasses.dataclass(frozen=True)
class Family:
    """One family of models.

    Attributes:
        name: the family name used by `register_model(family=...)` and `list_models(family=...)`.
        module: the module whose import registers the family's builders.
        description: one line.
        builds: for each kind of object the builders return (`MODEL` or `ESTIMATOR`), the arguments its
            builders share.
        returns: what `build` returns, in words, for the documentation.
        jit: the compile defaults.
    """

    name: str
    module: str
    description: str
    builds: dict[str, tuple[str, ...]]
    returns: str
    jit: JitDefaults


# Keyword arguments every Keras-model builder takes; the families add their own shared ones in front.
_MODEL_ARGUMENTS = ("name", "compile", "jit_compile")

_FAMILY_LIST = (
    Family(
        name="dense",
        module="keras_models.dense",
        description="Fully connected networks: the multi-layer perceptron",
        builds={MODEL: ("input_shape", "num_classes", "head", *_MODEL_ARGUMENTS)},
        returns="a keras.Model compiled with its head's loss (softmax, sigmoid or linear), ready for fit(x, y)",
        jit=JitDefaults(tensorflow_cpu=False),  # MLP with dropout: XLA x0.22 on CPU
    ),
    Family(
        name="statistical",
        module="keras_models.statistical",
        description="Linear and logistic regression with statsmodels-grade fits and reports",
        builds={ESTIMATOR: ("fit_intercept",)},
        returns=(
            "an unfitted estimator: fit(X, y) or Class.from_formula(formula, data) fits it exactly "
            "(logistic regression by TensorFlow float64 Newton passes), summary() reports it, "
            "to_keras() exports its predictions"
        ),
        jit=JitDefaults(tensorflow_cpu=False),  # multinomial Logit as a Keras model: XLA x0.96
    ),
    Family(
        name="classical",
        module="keras_models.classical",
        description="Decision trees, random forests and SVMs",
        builds={
            ESTIMATOR: ("task",),
            MODEL: ("input_shape", "num_classes", *_MODEL_ARGUMENTS),
        },
        returns=(
            "decision_tree, random_forest, svm: an unfitted scikit-learn-style estimator (task= and "
            "scikit-learn's parameters) whose to_keras() compiles the fitted model to tensor ops; "
            "linear_svm, rff_svm: a keras.Model compiled with the multiclass hinge loss, ready for fit(x, y)"
        ),
        jit=JitDefaults(tensorflow_cpu=False),  # RBF SVM through random Fourier features: XLA x0.66
    ),
    Family(
        name="cnn",
        module="keras_models.cnn",
        description="Convolutional networks: published architectures, text and video CNNs",
        builds={MODEL: ("input_shape", "num_classes", "head", "include_top", "pooling", *_MODEL_ARGUMENTS)},
        returns=(
            "a keras.Model compiled with its head's loss, ready for fit(x, y); include_top=False gives "
            "a feature extractor (pooled by pooling=) compiled without a loss"
        ),
        jit=JitDefaults(tensorflow_cpu=False),  # conv-BN-ReLU blocks: XLA x0.61 (oneDNN's kernels win)
    ),
    Family(
        name="gan",
        module="keras_models.gan",
        description="Generative adversarial networks trained by fit()",
        builds={MODEL: ("image_shape", "num_classes", "latent_dim", "pixel_range", *_MODEL_ARGUMENTS)},
        returns=(
            "a GAN keras.Model (generator and discriminator, each with its optimizer) compiled with the "
            "variant's losses, ready for fit(images) or fit(images, labels); pix2pix, cyclegan and srgan "
            "fit on (source, target) image pairs"
        ),
        jit=JitDefaults(tensorflow_cpu=True),  # DCGAN generator + discriminator, 16x16: XLA x1.40 (quiet run)
    ),
    Family(
        name="recurrent",
        module="keras_models.recurrent",
        description=("Recurrent networks (SimpleRNN, LSTM, GRU): sequence classifiers, taggers, language models, "
                     "encoder-decoders with attention"),
        builds={MODEL: ("cell", "units", "num_layers", "dropout", "recurrent_dropout", *_MODEL_ARGUMENTS)},
        returns=(
            "a keras.Model compiled with its loss, ready for fit(x, y): rnn_classifier and rnn_tagger with "
            "their head's loss; rnn_language_model and rnn_seq2seq with the next-token cross-entropy "
            "(padding left out), and generate()"
        ),
        jit=JitDefaults(tensorflow_cpu=False),  # LSTM(64), 32 steps: XLA x1.08 (quiet run), below the x1.10 bar
    ),
    Family(
        name="likelihood",
        module="keras_models.likelihood",
        description=("Likelihood-based generative models: variational autoencoders with TFP likelihoods, "
                     "denoising diffusion (DDPM/DDIM), autoregressive PixelCNN (exact likelihood)"),
        builds={MODEL: ("image_shape", "num_classes", "pixel_range", *_MODEL_ARGUMENTS)},
        returns=(
            "a keras.Model compiled with its own loss, ready for fit(x) or fit(x, labels): the VAEs' negative "
            "ELBO, with elbo(), log_likelihood() and generate(); ddpm's denoising loss, with generate() (DDIM "
            "or DDPM, classifier-free guidance) and bits_per_dimension(); pixelcnn's exact negative "
            "log-likelihood, with log_likelihood(), bits_per_dimension() and generate() (method='fast' | 'naive')"
        ),
        jit=JitDefaults(tensorflow_cpu=False),  # dense VAE: XLA x0.59 on CPU
    ),
    Family(
        name="transformer",
        module="keras_models.transformers",
        description=("Transformers: decoders (GPT), encoders (BERT, ViT) and encoder-decoders (T5, Whisper), "
                     "each a backbone and tasks"),
        builds={MODEL: ("num_layers", "num_heads", "hidden_dim", "intermediate_dim", "dropout", "preset",
                        *_MODEL_ARGUMENTS)},
        returns=(
            "backbones (gpt, bert, t5, vit, whisper): a keras.Model from inputs to hidden states, compiled "
            "without a loss; tasks: a keras.Model compiled with its loss, ready for fit(x, y) (gpt_causal_lm, "
            "t5_seq2seq_lm and whisper_speech_to_text with generate())"
        ),
        jit=JitDefaults(tensorflow_cpu=False),  # encoder block with dropout: XLA x0.14 on CPU
    ),
)

FAMILIES: dict[str, Family] = {family.name: family for family in _FAMILY_LIST}


def get_family(name: str) -> Family:
    """The entry of family `name`, or a `ValueError` naming the known families."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown family {name!r}; known families: {sorted(FAMILIES)}.") from None
