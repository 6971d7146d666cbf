"""The shared transformer layers: masks, the key/value cache, rotary and sinusoidal positions, RMSNorm,
grouped-query attention, the feed-forward variants, serialization and argument checks."""

import keras
import numpy as np
import pytest

from keras_models.layers import (
    CachedMultiHeadAttention,
    FeedForward,
    PositionEmbedding,
    ReversibleEmbedding,
    RMSNorm,
    RotaryEmbedding,
    SinusoidalPositionEmbedding,
    TransformerBlock,
)

RNG = np.random.default_rng(0)


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# -- masks ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_first", [True, False])
def test_causal_block_leaks_nothing_from_the_future(norm_first):
    block = TransformerBlock(num_heads=2, intermediate_dim=16, norm_first=norm_first)
    x = _x((2, 6, 8))
    changed = x.copy()
    changed[:, 4:] = _x((2, 2, 8), seed=1)  # new steps 4 and 5
    before, after = _numpy(block(x)), _numpy(block(changed))
    np.testing.assert_allclose(after[:, :4], before[:, :4], atol=1e-6)
    assert np.abs(after[:, 4:] - before[:, 4:]).max() > 1e-3  # the changed steps do change


def test_encoder_block_sees_the_future_and_padding_hides_steps():
    block = TransformerBlock(num_heads=2, intermediate_dim=16, causal=False)
    x = _x((2, 6, 8))
    changed = x.copy()
    changed[:, 4:] = _x((2, 2, 8), seed=1)
    assert np.abs(_numpy(block(changed))[:, :4] - _numpy(block(x))[:, :4]).max() > 1e-3  # not causal
    padding_mask = np.array([[True] * 4 + [False] * 2] * 2)
    padded = _numpy(block(x, padding_mask=padding_mask))[:, :4]
    np.testing.assert_allclose(_numpy(block(changed, padding_mask=padding_mask))[:, :4], padded, atol=1e-6)
    np.testing.assert_allclose(_numpy(block(x[:, :4])), padded, atol=1e-5)  # as if the padding were not there


# -- the key/value cache -------------------------------------------------------------------------------

@pytest.mark.parametrize("num_key_value_heads, rotary", [(None, None), (2, 10000.0), (1, 500.0)])
def test_cached_steps_give_the_outputs_of_the_whole_sequence(num_key_value_heads, rotary):
    block = TransformerBlock(num_heads=4, intermediate_dim=16, num_key_value_heads=num_key_value_heads,
                             rotary_max_wavelength=rotary)
    x = _x((2, 7, 16))
    full = _numpy(block(x))
    kv_heads = num_key_value_heads or 4
    cache = keras.ops.zeros((2, 2, 10, kv_heads, 4))
    prefix, cache = block(x[:, :3], cache=cache, cache_index=0)  # a prompt in one pass
    outputs = [_numpy(prefix)]
    for index in range(3, 7):
        output, cache = block(x[:, index:index + 1], cache=cache, cache_index=index)
        outputs.append(_numpy(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)
    cached = _numpy(cache)
    assert (np.abs(cached[:, :, :7]).sum(axis=(3, 4)) > 0).all()  # every step's keys and values written
    np.testing.assert_array_equal(cached[:, :, 7:], 0.0)  # slots after the last step stay empty


def test_static_cache_attends_to_an_encoded_source():
    attention = CachedMultiHeadAttention(num_heads=2, head_dim=4)
    query, source = _x((2, 3, 8)), _x((2, 5, 6), seed=1)
    full = _numpy(attention(query, source))
    keys = keras.ops.reshape(attention.key_dense(source), (2, 5, 2, 4))
    values = keras.ops.reshape(attention.value_dense(source), (2, 5, 2, 4))
    output, cache = attention(query, cache=keras.ops.stack([keys, values], axis=1))
    np.testing.assert_allclose(_numpy(output), full, atol=1e-6)
    assert _numpy(cache).shape == (2, 2, 5, 2, 4)


# -- grouped-query attention, bias and the dropout path -------------------------------------------------

def _copy_projections(source, target, groups=1):
    """`target` gets `source`'s projections; its key/value projections get `source`'s heads `0, groups,
    2 * groups, ...` (grouped-query attention with those heads is multi-head attention)."""
    for name in ("query_dense", "output_dense"):
        getattr(target, name).set_weights(getattr(source, name).get_weights())
    head_dim = source.head_dim
    for name in ("key_dense", "value_dense"):
        kernel, bias = getattr(source, name).get_weights()
        heads = kernel.shape[1] // head_dim
        kept = np.concatenate([np.arange(h * head_dim, (h + 1) * head_dim) for h in range(0, heads, groups)])
        getattr(target, name).set_weights([kernel[:, kept], bias[kept]])


def test_grouped_query_attention_with_all_heads_is_multi_head_attention():
    x = _x((2, 5, 8))
    mha = CachedMultiHeadAttention(num_heads=4, head_dim=2)
    gqa = CachedMultiHeadAttention(num_heads=4, head_dim=2, num_key_value_heads=4)
    mha(x), gqa(x)
    _copy_projections(mha, gqa)
    np.testing.assert_allclose(_numpy(gqa(x, use_causal_mask=True)), _numpy(mha(x, use_causal_mask=True)), atol=1e-6)


def test_grouped_query_heads_share_keys_and_values_in_groups():
    x = _x((2, 5, 8))
    mha = CachedMultiHeadAttention(num_heads=4, head_dim=2)
    mha(x)
    for layer in (mha.key_dense, mha.value_dense):  # heads (0, 1) share keys and values, so do (2, 3)
        kernel, bias = layer.get_weights()
        kernel[:, 2:4], kernel[:, 6:8], bias[2:4], bias[6:8] = kernel[:, 0:2], kernel[:, 4:6], bias[0:2], bias[4:6]
        layer.set_weights([kernel, bias])
    gqa = CachedMultiHeadAttention(num_heads=4, head_dim=2, num_key_value_heads=2)
    gqa(x)
    _copy_projections(mha, gqa, groups=2)
    assert gqa.key_dense.kernel.shape == (8, 4)
    np.testing.assert_allclose(_numpy(gqa(x)), _numpy(mha(x)), atol=1e-6)


def test_fused_attention_equals_the_explicit_softmax_with_mask_and_bias():
    attention = CachedMultiHeadAttention(num_heads=2, head_dim=4, dropout=0.5)
    attention(_x((1, 3, 8)))
    q, k, v = _x((2, 3, 2, 4)), _x((2, 5, 2, 4), seed=1), _x((2, 5, 2, 4), seed=2)
    mask = RNG.random((2, 1, 3, 5)) > 0.3
    mask[..., 0] = True
    bias = _x((1, 2, 3, 5), seed=3)
    fused = attention._attend(q, k, v, mask, bias, False, training=False)
    explicit = attention._attend_with_dropout(q, k, v, mask, bias, training=False)
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / 2.0 + bias
    scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = np.einsum("bhqk,bkhd->bqhd", weights, v)
    np.testing.assert_allclose(_numpy(fused), expected, atol=1e-5)
    np.testing.assert_allclose(_numpy(explicit), expected, atol=1e-5)
    # One query step (a decode step) goes through products and sums in the keys' own layout.
    one = attention._attend(q[:, :1], k, v, mask[:, :, :1], bias[:, :, :1], False, training=False)
    np.testing.assert_allclose(_numpy(attention._attend_one_query(q[:, :1], k, v, mask[:, :, :1], bias[:, :, :1])),
                               expected[:, :1], atol=1e-5)
    np.testing.assert_allclose(_numpy(one), expected[:, :1], atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_a_one_query_step_with_grouped_heads_is_as_accurate_as_the_fused_attention(dtype):
    # On TensorFlow one query step sums products in the cache's layout (`_attend_one_query`); Keras'
    # fused attention is the reference for how close to exact a step must be at each precision.
    attention = CachedMultiHeadAttention(num_heads=4, head_dim=8, num_key_value_heads=2, dtype=dtype)
    attention(_x((1, 3, 16)))
    compute = attention.compute_dtype
    q, k, v = (keras.ops.cast(_x(shape, seed), compute) for shape, seed in
               (((2, 1, 4, 8), 4), ((2, 9, 2, 8), 5), ((2, 9, 2, 8), 6)))
    mask = np.ones((2, 1, 1, 9), bool)
    mask[0, ..., 6:] = False  # cache slots not written yet
    bias = _x((1, 4, 1, 9), seed=7)
    step = attention._attend(q, k, v, mask, bias, False, training=False)
    repeated_k, repeated_v = (keras.ops.repeat(t, 2, axis=2) for t in (k, v))
    fused = keras.ops.dot_product_attention(q, repeated_k, repeated_v, bias=keras.ops.cast(bias, compute),
                                            mask=mask)
    q64, k64, v64 = (_numpy(keras.ops.cast(t, "float32")).astype(np.float64) for t in (q, repeated_k, repeated_v))
    scores = np.einsum("bqhd,bkhd->bhqk", q64, k64) / np.sqrt(8.0) + bias
    scores = np.where(mask, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    exact = np.einsum("bhqk,bkhd->bqhd", weights / weights.sum(-1, keepdims=True), v64)
    assert tuple(step.shape) == (2, 1, 4, 8) and keras.backend.standardize_dtype(step.dtype) == compute
    error = np.abs(_numpy(keras.ops.cast(step, "float32")) - exact).max()
    fused_error = np.abs(_numpy(keras.ops.cast(fused, "float32")) - exact).max()
    assert error <= max(2 * fused_error, 1e-6), (error, fused_error)


# -- positions --------------------------------------------------------------------------------------------

def test_rotary_scores_depend_only_on_the_distance_between_positions():
    rotary = RotaryEmbedding(max_wavelength=100.0)
    q, k = _x((1, 1, 1, 8)), _x((1, 1, 1, 8), seed=1)

    def score(query_position, key_position):
        rotated_q = _numpy(rotary(q, start_index=query_position))
        rotated_k = _numpy(rotary(k, start_index=key_position))
        return float((rotated_q * rotated_k).sum())

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-4)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-5)  # position 0 is not rotated
    assert abs(score(5, 2) - score(5, 4)) > 1e-3  # another distance, another score
    np.testing.assert_allclose(np.linalg.norm(_numpy(rotary(q, start_index=7))), np.linalg.norm(q), rtol=1e-5)


def test_sinusoidal_positions_follow_the_formula():
    layer = SinusoidalPositionEmbedding(max_wavelength=10000.0)
    inputs = np.zeros((2, 5, 6), "float32")
    positions = np.arange(3, 8)[:, None]
    angles = positions / 10000.0 ** ((np.arange(6) // 2 * 2) / 6.0)
    expected = np.where(np.arange(6) % 2 == 0, np.sin(angles), np.cos(angles))
    np.testing.assert_allclose(_numpy(layer(inputs, start_index=3)), np.broadcast_to(expected, (2, 5, 6)), atol=1e-5)


def test_learned_positions_read_the_rows_from_start_index():
    layer = PositionEmbedding(sequence_length=10)
    inputs = np.zeros((2, 3, 4), "float32")
    layer(inputs)
    table = _numpy(layer.position_embeddings)
    np.testing.assert_array_equal(_numpy(layer(inputs, start_index=keras.ops.convert_to_tensor(6)))[1], table[6:9])
    with pytest.raises(ValueError, match="sequence_length=10"):
        layer(np.zeros((1, 11, 4), "float32"))


# -- normalization, feed-forward, tied embedding -------------------------------------------------------------

def test_rms_norm_matches_the_formula():
    layer = RMSNorm(epsilon=1e-6)
    x = _x((3, 4, 5)) * 3.0
    layer(x)
    scale = RNG.uniform(0.5, 2.0, 5).astype("float32")
    layer.set_weights([scale])
    expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(_numpy(layer(x)), expected, rtol=1e-5, atol=1e-6)


def test_swiglu_feed_forward_matches_the_formula():
    layer = FeedForward(intermediate_dim=6, activation="swiglu", use_bias=False)
    x = _x((2, 3, 4))
    output = _numpy(layer(x))
    gate, up, down = (w.get_weights()[0] for w in (layer.gate, layer.up, layer.down))
    silu = lambda z: z / (1 + np.exp(-z))  # noqa: E731
    np.testing.assert_allclose(output, (silu(x @ gate) * (x @ up)) @ down, atol=1e-5)


def test_post_norm_block_outputs_are_normalized():
    block = TransformerBlock(num_heads=2, intermediate_dim=16, norm_first=False)
    output = _numpy(block(_x((2, 5, 8)) * 4.0))
    np.testing.assert_allclose(output.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(output.std(-1), 1.0, atol=1e-2)


def test_reversible_embedding_reads_logits_through_the_same_table():
    layer = ReversibleEmbedding(input_dim=7, output_dim=3)
    vectors = _numpy(layer(np.array([[1, 4]])))
    table = _numpy(layer.embeddings)
    np.testing.assert_array_equal(vectors[0], table[[1, 4]])
    np.testing.assert_allclose(_numpy(layer(vectors, reverse=True)), vectors @ table.T, atol=1e-6)


# -- serialization ----------------------------------------------------------------------------------------

def test_every_layer_round_trips_through_a_keras_file(tmp_path):
    token_ids = keras.Input((6,), dtype="int32")
    embedding = ReversibleEmbedding(20, 8, name="tokens")
    x = embedding(token_ids)
    x = keras.layers.Add()([x, PositionEmbedding(6, name="learned")(x), SinusoidalPositionEmbedding(name="fixed")(x)])
    x = TransformerBlock(4, 16, num_key_value_heads=2, activation="swiglu", normalization="rms_norm",
                         rotary_max_wavelength=1000.0, dropout=0.1, name="block1")(x)
    x = TransformerBlock(2, 12, norm_first=False, activation="relu", causal=False, name="block2")(x)
    x = RMSNorm(name="norm")(x)
    logits = embedding(x, reverse=True)
    model = keras.Model(token_ids, logits)
    tokens = RNG.integers(0, 20, (3, 6))
    model.save(tmp_path / "layers.keras")
    loaded = keras.saving.load_model(tmp_path / "layers.keras", safe_mode=True)
    np.testing.assert_allclose(_numpy(loaded(tokens)), _numpy(model(tokens)), atol=1e-6)
    for name in ("block1", "block2", "learned", "fixed", "norm", "tokens"):
        assert loaded.get_layer(name).get_config() == model.get_layer(name).get_config()


@pytest.mark.parametrize("layer", [
    CachedMultiHeadAttention(4, 8, num_key_value_heads=2, output_dim=5, dropout=0.1, use_bias=False,
                             rotary_max_wavelength=500.0),
    TransformerBlock(4, 16, num_key_value_heads=1, head_dim=6, activation="swiglu", normalization="rms_norm",
                     norm_first=False, epsilon=1e-6, use_bias=False, causal=False, rotary_max_wavelength=100.0),
    FeedForward(12, activation="relu", dropout=0.2, use_bias=False),
    RotaryEmbedding(500.0, scaling_factor=2.0),
], ids=lambda layer: type(layer).__name__)
def test_get_config_holds_every_argument(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


# -- arguments ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: CachedMultiHeadAttention(4, 8, num_key_value_heads=3), "num_key_value_heads"),
    (lambda: CachedMultiHeadAttention(4, 7, rotary_max_wavelength=100.0), "even head_dim"),
    (lambda: CachedMultiHeadAttention(0, 8), "num_heads"),
    (lambda: TransformerBlock(4, 16, activation="tanh"), "activation"),
    (lambda: TransformerBlock(4, 16, normalization="batch_norm"), "normalization"),
    (lambda: TransformerBlock(4, 16, dropout=1.0), "dropout"),
    (lambda: FeedForward(0), "intermediate_dim"),
    (lambda: RMSNorm(epsilon=0.0), "epsilon"),
    (lambda: PositionEmbedding(0), "sequence_length"),
])
def test_bad_layer_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_block_width_must_divide_into_heads():
    with pytest.raises(ValueError, match="hidden_dim=10 must be divisible by num_heads=4"):
        TransformerBlock(4, 16)(_x((1, 3, 10)))
