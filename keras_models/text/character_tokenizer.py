"""A character vocabulary trained on the user's texts: one token per character (Unicode code point)."""

from __future__ import annotations

import collections
import itertools

import keras
import tokenizers
from tokenizers import decoders, pre_tokenizers

from keras_models.text.tokenizer import (
    END_OF_TEXT_TOKEN,
    PADDING_TOKEN,
    Tokenizer,
    is_int,
    check_special_tokens,
)

UNKNOWN_TOKEN = "<unk>"
UNKNOWN_ID = 2


@keras.saving.register_keras_serializable(package="keras_models")
class CharacterTokenizer(Tokenizer):
    """One token per character seen in training; a character never seen is `"<unk>"`.

    Ids: 0 `"<pad>"`, 1 `"<|endoftext|>"`, 2 `"<unk>"`, then `special_tokens` in order, then the
    characters in code-point order. A text made of characters of the vocabulary round-trips; any other
    character encodes to id 2 and decodes as `"<unk>"`. No normalization is applied: `"é"` written as one
    code point and as `"e"` plus a combining accent are different texts.

    Build one with `CharacterTokenizer.train(texts)`; the constructor rebuilds a trained one from its
    configuration.

    Args:
        vocabulary: every token in id order, as `get_vocabulary()` returns it.
        special_tokens: the user's special tokens, which follow the reserved ones.
    """

    reserved_tokens = (PADDING_TOKEN, END_OF_TEXT_TOKEN, UNKNOWN_TOKEN)
    unknown_id = UNKNOWN_ID

    def __init__(self, vocabulary, special_tokens=()):
        special_tokens = check_special_tokens(special_tokens, self.reserved_tokens)
        vocabulary = self.check_vocabulary(vocabulary, self.reserved_tokens, special_tokens)
        head = len(self.reserved_tokens) + len(special_tokens)
        for index, token in enumerate(vocabulary[head:], start=head):
            if len(token) != 1:
                raise ValueError(f"vocabulary[{index}] must be one character (special tokens come first); got "
                                 f"{token!r}.")
        backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(
            vocab={token: index for index, token in enumerate(vocabulary)}, unk_token=UNKNOWN_TOKEN))
        backend.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex(r"[\s\S]"), behavior="isolated")
        backend.decoder = decoders.Fuse()  # characters join with nothing between them
        super().__init__(backend, vocabulary, special_tokens)

    @classmethod
    def train(cls, texts, vocabulary_size=None, special_tokens=(), min_frequency=1):
        """The vocabulary of the characters in `texts`.

        Args:
            texts: a string or a list of strings.
            vocabulary_size: `None` keeps every character seen `min_frequency` times; an integer keeps
                the most frequent ones (ties: the lower code point) so that the vocabulary, reserved and
                special tokens included, holds at most that many tokens.
            special_tokens: strings of 2 or more characters given ids of their own after the reserved ones.
            min_frequency: the fewest occurrences a character needs to get an id.

        Returns:
            A `CharacterTokenizer`.
        """
        batch, special_tokens = cls.check_training_input(texts, special_tokens)
        head = [*cls.reserved_tokens, *special_tokens]
        if vocabulary_size is not None and (not is_int(vocabulary_size) or vocabulary_size <= len(head)):
            raise ValueError(
                f"vocabulary_size must be None or an integer above {len(head)} ({len(cls.reserved_tokens)} "
                f"reserved and {len(special_tokens)} special tokens, and room for characters); got "
                f"vocabulary_size={vocabulary_size!r}."
            )
        if not is_int(min_frequency) or min_frequency < 1:
            raise ValueError(f"min_frequency must be a positive integer; got min_frequency={min_frequency!r}.")
        counts = collections.Counter(itertools.chain.from_iterable(batch))
        characters = sorted((c for c, n in counts.items() if n >= min_frequency), key=lambda c: (-counts[c], c))
        if vocabulary_size is not None:
            characters = characters[:vocabulary_size - len(head)]
        return cls([*head, *sorted(characters)], special_tokens)

    def get_config(self) -> dict:
        return {"vocabulary": self.get_vocabulary(), "special_tokens": self.special_tokens}
