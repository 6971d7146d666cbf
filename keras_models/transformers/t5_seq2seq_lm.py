"""`T5Seq2SeqLM`: a T5 backbone with next-token logits, trained by `fit` with teacher forcing and generating
with cached self-attention and precomputed cross-attention keys and values."""

from __future__ import annotations

import keras
import numpy as np

from keras_models import checks
from keras_models.checks import CheckedModel, as_array
from keras_models.recurrent.seq2seq import END_ID, START_ID
from keras_models.sampling import check_sampling, decode, no_gradients
from keras_models.transformers.compiled_steps import CompiledSteps, checked_task_name
from keras_models.transformers.t5_backbone import PADDING_ID

FAMILY = "transformer"


def _logits(backbone, head, hidden):
    """Hidden states `(..., hidden_dim)` to logits `(..., vocabulary_size)`: with tied embeddings `head`
    scales them by `hidden_dim ** -0.5` (as T5 does before its tied output layer) and the token table
    gives the logits; otherwise `head` is the separate output layer."""
    if backbone.tie_embedding_weights:
        return backbone.token_embedding(head(hidden), reverse=True)
    return head(hidden)


@keras.saving.register_keras_serializable(package="keras_models")
class T5Seq2SeqLM(CompiledSteps, CheckedModel):
    """A text-to-text model on a `T5Backbone` (a functional `keras.Model`).

    Called on `[source_ids, decoder_input_ids]` (`(batch, source_steps)` and `(batch, target_steps)`, id 0
    padding) it returns the logits of the next target token at every decoder step, `(batch,
    target_steps, vocabulary_size)`: teacher forcing. Train it with `fit(*teacher_forcing_pairs(source,
    target))` (`keras_models.recurrent.teacher_forcing_pairs`: `start_id` before the decoder inputs,
    `end_id` after the targets); the loss leaves padded targets out. Source and target share the
    vocabulary, as in T5.

    Generation follows the library's contract (`generation_start`, `generation_step`,
    `generation_source = "token_ids"`, `stop_token_ids`). `generation_start` runs the encoder once and
    keeps, as the state: the source mask `(batch, source_steps)` (floats), every decoder block's
    cross-attention keys and values `(batch, 2, source_steps, num_heads, head_dim)`, every block's
    self-attention cache `(batch, 2, max_length, num_heads, head_dim)` and the position of the next
    token, int32 `(batch,)`. A step embeds one token, writes its keys and values into the caches with
    `keras.ops.slice_update` and reads the relative position bias of its position against the cache.
    For export (`export.to_tflite(model, path, generation=True, max_length=N)`), build the model with
    a fixed `source_length`.

    Args:
        backbone: the `T5Backbone`.
        start_id: the id the decoder starts from (never generated).
        end_id: the id that ends a generated sequence.
        name: the model name; `None` for the backbone's name plus `"_seq2seq_lm"`.
    """

    def __init__(self, backbone, start_id=START_ID, end_id=END_ID, name=None, **kwargs):
        from keras_models.transformers.t5_backbone import T5Backbone

        name = checked_task_name(backbone, T5Backbone, start_id, end_id, name, "_seq2seq_lm")
        if backbone.tie_embedding_weights:
            head = keras.layers.Rescaling(backbone.hidden_dim ** -0.5, name=name + "_output_scale")
        else:
            head = keras.layers.Dense(backbone.vocabulary_size, use_bias=False, name=name + "_lm_head")
        inputs = backbone.inputs
        logits = _logits(backbone, head, backbone(inputs))  # (batch, target_steps, vocabulary_size)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.backbone = backbone
        self.head = head
        self.start_id = int(start_id)
        self.end_id = int(end_id)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "start_id": self.start_id, "end_id": self.end_id}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    # -- checked entry points --------------------------------------------------------------------------

    def check_inputs(self, x, y):
        named = [("y", y)]
        if isinstance(x, (list, tuple)) and len(x) == 2:
            named += [("x[0] (source ids)", x[0]), ("x[1] (decoder input ids)", x[1])]
        for what, ids in named:
            if as_array(ids) is not None:
                checks.check_token_ids(ids, self.backbone.vocabulary_size, what, size_name="vocabulary_size")

    # -- the generation contract shared by the library's sequence models (export reads it) -------------

    generation_source = "token_ids"

    @property
    def stop_token_ids(self):
        return (self.end_id,)

    def generation_start(self, batch_size, max_length, source=None):
        """Runs the encoder on `source` (int32 token ids `(batch_size, source_steps)`) and returns the flat
        state: the source mask, each decoder block's cross-attention keys and values, each block's
        empty self-attention cache for `max_length` steps, and the position 0 of every row."""
        if source is None:
            raise ValueError(f"{self.name!r} is an encoder-decoder: generation_start needs source= (token ids).")
        if isinstance(max_length, (int, np.integer)) and max_length < 1:
            raise ValueError(f"max_length must be a positive integer; got max_length={max_length!r}.")
        backbone = self.backbone
        encoder_outputs, source_mask = backbone.encode(source, training=False)
        cross_caches = [block.cross_attention_cache(encoder_outputs) for block in backbone.decoder_blocks]
        cache = keras.ops.zeros((batch_size, 2, max_length, backbone.num_heads, backbone.head_dim),
                                dtype=self.compute_dtype)
        return [keras.ops.cast(source_mask, self.compute_dtype), *cross_caches,
                *[cache for _ in backbone.decoder_blocks], keras.ops.zeros((batch_size,), dtype="int32")]

    def generation_step(self, tokens, state):
        """One decoder step: `tokens` int32 `(batch,)` and the flat `state` to the next token's logits
        `(batch, vocabulary_size)`, padding and `start_id` ruled out (-inf), and the new state. Stepping
        through decoder inputs gives the logits of the whole network."""
        backbone = self.backbone
        layers = backbone.num_layers
        source_mask = keras.ops.greater(state[0], 0.5)
        cross_caches, caches, positions = state[1:1 + layers], state[1 + layers:1 + 2 * layers], state[-1]
        positions = keras.ops.convert_to_tensor(positions, dtype="int32")
        index = positions[0]  # every row is at the same position
        tokens = keras.ops.convert_to_tensor(tokens, dtype="int32")
        x = backbone.token_embedding(keras.ops.expand_dims(tokens, 1))  # (batch, 1, hidden_dim)
        bias = backbone.decoder_position_bias(x, key_length=keras.ops.shape(caches[0])[2], start_index=index)
        new_caches = []
        for block, cross_cache, cache in zip(backbone.decoder_blocks, cross_caches, caches):
            x, cache = block(x, encoder_padding_mask=source_mask, attention_bias=bias, cache=cache, cache_index=index,
                             cross_cache=cross_cache, training=False)
            new_caches.append(cache)
        logits = _logits(backbone, self.head, backbone.decoder_final_norm(x[:, 0]))  # (batch, vocabulary_size)
        never = np.zeros(backbone.vocabulary_size, bool)
        never[[PADDING_ID, self.start_id]] = True
        logits = keras.ops.where(keras.ops.convert_to_tensor(never), -np.inf, logits)
        return logits, [state[0], *cross_caches, *new_caches, positions + 1]

    # `generation_step` compiled for this backend (one trace per shape), as GPT's.

    def generate(self, source_ids, max_length, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
                 beam_width=4, seed=None):
        """Generates a target sequence for every source sequence.

        Args:
            source_ids: integer token ids `(batch, source_steps)` in `[0, vocabulary_size)`, padded with 0
                (anywhere: padded steps are masked); every row needs a real token.
            max_length: the length of the result, the start id included (at least 1).
            sampler: `"greedy"`, `"beam"`, `"top_k"` or `"top_p"` (see `keras_models.sampling`).
            temperature: divides the logits (above 0).
            top_k: tokens `"top_k"` draws from.
            top_p: the nucleus mass `"top_p"` draws from, in (0, 1].
            beam_width: beams of `"beam"`.
            seed: the same seed gives the same tokens.

        Returns:
            int32 numpy `(batch, max_length)`: `start_id`, then the generated ids; after a row's `end_id`
            the rest of the row is padding (0).
        """
        check_sampling(sampler, temperature, top_k, top_p, beam_width, seed)
        checks.check_positive_int(max_length, "max_length")
        source = checks.check_token_ids(source_ids, self.backbone.vocabulary_size, "source_ids",
                                        size_name="vocabulary_size")
        length = self.backbone.source_length
        if length is not None and source.shape[1] != length:
            raise ValueError(
                f"source_ids must have source_length={length} steps (pad shorter sources with 0); got "
                f"{source.shape[1]}."
            )
        empty = ~np.any(source != PADDING_ID, axis=1)
        if empty.any():
            raise ValueError(f"source_ids rows {np.flatnonzero(empty).tolist()} hold only padding (0).")
        start = np.full((len(source), 1), self.start_id, np.int32)
        with no_gradients():
            state = self.generation_start(len(source), int(max_length), source)
            return decode(self._compiled_function("generation_step"), start, state, int(max_length),
                          sampler=sampler, temperature=temperature, top_k=top_k, top_p=top_p,
                          beam_width=beam_width, seed=seed, stop_token_ids=self.stop_token_ids, pad_id=PADDING_ID)
