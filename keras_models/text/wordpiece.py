"""WordPiece, BERT's subword vocabulary, trained on the user's texts.

WordPiece (Schuster and Nakajima, 2012; Wu et al., 2016; Devlin et al., 2019, "BERT") splits a text into
words and punctuation marks, then every word greedily into the longest pieces of the vocabulary,
from the left: the first piece as it is, the following ones written with the prefix `"##"`
(`"tokenizer"` -> `"token"`, `"##izer"`). A word that no sequence of pieces spells is `"<unk>"`.
Training grows the vocabulary from single characters by merging the pairs whose merge most raises
the likelihood of the training texts.
"""

from __future__ import annotations

import keras
import tokenizers
from tokenizers import decoders, normalizers, pre_tokenizers, trainers

from keras_models.text.character_tokenizer import UNKNOWN_TOKEN
from keras_models.text.tokenizer import END_OF_TEXT_TOKEN, PADDING_TOKEN, Tokenizer, check_special_tokens, is_int

CONTINUATION_PREFIX = "##"
CLASSIFICATION_TOKEN = "[CLS]"
SEPARATOR_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
CLASSIFICATION_ID = 3
SEPARATOR_ID = 4
MASK_ID = 5


def _backend(vocabulary: list[str], lowercase: bool) -> tokenizers.Tokenizer:
    backend = tokenizers.Tokenizer(tokenizers.models.WordPiece(
        vocab={token: index for index, token in enumerate(vocabulary)}, unk_token=UNKNOWN_TOKEN,
        max_input_chars_per_word=100))
    # BERT's normalization: control characters dropped, whitespace made spaces, CJK characters split
    # apart, and (uncased) lower case with accents stripped.
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # words and single punctuation marks
    # No clean-up on decoding: the `tokenizers` clean-up also rewrites words ("do not" -> "don't").
    backend.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX, cleanup=False)
    return backend


def _check_lowercase(lowercase) -> bool:
    if lowercase not in (True, False):
        raise ValueError(f"lowercase must be True or False; got lowercase={lowercase!r}.")
    return bool(lowercase)


@keras.saving.register_keras_serializable(package="keras_models")
class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece tokenizer, with a vocabulary learned from the user's texts.

    Ids: 0 `"<pad>"`, 1 `"<|endoftext|>"`, 2 `"<unk>"`, 3 `"[CLS]"`, 4 `"[SEP]"`, 5 `"[MASK]"`, then
    `special_tokens` in order, then the learned pieces (a piece that continues a word starts with
    `"##"`). `[CLS]` starts a BERT input, `[SEP]` ends each of its segments, `[MASK]` hides a token from
    a masked language model.

    Texts are normalized as BERT's: with `lowercase=True` (BERT "uncased") lower case with accents
    stripped; whitespace runs and control characters fold to the single space between tokens. Decoding
    joins a word's pieces and puts one space between tokens (punctuation included): `encode(decode(ids))
    == ids` for ids from `encode` without `"<unk>"`, and a normalized text written with single spaces between its words and
    punctuation marks decodes to itself. A word no pieces spell (a character never seen in training)
    encodes to `"<unk>"`.

    Build one with `WordPieceTokenizer.train(texts, vocabulary_size=...)`; the constructor rebuilds a
    trained one from its configuration.

    Args:
        vocabulary: every token in id order, as `get_vocabulary()` returns it.
        special_tokens: the user's special tokens, which follow the reserved ones.
        lowercase: lower case and strip accents before splitting (BERT uncased).
    """

    reserved_tokens = (PADDING_TOKEN, END_OF_TEXT_TOKEN, UNKNOWN_TOKEN, CLASSIFICATION_TOKEN, SEPARATOR_TOKEN,
                       MASK_TOKEN)
    unknown_id = 2
    classification_id = CLASSIFICATION_ID
    separator_id = SEPARATOR_ID
    mask_id = MASK_ID

    def __init__(self, vocabulary, special_tokens=(), lowercase=True):
        special_tokens = check_special_tokens(special_tokens, self.reserved_tokens)
        vocabulary = self.check_vocabulary(vocabulary, self.reserved_tokens, special_tokens)
        self._lowercase = _check_lowercase(lowercase)
        head = len(self.reserved_tokens) + len(special_tokens)
        for index, token in enumerate(vocabulary[head:], start=head):
            if token == CONTINUATION_PREFIX or any(character.isspace() for character in token):
                raise ValueError(f"vocabulary[{index}] must be a word piece (no whitespace, not the bare prefix "
                                 f"{CONTINUATION_PREFIX!r}); got {token!r}.")
        super().__init__(_backend(vocabulary, self._lowercase), vocabulary, special_tokens)

    @classmethod
    def train(cls, texts, vocabulary_size=1000, special_tokens=(), min_frequency=2, lowercase=True):
        """Learns a WordPiece vocabulary of at most `vocabulary_size` tokens from `texts`.

        Args:
            texts: a string or a list of strings (no piece crosses a word boundary).
            vocabulary_size: the largest vocabulary wanted, reserved and special tokens and every
                character of the texts included. Fewer come out when no pair occurs `min_frequency`
                times any more; more characters than room is an error.
            special_tokens: strings given ids of their own after the reserved ones.
            min_frequency: the fewest occurrences a pair needs to be merged.
            lowercase: lower case and strip accents first (BERT uncased).

        Returns:
            A `WordPieceTokenizer`.
        """
        batch, special_tokens = cls.check_training_input(texts, special_tokens)
        lowercase = _check_lowercase(lowercase)
        head = [*cls.reserved_tokens, *special_tokens]
        if not is_int(vocabulary_size) or vocabulary_size <= len(head):
            raise ValueError(
                f"vocabulary_size must be an integer above {len(head)} ({len(cls.reserved_tokens)} reserved and "
                f"{len(special_tokens)} special tokens, and room for pieces); got vocabulary_size={vocabulary_size!r}."
            )
        if not is_int(min_frequency) or min_frequency < 1:
            raise ValueError(f"min_frequency must be a positive integer; got min_frequency={min_frequency!r}.")
        backend = _backend(head, lowercase)
        trainer = trainers.WordPieceTrainer(vocab_size=int(vocabulary_size), min_frequency=int(min_frequency),
                                            special_tokens=head, continuing_subword_prefix=CONTINUATION_PREFIX,
                                            show_progress=False)
        backend.train_from_iterator(batch, trainer=trainer)
        ids = backend.get_vocab(with_added_tokens=True)
        vocabulary = sorted(ids, key=ids.__getitem__)
        if len(vocabulary) > vocabulary_size:
            raise ValueError(
                f"The texts hold more distinct characters than vocabulary_size={vocabulary_size} leaves room for "
                f"({len(vocabulary)} tokens needed for the characters alone); raise vocabulary_size."
            )
        return cls(vocabulary, special_tokens, lowercase)

    @property
    def lowercase(self) -> bool:
        return self._lowercase

    def get_config(self) -> dict:
        return {"vocabulary": self.get_vocabulary(), "special_tokens": self.special_tokens,
                "lowercase": self._lowercase}

    @classmethod
    def from_tokenizer_json(cls, data: dict):
        """The `WordPieceTokenizer` of a `tokenizer.json` document (parsed) that `save_tokenizer` wrote;
        a `ValueError` says what does not match."""
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict) or model.get("type") != "WordPiece":
            raise ValueError("it holds no WordPiece model")
        normalizer = data.get("normalizer") or {}
        found = (normalizer.get("type"), (data.get("pre_tokenizer") or {}).get("type"),
                 (data.get("decoder") or {}).get("type"))
        if found != ("BertNormalizer", "BertPreTokenizer", "WordPiece"):
            raise ValueError(f"a WordPieceTokenizer file has normalizer BertNormalizer, pre-tokenizer "
                             f"BertPreTokenizer and decoder WordPiece; this one has {', '.join(map(str, found))}")
        vocab = model.get("vocab")
        if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError("its vocabulary does not number its tokens 0, 1, 2, ...")
        added = sorted((token["id"], token["content"]) for token in data.get("added_tokens") or []
                       if token.get("special"))
        special_tokens = [content for _, content in added[len(cls.reserved_tokens):]]
        return cls(sorted(vocab, key=vocab.__getitem__), special_tokens, bool(normalizer.get("lowercase")))
