"""Byte-level byte-pair encoding trained on the user's texts.

Byte-pair encoding (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword
Units") starts from single symbols and merges the most frequent adjacent pair again and again; the
merges, in the order learned, are the tokenizer. The byte-level form (Radford et al. 2019, GPT-2)
starts from the 256 bytes of UTF-8, written as 256 printable characters, so every text encodes, in any
script, with no unknown token, and decodes to itself.
"""

from __future__ import annotations

import keras
import tokenizers
from tokenizers import decoders, pre_tokenizers, trainers

from keras_models.text.tokenizer import Tokenizer, check_special_tokens, is_int, merges_of

# The 256 characters that stand for the bytes of UTF-8 (GPT-2's printable mapping).
BYTE_ALPHABET = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))


def _backend(vocabulary: list[str], merges: list[list[str]]) -> tokenizers.Tokenizer:
    model = tokenizers.models.BPE(vocab={token: index for index, token in enumerate(vocabulary)},
                                  merges=[tuple(merge) for merge in merges])
    backend = tokenizers.Tokenizer(model)
    # GPT-2's split (words, numbers, punctuation, runs of spaces) before the merges; no space is added in
    # front of a text, so decoding gives back exactly the text encoded.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return backend


def _check_merges(merges, vocabulary: list[str]) -> list[list[str]]:
    if isinstance(merges, str) or not isinstance(merges, (list, tuple)):
        raise ValueError(f"merges must be a list of [left, right] pairs; got {type(merges).__name__}.")
    known = set(vocabulary)
    checked = []
    for index, merge in enumerate(merges):
        if (not isinstance(merge, (list, tuple)) or len(merge) != 2
                or not all(isinstance(part, str) and part for part in merge)):
            raise ValueError(f"merges[{index}] must be a pair of non-empty strings [left, right]; got {merge!r}.")
        missing = [token for token in (merge[0], merge[1], merge[0] + merge[1]) if token not in known]
        if missing:
            raise ValueError(
                f"merges[{index}]={list(merge)!r} uses tokens missing from the vocabulary: {missing}."
            )
        checked.append([merge[0], merge[1]])
    return checked


@keras.saving.register_keras_serializable(package="keras_models")
class BytePairTokenizer(Tokenizer):
    """A byte-level byte-pair tokenizer: any text round-trips (`decode(encode(text)) == text`).

    Ids: 0 `"<pad>"`, 1 `"<|endoftext|>"`, then `special_tokens` in order, then the 256 byte symbols,
    then one token per merge in the order learned. There is no unknown token.

    Build one with `BytePairTokenizer.train(texts, vocabulary_size=...)`; the constructor rebuilds a
    trained one from its configuration.

    Args:
        vocabulary: every token in id order, as `get_vocabulary()` returns it.
        merges: `[left, right]` pairs in the order learned; `left + right` is a token of the vocabulary.
        special_tokens: the user's special tokens, which follow the reserved ones.
    """

    def __init__(self, vocabulary, merges, special_tokens=()):
        special_tokens = check_special_tokens(special_tokens, self.reserved_tokens)
        vocabulary = self.check_vocabulary(vocabulary, self.reserved_tokens, special_tokens)
        known = set(vocabulary)
        missing = [symbol for symbol in BYTE_ALPHABET if symbol not in known]
        if missing:
            raise ValueError(f"A byte-level vocabulary holds all 256 byte symbols; {len(missing)} are missing, "
                             f"such as {missing[:5]}.")
        self._merges = _check_merges(merges, vocabulary)
        super().__init__(_backend(vocabulary, self._merges), vocabulary, special_tokens)

    @classmethod
    def train(cls, texts, vocabulary_size=1000, special_tokens=(), min_frequency=2):
        """Learns merges from `texts` until the vocabulary holds `vocabulary_size` tokens.

        Args:
            texts: a string or a list of strings (documents, lines: a merge never crosses from one to
                the next, nor across GPT-2's word and space boundaries).
            vocabulary_size: the largest vocabulary wanted, reserved, special and byte tokens included
                (at least 258 plus the special tokens). Fewer tokens come out when no pair occurs
                `min_frequency` times any more; `vocabulary_size` of the result says how many.
            special_tokens: strings given ids of their own after the reserved ones.
            min_frequency: the fewest occurrences a pair needs to be merged.

        Returns:
            A `BytePairTokenizer`.
        """
        batch, special_tokens = cls.check_training_input(texts, special_tokens)
        smallest = len(cls.reserved_tokens) + len(special_tokens) + len(BYTE_ALPHABET)
        if not is_int(vocabulary_size) or vocabulary_size < smallest:
            raise ValueError(
                f"vocabulary_size must be an integer of at least {smallest} ({len(cls.reserved_tokens)} reserved "
                f"tokens, {len(special_tokens)} special tokens and the {len(BYTE_ALPHABET)} bytes); got "
                f"vocabulary_size={vocabulary_size!r}."
            )
        if not is_int(min_frequency) or min_frequency < 1:
            raise ValueError(f"min_frequency must be a positive integer; got min_frequency={min_frequency!r}.")
        backend = _backend(list(BYTE_ALPHABET), [])
        trainer = trainers.BpeTrainer(vocab_size=int(vocabulary_size), min_frequency=int(min_frequency),
                                      special_tokens=[*cls.reserved_tokens, *special_tokens],
                                      initial_alphabet=list(BYTE_ALPHABET), show_progress=False)
        backend.train_from_iterator(batch, trainer=trainer)
        ids = backend.get_vocab(with_added_tokens=True)
        vocabulary = sorted(ids, key=ids.__getitem__)
        return cls(vocabulary, merges_of(backend), special_tokens)

    @property
    def merges(self) -> list[list[str]]:
        return [list(merge) for merge in self._merges]

    def get_config(self) -> dict:
        return {"vocabulary": self.get_vocabulary(), "merges": self.merges, "special_tokens": self.special_tokens}
