"""The encoder-decoder layers: `TransformerDecoderBlock` (causal self-attention, cross-attention, caches)
and `RelativePositionBias` (T5's buckets), the attention bias of `TransformerBlock`, the GeGLU
feed-forward, serialization, export and argument checks."""

import math

import keras
import numpy as np
import pytest
from model_checks import check_export

from keras_models.layers import FeedForward, RelativePositionBias, TransformerBlock, TransformerDecoderBlock


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


SOURCE_MASK = np.array([[True] * 3 + [False] * 2, [True] * 5])  # row 0: the last two source steps are padding


# -- the decoder block ------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_first, num_key_value_heads, use_bias_layer", [
    (True, None, False), (False, 2, False), (True, 1, True),
])
def test_cached_steps_give_the_outputs_of_the_whole_target(norm_first, num_key_value_heads, use_bias_layer):
    block = TransformerDecoderBlock(4, 16, num_key_value_heads=num_key_value_heads, norm_first=norm_first,
                                    normalization="rms_norm" if norm_first else "layer_norm")
    bias_layer = RelativePositionBias(4, num_buckets=8, max_distance=6, bidirectional=False,
                                      embeddings_initializer="random_normal")
    target, source = _x((2, 7, 16)), _x((2, 5, 12), seed=1)
    bias = bias_layer(target) if use_bias_layer else None
    full = _numpy(block(target, source, encoder_padding_mask=SOURCE_MASK, attention_bias=bias))

    cross_cache = block.cross_attention_cache(source)
    assert tuple(cross_cache.shape) == (2, 2, 5, num_key_value_heads or 4, 4)
    cache = keras.ops.zeros((2, 2, 10, num_key_value_heads or 4, 4))
    prompt_bias = bias_layer(target[:, :3], key_length=10) if use_bias_layer else None
    prefix, cache = block(target[:, :3], encoder_padding_mask=SOURCE_MASK, attention_bias=prompt_bias, cache=cache,
                          cache_index=0, cross_cache=cross_cache)  # a prompt in one pass, no encoder_outputs
    outputs = [_numpy(prefix)]
    for index in range(3, 7):
        step_bias = bias_layer(target[:, :1], key_length=10, start_index=index) if use_bias_layer else None
        output, cache = block(target[:, index:index + 1], encoder_padding_mask=SOURCE_MASK, attention_bias=step_bias,
                              cache=cache, cache_index=index, cross_cache=cross_cache)
        outputs.append(_numpy(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
    np.testing.assert_array_equal(_numpy(cache)[:, :, 7:], 0.0)  # slots after the last step stay empty


def test_self_attention_is_causal_and_cross_attention_sees_the_whole_source():
    block = TransformerDecoderBlock(2, 16)
    target, source = _x((2, 6, 8)), _x((2, 5, 8), seed=1)
    before = _numpy(block(target, source))
    changed = target.copy()
    changed[:, 4:] = _x((2, 2, 8), seed=2)
    np.testing.assert_allclose(_numpy(block(changed, source))[:, :4], before[:, :4], atol=1e-6)
    other_source = source.copy()
    other_source[:, -1] = _x((2, 8), seed=3)  # the last source step reaches every target step
    assert (np.abs(_numpy(block(target, other_source)) - before).max(axis=2) > 1e-4).all()


def test_encoder_padding_mask_hides_padded_source_steps():
    block = TransformerDecoderBlock(2, 16, norm_first=False)
    target, source = _x((2, 4, 8)), _x((2, 5, 8), seed=1)
    masked = _numpy(block(target, source, encoder_padding_mask=SOURCE_MASK))
    noisy = source.copy()
    noisy[0, 3:] = _x((2, 8), seed=4) * 10.0  # row 0's padded steps
    np.testing.assert_allclose(_numpy(block(target, noisy, encoder_padding_mask=SOURCE_MASK)), masked, atol=1e-5)
    # Row 0 as if its source had three steps.
    np.testing.assert_allclose(_numpy(block(target[:1], source[:1, :3])), masked[:1], atol=1e-5)
    # Without the mask the padded steps are read.
    assert np.abs(_numpy(block(target, noisy))[0] - masked[0]).max() > 1e-3


def test_target_padding_mask_hides_padded_keys():
    block = TransformerDecoderBlock(2, 16)
    target, source = _x((1, 5, 8)), _x((1, 3, 8), seed=1)
    mask = np.array([[True, False, True, True, True]])
    masked = _numpy(block(target, source, padding_mask=mask))
    changed = target.copy()
    changed[:, 1] = _x((8,), seed=5)
    np.testing.assert_allclose(_numpy(block(changed, source, padding_mask=mask))[:, 2:], masked[:, 2:], atol=1e-5)


def test_calls_without_a_source_or_cache_index_raise():
    block = TransformerDecoderBlock(2, 16)
    with pytest.raises(ValueError, match="needs a built block"):
        block.cross_attention_cache(_x((1, 3, 8)))
    with pytest.raises(ValueError, match="encoder_outputs or cross_cache"):
        block(_x((1, 2, 8)))
    block(_x((1, 2, 8)), _x((1, 3, 8)))
    with pytest.raises(ValueError, match="cache_index"):
        block(_x((1, 2, 8)), _x((1, 3, 8)), cache=keras.ops.zeros((1, 2, 4, 2, 4)))


# -- relative position bias ----------------------------------------------------------------------------------

def _published_bucket(relative_position, bidirectional, num_buckets, max_distance):
    """T5's bucket of `memory_position - query_position`, written as the paper's released code states it."""
    result = 0
    n = -relative_position
    if bidirectional:
        num_buckets //= 2
        result += int(n < 0) * num_buckets
        n = abs(n)
    else:
        n = max(n, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return result + n
    large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    return result + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional, num_buckets, max_distance", [
    (True, 32, 128), (False, 32, 128), (True, 8, 20), (False, 16, 9),
])
def test_buckets_follow_the_published_formula(bidirectional, num_buckets, max_distance):
    layer = RelativePositionBias(2, num_buckets=num_buckets, max_distance=max_distance, bidirectional=bidirectional)
    buckets = _numpy(layer.buckets(40, 300, start_index=150))  # relative positions -189 ... 149
    expected = [[_published_bucket(key - query, bidirectional, num_buckets, max_distance) for key in range(300)]
                for query in range(150, 190)]
    np.testing.assert_array_equal(buckets, expected)
    assert buckets.min() == 0 and buckets.max() == num_buckets - 1  # every bucket is reachable in this range


def test_t5_bucket_boundaries():
    layer = RelativePositionBias(1)  # T5: 32 buckets, 128 positions, bidirectional
    buckets = _numpy(layer.buckets(1, 400))[0]  # the query at 0, keys after it: the second half
    assert buckets[:8].tolist() == [0] + list(range(17, 24))  # distances 1-7 held exactly
    assert buckets[8] == 24 and buckets[127] == 31 and buckets[128:].tolist() == [31] * 272
    decoder = RelativePositionBias(1, bidirectional=False)
    backward = _numpy(decoder.buckets(1, 400, start_index=399))[0][::-1]  # distances 0 ... 399 back
    assert backward[:16].tolist() == list(range(16)) and backward[127] == 31 and backward[-1] == 31
    assert (_numpy(decoder.buckets(1, 400))[0][1:] == 0).all()  # keys after a causal query: bucket 0


def test_bias_reads_the_table_per_head_and_offsets_by_start_index():
    layer = RelativePositionBias(3, num_buckets=8, max_distance=10, embeddings_initializer="random_normal")
    queries = _x((2, 6, 4))
    bias = _numpy(layer(queries))
    assert bias.shape == (1, 3, 6, 6)
    table, buckets = _numpy(layer.embeddings), _numpy(layer.buckets(6, 6))
    np.testing.assert_allclose(bias[0], np.transpose(table[buckets], (2, 0, 1)), atol=0)
    # Queries 4 and 5 alone, against the six keys: the last rows of the full bias.
    np.testing.assert_allclose(_numpy(layer(queries[:, :2], key_length=6, start_index=4)), bias[:, :, 4:], atol=0)


def test_encoder_block_adds_the_bias_to_its_scores():
    block = TransformerBlock(2, 16, causal=False)
    x = _x((1, 5, 8))
    mask = np.array([[True, True, False, True, True]])
    bias = np.zeros((1, 2, 5, 5), "float32")
    bias[..., 2] = -1e9  # a bias that rules out key 2 is its padding mask
    np.testing.assert_allclose(_numpy(block(x, attention_bias=bias)), _numpy(block(x, padding_mask=mask)), atol=1e-5)
    assert np.abs(_numpy(block(x, attention_bias=bias * 0 + 1.0)) - _numpy(block(x))).max() < 1e-6  # softmax shift
    assert np.abs(_numpy(block(x, attention_bias=_x((1, 2, 5, 5), seed=2))) - _numpy(block(x))).max() > 1e-3


# -- the GeGLU feed-forward ---------------------------------------------------------------------------------

def test_geglu_feed_forward_matches_the_formula():
    layer = FeedForward(6, activation="geglu", use_bias=False)
    x = _x((2, 3, 4))
    output = _numpy(layer(x))
    gate, up, down = (_numpy(layer.gate.kernel), _numpy(layer.up.kernel), _numpy(layer.down.kernel))
    g = x @ gate
    gelu = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3)))
    np.testing.assert_allclose(output, (gelu * (x @ up)) @ down, atol=1e-5)


# -- serialization and export ---------------------------------------------------------------------------------

def _encoder_decoder(name="seq2seq_layers"):
    """A small functional encoder-decoder on the shared layers, the bias computed in the graph."""
    source = keras.Input((5,), dtype="float32", name="source")
    target = keras.Input((4, 8), name="target")
    encoded = keras.layers.Dense(8, name="source_projection")(keras.ops.expand_dims(source, -1))
    encoded = TransformerBlock(2, 16, causal=False, normalization="rms_norm", name="encoder_block")(
        encoded, attention_bias=RelativePositionBias(2, num_buckets=8, max_distance=8, name="encoder_bias")(encoded))
    decoder_bias = RelativePositionBias(2, num_buckets=8, max_distance=8, bidirectional=False, name="decoder_bias")
    x = TransformerDecoderBlock(2, 16, activation="geglu", normalization="rms_norm", use_bias=False,
                                name="decoder_block1")(target, encoded, attention_bias=decoder_bias(target))
    x = TransformerDecoderBlock(2, 12, norm_first=False, dropout=0.1, name="decoder_block2")(x, encoded)
    return keras.Model([source, target], x, name=name)


def test_layers_round_trip_through_a_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    model = _encoder_decoder()
    inputs = [_x((3, 5)), _x((3, 4, 8), seed=1)]
    model.save(tmp_path / "layers.keras")
    loaded = keras.saving.load_model(tmp_path / "layers.keras", safe_mode=True)
    np.testing.assert_allclose(_numpy(loaded(inputs)), _numpy(model(inputs)), atol=1e-6)
    for name in ("encoder_bias", "decoder_bias", "decoder_block1", "decoder_block2"):
        assert loaded.get_layer(name).get_config() == model.get_layer(name).get_config()


@pytest.mark.parametrize("layer", [
    TransformerDecoderBlock(4, 16, head_dim=6, num_key_value_heads=2, activation="geglu", dropout=0.1,
                            normalization="rms_norm", norm_first=False, epsilon=1e-6, use_bias=False,
                            kernel_initializer="he_normal"),
    RelativePositionBias(4, num_buckets=16, max_distance=50, bidirectional=False, embeddings_initializer="zeros"),
], ids=lambda layer: type(layer).__name__)
def test_get_config_holds_every_argument(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


@pytest.mark.slow  # two converters on a three-block graph: about 30 s on a quiet machine
def test_exports_to_tflite_and_onnx_with_equal_outputs(tmp_path):
    keras.utils.set_random_seed(1)
    model = _encoder_decoder()
    results = check_export(model, [_x((2, 5)), _x((2, 4, 8), seed=1)], tmp_path)
    assert results["tflite"].max_abs <= 1e-5 and results["onnx"].max_abs <= 1e-5


# -- arguments ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: TransformerDecoderBlock(4, 16, num_key_value_heads=3), "num_key_value_heads"),
    (lambda: TransformerDecoderBlock(0, 16), "num_heads"),
    (lambda: TransformerDecoderBlock(4, 0), "intermediate_dim"),
    (lambda: TransformerDecoderBlock(4, 16, activation="tanh"), "activation"),
    (lambda: TransformerDecoderBlock(4, 16, normalization="batch_norm"), "normalization"),
    (lambda: TransformerDecoderBlock(4, 16, norm_first="yes"), "norm_first"),
    (lambda: TransformerDecoderBlock(4, 16, dropout=1.5), "dropout"),
    (lambda: RelativePositionBias(0), "num_heads"),
    (lambda: RelativePositionBias(2, num_buckets=3), "num_buckets must be at least 4"),
    (lambda: RelativePositionBias(2, num_buckets=32, max_distance=8), "max_distance must exceed the 8"),
    (lambda: RelativePositionBias(2, bidirectional=None), "bidirectional"),
])
def test_bad_layer_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_decoder_width_must_divide_into_heads():
    with pytest.raises(ValueError, match="hidden_dim=10 must be divisible by num_heads=4"):
        TransformerDecoderBlock(4, 16)(_x((1, 3, 10)), _x((1, 2, 10)))
