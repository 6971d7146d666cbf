"""What the library's tokenizers share: reserved ids, input checks, `encode`, `decode` and the vocabulary.

A tokenizer maps text to integer token ids and back. Its vocabulary is trained on the user's own texts
(`train`) and held by a Hugging Face `tokenizers.Tokenizer`, which runs the encoding on the host: an
in-graph tokenizer would block TFLite conversion, so the models read ids and the tokenizer travels
beside them (in the `.keras` file through a preprocessor, and as a `tokenizer.json` file next to an
exported model).

Reserved ids, the same in every tokenizer of the library:

- 0: `"<pad>"`, padding. The library's sequence models mask id 0 and their losses skip it.
- 1: `"<|endoftext|>"`, the end of a text. A causal language model reads it first, as the start of a
  text, and learns to produce it where the text ends; generation stops there.

A `CharacterTokenizer` adds 2: `"<unk>"` for characters its training texts did not hold. Special tokens
the user names (`special_tokens=`) take the next ids, in the order given, then come the learned tokens.

Text is encoded as text: a special token written inside a text (`"<|endoftext|>"` typed by a user) is
encoded as the characters it is made of, never as the special id, so user input cannot inject control
tokens. Put a special id into a sequence with `token_to_id`.
"""

from __future__ import annotations

import collections
import json

import numpy as np
import tokenizers

PADDING_TOKEN = "<pad>"
END_OF_TEXT_TOKEN = "<|endoftext|>"
PADDING_ID = 0
END_OF_TEXT_ID = 1


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_texts(texts, what: str = "texts") -> tuple[list[str], bool]:
    """`texts` as a list of strings and whether it was a single string; a `ValueError` names the first
    element that is not a string."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise ValueError(f"{what} must be a string or a 1-D sequence of strings; got an array of shape "
                             f"{texts.shape}.")
        texts = texts.tolist()
    if not isinstance(texts, (list, tuple)):
        raise ValueError(
            f"{what} must be a string or a list of strings; got {type(texts).__name__} {texts!r:.80}."
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{what}[{index}] must be a string; got {type(text).__name__} {text!r:.80}.")
    return list(texts), False


def check_sequence_length(sequence_length, what: str = "sequence_length"):
    if sequence_length is not None and (not is_int(sequence_length) or sequence_length < 1):
        raise ValueError(f"{what} must be a positive integer or None; got {what}={sequence_length!r}.")
    return None if sequence_length is None else int(sequence_length)


def check_special_tokens(special_tokens, reserved: tuple[str, ...]) -> list[str]:
    """The user's special tokens as a list of distinct non-empty strings, none of them reserved."""
    if isinstance(special_tokens, str) or not isinstance(special_tokens, (list, tuple)):
        raise ValueError(f"special_tokens must be a list of strings; got special_tokens={special_tokens!r}.")
    for token in special_tokens:
        if not isinstance(token, str) or len(token) < 2:
            raise ValueError(
                f"Every special token must be a string of at least 2 characters (one character is an "
                f"ordinary token); got {token!r} in special_tokens={special_tokens!r}."
            )
        if token in reserved:
            raise ValueError(f"{token!r} is reserved (ids {list(reserved)}); leave it out of special_tokens.")
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens must be distinct; got special_tokens={special_tokens!r}.")
    return list(special_tokens)


def pad(sequences: list[list[int]], sequence_length: int, left: bool = False) -> np.ndarray:
    """Id lists as an int32 array `(len(sequences), sequence_length)`: cut after `sequence_length` ids
    (the start is kept) and filled with the padding id, on the right or, with `left`, on the left."""
    array = np.full((len(sequences), sequence_length), PADDING_ID, dtype=np.int32)
    for row, ids in enumerate(sequences):
        ids = ids[:sequence_length]
        if ids:
            if left:
                array[row, sequence_length - len(ids):] = ids
            else:
                array[row, :len(ids)] = ids
    return array


class Tokenizer:
    """The base of the library's tokenizers: a vocabulary held by a Hugging Face `tokenizers.Tokenizer`.

    Subclasses build that backend from their configuration (`vocabulary`, and `merges` for byte-pair
    encoding), so `get_config()` is plain JSON and `cls(**config)` rebuilds the same tokenizer.
    """

    reserved_tokens: tuple[str, ...] = (PADDING_TOKEN, END_OF_TEXT_TOKEN)
    padding_id = PADDING_ID
    end_of_text_id = END_OF_TEXT_ID

    def __init__(self, backend: tokenizers.Tokenizer, vocabulary: list[str], special_tokens: list[str]):
        backend.add_special_tokens([*self.reserved_tokens, *special_tokens])
        # Special tokens written in a text are encoded as text (see the module docstring).
        backend.encode_special_tokens = True
        self._backend = backend
        self._vocabulary = list(vocabulary)
        self._ids = {token: index for index, token in enumerate(self._vocabulary)}
        self._special_tokens = list(special_tokens)

    @classmethod
    def check_training_input(cls, texts, special_tokens) -> tuple[list[str], list[str]]:
        """`(texts as a list, special tokens checked)` for `train`, or a `ValueError` when there is no
        text to learn from."""
        batch, _ = check_texts(texts)
        if not any(batch):
            raise ValueError("texts must hold some text to learn from; got no text or only empty strings.")
        return batch, check_special_tokens(special_tokens, cls.reserved_tokens)

    @staticmethod
    def check_vocabulary(vocabulary, reserved: tuple[str, ...], special_tokens: list[str]) -> list[str]:
        """`vocabulary` (tokens in id order) checked: strings, distinct, reserved then special tokens first."""
        if isinstance(vocabulary, str) or not isinstance(vocabulary, (list, tuple)):
            raise ValueError(f"vocabulary must be a list of tokens in id order; got {type(vocabulary).__name__}.")
        for index, token in enumerate(vocabulary):
            if not isinstance(token, str) or not token:
                raise ValueError(f"vocabulary[{index}] must be a non-empty string; got {token!r}.")
        head = [*reserved, *special_tokens]
        if list(vocabulary[:len(head)]) != head:
            raise ValueError(
                f"The vocabulary must start with the reserved tokens, then the special tokens: {head}; it "
                f"starts with {list(vocabulary[:len(head)])}."
            )
        if len(set(vocabulary)) != len(vocabulary):
            twice = [token for token, count in collections.Counter(vocabulary).items() if count > 1]
            raise ValueError(f"Every token of the vocabulary must be distinct; listed twice: {twice[:5]}.")
        return list(vocabulary)

    # -- the vocabulary -----------------------------------------------------------------------------

    @property
    def vocabulary_size(self) -> int:
        """The number of token ids, reserved and special ones included: the `vocabulary_size` (or
        `vocab_size`) a model that reads these ids is built with."""
        return len(self._vocabulary)

    @property
    def special_tokens(self) -> list[str]:
        """The user's special tokens (after the reserved ones), in id order."""
        return list(self._special_tokens)

    def get_vocabulary(self) -> list[str]:
        """Every token, in id order (byte-pair tokens are written with the byte-level alphabet)."""
        return list(self._vocabulary)

    def id_to_token(self, token_id) -> str:
        if not is_int(token_id) or not 0 <= token_id < self.vocabulary_size:
            raise ValueError(f"token_id must be an integer in [0, {self.vocabulary_size}); got {token_id!r}.")
        return self._vocabulary[int(token_id)]

    def token_to_id(self, token) -> int:
        if not isinstance(token, str) or token not in self._ids:
            raise ValueError(f"{token!r} is not a token of this vocabulary of {self.vocabulary_size} tokens.")
        return self._ids[token]

    # -- encoding -----------------------------------------------------------------------------------

    def encode(self, texts, sequence_length=None):
        """Token ids of `texts`.

        Args:
            texts: a string, or a list of strings.
            sequence_length: `None` for unpadded id lists; an integer for an int32 numpy array with
                that many ids per text, cut at the end or filled with the padding id 0.

        Returns:
            For one string, a list of ids (or a 1-D array); for a list, a list of id lists (or a 2-D
            array `(len(texts), sequence_length)`).
        """
        batch, single = check_texts(texts)
        sequence_length = check_sequence_length(sequence_length)
        ids = [encoding.ids for encoding in self._backend.encode_batch(batch, add_special_tokens=False)]
        if sequence_length is not None:
            ids = pad(ids, sequence_length)
        return ids[0] if single else ids

    def _check_ids(self, ids, what: str) -> list[int]:
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
                raise ValueError(f"{what} must be a 1-D sequence of integer token ids; got an array of shape "
                                 f"{ids.shape} and dtype {ids.dtype}.")
            ids = ids.tolist()
        if not isinstance(ids, (list, tuple)):
            raise ValueError(f"{what} must be a list of integer token ids; got {type(ids).__name__} {ids!r:.80}.")
        for index, token_id in enumerate(ids):
            if not is_int(token_id) or not 0 <= token_id < self.vocabulary_size:
                raise ValueError(f"{what}[{index}] must be a token id in [0, {self.vocabulary_size}); got "
                                 f"{token_id!r}.")
        return [int(token_id) for token_id in ids]

    def decode(self, token_ids):
        """The text of token ids: padding (id 0) is left out; the end-of-text and special tokens are
        written as their text (`"<|endoftext|>"`).

        Args:
            token_ids: a sequence of ids, or a 2-D array / list of sequences for several texts.

        Returns:
            A string, or a list of strings for 2-D input.
        """
        rows = None
        if isinstance(token_ids, np.ndarray) and token_ids.ndim == 2:
            rows = list(token_ids)
        elif isinstance(token_ids, (list, tuple)) and token_ids and all(
                isinstance(row, (list, tuple, np.ndarray)) for row in token_ids):
            rows = list(token_ids)
        if rows is not None:
            return [self._decode_ids(self._check_ids(row, f"token_ids[{index}]"))
                    for index, row in enumerate(rows)]
        return self._decode_ids(self._check_ids(token_ids, "token_ids"))

    def _decode_ids(self, ids: list[int]) -> str:
        ids = [token_id for token_id in ids if token_id != PADDING_ID]
        return self._backend.decode(ids, skip_special_tokens=False)

    # -- the Hugging Face form ------------------------------------------------------------------------

    def to_json(self) -> str:
        """The tokenizer in the `tokenizers` library's own JSON format (`tokenizer.json`), which the
        library's bindings load with `Tokenizer.from_file`."""
        return self._backend.to_str()

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # A tokenizer never changes once built: equal configurations are equal tokenizers.
    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, tuple(self._vocabulary)))

    def __repr__(self):
        return (f"{type(self).__name__}(vocabulary_size={self.vocabulary_size}, "
                f"special_tokens={self._special_tokens})")


def merges_of(backend: tokenizers.Tokenizer) -> list[list[str]]:
    """The merges of a byte-pair backend, as `[left, right]` pairs in rank order (both spellings of
    `tokenizer.json`: pairs, and the older `"left right"` strings)."""
    merges = json.loads(backend.to_str())["model"]["merges"]
    return [merge.split(" ") if isinstance(merge, str) else list(merge) for merge in merges]
