"""The preprocessor saves and loads with its model (`.keras`), and the tokenizer travels beside an
exported model as `tokenizer.json`, readable by the `tokenizers` library itself; damaged files are
refused by name and a failed write leaves the old file whole."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tokenizers

from keras_models.recurrent.language_model import RNNLanguageModel
from keras_models.text import (
    BytePairTokenizer,
    CausalLMPreprocessor,
    CharacterTokenizer,
    PreprocessorMixin,
    attach_preprocessor,
    load_tokenizer,
    load_tokenizer_beside,
    save_tokenizer,
    save_tokenizer_beside,
    tokenizer_path,
)

CORPUS = ["A tokenizer trained on the user's own texts.", "Texte en français, déjà vu.",
          "def f(x):\n    return x  # done"] * 4
TEXTS = ["Texts the model reads.", "naïve «quotes» and 🤖", ""]


@pytest.fixture(scope="module", params=["bpe", "characters"])
def tokenizer(request):
    if request.param == "bpe":
        return BytePairTokenizer.train(CORPUS, vocabulary_size=290, special_tokens=["<|sep|>"])
    return CharacterTokenizer.train(CORPUS)


def _language_model(tokenizer):
    return RNNLanguageModel(vocab_size=tokenizer.vocabulary_size, embedding_dim=4, units=4, cell="gru")


def test_preprocessor_saves_and_loads_with_the_model(tokenizer, tmp_path):
    model = _language_model(tokenizer)
    weights = len(model.weights)
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=12)
    assert attach_preprocessor(model, preprocessor) is model
    assert len(model.weights) == weights and len(model.layers) == len(_language_model(tokenizer).layers)
    path = tmp_path / "lm.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is RNNLanguageModel
    assert isinstance(loaded.preprocessor, CausalLMPreprocessor) and loaded.preprocessor.sequence_length == 12
    assert loaded.preprocessor.tokenizer == tokenizer
    for a, b in zip(loaded.preprocessor(TEXTS), preprocessor(TEXTS)):
        np.testing.assert_array_equal(a, b)
    assert loaded.preprocessor.tokenizer.encode(TEXTS) == tokenizer.encode(TEXTS)
    x, _ = preprocessor(TEXTS)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    prompts = loaded.preprocessor.generate_preprocess(["A tok", "Texte"])
    generated = loaded.generate(prompts, max_length=prompts.shape[1] + 5,
                                stop_token_ids=preprocessor.stop_token_ids)
    assert generated.shape == (2, prompts.shape[1] + 5)
    texts = loaded.preprocessor.generate_postprocess(generated)
    assert texts[0].startswith("A tok") and texts[1].startswith("Texte")


@keras.saving.register_keras_serializable(package="keras_models_tests")
class SubclassedLanguageModel(PreprocessorMixin, keras.Model):
    """A subclassed model relying on Keras' own `from_config`, as a task model may."""

    def __init__(self, vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding = keras.layers.Embedding(vocabulary_size, 4)
        self.logits = keras.layers.Dense(vocabulary_size)

    def call(self, token_ids):
        return self.logits(self.embedding(token_ids))

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size}


def test_a_subclassed_model_saves_its_preprocessor(tokenizer, tmp_path):
    model = SubclassedLanguageModel(tokenizer.vocabulary_size)
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=6)
    x, _ = preprocessor(TEXTS)
    expected = keras.ops.convert_to_numpy(model(x))
    attach_preprocessor(model, preprocessor).save(tmp_path / "subclassed.keras")
    loaded = keras.saving.load_model(tmp_path / "subclassed.keras")
    assert loaded.preprocessor.tokenizer == tokenizer and loaded.preprocessor.sequence_length == 6
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)


def test_a_model_without_a_preprocessor_saves_as_before(tmp_path):
    model = _language_model(CharacterTokenizer.train(CORPUS))
    assert "preprocessor" not in model.get_config()
    model.save(tmp_path / "plain.keras")
    assert keras.saving.load_model(tmp_path / "plain.keras").preprocessor is None


def test_attaching_is_refused_where_it_would_not_save_or_not_fit(tokenizer):
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=8)
    functional = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(8, 2)])
    with pytest.raises(ValueError, match="PreprocessorMixin"):
        attach_preprocessor(functional, preprocessor)
    small = RNNLanguageModel(vocab_size=tokenizer.vocabulary_size - 1, embedding_dim=4, units=4)
    with pytest.raises(ValueError, match=f"{tokenizer.vocabulary_size} token ids but .* reads only"):
        attach_preprocessor(small, preprocessor)
    with pytest.raises(ValueError, match="must hold a tokenizer"):
        attach_preprocessor(small, tokenizer.get_config())


def test_tokenizer_file_beside_an_exported_model_loads_in_the_tokenizers_library(tokenizer, tmp_path):
    model = attach_preprocessor(_language_model(tokenizer), CausalLMPreprocessor(tokenizer, sequence_length=8))
    exported = tmp_path / "lm.int8.tflite"
    written = save_tokenizer_beside(model, exported)
    assert written == tokenizer_path(exported) == tmp_path / "lm.int8.tokenizer.json"
    assert load_tokenizer_beside(exported) == tokenizer
    # An app loads the same file with the tokenizers library's own bindings.
    native = tokenizers.Tokenizer.from_file(str(written))
    native.encode_special_tokens = True
    for text in TEXTS + ["<|endoftext|> as text"]:
        ids = native.encode(text).ids
        assert ids == tokenizer.encode(text)
        assert native.decode(ids, skip_special_tokens=False) == tokenizer.decode(ids)
        # Skipping special tokens drops padding and the end of text (and a character tokenizer's "<unk>").
        known = [token for token in ids if token != getattr(tokenizer, "unknown_id", None)]
        assert native.decode([1, *ids, 1, 0, 0], skip_special_tokens=True) == tokenizer.decode(known)
    assert save_tokenizer_beside(_language_model(tokenizer), tmp_path / "bare.onnx") is None
    assert not (tmp_path / "bare.tokenizer.json").exists()


def _valid_text(tokenizer):
    return tokenizer.to_json()


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[:len(text) // 2], "not valid JSON"),
    (lambda text: "", "not valid JSON"),
    (lambda text: b"\xff\xfe\x00garbage", "not valid JSON"),
    (lambda text: json.dumps([1, 2, 3]), "holds no tokenizer model"),
    (lambda text: json.dumps({**json.loads(text), "model": {"type": "Unigram"}}), "model type is 'Unigram'"),
    (lambda text: json.dumps({**json.loads(text), "decoder": {"type": "WordPiece"}}), "WordPiece"),
    (lambda text: json.dumps({**json.loads(text), "normalizer": {"type": "Lowercase"}}), "normalizer"),
    (lambda text: json.dumps({**json.loads(text), "model": {**json.loads(text)["model"], "vocab": {"<pad>": 5}}}),
     "does not number its tokens"),
])
def test_damaged_tokenizer_files_are_refused_by_name(tokenizer, tmp_path, damage, message):
    path = tmp_path / "damaged.tokenizer.json"
    content = damage(_valid_text(tokenizer))
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as raised:
        load_tokenizer(path)
    assert "damaged.tokenizer.json" in str(raised.value)


def test_a_failed_write_leaves_the_previous_file_whole(tokenizer, tmp_path, monkeypatch):
    path = tmp_path / "lm.tokenizer.json"
    previous = CharacterTokenizer.train(["old"])
    save_tokenizer(previous, path)
    before = path.read_bytes()

    def write_half_then_fail(self, text, encoding=None):
        with open(self, "w", encoding=encoding) as file:
            file.write(text[:len(text) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_tokenizer(tokenizer, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and load_tokenizer(path) == previous
    assert [p.name for p in tmp_path.iterdir()] == ["lm.tokenizer.json"]
    with pytest.raises(ValueError, match="tokenizer must be a BytePairTokenizer"):
        save_tokenizer("vocab.json", tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()
