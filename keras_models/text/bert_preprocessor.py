"""Raw text to BERT's inputs, and the masking of masked-language-model pretraining."""

from __future__ import annotations

import keras
import numpy as np

from keras_models.text.tokenizer import PADDING_ID, check_sequence_length, check_texts, is_int
from keras_models.text.wordpiece import CLASSIFICATION_ID, MASK_ID, SEPARATOR_ID, WordPieceTokenizer


def _check_rate(value, what):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) or not 0 < value < 1:
        raise ValueError(f"{what} must be a number in (0, 1); got {what}={value!r}.")
    return float(value)


def mask_tokens(inputs, vocabulary_size, rate=0.15, max_predictions=None, mask_id=MASK_ID,
                unmaskable_ids=None, seed=None):
    """BERT's masked-language-model examples (Devlin et al., 2019, section 3.1) from encoded inputs.

    In each row, `max(1, round(rate * tokens))` of its maskable tokens (padding and the ids in
    `unmaskable_ids` never are) are chosen at random, at most `max_predictions`; each chosen token is
    replaced by `mask_id` with probability 0.8, by a random maskable id with probability 0.1, and kept
    with probability 0.1. The model predicts the original token at every chosen position.

    Args:
        inputs: `[token_ids, segment_ids, padding_mask]`, int arrays `(batch, steps)` (as
            `BertPreprocessor` returns them).
        vocabulary_size: the number of token ids; random replacements are drawn from the ids in
            `[0, vocabulary_size)` that are not unmaskable.
        rate: the fraction of each row's tokens to predict (BERT: 0.15).
        max_predictions: the number of prediction slots per row; `None` for `max(1, round(rate *
            steps))`.
        mask_id: the `[MASK]` id.
        unmaskable_ids: ids never chosen nor drawn: `None` for the reserved ids of a
            `WordPieceTokenizer`, 0 to 5 (padding, end of text, `<unk>`, `[CLS]`, `[SEP]`, `[MASK]`).
        seed: the same seed draws the same examples.

    Returns:
        `(x, y, sample_weight)`: `x = [masked_token_ids, segment_ids, padding_mask, mask_positions]`
        with `mask_positions` int32 `(batch, max_predictions)`; `y` int32 `(batch, max_predictions)`,
        the original ids; `sample_weight` float32, 1 at the slots in use and 0 at unused slots (whose
        position and label are 0), for `fit(x, y, sample_weight=sample_weight)`.
    """
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
        raise ValueError("inputs must be [token_ids, segment_ids, padding_mask]; got "
                         f"{type(inputs).__name__} of {len(inputs) if isinstance(inputs, (list, tuple)) else 1}.")
    token_ids, segment_ids, padding_mask = (np.asarray(part) for part in inputs)
    if token_ids.ndim != 2 or segment_ids.shape != token_ids.shape or padding_mask.shape != token_ids.shape:
        raise ValueError(f"token_ids, segment_ids and padding_mask must share one shape (batch, steps); got "
                         f"{token_ids.shape}, {segment_ids.shape} and {padding_mask.shape}.")
    if token_ids.size and not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(f"token_ids must be integer ids; got dtype {token_ids.dtype}.")
    if not is_int(vocabulary_size) or vocabulary_size < 1:
        raise ValueError(f"vocabulary_size must be a positive integer; got vocabulary_size={vocabulary_size!r}.")
    if token_ids.size and (token_ids.min() < 0 or token_ids.max() >= vocabulary_size):
        raise ValueError(f"token_ids must lie in [0, {vocabulary_size}) (vocabulary_size={vocabulary_size}); got ids "
                         f"from {token_ids.min()} to {token_ids.max()}.")
    rate = _check_rate(rate, "rate")
    steps = token_ids.shape[1]
    if max_predictions is None:
        max_predictions = max(1, round(rate * steps))
    if not is_int(max_predictions) or max_predictions < 1:
        raise ValueError(f"max_predictions must be a positive integer or None; got max_predictions={max_predictions!r}.")
    if not is_int(mask_id) or not 0 <= mask_id < vocabulary_size:
        raise ValueError(f"mask_id must be an id in [0, {vocabulary_size}); got mask_id={mask_id!r}.")
    unmaskable = np.asarray(range(len(WordPieceTokenizer.reserved_tokens)) if unmaskable_ids is None
                            else list(unmaskable_ids), dtype=np.int64)
    replacements = np.setdiff1d(np.arange(vocabulary_size), unmaskable)
    if not len(replacements):
        raise ValueError(f"Every id of the vocabulary of {vocabulary_size} is unmaskable; nothing can be masked.")

    rng = np.random.default_rng(seed)
    masked = token_ids.astype(np.int32).copy()
    positions = np.zeros((len(token_ids), max_predictions), dtype=np.int32)
    labels = np.zeros((len(token_ids), max_predictions), dtype=np.int32)
    weights = np.zeros((len(token_ids), max_predictions), dtype=np.float32)
    maskable = (padding_mask.astype(bool)) & (token_ids != PADDING_ID) & ~np.isin(token_ids, unmaskable)
    for row in range(len(token_ids)):
        candidates = np.flatnonzero(maskable[row])
        if not len(candidates):
            continue
        tokens = int(padding_mask[row].astype(bool).sum())
        count = min(max_predictions, len(candidates), max(1, round(rate * tokens)))
        chosen = np.sort(rng.choice(candidates, size=count, replace=False))
        draw = rng.random(count)
        random_ids = rng.choice(replacements, size=count)
        masked[row, chosen] = np.where(draw < 0.8, mask_id, np.where(draw < 0.9, random_ids, token_ids[row, chosen]))
        positions[row, :count] = chosen
        labels[row, :count] = token_ids[row, chosen]
        weights[row, :count] = 1.0
    x = [masked, segment_ids.astype(np.int32), padding_mask.astype(np.int32), positions]
    return x, labels, weights


@keras.saving.register_keras_serializable(package="keras_models")
class BertPreprocessor:
    """Texts, or pairs of texts, to BERT's inputs `[token_ids, segment_ids, padding_mask]`.

    One text becomes `[CLS] tokens [SEP]`; a pair `[CLS] first [SEP] second [SEP]`, with segment id 0
    up to the first `[SEP]` and 1 after it. Too long a pair is cut one token at a time from the end
    of whichever text is longer (BERT's rule); the rows are padded with id 0 to `sequence_length`, the
    padding mask 1 at tokens and 0 at padding.

    It runs on the host, outside the model's graph (exported models read ids), and saves with a model
    whose class takes `keras_models.text.PreprocessorMixin`: `attach_preprocessor(model, preprocessor)`.

    Args:
        tokenizer: a `WordPieceTokenizer`.
        sequence_length: the number of steps of every row, `[CLS]` and `[SEP]` included (at least 3).
    """

    def __init__(self, tokenizer, sequence_length=128):
        if not isinstance(tokenizer, WordPieceTokenizer):
            raise ValueError(f"tokenizer must be a WordPieceTokenizer (it has [CLS], [SEP] and [MASK]); got "
                             f"{type(tokenizer).__name__}.")
        self.tokenizer = tokenizer
        self.sequence_length = check_sequence_length(sequence_length)
        if self.sequence_length is None or self.sequence_length < 3:
            raise ValueError(f"sequence_length must be an integer of at least 3 ([CLS], a token, [SEP]); got "
                             f"sequence_length={sequence_length!r}.")

    def __call__(self, texts, second_texts=None):
        """BERT's inputs for `texts` (and, for pairs, `second_texts`, one per text).

        Returns:
            `[token_ids, segment_ids, padding_mask]`, int32 arrays `(len(texts), sequence_length)`.
        """
        first, _ = check_texts(texts)
        pairs = second_texts is not None
        if pairs:
            second, _ = check_texts(second_texts, "second_texts")
            if len(second) != len(first):
                raise ValueError(f"second_texts must hold one text per text: {len(first)}; got {len(second)}.")
        shape = (len(first), self.sequence_length)
        token_ids = np.zeros(shape, dtype=np.int32)
        segment_ids = np.zeros(shape, dtype=np.int32)
        firsts = self.tokenizer.encode(first)
        seconds = self.tokenizer.encode(second) if pairs else [None] * len(first)
        for row, (a, b) in enumerate(zip(firsts, seconds)):
            room = self.sequence_length - (3 if pairs else 2)
            a, b = list(a), list(b or [])
            while len(a) + len(b) > room:  # cut the longer text
                (a if len(a) >= len(b) else b).pop()
            ids = [CLASSIFICATION_ID, *a, SEPARATOR_ID] + ([*b, SEPARATOR_ID] if pairs else [])
            token_ids[row, :len(ids)] = ids
            segment_ids[row, len(a) + 2:len(ids)] = 1
        return [token_ids, segment_ids, (token_ids != PADDING_ID).astype(np.int32)]

    def masked_lm(self, texts, rate=0.15, max_predictions=None, seed=None):
        """`mask_tokens(self(texts), ...)`: `(x, y, sample_weight)` for a `BertMaskedLM`'s `fit`."""
        return mask_tokens(self(texts), self.tokenizer.vocabulary_size, rate=rate, max_predictions=max_predictions,
                           mask_id=MASK_ID, seed=seed)

    def get_config(self) -> dict:
        return {"tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)

    def __repr__(self):
        return f"BertPreprocessor({self.tokenizer!r}, sequence_length={self.sequence_length})"
