"""Raw text to the token ids a causal language model trains on, and generated ids back to text."""

from __future__ import annotations

import keras
import numpy as np

from keras_models.text.tokenizer import (
    END_OF_TEXT_ID,
    PADDING_ID,
    Tokenizer,
    check_sequence_length,
    check_texts,
    pad,
)


def _check_tokenizer(tokenizer) -> Tokenizer:
    if not isinstance(tokenizer, Tokenizer):
        raise ValueError(f"tokenizer must be a BytePairTokenizer or a CharacterTokenizer; got "
                         f"{type(tokenizer).__name__} {tokenizer!r:.80}.")
    return tokenizer


@keras.saving.register_keras_serializable(package="keras_models")
class CausalLMPreprocessor:
    """Texts to `(token ids, next-token targets)` for `fit`, and the prompts and outputs of `generate`.

    Every text becomes `<|endoftext|> tokens <|endoftext|>`: the end-of-text id (1) first marks where a
    text starts, so the model learns to predict a text's first token and to end it. The ids are cut or
    padded (id 0, which the library's language models mask and their losses skip) to
    `sequence_length + 1` and shifted by one into inputs and targets.

    It runs on the host, outside the model's graph (exported models read ids), and saves with a model
    whose class takes `keras_models.text.PreprocessorMixin`: `attach_preprocessor(model, preprocessor)`.

    Args:
        tokenizer: a `BytePairTokenizer` or a `CharacterTokenizer`.
        sequence_length: the number of steps of every training input and target.
    """

    def __init__(self, tokenizer, sequence_length=128):
        self.tokenizer = _check_tokenizer(tokenizer)
        self.sequence_length = check_sequence_length(sequence_length)
        if self.sequence_length is None:
            raise ValueError("sequence_length must be a positive integer; got sequence_length=None.")

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        """The ids `generate(..., stop_token_ids=...)` stops at: the end of text."""
        return (END_OF_TEXT_ID,)

    def _with_ends(self, texts) -> list[list[int]]:
        return [[END_OF_TEXT_ID, *ids, END_OF_TEXT_ID] for ids in self.tokenizer.encode(texts)]

    def __call__(self, texts):
        """Inputs and next-token targets of `texts`.

        Args:
            texts: a string or a list of strings, one training example each (longer ones are cut).

        Returns:
            `(x, y)`, int32 arrays `(len(texts), sequence_length)`: `y[:, t]` is the token after `x[:, t]`.
        """
        batch, _ = check_texts(texts)
        ids = pad(self._with_ends(batch), self.sequence_length + 1)
        return ids[:, :-1], ids[:, 1:]

    def pack(self, texts):
        """A corpus as windows of a continuous stream, with no padding but at the very end.

        The texts are joined as `<|endoftext|> a <|endoftext|> b ... <|endoftext|>` and cut into
        consecutive windows of `sequence_length + 1` ids overlapping by one, so every id of the stream is
        a target once.

        Returns:
            `(x, y)`, int32 arrays `(windows, sequence_length)`.
        """
        batch, _ = check_texts(texts)
        stream = [END_OF_TEXT_ID]
        for ids in self.tokenizer.encode(batch):
            stream.extend(ids)
            stream.append(END_OF_TEXT_ID)
        step = self.sequence_length
        windows = [stream[start:start + step + 1] for start in range(0, len(stream) - 1, step)]
        ids = pad(windows, step + 1)
        return ids[:, :-1], ids[:, 1:]

    def generate_preprocess(self, texts, sequence_length=None):
        """Prompts as token ids for `generate`: `<|endoftext|>` and the prompt's tokens, padded with 0 on
        the left to the longest prompt (or to `sequence_length`, keeping the last ids), so every row
        ends with its last real token.

        Args:
            texts: a prompt or a list of prompts; `""` starts a text from nothing.
            sequence_length: `None` for the longest prompt's length, or a fixed number of steps.

        Returns:
            An int32 array `(len(texts), steps)`.
        """
        batch, _ = check_texts(texts)
        if not batch:
            raise ValueError("texts must hold at least one prompt; got an empty list.")
        sequence_length = check_sequence_length(sequence_length)
        prompts = [[END_OF_TEXT_ID, *ids] for ids in self.tokenizer.encode(batch)]
        steps = sequence_length or max(len(ids) for ids in prompts)
        return pad([ids[-steps:] for ids in prompts], steps, left=True)

    def generate_postprocess(self, token_ids):
        """The texts of generated ids (prompt included): padding and the leading `<|endoftext|>` left
        out, each text ending before its next `<|endoftext|>`.

        Args:
            token_ids: ids `(batch, steps)` as `generate` returns them, or one sequence.

        Returns:
            A list of strings, or one string for one sequence.
        """
        array = np.asarray(token_ids)
        if array.ndim not in (1, 2) or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"token_ids must be integer ids (batch, steps) or (steps,); got shape {array.shape} "
                             f"and dtype {array.dtype}.")
        rows = array.reshape(-1, array.shape[-1]) if array.ndim == 2 else array[None]
        texts = []
        for row in rows.tolist():
            row = [token for token in row if token != PADDING_ID]
            if row and row[0] == END_OF_TEXT_ID:
                row = row[1:]
            if END_OF_TEXT_ID in row:
                row = row[:row.index(END_OF_TEXT_ID)]
            texts.append(self.tokenizer.decode(row))
        return texts if array.ndim == 2 else texts[0]

    def get_config(self) -> dict:
        return {"tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)

    def __repr__(self):
        return f"CausalLMPreprocessor({self.tokenizer!r}, sequence_length={self.sequence_length})"
