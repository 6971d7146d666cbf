"""`RelativePositionBias`: T5's learned attention bias, one scalar per head and bucket of relative positions."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_models.checks import check_positive_int


def relative_position_bucket(relative_position: int, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128) -> int:
    """The bucket of a key at `relative_position = key_position - query_position` (Raffel et al., 2020).

    Half the buckets (all of them when not bidirectional) hold the distances `0 ... num_buckets / 2 - 1`
    exactly; the rest cover larger distances in logarithmically wider buckets up to `max_distance`, and
    every distance beyond falls into the last. Bidirectional: keys after the query take the second half
    of the buckets. Not bidirectional (a causal decoder): keys after the query share bucket 0.
    """
    distance = -relative_position  # how far back the key lies
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        if distance < 0:
            bucket += num_buckets
        distance = abs(distance)
    else:
        distance = max(distance, 0)
    exact = num_buckets // 2
    if distance < exact:
        return bucket + distance
    wide = exact + int(math.log(distance / exact) / math.log(max_distance / exact) * (num_buckets - exact))
    return bucket + min(wide, num_buckets - 1)


@keras.saving.register_keras_serializable(package="keras_models")
class RelativePositionBias(keras.layers.Layer):
    """T5's relative position bias (Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a
    Unified Text-to-Text Transformer"; after Shaw et al., 2018): a learned scalar per head and bucket of
    `key_position - query_position`, added to the attention scores. T5 has no other position
    information; one bias serves every block of a stack (bidirectional in the encoder, causal in the
    decoder).

    The buckets (`relative_position_bucket`) are constant beyond `max_distance`, so the layer holds them
    as a table over the relative positions `-max_distance ... max_distance` and clips: the graph is a
    subtraction, a clip and two gathers (builtin TFLite and plain ONNX operators).

    Args:
        num_heads: attention heads, one bias each.
        num_buckets: buckets of relative positions (32 in T5).
        max_distance: the distance from which every relative position shares the last bucket (128 in
            T5); above the exactly-held distances `num_buckets // 4` (bidirectional) or
            `num_buckets // 2`.
        bidirectional: keys after the query get their own buckets (an encoder); `False` for a causal
            decoder.
        embeddings_initializer: of the table `(num_buckets, num_heads)`.

    Call arguments:
        inputs: the queries `(batch, query_length, ...)`; only their length is read.
        key_length: the number of keys (int or int32 scalar tensor); `None` for `query_length`.
        start_index: the position of the first query (int or int32 scalar tensor): a decoding step's
            position against a cache of `key_length` keys at positions `0 ... key_length - 1`.

    Returns:
        The bias `(1, num_heads, query_length, key_length)`.
    """

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True,
                 embeddings_initializer="uniform", **kwargs):
        num_heads = check_positive_int(num_heads, "num_heads")
        if bidirectional not in (True, False):
            raise ValueError(f"bidirectional must be True or False; got bidirectional={bidirectional!r}.")
        num_buckets = check_positive_int(num_buckets, "num_buckets")
        exact = num_buckets // 4 if bidirectional else num_buckets // 2
        if exact < 1:
            raise ValueError(
                f"num_buckets must be at least {4 if bidirectional else 2} (bidirectional={bidirectional}); got "
                f"num_buckets={num_buckets}."
            )
        max_distance = check_positive_int(max_distance, "max_distance")
        if max_distance <= exact:
            raise ValueError(
                f"max_distance must exceed the {exact} exactly-held distances of num_buckets={num_buckets}; got "
                f"max_distance={max_distance}."
            )
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bool(bidirectional)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        # Bucket of relative position r at index r + max_distance.
        self._buckets = np.array([
            relative_position_bucket(r, self.bidirectional, num_buckets, max_distance)
            for r in range(-max_distance, max_distance + 1)
        ], np.int32)

    def build(self, inputs_shape=None):
        self.embeddings = self.add_weight(shape=(self.num_buckets, self.num_heads),
                                          initializer=self.embeddings_initializer, name="embeddings")

    def buckets(self, query_length, key_length, start_index=0):
        """int32 `(query_length, key_length)`: the bucket of every query and key."""
        queries = ops.arange(query_length, dtype="int32") + ops.cast(start_index, "int32")
        keys = ops.arange(key_length, dtype="int32")
        relative = ops.expand_dims(keys, 0) - ops.expand_dims(queries, 1)  # key - query
        relative = ops.clip(relative, -self.max_distance, self.max_distance) + self.max_distance
        return ops.take(ops.convert_to_tensor(self._buckets), relative, axis=0)

    def call(self, inputs, key_length=None, start_index=0):
        query_length = ops.shape(inputs)[1]
        key_length = query_length if key_length is None else key_length
        table = ops.cast(self.embeddings, self.compute_dtype)
        bias = ops.take(table, self.buckets(query_length, key_length, start_index), axis=0)  # (query, key, heads)
        return ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)  # (1, heads, query, key)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "num_buckets": self.num_buckets,
            "max_distance": self.max_distance,
            "bidirectional": self.bidirectional,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }
