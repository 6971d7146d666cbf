"""`GPTCausalLM`: a GPT backbone with tied next-token logits, trained by `fit` and generating with a KV cache."""

from __future__ import annotations


import keras
import numpy as np

from keras_models import checks, losses
from keras_models.checks import CheckedModel, as_array
from keras_models.sampling import check_sampling, decode, no_gradients, prompt_rows
from keras_models.text import PreprocessorMixin
from keras_models.transformers.compiled_steps import CompiledSteps

FAMILY = "transformer"  # the family whose compile defaults the models take (keras_models.families)


def causal_lm_loss():
    """Cross-entropy of the next token from logits, every target counted (GPT has no padding id: train
    on packed sequences, or pass `sample_weight` to leave padded targets out)."""
    return losses.SparseCategoricalCrossentropy(from_logits=True)


def check_token_ids(token_ids, vocabulary_size, max_sequence_length, what="token_ids"):
    """`token_ids` as int32 numpy `(batch, steps)`, ids in `[0, vocabulary_size)` and at most
    `max_sequence_length` steps, or a `ValueError` naming `what`."""
    return checks.check_token_ids(token_ids, vocabulary_size, what, size_name="vocabulary_size",
                                  max_steps=max_sequence_length)


@keras.saving.register_keras_serializable(package="keras_models")
class GPTCausalLM(PreprocessorMixin, CompiledSteps, CheckedModel):
    """A causal language model on a `GPTBackbone` (a functional `keras.Model`).

    Called on token ids `(batch, steps)` it returns the logits of the next token at every step,
    `(batch, steps, vocabulary_size)`, read through the token embedding (tied input and output
    embeddings, as GPT-2). Train it with `fit(x, y)` on `next_token_pairs(sequences)`. `fit`,
    `evaluate` and `predict` check that ids lie in the vocabulary and sequences fit the positions.

    Generation follows the library's contract (`generation_start`, `generation_step`,
    `generation_source`, `stop_token_ids`): the state is one key/value cache per block, `(batch, 2,
    max_length, num_heads, head_dim)`, and the position of the next token, int32 `(batch,)` (equal in
    every row; stored per row so that beam search reorders it with the rest). A step writes its keys
    and values into the caches with `keras.ops.slice_update` and attends to the positions written so
    far; `generation_prefill` reads a whole prompt in one pass. `generate` runs both compiled (an XLA
    `tf.function` on TensorFlow, `jax.jit` on JAX; eager on PyTorch).

    Args:
        backbone: the `GPTBackbone`.
        stop_token_ids: ids that end a generated sequence by default (e.g. an end-of-text token).
        name: the model name; `None` for the backbone's name plus `"_causal_lm"`.
    """

    def __init__(self, backbone, stop_token_ids=(), name=None, **kwargs):
        from keras_models.transformers.gpt_backbone import GPTBackbone

        if not isinstance(backbone, GPTBackbone):
            raise ValueError(f"backbone must be a GPTBackbone; got {type(backbone).__name__}.")
        stop_token_ids = tuple(stop_token_ids or ())
        bad = [i for i in stop_token_ids
               if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < backbone.vocabulary_size]
        if bad:
            raise ValueError(
                f"stop_token_ids must be ids in [0, {backbone.vocabulary_size}); got stop_token_ids={stop_token_ids!r}."
            )
        name = backbone.name + "_causal_lm" if name is None else name
        token_ids = backbone.input
        hidden = backbone(token_ids)  # (batch, steps, hidden_dim)
        logits = backbone.token_embedding(hidden, reverse=True)  # (batch, steps, vocabulary_size)
        super().__init__(inputs=token_ids, outputs=logits, name=name, **kwargs)
        self.backbone = backbone
        self._stop_token_ids = tuple(int(i) for i in stop_token_ids)

    def get_config(self):
        return self.with_preprocessor_config({
            "name": self.name, "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "stop_token_ids": list(self._stop_token_ids)})

    @classmethod
    def from_config(cls, config):
        config, preprocessor = cls.split_preprocessor_config(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls.restore_preprocessor(cls(**config), preprocessor)

    # -- checked entry points --------------------------------------------------------------------------

    def _check(self, data, what):
        if as_array(data) is not None:
            check_token_ids(data, self.backbone.vocabulary_size, self.backbone.max_sequence_length, what)

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check(x, "x")
        self._check(y, "y")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check(x, "x")
        self._check(y, "y")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check(x, "x")
        return super().predict(x, *args, **kwargs)

    # -- the generation contract shared by the library's sequence models (export reads it) -------------

    generation_source = None

    @property
    def stop_token_ids(self):
        return self._stop_token_ids

    def generation_start(self, batch_size, max_length, source=None):
        """The state before the first token: a zero cache `(batch_size, 2, max_length, num_heads,
        head_dim)` per block, then the position 0 of every row, int32 `(batch_size,)`."""
        if source is not None:
            raise ValueError(f"{self.name!r} generates from token ids alone; got a source.")
        backbone = self.backbone
        if isinstance(max_length, (int, np.integer)) and not 1 <= max_length <= backbone.max_sequence_length:
            raise ValueError(
                f"max_length must lie in [1, max_sequence_length={backbone.max_sequence_length}]; got "
                f"max_length={max_length!r}."
            )
        cache = keras.ops.zeros((batch_size, 2, max_length, backbone.num_heads, backbone.head_dim),
                                dtype=self.compute_dtype)
        return [cache for _ in range(backbone.num_layers)] + [keras.ops.zeros((batch_size,), dtype="int32")]

    def _forward_with_cache(self, token_ids, state):
        """Token ids `(batch, steps)` at the state's position through every block, caches updated:
        the logits after the last step `(batch, vocabulary_size)` and the new state."""
        backbone = self.backbone
        caches, positions = state[:-1], keras.ops.convert_to_tensor(state[-1], dtype="int32")
        index = positions[0]  # every row is at the same position
        token_ids = keras.ops.convert_to_tensor(token_ids, dtype="int32")
        x = backbone.token_embedding(token_ids)  # (batch, steps, hidden_dim)
        x = x + backbone.position_embedding(x, start_index=index)
        new_caches = []
        for block, cache in zip(backbone.transformer_layers, caches):
            x, cache = block(x, cache=cache, cache_index=index, training=False)
            new_caches.append(cache)
        last = backbone.final_norm(x[:, -1, :])  # (batch, hidden_dim)
        logits = backbone.token_embedding(last, reverse=True)  # (batch, vocabulary_size)
        steps = keras.ops.shape(token_ids)[1]
        return logits, new_caches + [positions + keras.ops.cast(steps, "int32")]

    def generation_prefill(self, token_ids, state):
        """The whole prompt `(batch, steps)` in one pass from `state`: `(last_logits, new_state)`, the
        same as `generation_step` on each prompt token in turn."""
        return self._forward_with_cache(token_ids, state)

    def generation_step(self, tokens, state):
        """One token per row, int32 `(batch,)`: `(logits (batch, vocabulary_size), new_state)`. Every id
        may be generated (GPT has no padding or start id to rule out)."""
        return self._forward_with_cache(keras.ops.expand_dims(keras.ops.convert_to_tensor(tokens, "int32"), 1), state)

    def generate(self, token_ids, max_length, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
                 beam_width=4, stop_token_ids=None, seed=None):
        """Extends every prompt to `max_length` tokens (prompt included).

        Prompts of different lengths are given as a list of 1-D sequences: every row reads its own
        prompt (the shortest fills the cache in one pass, then each row is fed its own prompt tokens
        until it starts generating), so a row generates what it would alone. Not with `"beam"`.

        Args:
            token_ids: integer prompts `(batch, prompt_length)`, or a list of 1-D prompts of different
                lengths; ids in `[0, vocabulary_size)`.
            max_length: the length of the result, at most `max_sequence_length`.
            sampler: `"greedy"`, `"top_k"`, `"top_p"` or `"beam"` (see `keras_models.sampling`).
            temperature: divides the logits (above 0).
            top_k: tokens `"top_k"` draws from.
            top_p: the nucleus mass `"top_p"` draws from, in (0, 1].
            beam_width: beams of `"beam"`.
            stop_token_ids: ids that end a row, whose rest is then 0; `None` for the model's
                `stop_token_ids`.
            seed: the same seed gives the same tokens.

        Returns:
            int32 numpy `(batch, max_length)`: the prompts and the generated ids.
        """
        check_sampling(sampler, temperature, top_k, top_p, beam_width, seed)
        backbone = self.backbone
        tokens, lengths = prompt_rows(token_ids)
        tokens = check_token_ids(tokens, backbone.vocabulary_size, backbone.max_sequence_length)
        if (not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool)
                or not tokens.shape[1] <= max_length <= backbone.max_sequence_length):
            raise ValueError(
                f"max_length counts the prompt too: it must be an integer from the prompt length {tokens.shape[1]} "
                f"to max_sequence_length={backbone.max_sequence_length}; got max_length={max_length!r}."
            )
        stop = self._stop_token_ids if stop_token_ids is None else stop_token_ids
        with no_gradients():
            state = self.generation_start(len(tokens), int(max_length))
            return decode(self._compiled_function("generation_step"), tokens, state, int(max_length),
                          sampler=sampler, temperature=temperature, top_k=top_k, top_p=top_p,
                          beam_width=beam_width, seed=seed, stop_token_ids=stop,
                          prefill=self._compiled_function("generation_prefill"), prompt_lengths=lengths)
