"""The tokenizer beside an exported model, as a `tokenizer.json` file.

An exported TFLite or ONNX model reads token ids; the app around it encodes and decodes text with the
tokenizer written next to it, `model.tflite` beside `model.tokenizer.json`. The file is the
`tokenizers` library's own JSON format, which its Python, Rust and Node bindings load with
`Tokenizer.from_file` (tested with the Python one), and which `load_tokenizer` reads back into a
`BytePairTokenizer`, a `CharacterTokenizer` or a `WordPieceTokenizer`.

In other bindings, turn on `encode_special_tokens` (as this library does) for the same ids on texts
that contain a special token's text; `decode(ids, skip_special_tokens=True)` leaves out padding, the
end of text (and a character tokenizer's `"<unk>"`). A generating app starts a text with id 1 and stops
when the model produces id 1.
"""

from __future__ import annotations

import json
from pathlib import Path

from keras_models.files import atomic_write
from keras_models.text.byte_pair_tokenizer import BytePairTokenizer
from keras_models.text.character_tokenizer import CharacterTokenizer
from keras_models.text.tokenizer import Tokenizer
from keras_models.text.wordpiece import WordPieceTokenizer

# What each tokenizer class writes: the model type, the pre-tokenizer and the decoder of its file.
_LAYOUTS = {
    "BPE": (BytePairTokenizer, "ByteLevel", "ByteLevel"),
    "WordLevel": (CharacterTokenizer, "Split", "Fuse"),
}


def tokenizer_path(model_path) -> Path:
    """Where the tokenizer of the exported model `model_path` lives: `gpt.tflite` -> `gpt.tokenizer.json`."""
    return Path(model_path).with_suffix(".tokenizer.json")


def find_tokenizer(model):
    """The tokenizer `model` carries (`model.preprocessor.tokenizer`), or `None`."""
    preprocessor = getattr(model, "preprocessor", None)
    if isinstance(preprocessor, Tokenizer):
        return preprocessor
    tokenizer = getattr(preprocessor, "tokenizer", None)
    return tokenizer if isinstance(tokenizer, Tokenizer) else None


def save_tokenizer(tokenizer, path) -> Path:
    """Writes `tokenizer` to `path` as `tokenizer.json`; atomically: a failure leaves `path` untouched.

    Returns:
        `path` as a `Path`.
    """
    if not isinstance(tokenizer, Tokenizer):
        raise ValueError(f"tokenizer must be a BytePairTokenizer, CharacterTokenizer or WordPieceTokenizer; got "
                         f"{type(tokenizer).__name__}.")
    path = Path(path)
    text = tokenizer.to_json()
    with atomic_write(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def save_tokenizer_beside(model, model_path):
    """Writes the tokenizer `model` carries beside its exported file `model_path`
    (`tokenizer_path(model_path)`); returns that path, or `None` when the model carries no tokenizer."""
    tokenizer = find_tokenizer(model)
    if tokenizer is None:
        return None
    return save_tokenizer(tokenizer, tokenizer_path(model_path))


def _from_json(data) -> Tokenizer:
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError("it holds no tokenizer model")
    model = data["model"]
    if model.get("type") == "WordPiece":
        return WordPieceTokenizer.from_tokenizer_json(data)
    if model.get("type") not in _LAYOUTS:
        raise ValueError(f"its model type is {model.get('type')!r}, not one of {sorted([*_LAYOUTS, 'WordPiece'])}")
    cls, pre_tokenizer, decoder = _LAYOUTS[model["type"]]
    found = ((data.get("pre_tokenizer") or {}).get("type"), (data.get("decoder") or {}).get("type"))
    if found != (pre_tokenizer, decoder) or data.get("normalizer") is not None:
        raise ValueError(f"a {cls.__name__} file has pre-tokenizer {pre_tokenizer} and decoder {decoder} and no "
                         f"normalizer; this one has {found[0]}, {found[1]} and {data.get('normalizer')}")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("its vocabulary does not number its tokens 0, 1, 2, ...")
    vocabulary = sorted(vocab, key=vocab.__getitem__)
    added = sorted((token["id"], token["content"])
                   for token in data.get("added_tokens") or [] if token.get("special"))
    special_tokens = [content for _, content in added[len(cls.reserved_tokens):]]
    if cls is BytePairTokenizer:
        merges = [merge.split(" ") if isinstance(merge, str) else merge for merge in model.get("merges") or []]
        return cls(vocabulary, merges, special_tokens)
    return cls(vocabulary, special_tokens)


def load_tokenizer(path) -> Tokenizer:
    """Reads a `tokenizer.json` written by `save_tokenizer` back into a `BytePairTokenizer`, a
    `CharacterTokenizer` or a `WordPieceTokenizer`; a `ValueError` naming the file says what is wrong with a damaged or foreign one."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not a tokenizer file: it is not valid JSON ({error}).") from None
    try:
        return _from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{str(path)!r} is not a tokenizer file written by save_tokenizer: {error}.") from None


def load_tokenizer_beside(model_path) -> Tokenizer:
    """The tokenizer written beside the exported model `model_path` by `save_tokenizer_beside`."""
    return load_tokenizer(tokenizer_path(model_path))
