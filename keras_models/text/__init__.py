"""Text for the library's language models: tokenizers trained on the user's own texts, and a preprocessor.

- `BytePairTokenizer.train(texts, vocabulary_size=...)`: byte-level byte-pair encoding; any text
  round-trips.
- `CharacterTokenizer.train(texts)`: one token per character seen; unseen characters are `"<unk>"`.
- `WordPieceTokenizer.train(texts, vocabulary_size=...)`: BERT's WordPiece, with `[CLS]`, `[SEP]` and
  `[MASK]`; `BertPreprocessor(tokenizer, sequence_length)`: texts or pairs to BERT's inputs;
  `mask_tokens(...)`: masked-LM examples (15% of tokens, 80/10/10).
- `CausalLMPreprocessor(tokenizer, sequence_length)`: texts to `(inputs, next-token targets)` for
  `fit`, prompts to ids for `generate`, generated ids to texts.
- `attach_preprocessor(model, preprocessor)`: the preprocessor saves and loads with the model (its
  class takes `PreprocessorMixin`).
- `save_tokenizer_beside(model, exported_path)` / `load_tokenizer_beside(exported_path)`: the tokenizer
  as `<stem>.tokenizer.json` next to an exported model, in the `tokenizers` library's own format.

Reserved ids in every tokenizer: 0 `"<pad>"` (masked by the models, skipped by the losses), 1
`"<|endoftext|>"`; a `CharacterTokenizer` adds 2 `"<unk>"`.

The tokenizers run on Hugging Face's `tokenizers` library, on the host: nothing is downloaded.
"""

from keras_models.text.bert_preprocessor import BertPreprocessor, mask_tokens
from keras_models.text.byte_pair_tokenizer import BytePairTokenizer
from keras_models.text.causal_lm_preprocessor import CausalLMPreprocessor
from keras_models.text.character_tokenizer import UNKNOWN_ID, UNKNOWN_TOKEN, CharacterTokenizer
from keras_models.text.preprocessor_mixin import PreprocessorMixin, attach_preprocessor
from keras_models.text.tokenizer import END_OF_TEXT_ID, END_OF_TEXT_TOKEN, PADDING_ID, PADDING_TOKEN, Tokenizer
from keras_models.text.tokenizer_file import (
    find_tokenizer,
    load_tokenizer,
    load_tokenizer_beside,
    save_tokenizer,
    save_tokenizer_beside,
    tokenizer_path,
)
from keras_models.text.wordpiece import WordPieceTokenizer

__all__ = [
    "BertPreprocessor",
    "BytePairTokenizer",
    "CausalLMPreprocessor",
    "CharacterTokenizer",
    "END_OF_TEXT_ID",
    "END_OF_TEXT_TOKEN",
    "PADDING_ID",
    "PADDING_TOKEN",
    "PreprocessorMixin",
    "Tokenizer",
    "UNKNOWN_ID",
    "UNKNOWN_TOKEN",
    "WordPieceTokenizer",
    "attach_preprocessor",
    "find_tokenizer",
    "load_tokenizer",
    "load_tokenizer_beside",
    "mask_tokens",
    "save_tokenizer",
    "save_tokenizer_beside",
    "tokenizer_path",
]
