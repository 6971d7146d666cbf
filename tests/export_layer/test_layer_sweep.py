"""Every `keras.layers` layer with numeric inference behaviour, through TFLite and ONNX.

Each case is one layer (or activation function) applied to its own small input. Cases of a group are
joined into one model with one input and one output per case, named after the case, so a group costs
one TFLite and one ONNX conversion; a difference names the case by its output, and a conversion that
fails is retried case by case so the error names the layer. Both files run in their real runtimes
(LiteRT, onnxruntime), TFLite with builtin operators only, and must equal Keras to 1e-5 absolute
unless a case says why it needs more.

String and lookup layers (`StringLookup`, `TextVectorization`, `Hashing`, ...) run on the host and
are not exported; `test_every_keras_layer_is_swept_or_named` keeps the
list of what is left out in step with `keras.layers`.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

import export
from model_checks import _BUILTIN_OPERATORS

ATOL = 1e-5


@dataclasses.dataclass
class Case:
    """One layer: `make(*inputs)` applied to inputs of `shapes` (without the batch axis)."""

    name: str
    make: object
    shapes: tuple
    dtypes: tuple = ("float32",)
    atol: float = ATOL
    low: float | None = None  # inputs are drawn uniformly from [low, high); floats without them from N(0, 1)
    high: float | None = None


def case(name, layer, *shapes, **kwargs):
    """A case applying `layer` (a layer, or a callable taking the input tensors) to inputs of `shapes`."""
    return Case(name, layer, shapes, **kwargs)


def _new(cls, *args, **kwargs):
    return getattr(keras.layers, cls)(*args, **kwargs)


def L(cls, *args, **kwargs):  # noqa: N802 - reads as the layer it makes
    """A maker of a fresh `keras.layers.<cls>(*args, **kwargs)` applied to the inputs."""

    def make(*inputs):
        return _new(cls, *args, **kwargs)(inputs[0] if len(inputs) == 1 else list(inputs))

    return make


# Activation functions that take arguments beyond x, with the values the sweep uses.
ACTIVATION_ARGUMENTS = {"threshold": dict(threshold=0.3, default_value=-1.0)}


def _activation(name):
    function = getattr(keras.activations, name)
    arguments = ACTIVATION_ARGUMENTS.get(name, {})
    return lambda x: keras.layers.Activation(lambda t: function(t, **arguments), name=f"act_{name}")(x)


def _two(cls, **kwargs):
    return lambda a, b: _new(cls, **kwargs)([a, b])


def _attention(cls, **kwargs):
    return lambda q, v: _new(cls, **kwargs)([q, v])


def _mha(causal=False, **kwargs):
    def make(q, v):
        return _new("MultiHeadAttention", **kwargs)(q, v, use_causal_mask=causal)

    return make


def _gqa(causal=False, **kwargs):
    def make(q, v):
        return _new("GroupQueryAttention", **kwargs)(q, v, use_causal_mask=causal)

    return make


def _with_statistics(cls, **kwargs):
    """A normalization layer with non-trivial moving statistics and scale, as after training."""

    def make(x):
        layer = _new(cls, **kwargs)
        y = layer(x)
        rng = np.random.default_rng(1)
        for weight in layer.weights:
            if "variance" in weight.path or "gamma" in weight.path:
                weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
            else:
                weight.assign(rng.normal(size=weight.shape).astype("float32"))
        return y

    return make


def _adapted_normalization(x):
    layer = _new("Normalization", axis=-1, mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0])
    return layer(x)


def _discretization(x):
    return keras.ops.cast(_new("Discretization", bin_boundaries=[-1.0, 0.0, 0.5, 1.5])(x), "float32")


def _category_encoding(mode):
    return lambda x: _new("CategoryEncoding", num_tokens=6, output_mode=mode)(x)


def _rnn(cls, **kwargs):
    return lambda x: L(cls, 5, **kwargs)(x)


def _cell_rnn(cell):
    return lambda x: _new("RNN", getattr(keras.layers, cell)(4))(x)


def _stacked_cells(x):
    return _new("RNN", _new("StackedRNNCells", [_new("LSTMCell", 4), _new("GRUCell", 3)]))(x)


def _time_distributed(x):
    return _new("TimeDistributed", _new("Dense", 3))(x)


def _time_distributed_conv(x):
    return _new("TimeDistributed", _new("Conv2D", 2, 3))(x)


def _bidirectional(merge_mode):
    return lambda x: _new("Bidirectional", _new("LSTM", 3, return_sequences=True), merge_mode=merge_mode)(x)


def _spectral(x):
    return _new("SpectralNormalization", _new("Dense", 4))(x)


def _masked_lstm(x):
    return _new("LSTM", 3)(_new("Masking", mask_value=0.0)(x))


def _embedding(x):
    return _new("Embedding", 20, 4)(x)


def _reversible_embedding(x):
    layer = _new("ReversibleEmbedding", 20, 4)
    h = layer(x)
    return layer(h, reverse=True)


def _mel_spectrogram(x):
    return _new("MelSpectrogram", fft_length=32, sequence_stride=16, num_mel_bins=8)(x)


def _integer_lookup(x):
    return _new("IntegerLookup", vocabulary=[3, 5, 7])(x)


def _pipeline(x):
    return _new("Pipeline", [_new("Rescaling", 0.5, offset=1.0), _new("CenterCrop", 4, 4)])(x)


# --------------------------------------------------------------------------------------------------
# The cases, by group: one model, one TFLite and one ONNX file per group.

IMAGE = (8, 8, 3)
SEQ = (10, 3)
VOLUME = (6, 6, 6, 2)

GROUPS = {
    "pooling": [
        case("MaxPooling1D", L("MaxPooling1D", 2), SEQ),
        case("MaxPooling1D_same_stride1", L("MaxPooling1D", 3, strides=1, padding="same"), SEQ),
        case("AveragePooling1D", L("AveragePooling1D", 2), SEQ),
        case("AveragePooling1D_same", L("AveragePooling1D", 3, strides=2, padding="same"), SEQ),
        case("MaxPooling2D", L("MaxPooling2D", 2), IMAGE),
        case("MaxPooling2D_same", L("MaxPooling2D", 3, strides=2, padding="same"), IMAGE),
        case("AveragePooling2D", L("AveragePooling2D", 2), IMAGE),
        case("AveragePooling2D_same", L("AveragePooling2D", 3, strides=2, padding="same"), IMAGE),
        case("MaxPooling3D", L("MaxPooling3D", 2), VOLUME),
        case("MaxPooling3D_same", L("MaxPooling3D", 3, strides=2, padding="same"), VOLUME),
        case("MaxPooling3D_overlap", L("MaxPooling3D", (3, 2, 2), strides=(1, 2, 1)), VOLUME),
        case("AveragePooling3D", L("AveragePooling3D", 2), VOLUME),
        case("AveragePooling3D_same", L("AveragePooling3D", 3, strides=2, padding="same"), VOLUME),
        case("AveragePooling3D_overlap", L("AveragePooling3D", (2, 3, 2), strides=(2, 1, 1)), VOLUME),
        case("GlobalMaxPooling1D", L("GlobalMaxPooling1D"), SEQ),
        case("GlobalAveragePooling1D", L("GlobalAveragePooling1D", keepdims=True), SEQ),
        case("GlobalMaxPooling2D", L("GlobalMaxPooling2D"), IMAGE),
        case("GlobalAveragePooling2D", L("GlobalAveragePooling2D", keepdims=True), IMAGE),
        case("GlobalMaxPooling3D", L("GlobalMaxPooling3D"), VOLUME),
        case("GlobalAveragePooling3D", L("GlobalAveragePooling3D"), VOLUME),
        case("AdaptiveMaxPooling1D", L("AdaptiveMaxPooling1D", 4), SEQ),
        case("AdaptiveAveragePooling1D", L("AdaptiveAveragePooling1D", 4), SEQ),
        case("AdaptiveMaxPooling2D", L("AdaptiveMaxPooling2D", (3, 5)), IMAGE),
        case("AdaptiveAveragePooling2D", L("AdaptiveAveragePooling2D", (3, 5)), IMAGE),
        case("AdaptiveMaxPooling3D", L("AdaptiveMaxPooling3D", (2, 4, 3)), VOLUME),
        case("AdaptiveAveragePooling3D", L("AdaptiveAveragePooling3D", (2, 4, 3)), VOLUME),
    ],
    "convolution": [
        case("Conv1D", L("Conv1D", 4, 3), SEQ),
        case("Conv1D_causal_dilated", L("Conv1D", 4, 3, padding="causal", dilation_rate=2), SEQ),
        case("Conv1D_strided_same", L("Conv1D", 4, 3, strides=2, padding="same"), SEQ),
        case("Conv2D", L("Conv2D", 4, 3), IMAGE),
        case("Conv2D_strided_same", L("Conv2D", 4, 3, strides=2, padding="same"), IMAGE),
        case("Conv2D_dilated", L("Conv2D", 4, 3, dilation_rate=2, padding="same"), IMAGE),
        case("Conv3D", L("Conv3D", 4, 3), VOLUME),
        case("Conv3D_strided_same", L("Conv3D", 4, 3, strides=2, padding="same"), VOLUME),
        case("DepthwiseConv1D", L("DepthwiseConv1D", 3, depth_multiplier=2), SEQ),
        case("DepthwiseConv2D", L("DepthwiseConv2D", 3, depth_multiplier=2, padding="same"), IMAGE),
        case("DepthwiseConv2D_strided", L("DepthwiseConv2D", 3, strides=2), IMAGE),
        case("SeparableConv1D", L("SeparableConv1D", 4, 3, depth_multiplier=2), SEQ),
        case("SeparableConv2D", L("SeparableConv2D", 4, 3, padding="same"), IMAGE),
        case("Conv1DTranspose", L("Conv1DTranspose", 4, 3, strides=2), SEQ),
        case("Conv1DTranspose_same", L("Conv1DTranspose", 4, 3, strides=2, padding="same"), SEQ),
        case("Conv2DTranspose", L("Conv2DTranspose", 4, 3, strides=2), IMAGE),
        case("Conv2DTranspose_same", L("Conv2DTranspose", 4, 3, strides=2, padding="same"), IMAGE),
        case("Conv3DTranspose", L("Conv3DTranspose", 4, 3, strides=2), VOLUME),
        case("Conv3DTranspose_same", L("Conv3DTranspose", 4, 3, strides=2, padding="same"), VOLUME),
    ],
    "grouped_convolution": [
        case("Conv1D_groups", L("Conv1D", 4, 3, groups=2), (10, 4)),
        case("Conv2D_groups", L("Conv2D", 6, 3, groups=3, padding="same"), (8, 8, 6)),
        case("Conv2D_groups_strided", L("Conv2D", 4, 3, strides=2, groups=2), (8, 8, 4)),
        case("Conv3D_groups", L("Conv3D", 4, 3, groups=2), (5, 5, 5, 4)),
    ],
    "resizing": [
        case("UpSampling1D", L("UpSampling1D", 2), SEQ),
        case("UpSampling2D_nearest", L("UpSampling2D", 2), IMAGE),
        case("UpSampling2D_bilinear", L("UpSampling2D", (2, 3), interpolation="bilinear"), IMAGE),
        case("UpSampling3D", L("UpSampling3D", 2), VOLUME),
        case("Resizing_nearest", L("Resizing", 12, 5, interpolation="nearest"), IMAGE),
        case("Resizing_bilinear", L("Resizing", 12, 5), IMAGE),
        case("Resizing_bilinear_down", L("Resizing", 5, 3), IMAGE),
        case("Resizing_crop_to_aspect_ratio", L("Resizing", 6, 4, crop_to_aspect_ratio=True), IMAGE),
        case("Resizing_pad_to_aspect_ratio", L("Resizing", 6, 4, pad_to_aspect_ratio=True), IMAGE),
        case("Resizing_bicubic", L("Resizing", 12, 5, interpolation="bicubic"), IMAGE),
        case("Resizing_lanczos3", L("Resizing", 12, 5, interpolation="lanczos3"), IMAGE),
        case("Resizing_lanczos5", L("Resizing", 12, 5, interpolation="lanczos5"), IMAGE),
        case("Resizing_area", L("Resizing", 4, 4, interpolation="area"), IMAGE),
        case("Resizing_bilinear_antialias", L("Resizing", 5, 3, antialias=True), IMAGE),
        case("Resizing_bicubic_antialias", L("Resizing", 5, 3, interpolation="bicubic", antialias=True), IMAGE),
        case("CenterCrop", L("CenterCrop", 5, 4), IMAGE),
    ],
    "cropping_padding_reshaping": [
        case("Cropping1D", L("Cropping1D", (1, 2)), SEQ),
        case("Cropping2D", L("Cropping2D", ((1, 2), (0, 3))), IMAGE),
        case("Cropping3D", L("Cropping3D", 1), VOLUME),
        case("ZeroPadding1D", L("ZeroPadding1D", (1, 2)), SEQ),
        case("ZeroPadding2D", L("ZeroPadding2D", ((1, 2), (0, 3))), IMAGE),
        case("ZeroPadding3D", L("ZeroPadding3D", 1), VOLUME),
        case("Flatten", L("Flatten"), IMAGE),
        case("Reshape", L("Reshape", (4, 48)), IMAGE),
        case("Permute", L("Permute", (3, 1, 2)), IMAGE),
        case("RepeatVector", L("RepeatVector", 3), (5,)),
        case("Identity", L("Identity"), IMAGE),
    ],
    "normalization": [
        case("BatchNormalization", _with_statistics("BatchNormalization"), IMAGE),
        case("BatchNormalization_axis1", _with_statistics("BatchNormalization", axis=1), SEQ),
        case("LayerNormalization", _with_statistics("LayerNormalization"), SEQ),
        case("GroupNormalization", _with_statistics("GroupNormalization", groups=2), (6, 6, 4)),
        case("RMSNormalization", L("RMSNormalization"), SEQ),
        case("UnitNormalization", L("UnitNormalization"), SEQ),
        case("SpectralNormalization", _spectral, SEQ),
        case("Normalization", _adapted_normalization, SEQ),
        case("Rescaling", L("Rescaling", 1 / 127.5, offset=-1.0), IMAGE),
        case("Discretization", _discretization, SEQ),
        case("CategoryEncoding_one_hot", _category_encoding("one_hot"), (1,), dtypes=("int32",), low=0, high=6),
        case("CategoryEncoding_multi_hot", _category_encoding("multi_hot"), (4,), dtypes=("int32",), low=0, high=6),
        case("CategoryEncoding_count", _category_encoding("count"), (4,), dtypes=("int32",), low=0, high=6),
    ],
    "attention": [
        case("Attention", _attention("Attention"), (5, 8), (7, 8)),
        case("Attention_scaled_concat", _attention("Attention", use_scale=True, score_mode="concat"), (5, 8), (7, 8)),
        case("AdditiveAttention", _attention("AdditiveAttention"), (5, 8), (7, 8)),
        case("MultiHeadAttention", _mha(num_heads=2, key_dim=4), (5, 8), (7, 8)),
        case("MultiHeadAttention_causal", _mha(causal=True, num_heads=2, key_dim=4), (6, 8), (6, 8)),
        case("GroupQueryAttention", _gqa(head_dim=4, num_query_heads=4, num_key_value_heads=2), (5, 8), (7, 8)),
        case("GroupQueryAttention_causal",
             _gqa(causal=True, head_dim=4, num_query_heads=4, num_key_value_heads=2), (6, 8), (6, 8)),
    ],
    "merging": [
        case("Add", _two("Add"), SEQ, SEQ),
        case("Subtract", _two("Subtract"), SEQ, SEQ),
        case("Multiply", _two("Multiply"), SEQ, SEQ),
        case("Average", _two("Average"), SEQ, SEQ),
        case("Maximum", _two("Maximum"), SEQ, SEQ),
        case("Minimum", _two("Minimum"), SEQ, SEQ),
        case("Concatenate", _two("Concatenate", axis=1), SEQ, SEQ),
        case("Dot", _two("Dot", axes=2), SEQ, SEQ),
        case("Dot_normalized", _two("Dot", axes=1, normalize=True), SEQ, SEQ),
    ],
    "core_and_activation_layers": [
        case("Dense", L("Dense", 4), SEQ),
        case("EinsumDense", L("EinsumDense", "abc,cd->abd", output_shape=(None, 4), bias_axes="d"), SEQ),
        case("Embedding", _embedding, (6,), dtypes=("int32",), low=0, high=20),
        case("ReversibleEmbedding", _reversible_embedding, (6,), dtypes=("int32",), low=0, high=20),
        case("Activation", L("Activation", "tanh"), SEQ),
        case("ELU", L("ELU", 0.7), SEQ),
        case("LeakyReLU", L("LeakyReLU", 0.2), SEQ),
        case("PReLU", L("PReLU", alpha_initializer=keras.initializers.Constant(0.3)), SEQ),
        case("ReLU", L("ReLU", max_value=1.0, negative_slope=0.1, threshold=0.5), SEQ),
        case("Softmax", L("Softmax", axis=1), SEQ),
        case("Dropout", L("Dropout", 0.5), SEQ),
        case("AlphaDropout", L("AlphaDropout", 0.5), SEQ),
        case("GaussianDropout", L("GaussianDropout", 0.5), SEQ),
        case("GaussianNoise", L("GaussianNoise", 0.5), SEQ),
        case("SpatialDropout1D", L("SpatialDropout1D", 0.5), SEQ),
        case("SpatialDropout2D", L("SpatialDropout2D", 0.5), IMAGE),
        case("SpatialDropout3D", L("SpatialDropout3D", 0.5), VOLUME),
        case("ActivityRegularization", L("ActivityRegularization", l1=0.1), SEQ),
    ],
    "activation_functions": [
        case(f"activations.{name}", _activation(name), (10, 4))
        for name in ("celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
                     "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
                     "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
                     "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
                     "tanh_shrink", "threshold")
    ],
    "recurrent": [
        case("LSTM", _rnn("LSTM"), (4, 3)),
        case("GRU", _rnn("GRU", return_sequences=True), (4, 3)),
        case("SimpleRNN", _rnn("SimpleRNN", go_backwards=True), (4, 3)),
        case("RNN_LSTMCell", _cell_rnn("LSTMCell"), (4, 3)),
        case("RNN_GRUCell", _cell_rnn("GRUCell"), (4, 3)),
        case("RNN_SimpleRNNCell", _cell_rnn("SimpleRNNCell"), (4, 3)),
        case("Bidirectional_concat", _bidirectional("concat"), (4, 3)),
        case("Bidirectional_ave", _bidirectional("ave"), (4, 3)),
        case("Masking_LSTM", _masked_lstm, (4, 3)),
        case("TimeDistributed", _time_distributed, (4, 3)),
    ],
    # Apart from the layers above, whose ONNX export can take the native recurrent operators: these
    # (and any recurrent layer in the same model) are unrolled in both formats.
    "convolutional_recurrent": [
        case("TimeDistributed_Conv2D", _time_distributed_conv, (3, 5, 5, 2)),
        case("StackedRNNCells", _stacked_cells, (4, 3)),
        case("ConvLSTM1D", lambda x: _new("ConvLSTM1D", 2, 3)(x), (3, 6, 2)),
        case("ConvLSTM2D", lambda x: _new("ConvLSTM2D", 2, 3, return_sequences=True)(x), (3, 5, 5, 2)),
        case("ConvLSTM3D", lambda x: _new("ConvLSTM3D", 2, 2)(x), (3, 4, 4, 4, 1)),
    ],

    "signal_and_image_adjustment": [
        case("STFTSpectrogram", L("STFTSpectrogram", frame_length=16, frame_step=8, fft_length=16), (64, 1)),
        case("STFTSpectrogram_magnitude", L("STFTSpectrogram", mode="magnitude", frame_length=16, frame_step=8),
             (64, 1)),
        # Decibels: a power from a 32-term DFT sum carries up to 2 * 32 float32 epsilons of relative
        # error (the square doubles it), and 10 * log10 turns relative error r into 10 / ln(10) * r dB.
        case("MelSpectrogram", _mel_spectrogram, (128,),
             atol=10 / np.log(10) * 2 * 32 * float(np.finfo(np.float32).eps)),
        case("AutoContrast", L("AutoContrast", value_range=(0, 255)), IMAGE, low=0, high=255),
        case("Equalization", L("Equalization", value_range=(0, 255)), IMAGE, low=0, high=255),
        case("ContrastLimitedAdaptiveHistogramEqualization",
             L("ContrastLimitedAdaptiveHistogramEqualization", value_range=(0, 255)), IMAGE, low=0, high=255),
        case("Lambda", L("Lambda", lambda t: keras.ops.sin(t) * 2.0), SEQ),
    ],
}

# Random augmentation: identity at inference (Keras' own behaviour with training=False).
AUGMENTATION = [
    ("RandomBrightness", dict(factor=0.2)), ("RandomColorDegeneration", dict(factor=0.5)),
    ("RandomColorJitter", dict(brightness_factor=0.2)), ("RandomContrast", dict(factor=0.2)),
    ("RandomCrop", dict(height=8, width=8)), ("RandomElasticTransform", dict()), ("RandomErasing", dict()),
    ("RandomFlip", dict()), ("RandomGaussianBlur", dict()), ("RandomGrayscale", dict()),
    ("RandomHue", dict(factor=0.2)), ("RandomInvert", dict()), ("RandomPerspective", dict()),
    ("RandomPosterization", dict(factor=(1, 4))), ("RandomRotation", dict(factor=0.2)),
    ("RandomSaturation", dict(factor=0.5)), ("RandomSharpness", dict(factor=0.5)),
    ("RandomShear", dict(x_factor=0.2)), ("RandomTranslation", dict(height_factor=0.2, width_factor=0.2)),
    ("RandomZoom", dict(height_factor=0.2)), ("AugMix", dict()), ("CutMix", dict()), ("MixUp", dict()),
    ("RandAugment", dict()), ("Solarization", dict(addition_factor=0.2, threshold_factor=0.2)),
]
GROUPS["augmentation"] = [case(name, L(name, **kwargs), IMAGE) for name, kwargs in AUGMENTATION] + [
    case("Pipeline", _pipeline, IMAGE),
]


# --------------------------------------------------------------------------------------------------
# Models and checks


def _tensor_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def sample_inputs(cases, batch=2, seed=0) -> list[np.ndarray]:
    """One array per input of `cases`, in order: normal floats, or integers in the case's range."""
    rng = np.random.default_rng(seed)
    arrays = []
    for c in cases:
        for shape, dtype in zip(c.shapes, c.dtypes * len(c.shapes) if len(c.dtypes) == 1 else c.dtypes):
            if dtype.startswith("int"):
                arrays.append(rng.integers(c.low, c.high, size=(batch, *shape)).astype(dtype))
            elif c.low is not None:
                arrays.append(rng.uniform(c.low, c.high, size=(batch, *shape)).astype(dtype))
            else:
                arrays.append(rng.normal(size=(batch, *shape)).astype(dtype))
    return arrays


def build_model(cases, name) -> keras.Model:
    """One model holding every case: each case its own inputs and one output named after it."""
    keras.utils.set_random_seed(0)
    inputs, outputs = [], []
    for c in cases:
        dtypes = c.dtypes * len(c.shapes) if len(c.dtypes) == 1 else c.dtypes
        own = [keras.Input(shape, dtype=dtype, name=f"{_tensor_name(c.name)}_in{i}")
               for i, (shape, dtype) in enumerate(zip(c.shapes, dtypes))]
        inputs += own
        outputs.append(keras.layers.Identity(name=_tensor_name(c.name))(c.make(*own)))
    return keras.Model(inputs, outputs, name=name)


def export_differences(model, cases, x, path, fmt) -> dict[str, float]:
    """Exports `model` to `fmt`, runs it and returns each case's largest absolute difference to Keras."""
    if fmt == "tflite":
        report = export.to_tflite(model, path.with_suffix(".tflite"))
        not_builtin = sorted(set(report.operators) - _BUILTIN_OPERATORS)
        assert not not_builtin, f"{model.name}: non-builtin TFLite operators {not_builtin}"
    else:
        report = export.to_onnx(model, path.with_suffix(".onnx"))
    result = export.verify(model, report.path, x)
    return {c.name: out["max_abs"] for c, out in zip(cases, result.per_output)}


def _failing_case(cases, fmt, tmp_path):
    """The first case that fails to export alone, and its error (a group's conversion failed)."""
    for c in cases:
        model = build_model([c], _tensor_name(c.name))
        try:
            export_differences(model, [c], sample_inputs([c]), tmp_path / model.name, fmt)
        except Exception as error:  # noqa: BLE001 - reported with the case's name
            return c.name, error
    return None, None


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_layers_export_equal_to_keras(group, fmt, tmp_path):
    cases = list(GROUPS[group])
    model = build_model(cases, group)
    x = sample_inputs(cases)
    try:
        differences = export_differences(model, cases, x, tmp_path / group, fmt)
    except Exception as error:
        name, single = _failing_case(cases, fmt, tmp_path)
        if name is not None:
            raise AssertionError(f"{name} does not export to {fmt}: {single}") from single
        raise
    too_far = {c.name: differences[c.name] for c in cases if not differences[c.name] <= c.atol}
    assert not too_far, f"{fmt} differs from Keras beyond tolerance for {too_far}"


# --------------------------------------------------------------------------------------------------
# What runs beside the exported file, and why. The README's table of layers says the same.

# Layers run on the host, beside the exported file: their tables and string handling are no tensor
# program. The export names the op and the layer.
HOST_SIDE = {
    "StringLookup": "string vocabulary table",
    "IntegerLookup": "vocabulary hash table (LookupTableFindV2 is a Flex op; tf2onnx writes no table)",
    "TextVectorization": "string splitting and vocabulary table",
    "Hashing": "string hashing (FarmHash / SipHash are Flex ops)",
    "HashedCrossing": "feature crossing by string hashing",
}

# Classes of keras.layers that are no layer with numeric inference behaviour of their own, or belong
# to another backend.
NOT_APPLICABLE = {
    "Layer": "base class", "Wrapper": "base class", "InputLayer": "the model's input", "Input": "a function",
    "InputSpec": "not a layer", "RNN": "covered through its cells", "MaxNumBoundingBoxes": "bounding boxes only",
    "TFSMLayer": "wraps a SavedModel: exports as that graph does", "JaxLayer": "JAX backend only",
    "FlaxLayer": "JAX backend only", "TorchModuleWrapper": "PyTorch backend only",
}


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_lookup_layers_are_host_side(fmt, tmp_path):
    lookup = case("IntegerLookup", _integer_lookup, (4,), dtypes=("int32",), low=0, high=9)
    model = build_model([lookup], "integer_lookup")
    expected = export.FlexOpsError if fmt == "tflite" else export.ExportError
    with pytest.raises(expected, match="LookupTable|onnxruntime"):
        export_differences(model, [lookup], sample_inputs([lookup]), tmp_path / "lookup", fmt)


def test_every_keras_layer_is_swept_or_named():
    """Fails when Keras adds a layer the sweep neither covers nor lists as host-side or inapplicable."""
    swept = set()
    for group, cases in GROUPS.items():
        swept |= {type(layer) for layer in build_model(cases, group)._flatten_layers()}
    swept |= {keras.layers.RNN}
    missing = []
    for name in dir(keras.layers):
        value = getattr(keras.layers, name)
        if not (isinstance(value, type) and issubclass(value, keras.layers.Layer)):
            continue
        if value not in swept and name not in HOST_SIDE and name not in NOT_APPLICABLE:
            missing.append(name)
    assert not missing, f"keras.layers without a sweep case or a reason: {missing}"


def test_rewrites_are_undone_after_an_error():
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn as backend_nn

    from export.rewrites import rewritten_layers

    model = build_model(GROUPS["augmentation"][:2], "augmentation_pair")
    generators = [v for layer in model._flatten_layers() for v in vars(layer).values()
                  if isinstance(v, keras.random.SeedGenerator)]
    before = (tf.nn.max_pool, tf.nn.pool, tf.image.resize, backend_nn.conv)
    with pytest.raises(RuntimeError, match="inside"):
        with rewritten_layers(model, "onnx"):
            assert tf.nn.max_pool is not before[0] and tf.image.resize is not before[2]
            raise RuntimeError("inside")
    assert (tf.nn.max_pool, tf.nn.pool, tf.image.resize, backend_nn.conv) == before
    assert generators and all("next" not in vars(g) for g in generators)
    with pytest.raises(ValueError, match="target"):
        with rewritten_layers(model, "coreml"):
            pass
